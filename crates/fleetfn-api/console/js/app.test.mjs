// Unit tests of api.js (with a stand-in fetch) and app.js's DOM-free parts (not served; only the
// fixed asset list is embedded). Run: node --test crates/fleetfn-api/console/js/app.test.mjs
import test from 'node:test';
import assert from 'node:assert/strict';

// A browser-ish global: window events, localStorage, and a fetch that records and answers.
const store = new Map();
globalThis.localStorage = {
  getItem: (k) => (store.has(k) ? store.get(k) : null),
  setItem: (k, v) => store.set(k, String(v)),
  removeItem: (k) => store.delete(k),
};
const bus = new EventTarget();
globalThis.window = bus;
let requests = [];
let answers = [];
globalThis.fetch = async (url, init) => {
  requests.push({ url, init });
  const a = answers.shift();
  if (!a) throw new TypeError('Failed to fetch');
  return new Response(a.body === undefined ? null : typeof a.body === 'string' ? a.body : JSON.stringify(a.body),
    { status: a.status || 200, headers: a.headers || {} });
};

const api = await import('./api.js');
const { fmt, match, parseFunctionArn } = await import('./app.js');

const SESSION = { AccessKeyId: 'AKID', CsrfToken: 'tok-123', ExpiresAt: '2030-01-01T00:00:00Z' };

function reset() {
  requests = [];
  answers = [];
}

test('loadSession asks nothing when this browser never signed in', async () => {
  reset();
  store.clear();
  assert.equal(await api.loadSession(), null);
  assert.equal(requests.length, 0);
});

test('signIn posts the pair, keeps the session and remembers it', async () => {
  reset();
  answers.push({ body: SESSION });
  const s = await api.signIn('AKID', 'secret');
  assert.deepEqual(s, SESSION);
  assert.deepEqual(api.session(), SESSION);
  assert.equal(requests[0].url, '/console/session');
  assert.equal(requests[0].init.method, 'POST');
  assert.deepEqual(JSON.parse(requests[0].init.body), { AccessKeyId: 'AKID', SecretAccessKey: 'secret' });
  assert.equal(requests[0].init.credentials, 'same-origin');
  assert.equal(localStorage.getItem('fleetfn.signedIn'), '1');
});

test('a wrong pair is an ApiError with the API message and no signed-out event', async () => {
  reset();
  let events = 0;
  const on = () => { events += 1; };
  bus.addEventListener('fleetfn:signedout', on);
  answers.push({ status: 403, body: { Type: 'User', __type: 'UnrecognizedClientException', message: 'check both keys' } });
  await assert.rejects(api.signIn('AKID', 'nope'), (e) => e instanceof api.ApiError && e.status === 403
    && e.type === 'UnrecognizedClientException' && e.message === 'check both keys');
  bus.removeEventListener('fleetfn:signedout', on);
  assert.equal(events, 0);
  assert.deepEqual(api.session(), SESSION, 'the earlier session is kept');
});

test('call sends the CSRF header, the query and a JSON body, and parses the answer', async () => {
  reset();
  answers.push({ status: 201, body: { Version: '1' } });
  const out = await api.call('POST', '/2015-03-31/functions/f%20x/versions', {
    query: { Qualifier: '1', Empty: '', Missing: undefined }, body: { Description: 'd' },
  });
  assert.deepEqual(out, { Version: '1' });
  const { url, init } = requests[0];
  assert.equal(url, '/2015-03-31/functions/f%20x/versions?Qualifier=1');
  assert.equal(init.headers.get('X-Fleetfn-Csrf'), 'tok-123');
  assert.equal(init.headers.get('Content-Type'), 'application/json');
  assert.equal(init.body, '{"Description":"d"}');
  assert.equal(init.credentials, 'same-origin');
});

test('call returns null for 204 and the Response for raw', async () => {
  reset();
  answers.push({ status: 204 });
  assert.equal(await api.call('DELETE', '/x'), null);
  answers.push({ body: 'a\nb\n', headers: { 'X-Amz-Executed-Version': '3' } });
  const res = await api.call('GET', '/logs', { raw: true });
  assert.equal(res.headers.get('X-Amz-Executed-Version'), '3');
  assert.equal(await res.text(), 'a\nb\n');
});

test('AWS error documents become ApiErrors; Message and x-amzn-errortype are understood', async () => {
  reset();
  answers.push({ status: 409, body: { Type: 'User', __type: 'ResourceConflictException', Message: 'in use' } });
  await assert.rejects(api.call('DELETE', '/cp'), { status: 409, type: 'ResourceConflictException', message: 'in use' });
  answers.push({ status: 400, body: { message: 'bad' }, headers: { 'x-amzn-errortype': 'ValidationException:http://x' } });
  await assert.rejects(api.call('POST', '/f'), { status: 400, type: 'ValidationException', message: 'bad' });
  answers.push({ status: 502, body: 'upstream broke' });
  await assert.rejects(api.call('GET', '/f'), { status: 502, message: 'upstream broke' });
});

