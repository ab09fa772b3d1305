// The environment's history: each change set, newest first, with who made it, its comment,
// and the items it changed.
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { envPath, get } from './api.js';

const html = htm.bind(h);

export function HistoryPage({ project, env }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => { get(`${envPath(project, env)}/history?limit=100`).then((r) => setItems(r.items || [])).catch((e) => setError(e.message)); },
    [project, env]);
  if (error) return html`<p class="error" role="alert">${error}</p>`;
  if (!items) return html`<p aria-busy="true">Loading…</p>`;
  return html`<section aria-labelledby="history-title">
    <h1 id="history-title">History</h1>
    <ol class="history">${items.map((r) => html`<li>
      <p><strong>#${r.sequence}</strong> <time datetime=${new Date(r.time).toISOString()}>${new Date(r.time).toLocaleString()}</time>
        by ${r.actor}${r.comment ? html` — <em>${r.comment}</em>` : null}</p>
      <ul>${(r.items || []).map((i) => html`<li>${i.kind} <code>${i.key}</code>${i.after === null ? ' deleted' : i.before === null ? ' created' : ' changed'}</li>`)}</ul>
    </li>`)}</ol>
  </section>`;
}
