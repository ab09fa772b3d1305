// The console's shell (docs/console.md): sign-in, the project and environment switcher, and a
// hash router (#/p/{project}/e/{env}/flags[/{flag}[/experiment]] | /segments[/{segment}] |
// /history | /evaluate | /schedules | /requests), so the server serves one page.
import { h, render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { commaList } from './text.js';
import { ApiError, call, get, signIn, signOut, token } from './api.js';
import { FlagList } from './flags.js';
import { FlagPage } from './flag.js';
import { HistoryPage } from './history.js';
import { RequestsPage } from './requests.js';
import { EvaluatePage } from './evaluate.js';
import { SegmentsPage } from './segments.js';
import { SchedulesPage } from './schedules.js';
import { ExperimentPage } from './experiment.js';

const html = htm.bind(h);

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const r = { page: 'flags' };
  if (parts[0] === 'p') r.project = parts[1];
  if (parts[2] === 'e') r.env = parts[3];
  if (PAGES.includes(parts[4])) r.page = parts[4];
  if (parts[4] === 'segments' && parts[5]) r.segment = parts[5];
  if (parts[4] === 'flags' && parts[5]) {
    r.page = parts[6] === 'experiment' ? 'experiment' : 'flag';
    r.flag = parts[5];
  }
  return r;
}
// The environment's pages that the switcher keeps when the project or environment changes.
const PAGES = ['segments', 'history', 'evaluate', 'schedules', 'requests'];
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

// The first project of a fresh server, with its environments.
function NewProject() {
  const [key, setKey] = useState('');
  const [environments, setEnvironments] = useState('production, staging');
  const [error, setError] = useState('');
  const create = async (ev) => {
    ev.preventDefault();
    setError('');
    try {
      const envs = commaList(environments);
      await call('POST', '/api/v1/projects', { key: key.trim(), environments: envs });
      location.hash = link(key.trim(), envs[0] || 'production');
      location.reload();
    } catch (e) { setError(e.field ? `${e.field}: ${e.message}` : e.message); }
  };
  return html`<form class="form-card" aria-label="New project" onSubmit=${create}>
    <h1>No project yet</h1>
    <label>Project key <input required value=${key} onInput=${(e) => setKey(e.target.value)} /></label>
    <label>Environments <input value=${environments} onInput=${(e) => setEnvironments(e.target.value)} /></label>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <p><button type="submit">Create project</button></p>
  </form>`;
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
  // A link or reload names the project and environment: the page starts loading at once,
  // while the switcher's lists arrive (and send it elsewhere if they do not exist).
  const listed = projects && project && envs[project.key];
  if (!listed && !(route.project && route.env)) {
    if (projects && !project) return html`<main><${NewProject} /></main>`;
    return html`<p aria-busy="true">Loading…</p>`;
  }
  const keys = listed ? envs[project.key] : [route.env];
  const env = keys.includes(route.env) ? route.env : keys[0];
  if (listed && (route.project !== project.key || route.env !== env)) {
    location.replace(link(project.key, env, PAGES.includes(route.page) ? route.page : 'flags'));
    return null;
  }
  const projectKey = listed ? project.key : route.project;
  const projectList = listed ? projects : [{ key: route.project }];
  const choose = (p, e) => { location.hash = link(p, e, PAGES.includes(route.page) ? route.page : 'flags'); };
  const readOnly = !session || !session.write;
  const tab = (page, name, also = []) => html`<a href=${link(projectKey, env, page)} aria-current=${route.page === page || also.includes(route.page) ? 'page' : undefined}>${name}</a>`;
  return html`<div class="shell">
    <header>
      <a class="brand" href=${link(projectKey, env)}>Gonfalon</a>
      <label>Project
        <select value=${projectKey} onChange=${(e) => { location.hash = `#/p/${encodeURIComponent(e.target.value)}`; }}>
          ${projectList.map((p) => html`<option value=${p.key}>${p.name || p.key}</option>`)}
        </select>
      </label>
      <label>Environment
        <select value=${env} onChange=${(e) => choose(projectKey, e.target.value)}>
          ${keys.map((e) => html`<option value=${e}>${e}</option>`)}
        </select>
      </label>
      <nav aria-label="Pages">
        ${tab('flags', 'Flags', ['flag', 'experiment'])}
        ${tab('segments', 'Segments')}
        ${tab('history', 'History')}
        ${tab('evaluate', 'Evaluate')}
        ${tab('schedules', 'Scheduled')}
        ${tab('requests', 'Change requests')}
      </nav>
      <span class="who">${session && (session.name || session.key)}${session && !session.write ? html` <strong class="badge">read-only</strong>` : null}</span>
      <button class="quiet" onClick=${onSignOut}>Sign out</button>
    </header>
    ${session && !session.write && html`<p class="notice" role="status">This token can read but not change: switches and edits are disabled.</p>`}
    <main>
      ${route.page === 'flags' && html`<${FlagList} project=${projectKey} env=${env} readOnly=${readOnly} />`}
      ${route.page === 'flag' && html`<${FlagPage} project=${projectKey} env=${env} flag=${route.flag} readOnly=${readOnly} />`}
      ${route.page === 'experiment' && html`<${ExperimentPage} project=${projectKey} env=${env} flag=${route.flag} />`}
      ${route.page === 'segments' && html`<${SegmentsPage} project=${projectKey} env=${env} segment=${route.segment} readOnly=${readOnly} />`}
      ${route.page === 'history' && html`<${HistoryPage} project=${projectKey} env=${env} readOnly=${readOnly} />`}
      ${route.page === 'evaluate' && html`<${EvaluatePage} project=${projectKey} env=${env} />`}
      ${route.page === 'schedules' && html`<${SchedulesPage} project=${projectKey} env=${env} readOnly=${readOnly} />`}
      ${route.page === 'requests' && html`<${RequestsPage} project=${projectKey} env=${env} readOnly=${readOnly} />`}
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
