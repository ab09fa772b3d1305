// The console's shell (docs/console.md): sign-in, the project and environment switcher, and a
// hash router (#/p/{project}/e/{env}/flags[/{flag}] | /history), so the server serves one page.
import { h, render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { ApiError, get, signIn, signOut, token } from './api.js';
import { FlagList } from './flags.js';
import { FlagPage } from './flag.js';
import { HistoryPage } from './history.js';
import { RequestsPage } from './requests.js';
import { EvaluatePage } from './evaluate.js';

const html = htm.bind(h);

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const r = { page: 'flags' };
  if (parts[0] === 'p') r.project = parts[1];
  if (parts[2] === 'e') r.env = parts[3];
  if (parts[4] === 'history') r.page = 'history';
  if (parts[4] === 'requests') r.page = 'requests';
  if (parts[4] === 'evaluate') r.page = 'evaluate';
  if (parts[4] === 'flags' && parts[5]) {
    r.page = 'flag';
    r.flag = parts[5];
  }
  return r;
}
export const link = (p, e, rest = 'flags') => `#/p/${encodeURIComponent(p)}/e/${encodeURIComponent(e)}/${rest}`;

function SignIn({ onDone }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState('');
  const submit = async (ev) => {
    ev.preventDefault();
    signIn(value.trim());
    try {
      await get('/api/v1/projects');
      onDone();
    } catch (e) {
      signOut();
      setError(e instanceof ApiError && e.status === 401 ? 'This token is not valid.' : e.message);
    }
  };
  return html`<main class="signin">
    <h1>Gonfalon</h1>
    <form onSubmit=${submit}>
      <label for="token">Admin token</label>
      <input id="token" type="password" autocomplete="off" value=${value} onInput=${(e) => setValue(e.target.value)} required />
      <button type="submit">Sign in</button>
      ${error && html`<p class="error" role="alert">${error}</p>`}
    </form>
    <p class="hint">The token stays in this tab (session storage) and is sent only to this server.</p>
  </main>`;
}

function Shell({ route, onSignOut }) {
  const [projects, setProjects] = useState(null);
  const [session, setSession] = useState(null);  // the token: {key, name, write, project}
  useEffect(() => { get('/api/v1/session').then(setSession).catch(() => setSession({ write: false })); }, []);
  const [envs, setEnvs] = useState({});  // project -> its environment keys
  const [error, setError] = useState('');
  useEffect(() => {
    get('/api/v1/projects').then((r) => setProjects(r.items || [])).catch((e) => setError(e.message));
  }, []);
  const project = projects && (projects.find((p) => p.key === route.project) || projects[0]);
  useEffect(() => {
    if (!project || envs[project.key]) return;
    get(`/api/v1/projects/${encodeURIComponent(project.key)}/environments`)
      .then((r) => setEnvs((m) => ({ ...m, [project.key]: (r.items || []).map((e) => e.key) })))
      .catch((e) => setError(e.message));
  }, [project && project.key]);
  if (error) return html`<p class="error" role="alert">${error}</p>`;
  if (!projects) return html`<p aria-busy="true">Loading…</p>`;
  if (!project) return html`<main><p>No project yet: create one with the API (docs/api.md).</p></main>`;
  const keys = envs[project.key];
  if (!keys) return html`<p aria-busy="true">Loading…</p>`;
  const env = keys.includes(route.env) ? route.env : keys[0];
  if (route.project !== project.key || route.env !== env) {
    location.replace(link(project.key, env, ['history', 'requests', 'evaluate'].includes(route.page) ? route.page : 'flags'));
    return null;
  }
  const choose = (p, e) => { location.hash = link(p, e, ['history', 'requests', 'evaluate'].includes(route.page) ? route.page : 'flags'); };
  return html`<div class="shell">
    <header>
      <a class="brand" href=${link(project.key, env)}>Gonfalon</a>
      <label>Project
        <select value=${project.key} onChange=${(e) => { location.hash = `#/p/${encodeURIComponent(e.target.value)}`; }}>
          ${projects.map((p) => html`<option value=${p.key}>${p.name || p.key}</option>`)}
        </select>
      </label>
      <label>Environment
        <select value=${env} onChange=${(e) => choose(project.key, e.target.value)}>
          ${keys.map((e) => html`<option value=${e}>${e}</option>`)}
        </select>
      </label>
      <nav aria-label="Pages">
        <a href=${link(project.key, env)} aria-current=${route.page === 'flags' || route.page === 'flag' ? 'page' : undefined}>Flags</a>
        <a href=${link(project.key, env, 'history')} aria-current=${route.page === 'history' ? 'page' : undefined}>History</a>
        <a href=${link(project.key, env, 'evaluate')} aria-current=${route.page === 'evaluate' ? 'page' : undefined}>Evaluate</a>
        <a href=${link(project.key, env, 'requests')} aria-current=${route.page === 'requests' ? 'page' : undefined}>Change requests</a>
      </nav>
      <span class="who">${session && (session.name || session.key)}${session && !session.write ? html` <strong class="badge">read-only</strong>` : null}</span>
      <button class="quiet" onClick=${onSignOut}>Sign out</button>
    </header>
    ${session && !session.write && html`<p class="notice" role="status">This token can read but not change: switches and edits are disabled.</p>`}
    <main>
      ${route.page === 'flags' && html`<${FlagList} project=${project.key} env=${env} readOnly=${!session || !session.write} />`}
      ${route.page === 'flag' && html`<${FlagPage} project=${project.key} env=${env} flag=${route.flag} readOnly=${!session || !session.write} />`}
      ${route.page === 'history' && html`<${HistoryPage} project=${project.key} env=${env} readOnly=${!session || !session.write} />`}
      ${route.page === 'evaluate' && html`<${EvaluatePage} project=${project.key} env=${env} />`}
      ${route.page === 'requests' && html`<${RequestsPage} project=${project.key} env=${env} readOnly=${!session || !session.write} />`}
    </main>
  </div>`;
}

function App() {
  const [signedIn, setSignedIn] = useState(!!token());
  const [route, setRoute] = useState(parseRoute());
  useEffect(() => {
    const onHash = () => setRoute(parseRoute());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  if (!signedIn) return html`<${SignIn} onDone=${() => setSignedIn(true)} />`;
  return html`<${Shell} route=${route} onSignOut=${() => { signOut(); setSignedIn(false); }} />`;
}

render(html`<${App} />`, document.getElementById('app'));
