// The environment's history: each change set, newest first, with who made it, its comment,
// and each item's fields before → after; an item can be restored to what it was before a
// change set (a dry run shows what the restore would change, then it is applied as a new
// change set).
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { awaitingApproval, call, envPath, get } from './api.js';

const html = htm.bind(h);
const show = (v) => (v === undefined ? '—' : JSON.stringify(v));

// Field by field, objects recursed into; the version is bookkeeping.
export function diff(a, b, path = '', out = []) {
  if (JSON.stringify(a) === JSON.stringify(b)) return out;
  const obj = (x) => x && typeof x === 'object' && !Array.isArray(x);
  if (obj(a) && obj(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (k !== 'version') diff(a[k], b[k], path ? `${path}.${k}` : k, out);
    }
    return out;
  }
  out.push({ path: path || '(all)', before: a, after: b });
  return out;
}

// diff()'s rows as a table: field, then the two sides under `headings`.
export function DiffTable({ rows, headings, caption }) {
  return html`<table class="diff">${caption && html`<caption class="sr">${caption}</caption>`}
    <thead><tr><th scope="col">field</th><th scope="col">${headings[0]}</th><th scope="col">${headings[1]}</th></tr></thead>
    <tbody>${rows.map((r) => html`<tr><th scope="row"><code>${r.path}</code></th><td><code>${show(r.before)}</code></td><td><code>${show(r.after)}</code></td></tr>`)}</tbody>
  </table>`;
}

function Fields({ before, after }) {
  const rows = diff(before === null ? undefined : before, after === null ? undefined : after);
  if (rows.length === 0) return null;
  return html`<${DiffTable} rows=${rows} headings=${['before', 'after']} caption="Fields before and after" />`;
}

function Restore({ project, env, record, item, readOnly, onDone }) {
  const [preview, setPreview] = useState(null);
  const [error, setError] = useState('');
  const body = (dryRun) => ({ sequence: record.sequence - 1, [item.kind]: item.key, dryRun, comment: `restore ${item.key} to before #${record.sequence}` });
  const ask = async () => {
    setError('');
    try { setPreview((await call('POST', `${envPath(project, env)}/restore`, body(true))).json); } catch (e) { setError(e.message); }
  };
  const apply = async () => {
    setError('');
    try {
      const r = await call('POST', `${envPath(project, env)}/restore`, body(false));
      const done = r.json;
      setPreview(null);
      if (awaitingApproval(r)) return onDone(`${item.key}: ${awaitingApproval(r)}`);
      onDone(done.sequence ? `${item.key} restored as change set #${done.sequence}` : `${item.key} was already so`);
    } catch (e) { setError(e.message); }
  };
  if (readOnly) return null;
  return html`<div class="restore">
    ${!preview && html`<button onClick=${ask}>Restore ${item.key} to before #${record.sequence}…</button>`}
    ${preview && html`<div role="group" aria-label=${`restore ${item.key}`}>
      <p>${preview.items.length ? 'The restore would change:' : `${item.key} is already as it was.`}</p>
      ${preview.items.map((i) => html`<${Fields} before=${i.before} after=${i.after} />`)}
      ${preview.items.length > 0 && html`<button onClick=${apply}>Restore</button>`} <button class="quiet" onClick=${() => setPreview(null)}>Cancel</button>
    </div>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
  </div>`;
}

export function HistoryPage({ project, env, readOnly }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState('');
  const [said, setSaid] = useState('');
  const load = () => get(`${envPath(project, env)}/history?limit=100`).then((r) => setItems(r.items || [])).catch((e) => setError(e.message));
  useEffect(() => { setItems(null); load(); }, [project, env]);
  if (error) return html`<p class="error" role="alert">${error}</p>`;
  if (!items) return html`<p aria-busy="true">Loading…</p>`;
  return html`<section aria-labelledby="history-title">
    <h1 id="history-title">History</h1>
    ${said && html`<p role="status">${said}</p>`}
    <ol class="history">${items.map((r) => html`<li aria-label=${`change set ${r.sequence}`}>
      <p><strong>#${r.sequence}</strong> <time datetime=${new Date(r.time).toISOString()}>${new Date(r.time).toLocaleString()}</time>${' '}by ${r.actor}${r.comment ? html` — <em>${r.comment}</em>` : null}</p>
      <ul>${(r.items || []).map((i) => html`<li>${i.kind} <code>${i.key}</code>${i.after === null ? ' deleted' : i.before === null ? ' created' : ' changed'}
        <${Fields} before=${i.before} after=${i.after} />
        ${i.before !== null && html`<${Restore} project=${project} env=${env} record=${r} item=${i} readOnly=${readOnly}
          onDone=${(m) => { setSaid(m); load(); }} />`}
      </li>`)}</ul>
    </li>`)}</ol>
  </section>`;
}
