// The admin API, as the console calls it: the token from sessionStorage (never in a URL), JSON
// in and out, errors as ApiError with the server's message and field.

const TOKEN_KEY = 'gonfalon.token';

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.field = e.field || '';
  }
}

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
export function signIn(t) { sessionStorage.setItem(TOKEN_KEY, t); }
export function signOut() { sessionStorage.removeItem(TOKEN_KEY); }

export async function call(method, path, body, headers = {}) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token()}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!res.ok) throw new ApiError(res.status, json);
  return { status: res.status, json, etag: res.headers.get('ETag') };
}

// A write to an environment that requires approvals answers 202 with the change request it
// opened (docs/releases.md): what to tell the user, or '' when the write was applied.
export const awaitingApproval = (r) => (r.status === 202 && r.json && r.json.id
  ? `Waiting for approval: change request ${r.json.id} (see Change requests).` : '');

export const get = (path) => call('GET', path).then((r) => r.json);
export const enc = encodeURIComponent;
export const envPath = (p, e) => `/api/v1/projects/${enc(p)}/environments/${enc(e)}`;

// Live pages: calls onChange() whenever the environment's sequence moves (any change set in
// it, by anyone), looking every `ms`; returns the function that stops watching.
export function watchEnvironment(project, env, onChange, ms = 3000) {
  let sequence = -1;
  const look = async () => {
    try {
      const e = await get(envPath(project, env));
      if (sequence >= 0 && e.sequence !== sequence) onChange();
      sequence = e.sequence;
    } catch { /* the next look tries again */ }
  };
  look();  // at once: the page's data was read as of about now
  const timer = setInterval(look, ms);
  return () => clearInterval(timer);
}
