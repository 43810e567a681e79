// The console shell: session check, sign-in view, hash router, and the `ctx` every page gets
// (navigate, toast, poll, confirm, charts, fmt). Pages are loaded on demand with `import()`.
// Also exports the small DOM helpers `h` and `morph` that pages may import.

import * as api from './api.js';

const TITLE = 'fleetfn';
const MAX_POLL_MS = 2000;

// ---------------------------------------------------------------------------------------------
// DOM helpers

/**
 * Creates an element. `attrs`: `class`, `text`, `dataset` (object), `style` (object, set through
 * CSSOM), `on<event>` (listener), boolean/other attributes; children: nodes, strings, arrays,
 * null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') for (const [p, x] of Object.entries(v)) el.style[p] = x;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function keyOf(n) {
  if (n.nodeType !== 1) return null;
  return n.id || n.getAttribute('data-key') || null;
}

function sameKind(a, b) {
  if (a.nodeType !== b.nodeType) return false;
  if (a.nodeType !== 1) return true;
  return a.tagName === b.tagName && keyOf(a) === keyOf(b);
}

function syncAttrs(target, fresh) {
  for (const { name } of [...target.attributes]) {
    if (name !== 'style' && !fresh.hasAttribute(name)) target.removeAttribute(name);
  }
  for (const { name, value } of [...fresh.attributes]) {
    if (name === 'style') continue;
    if (target.getAttribute(name) !== value) target.setAttribute(name, value);
  }
  // Styles go through CSSOM (the CSP forbids style attributes set from markup).
  if (target.style.cssText !== fresh.style.cssText) target.style.cssText = fresh.style.cssText;
}

/**
 * Makes `target`'s children look like `fresh`'s, reusing nodes of the same tag and key (id or
 * data-key) in the same place, so a poll that redraws a page keeps focus, selection and scroll.
 * Listeners of reused elements stay those of the old element.
 */
export function morph(target, fresh) {
  const next = [...fresh.childNodes];
  for (let i = 0; i < next.length; i++) {
    const n = next[i];
    const o = target.childNodes[i];
    if (!o) {
      target.appendChild(n);
    } else if (!sameKind(o, n)) {
      target.replaceChild(n, o);
    } else if (o.nodeType === 1) {
      syncAttrs(o, n);
      morph(o, n);
    } else if (o.nodeValue !== n.nodeValue) {
      o.nodeValue = n.nodeValue;
    }
  }
  while (target.childNodes.length > next.length) target.lastChild.remove();
}

/** A utilization bar: `frac` 0..1 (wider values are clamped), width set through CSSOM. */
export function bar(frac, label, { name, big } = {}) {
  const v = Number.isFinite(Number(frac)) ? Math.max(0, Number(frac)) : 0;
  const fill = h('div', { class: `bar-fill${v >= 0.95 ? ' full' : v >= 0.75 ? ' hot' : ''}` });
  fill.style.width = `${Math.min(100, v * 100).toFixed(1)}%`;
  return h('div', { class: `bar${big ? ' big' : ''}` },
    name ? h('span', { class: 'bar-name', text: name }) : null,
    h('div', {
      class: 'bar-track', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '100',
      'aria-valuenow': String(Math.round(v * 100)), 'aria-label': name ? `${name} ${label}` : label,
    }, fill),
    h('span', { class: 'bar-label', text: label }));
}

const STATE_KIND = {
  active: 'ok', ready: 'ok', running: 'ok', successful: 'ok',
  pending: 'warn', starting: 'warn', inprogress: 'warn', draining: 'warn', deleting: 'warn',
  failed: 'bad', exited: 'bad', terminated: 'bad', inactive: 'bad',
};

/** A state badge coloured by its meaning (Active/Ready green, Pending amber, Failed red). */
export function badge(state, cls = '') {
  const kind = STATE_KIND[String(state || '').toLowerCase()] || '';
  return h('span', { class: `badge ${kind} ${cls}`.trim(), text: state || 'unknown' });
}

/** A table inside a horizontally scrolling wrapper (phones). */
export function table({ id, caption, captionHidden, head, rows, empty, foot }) {
  const t = h('table', { id },
    caption ? h('caption', { class: captionHidden ? 'sr-only' : null, text: caption }) : null,
    h('thead', {}, h('tr', {}, head.map((c) => (typeof c === 'string'
      ? h('th', { scope: 'col', text: c })
      : h('th', { scope: 'col', class: c.class, text: c.text }))))),
    h('tbody', {}, rows.length ? rows
      : h('tr', { class: 'empty-row' }, h('td', { class: 'empty', colspan: String(head.length), text: empty || 'Nothing yet.' }))),
    foot || null);
  return h('div', { class: 'table-wrap' }, t);
}