test('an API error that is not about the session keeps the session', async () => {
  reset();
  answers.push({ status: 403, body: { __type: 'AccessDeniedException', message: 'not allowed to do that' } });
  await assert.rejects(api.call('GET', '/x'), { status: 403 });
  assert.deepEqual(api.session(), SESSION);
});

test('a session problem signs out and tells the shell', async () => {
  reset();
  let events = 0;
  bus.addEventListener('fleetfn:signedout', () => { events += 1; }, { once: true });
  answers.push({ status: 403, body: { __type: 'AccessDeniedException', message: 'The console session expired: sign in again' } });
  await assert.rejects(api.call('GET', '/fleetfn/v1/status'), { status: 403 });
  assert.equal(events, 1);
  assert.equal(api.session(), null);
  assert.equal(localStorage.getItem('fleetfn.signedIn'), null);
});

test('a network failure is an ApiError with status 0', async () => {
  reset();
  await assert.rejects(api.call('GET', '/x'), (e) => e instanceof api.ApiError && e.status === 0 && /did not answer/.test(e.message));
});

test('loadSession with the hint asks the server; a 401 forgets the hint', async () => {
  reset();
  localStorage.setItem('fleetfn.signedIn', '1');
  answers.push({ body: SESSION });
  assert.deepEqual(await api.loadSession(), SESSION);
  assert.equal(requests[0].init.method, 'GET');
  answers.push({ status: 401, body: { __type: 'MissingAuthenticationTokenException', message: 'no session' } });
  assert.equal(await api.loadSession(), null);
  assert.equal(localStorage.getItem('fleetfn.signedIn'), null);
});

test('signOut deletes the session with the CSRF header and forgets it even when the server fails', async () => {
  reset();
  localStorage.setItem('fleetfn.signedIn', '1');
  answers.push({ body: SESSION });
  await api.loadSession();
  answers.push({ status: 204 });
  await api.signOut();
  assert.equal(requests[1].init.method, 'DELETE');
  assert.equal(requests[1].init.headers['X-Fleetfn-Csrf'], 'tok-123');
  assert.equal(api.session(), null);
  // No answer at all: still signed out locally.
  localStorage.setItem('fleetfn.signedIn', '1');
  answers.push({ body: SESSION });
  await api.loadSession();
  await api.signOut();
  assert.equal(api.session(), null);
});

test('routes: every page of the contract, names decoded, unknown is null', () => {
  assert.equal(match('').route.nav, 'nav-overview');
  assert.equal(match('#/').route.nav, 'nav-overview');
  assert.deepEqual(match('#/functions/hello%20world').params, { name: 'hello world' });
  assert.deepEqual(match('#/providers/cp-1').params, { name: 'cp-1' });
  assert.equal(match('#/cost').route.nav, 'nav-cost');
  assert.equal(match('#/new/provider').route.fn, 'renderNewProvider');
  assert.equal(match('#/new/function').route.fn, 'renderNewFunction');
  assert.equal(match('#/functions/%E0%A4%A').params.name, '%E0%A4%A', 'a bad escape is kept as is');
  assert.deepEqual(match('#/new/function?provider=cp%201').params, { provider: 'cp 1' });
  assert.deepEqual(match('#/functions/a?name=b').params, { name: 'a' }, 'the path wins over the query');
  assert.equal(match('#/nope'), null);
  assert.equal(match('#/functions/a/b'), null);
});

test('fmt helpers', () => {
  assert.equal(fmt.esc('<a href="x">&\'</a>'), '&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;');
  assert.equal(fmt.bytes(0), '0 B');
  assert.equal(fmt.bytes(70000640), '66.8 MiB');
  assert.equal(fmt.mib(4096), '4.0 GiB');
  assert.equal(fmt.pct(0.123), '12%');
  assert.equal(fmt.pct(0.001), '0.1%');
  assert.equal(fmt.pct(null), '–');
  assert.equal(fmt.num(153.61), '154');
  assert.equal(fmt.num(2.222), '2.22');
  assert.equal(fmt.num(2.222, 1), '2.2');
  assert.equal(fmt.usd(0), '$0.00');
  assert.equal(fmt.usd(0.0000107), '$0.000011');
  assert.equal(fmt.usd(1234.5), '$1,234.50');
  assert.equal(fmt.usd(4.7e-7), '<$0.000001');
  assert.equal(fmt.usd(0.00012345), '$0.00012');
  const past = new Date(Date.now() - 125000).toISOString();
  assert.equal(fmt.ago(past), '2 min ago');
  // The API's "+0000" offsets parse too.
  assert.match(fmt.ago('2026-12-04T16:04:29.635+0000'), /ago|in /);
});

test('parseFunctionArn', () => {
  assert.deepEqual(parseFunctionArn('arn:aws:lambda:us-east-1:000000000000:function:hello:3'), { name: 'hello', version: '3' });
  assert.deepEqual(parseFunctionArn('arn:aws:lambda:us-east-1:000000000000:function:hello'), { name: 'hello', version: '$LATEST' });
});
