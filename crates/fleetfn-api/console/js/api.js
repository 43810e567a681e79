// The console's only door to the server: the same API routes the AWS CLI calls, authenticated by
// the session cookie (HttpOnly, sent by the browser) plus the session's CSRF token in the
// `X-Fleetfn-Csrf` header on every request. AWS error documents become `ApiError`s; a session
// problem (401, or a 403 AccessDeniedException about the console session) also dispatches
// `fleetfn:signedout` on `window` so the shell shows the sign-in view.

const SESSION_PATH = '/console/session';
// Whether this browser signed in (and not out) last: without it `loadSession` does not ask the
// server, so a signed-out page load makes no request that is sure to fail with 401.
const HINT_KEY = 'fleetfn.signedIn';

let current = null;

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.type = type || '';
    this.message = message || `The server answered HTTP ${status}.`;
  }
}

/** The current session document (`{AccessKeyId, CsrfToken, ExpiresAt}`) or null. */
export function session() {
  return current;
}

function setHint(on) {
  try {
    if (on) localStorage.setItem(HINT_KEY, '1');
    else localStorage.removeItem(HINT_KEY);
  } catch {
    // Storage can be disabled; the hint is only an optimisation.
  }
}

function hint() {
  try {
    return localStorage.getItem(HINT_KEY) === '1';
  } catch {
    return true;
  }
}

/** Parses an AWS error answer (JSON `__type`/`Type`/`code`, `message`/`Message`) into an ApiError. */
async function errorOf(res) {
  let text = '';
  try {
    text = await res.text();
  } catch {
    text = '';
  }
  let type = '';
  let message = '';
  try {
    const doc = JSON.parse(text);
    if (doc && typeof doc === 'object') {
      type = doc.__type || doc.code || doc.Code || '';
      if (typeof type === 'string' && type.includes('#')) type = type.split('#').pop();
      if (typeof type === 'string' && type.includes(':')) type = type.split(':')[0];
      message = doc.message || doc.Message || '';
      if (!doc.__type && doc.Type && doc.Type !== 'User' && doc.Type !== 'Service') type = doc.Type;
    }
  } catch {
    message = text.trim().slice(0, 300);
  }
  if (!type) type = res.headers.get('x-amzn-errortype')?.split(':')[0] || '';
  return new ApiError(res.status, type, message || `${res.status} ${res.statusText}`.trim());
}

function isSessionProblem(err) {
  if (err.status === 401) return true;
  return err.status === 403 && err.type === 'AccessDeniedException' && /session/i.test(err.message);
}

function signedOut() {
  current = null;
  setHint(false);
  window.dispatchEvent(new CustomEvent('fleetfn:signedout'));
}

/**
 * Calls an API route. `query`: object → URLSearchParams (undefined/null values left out);
 * `body`: object → JSON, string/Blob/ArrayBuffer as is; `raw: true` returns the Response
 * (2xx only); `signal`: an AbortSignal passed to fetch. Returns parsed JSON, or null for an empty answer. Non-2xx throws ApiError.
 */
export async function call(method, path, { query, body, headers, raw, signal } = {}) {
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') q.append(k, String(v));
    }
    const s = q.toString();
    if (s) url += (url.includes('?') ? '&' : '?') + s;
  }
  const h = new Headers(headers || {});
  if (current?.CsrfToken) h.set('X-Fleetfn-Csrf', current.CsrfToken);
  let payload = body;
  if (body !== undefined && body !== null && typeof body === 'object' && !(body instanceof Blob)
      && !(body instanceof ArrayBuffer) && !ArrayBuffer.isView(body) && !(body instanceof FormData)) {
    payload = JSON.stringify(body);
    if (!h.has('Content-Type')) h.set('Content-Type', 'application/json');
  }
  let res;
  try {
    res = await fetch(url, { method, headers: h, body: payload, credentials: 'same-origin', cache: 'no-store', signal });
  } catch (e) {
    // An aborted request (the caller's `signal`) stays an AbortError, for the caller to ignore.
    if (e?.name === 'AbortError') throw e;
    throw new ApiError(0, 'NetworkError', `The server did not answer (${e.message || 'network error'}). Is fleetfn running?`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (isSessionProblem(err)) signedOut();
    throw err;
  }
  if (raw) return res;
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function sessionRequest(method, body) {
  const h = { Accept: 'application/json' };
  if (body) h['Content-Type'] = 'application/json';
  if (current?.CsrfToken) h['X-Fleetfn-Csrf'] = current.CsrfToken;
  try {
    return await fetch(SESSION_PATH, {
      method, headers: h, body: body ? JSON.stringify(body) : undefined,
      credentials: 'same-origin', cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'NetworkError', `The server did not answer (${e.message || 'network error'}). Is fleetfn running?`);
  }
}

/** Asks the server for the current session (the cookie); null when there is none. */
export async function loadSession() {
  if (!hint()) {
    current = null;
    return null;
  }
  let res;
  try {
    res = await sessionRequest('GET');
  } catch {
    current = null;
    return null;
  }
  if (!res.ok) {
    current = null;
    setHint(false);
    return null;
  }
  current = await res.json();
  return current;
}

/** Signs in with an access key pair; returns the session document or throws ApiError. */
export async function signIn(keyId, secret) {
  const res = await sessionRequest('POST', { AccessKeyId: keyId, SecretAccessKey: secret });
  if (!res.ok) throw await errorOf(res);
  current = await res.json();
  setHint(true);
  return current;
}

/** Ends the session on the server (best effort) and forgets it here. */
export async function signOut() {
  try {
    if (current) await sessionRequest('DELETE');
  } catch {
    // Signed out locally either way.
  } finally {
    current = null;
    setHint(false);
  }
}
