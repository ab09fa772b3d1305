// Change requests of the environment (docs/releases.md, "Change requests"): pending ones
// first, each with what it changes, its reviews, and approve / decline for another person.
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { call, enc, envPath, get } from './api.js';

const html = htm.bind(h);

function What({ r }) {
  if (r.kind === 'schedule') return html`<p>Schedule ${(r.schedule.items || []).length} items for ${r.schedule.executeAt}</p>`;
  if (r.kind === 'releasePlan') return html`<p>Start a release plan on <code>${r.plan.flag}</code></p>`;
  if (r.kind === 'approvalSettings') {
    const a = r.approvalSettings;
    return html`<p>Change this environment's approvals to ${a.requiredApprovals} ${a.requiredApprovals === 1 ? 'approval' : 'approvals'}${a.allowSelfApproval ? ', self-approval allowed' : ''}</p>`;
  }
  return html`<ul>${(r.items || []).map((i) => html`<li>${i.delete ? 'delete' : 'write'} ${i.kind} <code>${i.key}</code>
    <details><summary>as it would be</summary><pre class="json">${JSON.stringify(i.data, null, 2)}</pre></details></li>`)}</ul>`;
}

export function RequestsPage({ project, env, readOnly }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState('');
  const [said, setSaid] = useState('');
  const base = `${envPath(project, env)}/change-requests`;
  const load = () => get(base).then((r) => setItems(r.items || [])).catch((e) => setError(e.message));
  useEffect(() => { setItems(null); load(); }, [project, env]);
  const act = async (r, action) => {
    setError('');
    setSaid('');
    try {
      const done = await call('POST', `${base}/${enc(r.id)}/${action}`, {});
      setSaid(`${r.id}: ${done.json.status}${done.json.reason ? ` (${done.json.reason})` : ''}`);
    } catch (e) {
      setError(e.message);
    }
    load();
  };
  if (!items) return error ? html`<p class="error" role="alert">${error}</p>` : html`<p aria-busy="true">Loading…</p>`;
  const pending = items.filter((r) => r.status === 'pending');
  const done = items.filter((r) => r.status !== 'pending');
  const card = (r) => html`<li class="request" aria-label=${`change request ${r.id}`}>
    <p><strong>${r.id}</strong> · ${r.status} · by ${r.person}${r.comment ? html` — <em>${r.comment}</em>` : null}
      · ${r.approvals} of ${r.requiredApprovals} approvals</p>
    <${What} r=${r} />
    ${r.reviews.length > 0 && html`<ul class="reviews">${r.reviews.map((v) => html`<li>${v.person} ${v.verdict === 'approve' ? 'approved' : v.verdict === 'decline' ? 'declined' : 'commented'}${v.comment ? `: ${v.comment}` : ''}</li>`)}</ul>`}
    ${r.reason && html`<p class="error">${r.reason}</p>`}
    ${r.status === 'pending' && !readOnly && html`<p>
      <button onClick=${() => act(r, 'approve')}>Approve</button> <button onClick=${() => act(r, 'decline')}>Decline</button></p>`}
  </li>`;
  return html`<section aria-labelledby="requests-title">
    <h1 id="requests-title">Change requests</h1>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${said && html`<p role="status">${said}</p>`}
    <h2>Pending</h2>
    ${pending.length ? html`<ol class="requests">${pending.map(card)}</ol>` : html`<p>None.</p>`}
    <h2>Done</h2>
    ${done.length ? html`<ol class="requests">${done.map(card)}</ol>` : html`<p>None.</p>`}
  </section>`;
}