/** "function:hello:3" ARN → {name: "hello", version: "3"}. */
export function parseFunctionArn(arn) {
  const m = /:function:([^:]+)(?::([^:]+))?$/.exec(String(arn || ''));
  return m ? { name: m[1], version: m[2] || '$LATEST' } : { name: String(arn || ''), version: '' };
}

export function hashFor(kind, name) {
  return `#/${kind}/${encodeURIComponent(name)}`;
}

// ---------------------------------------------------------------------------------------------
// Formatting

export const fmt = {
  esc(s) {
    return String(s ?? '').replace(/[&<>"']/g, (c) => ({
      '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
    })[c]);
  },
  num(x, digits) {
    if (x === null || x === undefined || Number.isNaN(Number(x))) return '–';
    const v = Number(x);
    if (digits !== undefined) return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
    const abs = Math.abs(v);
    const max = abs === 0 || abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
    return v.toLocaleString('en-US', { maximumFractionDigits: max });
  },
  pct(x) {
    if (x === null || x === undefined || Number.isNaN(Number(x))) return '–';
    const v = Number(x) * 100;
    return `${v.toFixed(v !== 0 && Math.abs(v) < 10 ? 1 : 0)}%`;
  },
  bytes(n) {
    if (n === null || n === undefined || Number.isNaN(Number(n))) return '–';
    let v = Number(n);
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return `${v.toFixed(i === 0 || v >= 100 ? 0 : 1)} ${units[i]}`;
  },
  mib(n) {
    return fmt.bytes(Number(n) * 1024 * 1024);
  },
  usd(x) {
    if (x === null || x === undefined || Number.isNaN(Number(x))) return '–';
    const v = Number(x);
    if (v === 0) return '$0.00';
    // Never exponent notation (JS prints it below 1e-6): "<$0.000001" there, two significant digits below a cent.
    if (Math.abs(v) < 0.000001) return v < 0 ? '-<$0.000001' : '<$0.000001';
    if (Math.abs(v) < 0.01) return `$${Number(v.toPrecision(2))}`;
    return `$${v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  },
  ago(iso) {
    if (!iso) return '–';
    const t = Date.parse(String(iso).replace(/([+-]\d\d)(\d\d)$/, '$1:$2'));
    if (Number.isNaN(t)) return String(iso);
    const s = Math.round((Date.now() - t) / 1000);
    if (s < 0) return `in ${fmt.dur(-s)}`;
    if (s < 5) return 'just now';
    return `${fmt.dur(s)} ago`;
  },
  dur(s) {
    s = Math.round(s);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  },
};

// ---------------------------------------------------------------------------------------------
// Toasts and confirm

function toast(text, kind = 'info') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const t = h('div', { class: `toast toast-${kind === 'error' ? 'error' : kind === 'success' ? 'success' : 'info'}` },
    h('span', { class: 'toast-text', text }),
    h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', text: '×', onclick: () => t.remove() }));
  if (kind === 'error') t.setAttribute('role', 'alert');
  box.append(t);
  while (box.childElementCount > 4) box.firstElementChild.remove();
  setTimeout(() => t.remove(), kind === 'error' ? 9000 : 4500);
}

let confirmPending = null;

function confirmDialog(text, { ok = 'Delete', title = 'Are you sure?' } = {}) {
  const dlg = document.getElementById('confirm');
  if (!dlg || typeof dlg.showModal !== 'function') return Promise.resolve(window.confirm(text));
  if (confirmPending) confirmPending(false);
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = ok;
  const back = document.activeElement;
  return new Promise((resolve) => {
    confirmPending = (answer) => {
      confirmPending = null;
      if (dlg.open) dlg.close();
      if (back && back.isConnected && typeof back.focus === 'function') back.focus();
      resolve(answer);
    };
    dlg.showModal();
    document.getElementById('confirm-cancel').focus();
  });
}

function wireConfirm() {
  const dlg = document.getElementById('confirm');
  if (!dlg) return;
  document.getElementById('confirm-ok').addEventListener('click', () => confirmPending?.(true));
  document.getElementById('confirm-cancel').addEventListener('click', () => confirmPending?.(false));
  dlg.addEventListener('cancel', (ev) => {
    ev.preventDefault();
    confirmPending?.(false);
  });
  dlg.addEventListener('close', () => confirmPending?.(false));
}

// ---------------------------------------------------------------------------------------------
// Polls: every poll belongs to the route that started it.

let routeGen = 0;
const polls = new Set();

function makePoll(gen) {
  return function poll(fn, ms = MAX_POLL_MS) {
    const every = Math.max(250, Math.min(Number(ms) || MAX_POLL_MS, MAX_POLL_MS));
    const p = { timer: null, running: false, stopped: false, failing: false, due: false };
    const tick = async () => {
      p.timer = null;
      if (p.stopped || gen !== routeGen) return;
      if (document.hidden) {
        p.due = true;
        return;
      }
      p.running = true;
      try {
        await fn();
        p.failing = false;
      } catch (e) {
        if (!p.failing && !p.stopped && gen === routeGen && api.session()) {
          toast(e?.message || String(e), 'error');
        }
        p.failing = true;
      } finally {
        p.running = false;
      }
      if (!p.stopped && gen === routeGen) p.timer = setTimeout(tick, every);
    };
    p.wake = () => {
      if (p.due && !p.running && !p.stopped) {
        p.due = false;
        tick();
      }
    };
    p.stop = () => {
      p.stopped = true;
      if (p.timer) clearTimeout(p.timer);
    };
    polls.add(p);
    tick();
    return p.stop;
  };
}

function stopPolls() {
  for (const p of polls) p.stop();
  polls.clear();
}

if (typeof document !== 'undefined') {
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) for (const p of polls) p.wake();
  });
}

// ---------------------------------------------------------------------------------------------
// Routing

const routes = [
  { re: /^\/?$/, nav: 'nav-overview', load: () => import('./pages/overview.js'), title: () => 'Overview' },
  { re: /^\/functions\/([^/]+)\/?$/, keys: ['name'], load: () => import('./pages/function.js'), title: (p) => `${p.name} · Function` },
  { re: /^\/providers\/([^/]+)\/?$/, keys: ['name'], load: () => import('./pages/provider.js'), title: (p) => `${p.name} · Capacity provider` },
  { re: /^\/cost\/?$/, nav: 'nav-cost', load: () => import('./pages/cost.js'), title: () => 'Cost' },
  { re: /^\/new\/provider\/?$/, nav: 'nav-new-provider', load: () => import('./pages/forms.js'), fn: 'renderNewProvider', title: () => 'New capacity provider' },
  { re: /^\/new\/function\/?$/, nav: 'nav-new-function', load: () => import('./pages/forms.js'), fn: 'renderNewFunction', title: () => 'New function' },
];

/** The route of a location hash and its decoded params, or null. */
export function match(hash) {
  const [rawPath, query] = (hash || '').replace(/^#/, '').split('?');
  const path = rawPath || '/';
  for (const r of routes) {
    const m = r.re.exec(path);
    if (!m) continue;
    // `#/new/function?provider=cp1`: query parameters, then the path's own (which win).
    const params = Object.fromEntries(new URLSearchParams(query || ''));
    (r.keys || []).forEach((k, i) => {
      try {
        params[k] = decodeURIComponent(m[i + 1]);
      } catch {
        params[k] = m[i + 1];
      }
    });
    return { route: r, params };
  }
  return null;
}

