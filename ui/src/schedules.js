// Scheduled changes (docs/releases.md): a flag's edited targeting applied at a time instead of
// now (ScheduleButton, in the flag's review), and the environment's list of scheduled changes
// with what became of each (applied, failed and why, canceled) and cancel for those waiting.
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { call, enc, envPath, get } from './api.js';

const html = htm.bind(h);
const TARGETING = ['on', 'targets', 'contextTargets', 'rules', 'fallthrough', 'offVariation', 'prerequisites', 'salt', 'trackEvents', 'trackEventsFallthrough'];

// A datetime-local value ("2026-12-02T09:30", the browser's time zone) for `ms`.
const local = (ms) => {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
};

export function ScheduleButton({ project, env, flag, comment, onScheduled }) {
  const [when, setWhen] = useState(local(Date.now() + 3600000));
  const [error, setError] = useState('');
  const schedule = async () => {
    setError('');
    const at = new Date(when);
    if (Number.isNaN(at.getTime())) return setError('Give a date and time.');
    const data = Object.fromEntries(TARGETING.filter((k) => flag[k] !== undefined).map((k) => [k, flag[k]]));
    try {
      const r = await call('POST', `${envPath(project, env)}/scheduled-changes`, {
        executeAt: at.toISOString(), comment, items: [{ kind: 'flag', key: flag.key, data }],
      });
      onScheduled(r.status === 202 ? `Waiting for approval as change request ${r.json.id}.` : `Scheduled for ${at.toLocaleString()} (${r.json.id}).`);
    } catch (e) { setError(e.field ? `${e.field}: ${e.message}` : e.message); }
  };
  return html`<span class="schedule">
    <label>or at <input type="datetime-local" aria-label="Apply at" value=${when} onInput=${(e) => setWhen(e.target.value)} /></label>
    <button onClick=${schedule}>Schedule</button>
    ${error && html`<span class="error" role="alert">${error}</span>`}
  </span>`;
}

export function SchedulesPage({ project, env, readOnly }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState('');
  const base = `${envPath(project, env)}/scheduled-changes`;
  const load = () => get(base).then((r) => setItems((r.items || []).sort((a, b) => b.executeAtMs - a.executeAtMs))).catch((e) => setError(e.message));
  useEffect(() => {
    setItems(null);
    load();
    const timer = setInterval(load, 5000);  // they run by themselves
    return () => clearInterval(timer);
  }, [project, env]);
  const cancel = async (s) => {
    setError('');
    try { await call('DELETE', `${base}/${enc(s.id)}`); } catch (e) { setError(e.message); }
    load();
  };
  if (!items) return error ? html`<p class="error" role="alert">${error}</p>` : html`<p aria-busy="true">Loading…</p>`;
  return html`<section aria-labelledby="schedules-title">
    <h1 id="schedules-title">Scheduled changes in ${env}</h1>
    <p class="hint">Schedule one from a flag's targeting: make the change, review it, pick a time, Schedule.</p>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${items.length === 0 ? html`<p>None.</p>` : html`<ol class="requests">${items.map((s) => html`<li class="request" aria-label=${`scheduled change ${s.id}`}>
      <p><strong>${new Date(s.executeAtMs).toLocaleString()}</strong> · <span class=${`status ${s.status}`}>${s.status}</span> · by ${s.createdBy}${s.comment ? html` — <em>${s.comment}</em>` : null}</p>
      <ul>${s.items.map((i) => html`<li>${i.delete ? 'delete' : 'write'} ${i.kind} <a href=${i.kind === 'flag' ? `#/p/${enc(project)}/e/${enc(env)}/flags/${enc(i.key)}` : `#/p/${enc(project)}/e/${enc(env)}/segments/${enc(i.key)}`}>${i.key}</a>${' '}
        (expects version ${i.expectVersion})</li>`)}</ul>
      ${s.status === 'applied' && html`<p>Applied as change set #${s.sequence}${s.lateByMs > 1000 ? `, ${Math.round(s.lateByMs / 1000)} s late` : ''}.</p>`}
      ${s.status === 'failed' && html`<p class="error">Failed: ${s.reason}</p>`}
      ${s.status === 'scheduled' && !readOnly && html`<p><button onClick=${() => cancel(s)}>Cancel</button></p>`}
    </li>`)}</ol>`}
  </section>`;
}
