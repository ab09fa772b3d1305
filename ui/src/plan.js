// A flag's release plan (docs/releases.md): its stages as a timeline (the current one marked),
// its guards with their latest verdict, and pause / resume / roll back / complete / abort.
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { awaitingApproval, call, enc, envPath, get } from './api.js';

const html = htm.bind(h);
const ACTIONS = { active: ['pause', 'rollback', 'complete', 'abort'], paused: ['resume', 'rollback', 'complete', 'abort'], completed: ['rollback'] };
const NAMES = { pause: 'Pause', resume: 'Resume', rollback: 'Roll back', complete: 'Complete', abort: 'Abort' };

export function ReleasePlan({ project, env, flag, readOnly, onChanged }) {
  const [plan, setPlan] = useState(undefined);  // undefined: loading; null: none
  const [error, setError] = useState('');
  const path = `${envPath(project, env)}/flags/${enc(flag)}/release-plan`;
  const load = () => get(path).then(setPlan).catch((e) => (e.status === 404 ? setPlan(null) : setError(e.message)));
  useEffect(() => {
    load();
    const timer = setInterval(load, 2000);  // the plan moves by itself
    return () => clearInterval(timer);
  }, [path]);
  const act = async (action) => {
    setError('');
    try {
      const r = await call('POST', `${path}/${action}`, { reason: 'from the console' });
      if (awaitingApproval(r)) return setError(awaitingApproval(r));
      setPlan(r.json);
      onChanged();
    } catch (e) { setError(e.message); }
  };
  if (plan === undefined || plan === null) return error ? html`<p class="error" role="alert">${error}</p>` : null;
  const verdicts = (plan.guardStatus && plan.guardStatus.guards) || [];
  return html`<section class="plan" aria-labelledby="plan-title">
    <h2 id="plan-title">Release plan <small>${plan.id} · ${plan.status}</small></h2>
    <ol class="timeline" aria-label="Stages">${plan.stages.map((s, i) => html`<li class=${i < plan.stage ? 'past' : i === plan.stage ? 'current' : 'next'}
        aria-current=${i === plan.stage ? 'step' : undefined}>
      <strong>${s.weight / 1000}%</strong>
      <small>${s.minDurationMs ? ` ≥ ${Math.round(s.minDurationMs / 60000)} min` : ''}${s.minUnits ? ` ≥ ${s.minUnits} units` : ''}</small>
    </li>`)}</ol>
    ${plan.reason && html`<p>${plan.reason}</p>`}
    ${plan.firedGuard && html`<p class="error">Guard ${plan.firedGuard.guard + 1} (${plan.firedGuard.kind}) fired: ${plan.firedGuard.summary}</p>`}
    <h3>Guards</h3>
    <ul class="guards">${plan.guards.map((g, i) => {
      const v = verdicts.find((x) => x.guard === i);
      return html`<li><strong>${g.kind}</strong>${g.metric ? ` on ${g.metric}` : ''} → ${g.action}: ${v ? html`<span class=${`verdict ${v.state}`}>${v.state}</span> ${v.summary}` : 'not judged yet'}</li>`;
    })}</ul>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${!readOnly && html`<p class="actions">${(ACTIONS[plan.status] || []).map((a) => html`<button onClick=${() => act(a)}>${NAMES[a]}</button> `)}</p>`}
    <details><summary>Events</summary><ol>${plan.events.map((e) => html`<li>${new Date(e.timeMs).toLocaleString()}: ${e.what}</li>`)}</ol></details>
  </section>`;
}
