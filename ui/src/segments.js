// The segments of one environment: the list, a new segment, and a segment's editor — the keys
// always in, the keys always out, and rules built from the same clause builder as a flag's —
// with a diff of the change and a comment before it is saved with If-Match.
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { awaitingApproval, call, enc, envPath, get } from './api.js';
import { diff } from './history.js';
import { describe, NewRuleForm } from './clauses.js';
import { Review } from './review.js';
import { CommittedField } from './text.js';

const html = htm.bind(h);
const keys = (text) => [...new Set(text.split(/[\s,]+/).map((s) => s.trim()).filter((s) => s !== ''))];
const segLink = (p, e, s) => `#/p/${enc(p)}/e/${enc(e)}/segments${s ? `/${enc(s)}` : ''}`;

export function SegmentsPage({ project, env, segment, readOnly }) {
  return segment ? html`<${SegmentEditor} project=${project} env=${env} segment=${segment} readOnly=${readOnly} />`
    : html`<${SegmentList} project=${project} env=${env} readOnly=${readOnly} />`;
}

function SegmentList({ project, env, readOnly }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState('');
  const [key, setKey] = useState('');
  const load = () => get(`${envPath(project, env)}/segments`).then((r) => setItems(r.items || [])).catch((e) => setError(e.message));
  useEffect(() => { setItems(null); load(); }, [project, env]);
  const create = async (ev) => {
    ev.preventDefault();
    setError('');
    try {
      const r = await call('POST', `${envPath(project, env)}/segments`, { key: key.trim() });
      if (awaitingApproval(r)) return setError(awaitingApproval(r));
      location.hash = segLink(project, env, key.trim());
      setKey('');
    } catch (e) { setError(e.field ? `${e.field}: ${e.message}` : e.message); }
  };
  if (!items) return error ? html`<p class="error" role="alert">${error}</p>` : html`<p aria-busy="true">Loading…</p>`;
  return html`<section aria-labelledby="segments-title">
    <h1 id="segments-title">Segments in ${env}</h1>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${items.length === 0 ? html`<p>No segments yet.</p>` : html`<table class="segments"><caption class="sr">Segments</caption>
      <thead><tr><th scope="col">segment</th><th scope="col">included</th><th scope="col">excluded</th><th scope="col">rules</th><th scope="col">version</th></tr></thead>
      <tbody>${items.map((s) => html`<tr><th scope="row"><a href=${segLink(project, env, s.key)}>${s.key}</a></th>
        <td>${s.included.length}</td><td>${s.excluded.length}</td><td>${s.rules.length}</td><td>${s.version}</td></tr>`)}</tbody></table>`}
    ${!readOnly && html`<form class="inline" aria-label="New segment" onSubmit=${create}>
      <label>New segment key <input required value=${key} onInput=${(e) => setKey(e.target.value)} /></label> <button type="submit">Create segment</button></form>`}
  </section>`;
}

function SegmentEditor({ project, env, segment, readOnly }) {
  const path = `${envPath(project, env)}/segments/${enc(segment)}`;
  const [saved, setSaved] = useState(null);
  const [draft, setDraft] = useState(null);
  const [segments, setSegments] = useState([]);
  const [error, setError] = useState('');
  const [said, setSaid] = useState('');
  const show = (s) => { setSaved(s); setDraft(s); };
  useEffect(() => {
    get(path).then(show).catch((e) => setError(e.message));
    get(`${envPath(project, env)}/segments`).then((r) => setSegments((r.items || []).map((s) => s.key).filter((k) => k !== segment))).catch(() => {});
  }, [path]);
  if (!draft) return error ? html`<p class="error" role="alert">${error}</p>` : html`<p aria-busy="true">Loading…</p>`;
  const set = (patch) => { setDraft((d) => ({ ...d, ...patch })); setSaid(''); };
  const changes = diff(saved, draft);
  const save = async (comment) => {
    setError('');
    try {
      const body = { included: draft.included, excluded: draft.excluded, rules: draft.rules };
      const r = await call('PATCH', `${path}?comment=${enc(comment)}`, body, { 'If-Match': `"${saved.version}"` });
      if (awaitingApproval(r)) {
        show(saved);
        setSaid(awaitingApproval(r));
        return true;
      }
      show(r.json);
      setSaid(`Saved: version ${r.json.version}.`);
    } catch (e) {
      if (e.status === 412) {
        setError('Someone changed this segment since you opened it: their version is shown now; make your change again.');
        show(await get(path));
      } else setError(e.field ? `${e.field}: ${e.message}` : e.message);
      return false;
    }
  };
  const remove = async () => {
    setError('');
    try {
      const r = await call('DELETE', path, undefined, { 'If-Match': `"${saved.version}"` });
      if (awaitingApproval(r)) return setSaid(awaitingApproval(r));
      location.hash = segLink(project, env);
    } catch (e) { setError(e.message); }
  };
  return html`<article aria-labelledby="segment-title">
    <p><a href=${segLink(project, env)}>← Segments</a></p>
    <h1 id="segment-title">Segment ${segment} <small>version ${saved.version}</small></h1>
    <p class="hint">A context is in the segment when its key is included, else not when it is excluded, else when a rule matches.</p>
    <label class="keys">Included (user keys) <${CommittedField} as="textarea" rows="3" disabled=${readOnly} value=${draft.included.join(', ')}
      onCommit=${(text) => set({ included: keys(text) })} /></label>
    <label class="keys">Excluded (user keys) <${CommittedField} as="textarea" rows="2" disabled=${readOnly} value=${draft.excluded.join(', ')}
      onCommit=${(text) => set({ excluded: keys(text) })} /></label>
    <h2>Rules</h2>
    ${draft.rules.length === 0 ? html`<p>No rules.</p>` : html`<ol class="rules">${draft.rules.map((r, i) => html`<li>
      If ${r.clauses.map(describe).join(' and ')}${r.weight !== undefined ? ` (${r.weight / 1000}% of them)` : ''}
      ${!readOnly && html`<button class="quiet" aria-label=${`delete segment rule ${i + 1}`} onClick=${() => set({ rules: draft.rules.filter((_, j) => j !== i) })}>Delete</button>`}</li>`)}</ol>`}
    ${!readOnly && html`<${NewRuleForm} label="New segment rule" segments=${segments} onAdd=${(clauses) => set({ rules: [...draft.rules, { clauses }] })} />`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${said && html`<p role="status">${said}</p>`}
    ${!readOnly && html`<${Review} key=${saved.version} changes=${changes} onSave=${save} onDiscard=${() => show(saved)} />`}
    ${!readOnly && html`<p><button class="quiet danger" onClick=${remove}>Delete segment</button></p>`}
  </article>`;
}
