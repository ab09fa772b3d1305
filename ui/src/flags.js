// The flags of one environment: search, state, a kill switch per row. Rows are drawn only
// where the list is scrolled to (fixed height), so 10,000 flags stay fast. The list reloads
// when the environment's sequence moves (someone else changed something).
import { h } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { commaList } from './text.js';
import { awaitingApproval, call, enc, envPath, get, watchEnvironment } from './api.js';

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

// Variations as typed, one per line: booleans are fixed; numbers and JSON are parsed.
export function parseVariations(type, text) {
  if (type === 'boolean') return [false, true];
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  if (lines.length < 2) throw new Error('Give at least two variations, one per line.');
  return lines.map((l, i) => {
    if (type === 'string') return l;
    if (type === 'number') {
      const n = Number(l);
      if (!Number.isFinite(n)) throw new Error(`Line ${i + 1} is not a number: ${l}`);
      return n;
    }
    try { return JSON.parse(l); } catch { throw new Error(`Line ${i + 1} is not JSON: ${l}`); }
  });
}

// Creates a flag in the project (off in every environment), then opens it.
function NewFlag({ project, env, onCancel }) {
  const [f, setF] = useState({ key: '', name: '', description: '', tags: '', type: 'boolean', variations: '' });
  const [error, setError] = useState('');
  const field = (k) => (e) => setF({ ...f, [k]: e.target.value });
  const create = async (ev) => {
    ev.preventDefault();
    setError('');
    try {
      const body = {
        key: f.key.trim(), name: f.name.trim() || f.key.trim(), description: f.description,
        tags: commaList(f.tags), variations: parseVariations(f.type, f.variations),
      };
      await call('POST', `/api/v1/projects/${enc(project)}/flags`, body);
      location.hash = `#/p/${enc(project)}/e/${enc(env)}/flags/${enc(body.key)}`;
    } catch (e) {
      setError(e.field ? `${e.field}: ${e.message}` : e.message);
    }
  };
  return html`<form class="form-card" aria-label="New flag" onSubmit=${create}>
    <label>Key <input required value=${f.key} onInput=${field('key')} /></label>
    <label>Name <input value=${f.name} onInput=${field('name')} /></label>
    <label>Description <input value=${f.description} onInput=${field('description')} /></label>
    <label>Tags <input value=${f.tags} placeholder="comma-separated" onInput=${field('tags')} /></label>
    <label>Variations <select value=${f.type} onChange=${field('type')}>
      <option value="boolean">boolean: false, true</option><option value="string">strings</option>
      <option value="number">numbers</option><option value="json">JSON values</option></select></label>
    ${f.type !== 'boolean' && html`<label>One per line <textarea rows="3" value=${f.variations} onInput=${field('variations')} /></label>`}
    <p class="hint">The flag is created off in every environment, serving its first variation.</p>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <p><button type="submit">Create flag</button> <button type="button" class="quiet" onClick=${onCancel}>Cancel</button></p>
  </form>`;
}

export function FlagList({ project, env, readOnly }) {
  const [flags, setFlags] = useState(null);
  const [query, setQuery] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState('');
  const [said, setSaid] = useState('');
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(600);
  const box = useRef(null);

  const load = () => get(`${envPath(project, env)}/flags?fields=summary`).then((r) => setFlags(r.items || [])).catch((e) => setError(e.message));
  useEffect(() => {
    setFlags(null);
    load();
    return watchEnvironment(project, env, load, POLL_MS);
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
    setSaid('');
    try {
      const r = await call('PATCH', `${envPath(project, env)}/flags/${enc(flag.key)}`, { on: !flag.on }, { 'If-Match': `"${flag.version}"` });
      if (awaitingApproval(r)) return setSaid(`${flag.key}: ${awaitingApproval(r)}`);
      setFlags((all) => all.map((f) => (f.key === flag.key ? summarize(r.json) : f)));
    } catch (e) {
      setError(e.status === 412 ? `Someone changed ${flag.key} meanwhile: the list shows their change now.` : e.message);
      load();
    } finally {
      setBusy('');
    }
  };

  const [creating, setCreating] = useState(false);
  if (!flags) return html`<p aria-busy="true">Loading flags…</p>`;
  const first = Math.max(0, Math.floor(top / ROW) - EXTRA);
  const last = Math.min(shown.length, Math.ceil((top + height) / ROW) + EXTRA);
  return html`<section class="flags" aria-labelledby="flags-title">
    <div class="toolbar">
      <h1 id="flags-title">Flags <span class="count">${shown.length === flags.length ? flags.length : `${shown.length} of ${flags.length}`}</span></h1>
      <label class="search">Search <input type="search" value=${query} placeholder="key, name or tag" onInput=${(e) => setQuery(e.target.value)} /></label>
      ${!readOnly && !creating && html`<button onClick=${() => setCreating(true)}>New flag</button>`}
    </div>
    ${creating && html`<${NewFlag} project=${project} env=${env} onCancel=${() => setCreating(false)} />`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${said && html`<p role="status">${said}</p>`}
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