let dispose = null;

function freshView() {
  const old = document.getElementById('view');
  const main = h('main', { id: 'view', tabindex: '-1' });
  old.replaceWith(main);
  return main;
}

function leaveRoute() {
  routeGen += 1;
  stopPolls();
  if (dispose) {
    try {
      dispose();
    } catch {
      // A page's cleanup failing must not block the next page.
    }
    dispose = null;
  }
}

function setNav(id) {
  for (const a of document.querySelectorAll('.nav a')) {
    if (a.id === id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function setTitle(text) {
  document.title = text ? `${text} · ${TITLE}` : `${TITLE} console`;
}

let charts = null;

async function loadCharts() {
  if (!charts) {
    try {
      charts = await import('./charts.js');
    } catch {
      charts = {};
    }
  }
  return charts;
}

let lastFocusedRoute = null;

async function route() {
  if (!api.session()) return showSignIn();
  leaveRoute();
  const gen = routeGen;
  const root = freshView();
  document.body.classList.remove('signed-out');
  const found = match(location.hash);
  if (!found) {
    setNav(null);
    setTitle('Not found');
    root.append(h('section', { class: 'empty-state' },
      h('h1', { text: 'Page not found' }),
      h('p', { text: `Nothing lives at ${location.hash || '#/'}.` }),
      h('p', {}, h('a', { href: '#/', class: 'btn', text: 'Back to the overview' }))));
    return;
  }
  const { route: r, params } = found;
  setNav(r.nav || null);
  setTitle(r.title(params));
  const ctx = {
    api,
    navigate,
    toast,
    poll: makePoll(gen),
    confirm: confirmDialog,
    charts: await loadCharts(),
    fmt,
  };
  try {
    const mod = await r.load();
    if (gen !== routeGen) return;
    const render = mod[r.fn || 'render'];
    const out = await render(root, params, ctx);
    if (gen !== routeGen) {
      out?.dispose?.();
      return;
    }
    if (out && typeof out.dispose === 'function') dispose = () => out.dispose();
  } catch (e) {
    if (gen !== routeGen || !api.session()) return;
    root.append(h('div', { class: 'alert alert-error', role: 'alert' },
      h('strong', { text: 'This page could not be shown. ' }), e?.message || String(e)));
  }
  // Move focus to the new page for keyboard and screen-reader users (not on the first load).
  if (lastFocusedRoute !== null && gen === routeGen && !root.contains(document.activeElement)) {
    root.focus({ preventScroll: true });
  }
  lastFocusedRoute = location.hash;
}

export function navigate(hash) {
  const target = hash.startsWith('#') ? hash : `#${hash}`;
  if (location.hash === target) route().catch(() => {});
  else location.hash = target;
}

// ---------------------------------------------------------------------------------------------
// Sign-in

function showSignIn(message) {
  leaveRoute();
  document.body.classList.add('signed-out');
  setNav(null);
  setTitle('Sign in');
  document.getElementById('whoami').textContent = '';
  const root = freshView();
  const error = h('p', { id: 'signin-error', class: 'form-error', role: 'alert' });
  if (message) error.textContent = message;
  const keyId = h('input', { id: 'signin-key-id', name: 'AccessKeyId', autocomplete: 'username', required: true, spellcheck: 'false', autocapitalize: 'off' });
  const secret = h('input', { id: 'signin-secret', name: 'SecretAccessKey', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { id: 'signin-submit', type: 'submit', class: 'btn btn-primary btn-block', text: 'Sign in' });
  const form = h('form', { id: 'signin-form', class: 'signin-card', novalidate: true },
    h('div', { class: 'signin-brand' },
      h('img', { src: '/console/assets/favicon.svg', alt: '', width: '40', height: '40' }),
      h('div', {}, h('h1', { text: 'Sign in to fleetfn' }),
        h('p', { class: 'muted', text: 'Use an access key pair this server accepts for its API.' }))),
    h('div', { class: 'field' }, h('label', { for: 'signin-key-id', text: 'Access key ID' }), keyId),
    h('div', { class: 'field' }, h('label', { for: 'signin-secret', text: 'Secret access key' }), secret),
    error,
    submit);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    doSignIn().catch(() => {});
  });
  async function doSignIn() {
    error.textContent = '';
    const id = keyId.value.trim();
    if (!id) {
      error.textContent = 'Enter the access key ID.';
      keyId.focus();
      return;
    }
    if (!secret.value) {
      error.textContent = 'Enter the secret access key.';
      secret.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      await api.signIn(id, secret.value);
    } catch (e) {
      error.textContent = e?.message || 'Sign-in failed.';
      submit.disabled = false;
      submit.textContent = 'Sign in';
      secret.select();
      secret.focus();
      return;
    }
    signedIn();
    if (!location.hash || location.hash === '#') history.replaceState(null, '', '#/');
    await route();
  }
  root.append(h('div', { class: 'signin-wrap' }, form));
  keyId.focus();
}

function signedIn() {
  const s = api.session();
  document.body.classList.remove('signed-out');
  const who = document.getElementById('whoami');
  who.textContent = s?.AccessKeyId || '';
  if (s?.ExpiresAt) who.title = `Session ends ${new Date(s.ExpiresAt).toLocaleString()}`;
}

// ---------------------------------------------------------------------------------------------
// Boot

async function boot() {
  wireConfirm();
  document.getElementById('signout').addEventListener('click', () => {
    api.signOut().then(() => showSignIn(), () => showSignIn());
  });
  window.addEventListener('fleetfn:signedout', () => showSignIn('Your session ended. Sign in again.'));
  window.addEventListener('hashchange', () => {
    route().catch(() => {});
  });
  window.addEventListener('unhandledrejection', (ev) => {
    // Every API error is shown in the page; keep the browser console clean of stray ones.
    ev.preventDefault();
  });
  const s = await api.loadSession();
  if (!s) return showSignIn();
  signedIn();
  await route();
}

// Importable without a DOM (node unit tests of fmt, match and the helpers).
if (typeof document !== 'undefined') {
  boot().catch((e) => {
    const view = document.getElementById('view');
    if (view) view.textContent = `The console could not start: ${e?.message || e}`;
  });
}
