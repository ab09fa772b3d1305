// One flag in one environment: its kill switch, its variations, its experiment and release
// plan, and its targeting editor (targeting.js); the whole flag as JSON below. Live: a change
// made elsewhere shows within seconds.
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { awaitingApproval, call, enc, envPath, get, watchEnvironment } from './api.js';
import { ExperimentLink } from './experiment.js';
import { TargetingEditor } from './targeting.js';
import { ReleasePlan } from './plan.js';

const html = htm.bind(h);

export function FlagPage({ project, env, flag, readOnly }) {
  const [f, setF] = useState(null);
  const [error, setError] = useState('');
  const [said, setSaid] = useState('');
  const path = `${envPath(project, env)}/flags/${enc(flag)}`;
  useEffect(() => {
    get(path).then(setF).catch((e) => setError(e.message));
    // Live: someone else's change shows here (the targeting editor keeps an edit in progress).
    return watchEnvironment(project, env, () => get(path).then((n) => setF((o) => (o && o.version === n.version ? o : n))).catch(() => {}));
  }, [path]);
  const toggle = async () => {
    setError('');
    setSaid('');
    try {
      const r = await call('PATCH', path, { on: !f.on }, { 'If-Match': `"${f.version}"` });
      if (awaitingApproval(r)) return setSaid(awaitingApproval(r));
      setF(r.json);
    } catch (e) {
      setError(e.status === 412 ? 'Someone changed this flag meanwhile; here is their version.' : e.message);
      get(path).then(setF);
    }
  };
  if (error && !f) return html`<p class="error" role="alert">${error}</p>`;
  if (!f) return html`<p aria-busy="true">Loading…</p>`;
  return html`<article class="flag" aria-labelledby="flag-title">
    <p><a href=${`#/p/${enc(project)}/e/${enc(env)}/flags`}>← Flags</a></p>
    <h1 id="flag-title">${f.name || f.key} <small>${f.key} · version ${f.version}</small></h1>
    ${f.description && html`<p>${f.description}</p>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${said && html`<p role="status">${said}</p>`}
    <p><button class=${`switch ${f.on ? 'on' : 'off'}`} role="switch" aria-checked=${f.on ? 'true' : 'false'} disabled=${readOnly} onClick=${toggle}>
      ${f.on ? 'On' : 'Off'}</button> in ${env}</p>
    <h2>Variations</h2>
    <ol start="0">${(f.variations || []).map((v) => html`<li><code>${JSON.stringify(v)}</code></li>`)}</ol>
    <${ExperimentLink} project=${project} env=${env} flag=${flag} />
    <${ReleasePlan} project=${project} env=${env} flag=${flag} readOnly=${readOnly} onChanged=${() => get(path).then(setF)} />
    <${TargetingEditor} key=${`${env}/${f.key}`} project=${project} env=${env} flag=${f} readOnly=${readOnly} onSaved=${setF} />
    <details><summary>The flag as JSON</summary><pre class="json" tabindex="0" aria-label="The flag as JSON">${JSON.stringify(f, null, 2)}</pre></details>
  </article>`;
}
