// The flags of one environment: search, state, a kill switch per row. Rows are drawn only
// where the list is scrolled to (fixed height), so 10,000 flags stay fast. The list reloads
// when the environment's sequence moves (someone else changed something).
import { h } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { call, enc, envPath, get } from './api.js';

const html = htm.bind(h);
const ROW = 44;      // px: one row
const EXTRA = 8;     // rows drawn beyond the visible ones
const POLL_MS = 3000;

function Toggle({ flag, onToggle, busy, readOnly }) {
  return html`<button class=${`switch ${flag.on ? 'on' : 'off'}`} role="switch" aria-checked=${flag.on ? 'true' : 'false'}
    aria-label=${`${flag.key} ${flag.on ? 'on' : 'off'}`} disabled=${busy || readOnly} onClick=${() => onToggle(flag)}>
    <span>${flag.on ? 'On' : 'Off'}</span></button>`;
}

// The summary route's "serves": {"off": v} | {"variation": v} | {"rollout": [{weight, value}]}.
function serves(f) {
  const s = f.serves || {};
  if ('off' in s) return `off: ${JSON.stringify(s.off)}`;
  if (s.rollout) return s.rollout.map((w) => `${w.weight / 1000}% ${JSON.stringify(w.value)}`).join(' · ');
  return JSON.stringify(s.variation);
}

// A full flag (what a PATCH answers) as the summary has it.
const summarize = (f) => ({
  key: f.key, name: f.name, version: f.version, on: f.on, tags: f.tags || [],
  serves: !f.on ? { off: f.variations[f.offVariation] }
    : f.fallthrough && f.fallthrough.rollout ? { rollout: f.fallthrough.rollout.variations.map((w) => ({ weight: w.weight, value: f.variations[w.variation] })) }
      : { variation: f.variations[(f.fallthrough || {}).variation] },
});

export function FlagList({ project, env, readOnly }) {
  const [flags, setFlags] = useState(null);
  const [query, setQuery] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState('');
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(600);
  const box = useRef(null);
  const sequence = useRef(-1);

  const load = () => get(`${envPath(project, env)}/flags?fields=summary`).then((r) => setFlags(r.items || [])).catch((e) => setError(e.message));
  useEffect(() => {
    setFlags(null);
    sequence.current = -1;
    load();
    const timer = setInterval(async () => {
      try {
        const e = await get(envPath(project, env));
        if (sequence.current >= 0 && e.sequence !== sequence.current) load();
        sequence.current = e.sequence;
      } catch { /* the next poll tries again */ }
    }, POLL_MS);
    return () => clearInterval(timer);
  }, [project, env]);
  useEffect(() => {
    if (!box.current) return;
    const measure = () => setHeight(box.current.clientHeight || 600);
    measure();
    addEventListener('resize', measure);
    return () => removeEventListener('resize', measure);
  }, [flags !== null]);

  const shown = useMemo(() => {
    if (!flags) return [];
    const q = query.trim().toLowerCase();
    return q ? flags.filter((f) => f.key.toLowerCase().includes(q) || (f.name || '').toLowerCase().includes(q) ||
      (f.tags || []).some((t) => t.toLowerCase().includes(q))) : flags;
  }, [flags, query]);

  const toggle = async (flag) => {
    setBusy(flag.key);
    setError('');
    try {
      const r = await call('PATCH', `${envPath(project, env)}/flags/${enc(flag.key)}`, { on: !flag.on }, { 'If-Match': `"${flag.version}"` });
      setFlags((all) => all.map((f) => (f.key === flag.key ? summarize(r.json) : f)));
    } catch (e) {
      setError(e.status === 412 ? `Someone changed ${flag.key} meanwhile: the list shows their change now.` : e.message);
      load();
    } finally {
      setBusy('');
    }
  };

  if (!flags) return html`<p aria-busy="true">Loading flags…</p>`;
  const first = Math.max(0, Math.floor(top / ROW) - EXTRA);
  const last = Math.min(shown.length, Math.ceil((top + height) / ROW) + EXTRA);
  return html`<section class="flags" aria-labelledby="flags-title">
    <div class="toolbar">
      <h1 id="flags-title">Flags <span class="count">${shown.length === flags.length ? flags.length : `${shown.length} of ${flags.length}`}</span></h1>
      <label class="search">Search <input type="search" value=${query} placeholder="key, name or tag" onInput=${(e) => setQuery(e.target.value)} /></label>
    </div>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <div class="list" ref=${box} role="table" aria-label="Flags" aria-rowcount=${shown.length} onScroll=${(e) => setTop(e.target.scrollTop)}>
      <div style=${`height:${shown.length * ROW}px;position:relative`} role="rowgroup">
        ${shown.slice(first, last).map((f, i) => html`<div class="row" role="row" aria-rowindex=${first + i + 1} style=${`top:${(first + i) * ROW}px`} key=${f.key}>
          <span role="cell" class="state"><${Toggle} flag=${f} onToggle=${toggle} busy=${busy === f.key} readOnly=${readOnly} /></span>
          <span role="cell" class="key"><a href=${`#/p/${enc(project)}/e/${enc(env)}/flags/${enc(f.key)}`}>${f.key}</a>
            ${f.name && f.name !== f.key ? html`<small>${f.name}</small>` : null}</span>
          <span role="cell" class="serves">${serves(f)}</span>
          <span role="cell" class="tags">${(f.tags || []).map((t) => html`<span class="tag">${t}</span>`)}</span>
        </div>`)}
      </div>
    </div>
  </section>`;
}
