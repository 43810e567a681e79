// Function page, `#/functions/<name>`: header and actions, live charts (the per-version 1-second
// ring of `/fleetfn/v1/functions/{name}/series`), environments (from `/fleetfn/v1/status`),
// versions, aliases, scaling config, test invoke with saved events, logs (NDJSON follow stream)
// and code upload. Every call goes through ctx.api (the same API routes the AWS CLI uses);
// every API error is shown in the page, never thrown.

const WINDOW = 900;
const LOG_LINES = 500;
const THROTTLE_REASONS = ['Concurrency', 'CPU', 'Memory', 'Disk'];

// ---------------------------------------------------------------------------------------------
// Small DOM helpers (textContent only; never innerHTML with API data).

function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function setText(e, text) {
  const s = String(text);
  if (e.textContent !== s) e.textContent = s;
}

function setClass(e, base, extra) {
  const cls = extra ? `${base} ${extra}` : base;
  if (e.className !== cls) e.className = cls;
}

function field(label, control, hint) {
  return h('div', { class: 'field' },
    h('label', { for: control.id, text: label }), control,
    hint ? h('small', { class: 'hint', text: hint }) : null);
}

function table(id, caption, columns) {
  const tbody = h('tbody');
  const t = h('table', { id, class: 'data' },
    h('caption', { class: 'sr-only', text: caption }),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', text: c })))),
    tbody);
  return { table: t, tbody };
}

function emptyRow(tbody, cols, text) {
  tbody.replaceChildren(h('tr', { class: 'empty' }, h('td', { colspan: cols, text })));
}

// ---------------------------------------------------------------------------------------------
// Pure helpers (exported for tests).

/** Merges a series answer's points (`T > since` already) into the client window `buf`. */
export function mergeSeries(buf, v, now) {
  const keys = ['Invocations', 'Errors', 'DurationP50Ms', 'DurationP99Ms', 'CpuUtilization',
    'InFlight', 'DesiredEnvironments', 'ReadyEnvironments'];
  const last = buf.T.length ? buf.T[buf.T.length - 1] : -Infinity;
  const T = (v && v.T) || [];
  for (let i = 0; i < T.length; i++) {
    if (!(T[i] > last)) continue;
    buf.T.push(T[i]);
    for (const k of keys) buf[k].push(pick(v[k], i));
    for (const r of THROTTLE_REASONS) buf.Throttles[r].push(pick(v.Throttles && v.Throttles[r], i));
  }
  // Keep the last 15 minutes (and never more than 900 points).
  const from = now - WINDOW;
  let drop = 0;
  while (drop < buf.T.length && (buf.T[drop] <= from || buf.T.length - drop > WINDOW)) drop++;
  if (drop) {
    buf.T.splice(0, drop);
    for (const k of keys) buf[k].splice(0, drop);
    for (const r of THROTTLE_REASONS) buf.Throttles[r].splice(0, drop);
  }
  return buf;
}

function pick(arr, i) {
  if (!Array.isArray(arr)) return null;
  const v = arr[i];
  return v === undefined ? null : v;
}

export function emptySeries() {
  const b = {
    T: [], Invocations: [], Errors: [], DurationP50Ms: [], DurationP99Ms: [], CpuUtilization: [],
    InFlight: [], DesiredEnvironments: [], ReadyEnvironments: [], Throttles: {},
  };
  for (const r of THROTTLE_REASONS) b.Throttles[r] = [];
  return b;
}

/** Splits a chunk of NDJSON text into complete lines and the unfinished rest. */
export function splitLines(pending, chunk) {
  const text = pending + chunk;
  const parts = text.split('\n');
  const rest = parts.pop();
  return { lines: parts.filter((l) => l.trim() !== ''), rest };
}

/** Published versions: numbered ones newest first, then `$LATEST.PUBLISHED` (not `$LATEST`). */
export function publishedVersions(configs) {
  const vs = configs.map((c) => c.Version);
  const numbered = vs.filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  return vs.includes('$LATEST.PUBLISHED') ? [...numbered, '$LATEST.PUBLISHED'] : numbered;
}

/** "2: 90% · 3: 10%" for an alias (primary version's weight is the rest). */
export function routingText(alias) {
  const extra = (alias.RoutingConfig && alias.RoutingConfig.AdditionalVersionWeights) || {};
  const entries = Object.entries(extra);
  if (!entries.length) return `${alias.FunctionVersion}: 100%`;
  const rest = 1 - entries.reduce((s, [, w]) => s + Number(w || 0), 0);
  const pct = (w) => `${Math.round(w * 1000) / 10}%`;
  return [`${alias.FunctionVersion}: ${pct(rest)}`, ...entries.map(([v, w]) => `${v}: ${pct(w)}`)]
    .join(' · ');
}

/** Base64 of an ArrayBuffer, in chunks (no call-stack blow-up for big zips). */
export function base64Of(buffer) {
  const bytes = new Uint8Array(buffer);
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/** UTF-8 text of base64 (the invoke's log tail). */
export function decodeBase64Text(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/** A log line as a record (a line that is not JSON becomes `{message}`). */
export function parseRecord(line) {
  try {
    const r = JSON.parse(line);
    return r && typeof r === 'object' && !Array.isArray(r) ? r : { message: String(line) };
  } catch {
    return { message: line };
  }
}

/** A record's text: its message, else the record as JSON. */
export function messageOf(rec) {
  const m = rec.message;
  if (typeof m === 'string') return m.replace(/\n+$/, '');
  return m === undefined ? JSON.stringify(rec) : JSON.stringify(m);
}

function clockOf(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts || '');
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function errorText(e) {
  if (!e) return 'Unknown error';
  if (e.type && e.message) return `${e.type}: ${e.message}`;
  return e.message || String(e);
}

function isAbort(e) {
  return e && (e.name === 'AbortError' || e.name === 'AbortSignal');
}

// ---------------------------------------------------------------------------------------------

export async function render(root, params, ctx) {
  const page = new FunctionPage(root, params.name, ctx);
  page.build();
  await page.start();
  return { dispose: () => page.dispose() };
}

class FunctionPage {
  constructor(root, name, ctx) {
    this.root = root;
    this.name = name;
    this.ctx = ctx;
    this.api = ctx.api;
    this.enc = encodeURIComponent(name);
    this.disposed = false;
    this.versions = [];      // ListVersionsByFunction configurations
    this.aliases = [];
    this.statusVersions = new Map(); // version -> status Functions[] entry
    this.chartVersion = null;
    this.chartPinned = false; // the user picked a chart version (do not follow newest)
    this.series = emptySeries();
    this.seriesBusy = false;
    this.seriesNow = null;
    this.logs = { controller: null, reader: null, cursor: null, gen: 0, atBottom: true };
    this.timers = new Set();
    this.fmt = Object.assign({
      bytes: (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`),
      pct: (x) => `${Math.round((x || 0) * 100)}%`,
      num: (x) => String(x),
      ago: (iso) => iso,
    }, ctx.fmt || {});
  }

  // ----- layout ------------------------------------------------------------------------------

  build() {
    const root = this.root;
    root.replaceChildren();
    root.classList.add('function-page');

    // Header
    this.title = h('h1', { id: 'function-title', text: this.name });
    this.meta = h('dl', { class: 'fn-meta' });
    this.publishBtn = h('button', { id: 'publish', type: 'button', class: 'btn btn-primary', text: 'Publish version' });
    this.deleteBtn = h('button', { id: 'delete-function', type: 'button', class: 'btn btn-danger', text: 'Delete function' });
    this.publishBtn.addEventListener('click', () => this.publish());
    this.deleteBtn.addEventListener('click', () => this.deleteFunction());
    this.headError = h('p', { class: 'form-error', role: 'alert' });
    root.append(h('header', { class: 'page-head' },
      h('div', { class: 'page-title' },
        h('p', { class: 'crumbs' }, h('a', { href: '#/', text: 'Overview' }), ' / function'),
        this.title, this.meta),
      h('div', { class: 'page-actions' }, this.publishBtn, this.deleteBtn)),
    this.headError);

    // KPIs
    this.kpi = {};
    const kpi = (key, label) => {
      const value = h('div', { class: 'stat-value', text: '–' });
      this.kpi[key] = value;
      return h('div', { class: 'stat', dataset: { kpi: key } }, h('div', { class: 'stat-label', text: label }), value);
    };
    root.append(h('section', { class: 'stats', 'aria-label': 'At a glance' },
      kpi('rate', 'Invocations/s'), kpi('envs', 'Environments ready/desired'),
      kpi('throttles', 'Throttles, last minute'), kpi('errors', 'Errors since start')));

    // Live charts
    this.chartVersionSel = h('select', { id: 'chart-version' });
    this.chartVersionSel.addEventListener('change', () => {
      this.chartPinned = true;
      this.setChartVersion(this.chartVersionSel.value);
    });
    this.chartNote = h('p', { class: 'note', role: 'status' });
    const chartIds = ['invocations', 'errors', 'throttles', 'duration', 'cpu', 'environments'];
    this.chartEls = {};
    const grid = h('div', { class: 'charts' });
    for (const id of chartIds) {
      const el = h('div', { id: `chart-${id}`, class: 'chart' });
      this.chartEls[id] = el;
      grid.append(el);
    }
    root.append(h('section', { class: 'panel', 'aria-labelledby': 'live-h' },
      h('div', { class: 'panel-head' },
        h('h2', { id: 'live-h', text: 'Live · last 15 minutes' }),
        h('div', { class: 'inline' }, h('label', { for: 'chart-version', text: 'Version' }), this.chartVersionSel)),
      this.chartNote, grid));

    // Environments
    const envs = table('environments', 'Execution environments (updated every 2 s)',
      ['Environment', 'Version', 'Zone', 'Instance', 'State', 'In flight', 'CPU', 'Memory']);
    this.envBody = envs.tbody;
    emptyRow(this.envBody, 8, 'Loading…');
    root.append(h('section', { class: 'panel', 'aria-labelledby': 'envs-h' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'envs-h', text: 'Environments' })),
      h('div', { class: 'table-wrap' }, envs.table)));

    // Versions, aliases, scaling
    const versions = table('versions', 'Versions', ['Version', 'State', 'Code SHA-256', 'Modified']);
    this.versionsBody = versions.tbody;
    emptyRow(this.versionsBody, 4, 'Loading…');
    const aliases = table('aliases', 'Aliases and their routing weights', ['Alias', 'Version', 'Routing']);
    this.aliasesBody = aliases.tbody;
    emptyRow(this.aliasesBody, 3, 'Loading…');
    root.append(h('div', { class: 'grid grid-2 fn-columns' },
      h('section', { class: 'panel', 'aria-labelledby': 'versions-h' },
        h('div', { class: 'panel-head' }, h('h2', { id: 'versions-h', text: 'Versions' })),
        h('div', { class: 'table-wrap' }, versions.table),
        h('h3', { class: 'subhead', text: 'Aliases' }),
        h('div', { class: 'table-wrap' }, aliases.table)),
      h('div', { class: 'fn-stack' }, this.buildScaling(), this.buildCode())));

    // Test invoke, then the logs (full width: a line holds the whole request id).
    root.append(this.buildInvoke(), this.buildLogs());
  }

  buildScaling() {
    this.scalingQualifier = h('select', { id: 'scaling-qualifier' });
    this.scalingMin = h('input', { id: 'scaling-min', type: 'number', min: 0, step: 1, inputmode: 'numeric' });
    this.scalingMax = h('input', { id: 'scaling-max', type: 'number', min: 0, step: 1, inputmode: 'numeric', placeholder: 'no maximum' });
    this.scalingSubmit = h('button', { id: 'scaling-submit', type: 'submit', class: 'btn btn-primary', text: 'Apply scaling' });
    this.scalingError = h('p', { id: 'scaling-error', class: 'form-error', role: 'alert' });
    this.scalingApplied = h('p', { class: 'note', id: 'scaling-applied' });
    this.scalingForm = h('form', { id: 'scaling-form', class: 'form', novalidate: true },
      field('Version', this.scalingQualifier),
      h('div', { class: 'row' },
        field('Minimum environments', this.scalingMin),
        field('Maximum environments', this.scalingMax, 'Empty: no maximum')),
      this.scalingApplied, this.scalingError,
      h('div', { class: 'form-actions' }, this.scalingSubmit));
    this.scalingQualifier.addEventListener('change', () => this.loadScaling(true));
    this.scalingForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.saveScaling();
    });
    return h('section', { class: 'panel', 'aria-labelledby': 'scaling-h' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'scaling-h', text: 'Scaling' })),
      this.scalingForm);
  }

  buildInvoke() {
    this.invokeQualifier = h('select', { id: 'invoke-qualifier' });
    this.invokePayload = h('textarea', { id: 'invoke-payload', rows: 6, spellcheck: 'false', class: 'code' });
    this.invokePayload.value = '{\n  "key": "value"\n}';
    this.invokeSubmit = h('button', { id: 'invoke-submit', type: 'submit', class: 'btn btn-primary', text: 'Invoke' });
    this.invokeStatus = h('p', { id: 'invoke-status', class: 'status-line', role: 'status' });
    this.invokeResult = h('pre', { id: 'invoke-result', class: 'code output', tabindex: 0, 'aria-label': 'Response payload' });
    this.invokeLog = h('pre', { id: 'invoke-log', class: 'code output', tabindex: 0, 'aria-label': 'Log tail' });
    this.invokeSaved = h('select', { id: 'invoke-saved' });
    this.invokeSaveName = h('input', { id: 'invoke-save-name', type: 'text', placeholder: 'event name', autocomplete: 'off' });
    this.invokeSave = h('button', { id: 'invoke-save', type: 'button', class: 'btn', text: 'Save event' });
    this.invokeDelete = h('button', { id: 'invoke-delete-saved', type: 'button', class: 'btn btn-quiet', text: 'Delete saved' });
    this.invokeSaved.addEventListener('change', () => this.loadSavedEvent());
    this.invokeSave.addEventListener('click', () => this.saveEvent());
    this.invokeDelete.addEventListener('click', () => this.deleteSavedEvent());
    this.invokeHint = h('p', { class: 'note', text: 'The response and the log lines of the invoke show here.' });
    this.invokeForm = h('form', { id: 'invoke-form', class: 'form', novalidate: true },
      h('div', { class: 'row' },
        field('Qualifier', this.invokeQualifier),
        field('Saved events', this.invokeSaved)),
      field('Payload (JSON)', this.invokePayload),
      h('div', { class: 'row row-end' },
        field('Save as', this.invokeSaveName),
        h('div', { class: 'form-actions' }, this.invokeSave, this.invokeDelete)),
      h('div', { class: 'form-actions' }, this.invokeSubmit));
    this.invokeOutput = h('div', { class: 'invoke-output', hidden: true },
      h('h3', { text: 'Response' }), this.invokeResult,
      h('h3', { text: 'Log' }), this.invokeLog);
    this.invokeForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.invoke();
    });
    this.refreshSavedEvents();
    return h('section', { class: 'panel', 'aria-labelledby': 'invoke-h' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'invoke-h', text: 'Test invoke' })),
      h('div', { class: 'grid grid-2' }, this.invokeForm,
        h('div', { class: 'invoke-side' }, this.invokeStatus, this.invokeHint, this.invokeOutput)));
  }

  buildLogs() {
    this.logsFollow = h('input', { id: 'logs-follow', type: 'checkbox', checked: true });
    this.logsRequestId = h('input', { id: 'logs-request-id', type: 'search', placeholder: 'request id', autocomplete: 'off', spellcheck: 'false' });
    this.logsState = h('span', { class: 'note', role: 'status' });
    // role=log is polite by default: at hundreds of lines a second that would drown a screen reader.
    this.logsBox = h('div', { id: 'logs', class: 'logs', role: 'log', 'aria-live': 'off', tabindex: 0, 'aria-label': 'Function logs' });
    this.logsBox.addEventListener('scroll', () => {
      const b = this.logsBox;
      this.logs.atBottom = b.scrollTop + b.clientHeight >= b.scrollHeight - 8;
    });
    this.logsFollow.addEventListener('change', () => this.restartLogs());
    let debounce = null;
    const apply = () => {
      clearTimeout(debounce);
      this.timers.delete(debounce);
      debounce = null;
      const v = this.logsRequestId.value.trim();
      if (v !== this.logsFilter) this.restartLogs();
    };
    this.logsRequestId.addEventListener('input', () => {
      clearTimeout(debounce);
      this.timers.delete(debounce);
      debounce = setTimeout(apply, 400);
      this.timers.add(debounce);
    });
    this.logsRequestId.addEventListener('change', apply);
    this.logsRequestId.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        apply();
      }
    });
    return h('section', { class: 'panel logs-panel', 'aria-labelledby': 'logs-h' },
      h('div', { class: 'panel-head' },
        h('h2', { id: 'logs-h', text: 'Logs' }),
        h('div', { class: 'inline' },
          h('span', { class: 'check' }, this.logsFollow, h('label', { for: 'logs-follow', text: 'Follow' })),
          h('label', { for: 'logs-request-id', class: 'sr-only', text: 'Filter by request id' }),
          this.logsRequestId)),
      this.logsState, this.logsBox);
  }

  buildCode() {
    this.codeZip = h('input', { id: 'code-zip', type: 'file', accept: '.zip,application/zip' });
    this.codePublish = h('input', { id: 'code-publish', type: 'checkbox' });
    this.codeSubmit = h('button', { id: 'code-submit', type: 'submit', class: 'btn btn-primary', text: 'Upload code' });
    this.codeError = h('p', { id: 'code-error', class: 'form-error', role: 'alert' });
    this.codeForm = h('form', { id: 'code-form', class: 'form', novalidate: true },
      h('div', { class: 'row row-end' },
        field('Deployment package (.zip)', this.codeZip),
        h('span', { class: 'check' }, this.codePublish, h('label', { for: 'code-publish', text: 'Publish a version after upload' })),
        h('div', { class: 'form-actions' }, this.codeSubmit)),
      this.codeError);
    this.codeForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.uploadCode();
    });
    return h('section', { class: 'panel', 'aria-labelledby': 'code-h' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'code-h', text: 'Code' })),
      this.codeForm);
  }

  // ----- life cycle --------------------------------------------------------------------------

  async start() {
    const ok = await this.loadFunction();
    if (!ok) {
      // Nothing to show about a function that could not be read: the error, and a way back.
      while (this.headError.nextSibling) this.headError.nextSibling.remove();
      this.publishBtn.hidden = true;
      this.deleteBtn.hidden = true;
      this.root.append(h('section', { class: 'empty-state' },
        h('p', { text: 'The function could not be read.' }),
        h('p', {}, h('a', { href: '#/', class: 'btn', text: 'Back to the overview' }))));
      return;
    }
    await Promise.all([this.loadVersions(), this.loadAliases()]);
    this.fillQualifiers();
    this.drawCharts();
    this.ctx.poll(() => this.pollStatus(), 2000);
    this.ctx.poll(() => this.pollSeries(), 1000);
    this.restartLogs();
  }

  dispose() {
    this.disposed = true;
    this.stopLogs();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  alive() {
    return !this.disposed && this.root.isConnected;
  }

  async call(method, path, opts) {
    return this.api.call(method, path, opts);
  }

  // ----- header ------------------------------------------------------------------------------

  async loadFunction() {
    try {
      const fn = await this.call('GET', `/2015-03-31/functions/${this.enc}`);
      this.config = fn.Configuration || {};
      this.renderMeta();
      setText(this.headError, '');
      return true;
    } catch (e) {
      setText(this.headError, errorText(e));
      this.meta.replaceChildren();
      return false;
    }
  }

  renderMeta() {
    const c = this.config;
    const cpArn = c.CapacityProviderConfig && c.CapacityProviderConfig.LambdaManagedInstancesCapacityProviderConfig
      && c.CapacityProviderConfig.LambdaManagedInstancesCapacityProviderConfig.CapacityProviderArn;
    const provider = cpArn ? cpArn.split(':').pop() : null;
    const items = [
      ['Runtime', c.Runtime || (c.PackageType === 'Image' ? 'container image' : '–')],
      ['Provider', provider ? h('a', { href: `#/providers/${encodeURIComponent(provider)}`, text: provider }) : '–'],
      ['Memory', c.MemorySize ? `${c.MemorySize} MB` : '–'],
      ['Code size', Number.isFinite(c.CodeSize) ? this.fmt.bytes(c.CodeSize) : '–'],
      ['Last modified', c.LastModified ? this.fmt.ago(c.LastModified) : '–'],
      ['Handler', c.Handler || '–'],
    ];
    this.meta.replaceChildren(...items.flatMap(([k, v]) => [h('dt', { text: k }),
      h('dd', { title: k === 'Last modified' ? c.LastModified : undefined }, v)]));
  }

  async publish() {
    this.publishBtn.disabled = true;
    try {
      const v = await this.call('POST', `/2015-03-31/functions/${this.enc}/versions`, { body: {} });
      this.ctx.toast(`Published version ${v.Version}`);
      await Promise.all([this.loadVersions(), this.loadAliases(), this.loadFunction()]);
      this.fillQualifiers();
    } catch (e) {
      this.ctx.toast(`Publish failed: ${errorText(e)}`, 'error');
    } finally {
      this.publishBtn.disabled = false;
    }
  }

  async deleteFunction() {
    let ok = false;
    try {
      ok = await this.ctx.confirm(`Delete function ${this.name} with all its versions and aliases? Its environments stop.`,
        { ok: 'Delete function', title: `Delete ${this.name}?` });
    } catch {
      ok = false;
    }
    if (!ok) return;
    try {
      await this.call('DELETE', `/2015-03-31/functions/${this.enc}`);
      this.ctx.toast(`Deleted function ${this.name}`);
      this.ctx.navigate('#/');
    } catch (e) {
      this.ctx.toast(`Delete failed: ${errorText(e)}`, 'error');
    }
  }

  // ----- versions and aliases ----------------------------------------------------------------

  async loadVersions() {
    try {
      const all = [];
      let marker = null;
      for (let page = 0; page < 20; page++) {
        const query = { MaxItems: '50' };
        if (marker) query.Marker = marker;
        const r = await this.call('GET', `/2015-03-31/functions/${this.enc}/versions`, { query });
        all.push(...(r.Versions || []));
        marker = r.NextMarker;
        if (!marker) break;
      }
      this.versions = all;
      this.renderVersions();
    } catch (e) {
      emptyRow(this.versionsBody, 4, errorText(e));
    }
  }

  versionState(v) {
    const st = this.statusVersions.get(v.Version);
    return (st && st.State) || v.State || '–';
  }

  renderVersions() {
    if (!this.versions.length) {
      emptyRow(this.versionsBody, 4, 'No versions.');
      return;
    }
    const ordered = [...this.versions].sort((a, b) => order(b.Version) - order(a.Version));
    const rows = ordered.map((v) => {
      const state = this.versionState(v);
      const sha = v.CodeSha256 || '';
      return h('tr', { dataset: { version: v.Version } },
        h('td', { class: 'version', text: v.Version }),
        h('td', { class: 'state' }, h('span', { class: `badge ${tone(state)}`, text: state })),
        h('td', { class: 'mono sha', title: sha, text: sha ? `${sha.slice(0, 12)}…` : '–' }),
        h('td', { title: v.LastModified || '', text: v.LastModified ? this.fmt.ago(v.LastModified) : '–' }));
    });
    this.versionsBody.replaceChildren(...rows);
  }

  /** Refreshes the .state cells from the status document without rebuilding the table. */
  updateVersionStates() {
    for (const tr of this.versionsBody.querySelectorAll('tr[data-version]')) {
      const v = this.versions.find((x) => x.Version === tr.dataset.version);
      if (!v) continue;
      const state = this.versionState(v);
      const badge = tr.querySelector('.state .badge');
      if (badge) {
        setText(badge, state);
        setClass(badge, 'badge', tone(state));
      }
    }
  }

  async loadAliases() {
    try {
      const r = await this.call('GET', `/2015-03-31/functions/${this.enc}/aliases`);
      this.aliases = r.Aliases || [];
      if (!this.aliases.length) {
        emptyRow(this.aliasesBody, 3, 'No aliases.');
        return;
      }
      this.aliasesBody.replaceChildren(...this.aliases.map((a) => h('tr', { dataset: { alias: a.Name } },
        h('td', { class: 'alias', text: a.Name }),
        h('td', { text: a.FunctionVersion }),
        h('td', { class: 'weights', text: routingText(a) }))));
    } catch (e) {
      emptyRow(this.aliasesBody, 3, errorText(e));
    }
  }

  /** Fills the version selects (charts, scaling, invoke), keeping what the user picked. */
  fillQualifiers() {
    const published = publishedVersions(this.versions);
    const newest = published[0] || null;

    // Charts: published versions; default (and follow) the newest.
    const prevChart = this.chartVersion;
    fillSelect(this.chartVersionSel, published.map((v) => [v, label(v)]),
      this.chartPinned && published.includes(prevChart) ? prevChart : newest);
    if (!published.length) {
      setText(this.chartNote, 'Publish a version to see its live charts: the data plane keeps them per published version.');
      fillSelect(this.chartVersionSel, [['', 'no published version']], '');
      this.chartVersionSel.disabled = true;
    } else {
      this.chartVersionSel.disabled = false;
    }
    const next = this.chartVersionSel.value || null;
    if (next !== prevChart) this.setChartVersion(next);

    // Scaling: published versions and aliases.
    const prevScaling = this.scalingQualifier.value;
    const scalingOpts = [...published.map((v) => [v, label(v)]),
      ...this.aliases.map((a) => [a.Name, `Alias ${a.Name}`])];
    if (!scalingOpts.length) scalingOpts.push(['', 'publish a version first']);
    fillSelect(this.scalingQualifier, scalingOpts, prevScaling || newest || '');
    this.scalingQualifier.disabled = !published.length;
    this.scalingSubmit.disabled = !published.length;
    if (this.scalingQualifier.value !== prevScaling) this.loadScaling(true);

    // Invoke: published versions, aliases, then the unpublished ones.
    const prevInvoke = this.invokeQualifier.value;
    const others = this.versions.map((v) => v.Version).filter((v) => !published.includes(v));
    fillSelect(this.invokeQualifier, [
      ...published.map((v) => [v, label(v)]),
      ...this.aliases.map((a) => [a.Name, `Alias ${a.Name}`]),
      ...others.map((v) => [v, v]),
    ], prevInvoke || newest || others[0] || '');
  }

  // ----- scaling -----------------------------------------------------------------------------

  async loadScaling(force = false) {
    const q = this.scalingQualifier.value;
    const before = [this.scalingMin.value, this.scalingMax.value];
    setText(this.scalingError, '');
    if (!q) {
      setText(this.scalingApplied, '');
      return;
    }
    try {
      const r = await this.call('GET', `/2025-11-30/functions/${this.enc}/function-scaling-config`, { query: { Qualifier: q } });
      if (q !== this.scalingQualifier.value) return;
      const req = r.RequestedFunctionScalingConfig || {};
      const app = r.AppliedFunctionScalingConfig || {};
      // Fill the fields unless they were edited while the request was out.
      const untouched = this.scalingMin.value === before[0] && this.scalingMax.value === before[1];
      const show = (c) => `min ${c.MinExecutionEnvironments ?? '–'}, max ${c.MaxExecutionEnvironments ?? 'none'}`;
      if (untouched || force) {
        this.scalingMin.value = req.MinExecutionEnvironments ?? app.MinExecutionEnvironments ?? '';
        this.scalingMax.value = req.MaxExecutionEnvironments ?? app.MaxExecutionEnvironments ?? '';
      }
      setText(this.scalingApplied, `Applied: ${show(app)}. Requested: ${show(req)}.`);
    } catch (e) {
      setText(this.scalingApplied, '');
      setText(this.scalingError, e.message || String(e));
    }
  }

  async saveScaling() {
    const q = this.scalingQualifier.value;
    setText(this.scalingError, '');
    if (!q) {
      setText(this.scalingError, 'Publish a version first: scaling applies to a published version.');
      return;
    }
    const cfg = {};
    const num = (input) => {
      const raw = input.value.trim();
      if (raw === '') return undefined;
      const n = Number(raw);
      return Number.isFinite(n) ? n : raw;
    };
    const min = num(this.scalingMin);
    const max = num(this.scalingMax);
    if (min !== undefined) cfg.MinExecutionEnvironments = min;
    if (max !== undefined) cfg.MaxExecutionEnvironments = max;
    this.scalingSubmit.disabled = true;
    try {
      await this.call('PUT', `/2025-11-30/functions/${this.enc}/function-scaling-config`, {
        query: { Qualifier: q }, body: { FunctionScalingConfig: cfg },
      });
      this.ctx.toast(`Scaling of ${this.name}:${q} set`);
      await this.loadScaling(true);
    } catch (e) {
      setText(this.scalingError, e.message || String(e));
    } finally {
      this.scalingSubmit.disabled = false;
    }
  }

  // ----- status: environments, version states, KPIs -------------------------------------------

  async pollStatus() {
    if (!this.alive()) return;
    if (this.statusBusy) return;
    this.statusBusy = true;
    try {
      const doc = await this.call('GET', '/fleetfn/v1/status');
      if (!this.alive()) return;
      const mine = (doc.Functions || []).filter((f) => f.FunctionName === this.name);
      this.statusVersions = new Map(mine.map((f) => [f.Version, f]));
      this.renderEnvironments(mine, doc);
      this.updateVersionStates();
      this.renderKpis(mine);
      // A version the status knows and the list does not: someone published; refresh.
      this.statusTicks = (this.statusTicks || 0) + 1;
      const known = new Set(this.versions.map((v) => v.Version));
      if (mine.some((f) => !known.has(f.Version)) || this.statusTicks % 5 === 0) {
        await Promise.all([this.loadVersions(), this.loadAliases()]);
        this.fillQualifiers();
      }
    } catch (e) {
      emptyRow(this.envBody, 8, `Status unavailable: ${errorText(e)}`);
    } finally {
      this.statusBusy = false;
    }
  }

  renderEnvironments(mine, doc) {
    const envs = [];
    for (const f of mine) for (const e of f.Environments || []) envs.push([f, e]);
    if (!envs.length) {
      const text = doc.DataPlane === false ? 'This server runs without a data plane: no environments.'
        : 'No execution environments.';
      emptyRow(this.envBody, 8, text);
      this.envRows = null;
      return;
    }
    envs.sort(([fa, a], [fb, b]) => order(fb.Version) - order(fa.Version)
      || String(a.Zone).localeCompare(String(b.Zone)) || String(a.EnvironmentId).localeCompare(String(b.EnvironmentId)));
    if (!this.envRows) {
      this.envRows = new Map();
      this.envBody.replaceChildren();
    }
    const seen = new Set();
    const ordered = [];
    for (const [f, e] of envs) {
      const id = e.EnvironmentId;
      seen.add(id);
      let row = this.envRows.get(id);
      if (!row) {
        row = {
          tr: h('tr', { dataset: { environment: id, version: f.Version } }),
          id: h('td', { class: 'mono', text: id }),
          version: h('td', { class: 'version' }),
          zone: h('td', { class: 'zone' }),
          instance: h('td', { class: 'instance mono' }),
          state: h('td', { class: 'state' }, h('span', { class: 'badge' })),
          inflight: h('td', { class: 'inflight num' }),
          cpu: h('td', { class: 'cpu' }, h('span', { class: 'bar' }, h('span', { class: 'bar-track' }, h('span', { class: 'bar-fill' })), h('span', { class: 'bar-label' }))),
          memory: h('td', { class: 'memory num' }),
        };
        row.tr.append(row.id, row.version, row.zone, row.instance, row.state, row.inflight, row.cpu, row.memory);
        this.envRows.set(id, row);
      }
      setText(row.version, f.Version + (e.Current === false ? ' (old)' : ''));
      setText(row.zone, e.Zone || '–');
      setText(row.instance, e.InstanceId || '–');
      const badge = row.state.firstChild;
      setText(badge, e.State || '–');
      setClass(badge, 'badge', tone(e.State));
      setText(row.inflight, `${e.InFlight ?? 0}/${e.MaxConcurrency ?? '–'}`);
      const cpu = Number(e.CpuUtilization) || 0;
      const fill = row.cpu.querySelector('.bar-fill');
      fill.style.width = `${Math.min(100, Math.max(0, cpu * 100)).toFixed(1)}%`;
      setClass(fill, 'bar-fill', cpu >= 0.9 ? 'full' : cpu >= 0.7 ? 'hot' : '');
      setText(row.cpu.querySelector('.bar-label'), this.fmt.pct(cpu));
      setText(row.memory, Number.isFinite(e.MemoryBytes) ? this.fmt.bytes(e.MemoryBytes) : '–');
      ordered.push(row.tr);
    }
    for (const [id, row] of this.envRows) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.envRows.delete(id);
      }
    }
    // Re-order only when the order changed (no needless DOM moves).
    const current = Array.from(this.envBody.children);
    if (current.length !== ordered.length || current.some((tr, i) => tr !== ordered[i])) {
      this.envBody.replaceChildren(...ordered);
    }
  }

  renderKpis(mine) {
    const sum = (f) => mine.reduce((s, x) => s + (Number(f(x)) || 0), 0);
    const rate = sum((f) => f.InvocationsPerSecond);
    const ready = mine.reduce((s, f) => s + (f.Environments || []).filter((e) => e.State === 'Ready').length, 0);
    const desired = sum((f) => f.DesiredExecutionEnvironments);
    const thr = sum((f) => (f.ThrottlesLastMinuteByReason ? f.ThrottlesLastMinuteByReason.Total : f.ThrottlesLastMinute));
    setText(this.kpi.rate, mine.some((f) => 'InvocationsPerSecond' in f) ? (Math.round(rate * 10) / 10).toString() : '–');
    setText(this.kpi.envs, `${ready}/${desired}`);
    setText(this.kpi.throttles, String(thr));
    setText(this.kpi.errors, String(sum((f) => f.Errors)));
  }

  // ----- live charts -------------------------------------------------------------------------

  setChartVersion(v) {
    this.chartVersion = v || null;
    if (this.chartVersionSel.value !== (v || '')) this.chartVersionSel.value = v || '';
    this.series = emptySeries();
    this.seriesNow = null;
    this.seriesRetryAt = 0;
    this.seriesFailures = 0;
    this.seriesGen = (this.seriesGen || 0) + 1;
    this.drawCharts();
    if (this.chartVersion && this.alive() && this.started) this.pollSeries();
  }

  async pollSeries() {
    this.started = true;
    if (!this.alive() || !this.chartVersion || this.seriesBusy) return;
    if (this.seriesRetryAt && Date.now() < this.seriesRetryAt) return;
    this.seriesBusy = true;
    const gen = this.seriesGen;
    const version = this.chartVersion;
    const buf = this.series;
    try {
      const query = { Qualifier: version };
      if (buf.T.length) query.Since = String(buf.T[buf.T.length - 1]);
      const r = await this.call('GET', `/fleetfn/v1/functions/${this.enc}/series`, { query });
      if (gen !== this.seriesGen || !this.alive()) return;
      const v = (r.Versions || []).find((x) => x.Version === version) || (r.Versions || [])[0];
      this.seriesNow = Number.isFinite(r.Now) ? r.Now : Math.floor(Date.now() / 1000);
      mergeSeries(buf, v, this.seriesNow);
      this.seriesFailures = 0;
      this.seriesRetryAt = 0;
      setText(this.chartNote, '');
      this.drawCharts();
    } catch (e) {
      if (gen === this.seriesGen) {
        // Back off (2 s, 4 s, … 30 s) so a missing ring does not fill the browser log.
        this.seriesFailures = (this.seriesFailures || 0) + 1;
        this.seriesRetryAt = Date.now() + Math.min(30000, 1000 * 2 ** this.seriesFailures);
        setText(this.chartNote, `Charts unavailable: ${errorText(e)}`);
      }
    } finally {
      this.seriesBusy = false;
    }
  }

  drawCharts() {
    const c = this.ctx.charts;
    if (!c || typeof c.lineChart !== 'function') return;
    const b = this.series;
    const now = this.seriesNow ?? Math.floor(Date.now() / 1000);
    const t = b.T;
    const draw = (id, title, unit, series, extra = {}) =>
      c.lineChart(this.chartEls[id], { id: `chart-${id}`, title, unit, series, t, now, ...extra });
    draw('invocations', 'Invocations', '/s', [{ name: 'invocations', values: b.Invocations, color: 0 }]);
    draw('errors', 'Errors', '/s', [{ name: 'errors', values: b.Errors, color: 4 }]);
    draw('throttles', 'Throttles by reason', '/s',
      THROTTLE_REASONS.map((r, i) => ({ name: r, values: b.Throttles[r], color: [3, 1, 5, 2][i] })));
    draw('duration', 'Duration', 'ms', [
      { name: 'p50', values: b.DurationP50Ms, color: 0 },
      { name: 'p99', values: b.DurationP99Ms, color: 4 }]);
    draw('cpu', 'CPU', '%', [{ name: 'CPU', values: b.CpuUtilization.map((x) => (x === null ? null : x * 100)), color: 1 }], { yMax: 100 });
    draw('environments', 'Environments', '', [
      { name: 'desired', values: b.DesiredEnvironments, color: 2 },
      { name: 'ready', values: b.ReadyEnvironments, color: 0 }]);
  }

  // ----- test invoke -------------------------------------------------------------------------

  savedKey() {
    return `fleetfn.events.${this.name}`;
  }

  readSaved() {
    try {
      const raw = localStorage.getItem(this.savedKey());
      const v = raw ? JSON.parse(raw) : {};
      return v && typeof v === 'object' && !Array.isArray(v) ? v : {};
    } catch {
      return {};
    }
  }

  writeSaved(events) {
    try {
      localStorage.setItem(this.savedKey(), JSON.stringify(events));
      return true;
    } catch (e) {
      this.ctx.toast(`Could not save events: ${e.message || e}`, 'error');
      return false;
    }
  }

  refreshSavedEvents(selected = '') {
    const events = this.readSaved();
    const names = Object.keys(events).sort();
    fillSelect(this.invokeSaved, [['', names.length ? '— choose —' : 'none saved'], ...names.map((n) => [n, n])], selected);
    this.invokeDelete.disabled = !selected;
  }

  loadSavedEvent() {
    const name = this.invokeSaved.value;
    this.invokeDelete.disabled = !name;
    if (!name) return;
    const events = this.readSaved();
    if (name in events) {
      this.invokePayload.value = events[name];
      this.invokeSaveName.value = name;
    }
  }

  saveEvent() {
    const name = this.invokeSaveName.value.trim();
    if (!name) {
      setText(this.invokeStatus, 'Give the event a name to save it.');
      this.invokeSaveName.focus();
      return;
    }
    const payload = this.invokePayload.value;
    try {
      JSON.parse(payload);
    } catch (e) {
      setText(this.invokeStatus, `The payload is not valid JSON: ${e.message}`);
      return;
    }
    const events = this.readSaved();
    events[name] = payload;
    if (this.writeSaved(events)) {
      this.refreshSavedEvents(name);
      this.ctx.toast(`Saved event “${name}”`);
    }
  }

  deleteSavedEvent() {
    const name = this.invokeSaved.value;
    if (!name) return;
    const events = this.readSaved();
    delete events[name];
    if (this.writeSaved(events)) {
      this.refreshSavedEvents('');
      this.ctx.toast(`Deleted event “${name}”`);
    }
  }

  async invoke() {
    const payload = this.invokePayload.value.trim() || '{}';
    try {
      JSON.parse(payload);
    } catch (e) {
      setText(this.invokeStatus, `The payload is not valid JSON: ${e.message}`);
      setClass(this.invokeStatus, 'status-line', 'bad');
      this.invokePayload.focus();
      return;
    }
    const q = this.invokeQualifier.value;
    this.invokeSubmit.disabled = true;
    setText(this.invokeStatus, 'Invoking…');
    setClass(this.invokeStatus, 'status-line', '');
    setText(this.invokeResult, '');
    setText(this.invokeLog, '');
    this.invokeOutput.hidden = true;
    const started = performance.now();
    try {
      const query = q ? { Qualifier: q } : undefined;
      // Functions on a capacity provider refuse `X-Amz-Log-Type: Tail` (as in AWS): their log
      // lines are read from the logs API by the invoke's request id instead.
      const tail = !this.onCapacityProvider();
      const headers = { 'Content-Type': 'application/json' };
      if (tail) headers['X-Amz-Log-Type'] = 'Tail';
      const resp = await this.call('POST', `/2015-03-31/functions/${this.enc}/invocations`, {
        query, raw: true, body: payload, headers,
      });
      const ms = Math.round(performance.now() - started);
      const text = await resp.text();
      this.invokeOutput.hidden = false;
      this.invokeHint.hidden = true;
      if (!resp.ok) {
        let msg = text;
        let type = '';
        try {
          const d = JSON.parse(text);
          type = d.__type || d.Type || d.code || '';
          msg = d.message || d.Message || text;
        } catch { /* not JSON */ }
        setText(this.invokeStatus, `${resp.status} ${type}${type ? ': ' : ''}${msg}`);
        setClass(this.invokeStatus, 'status-line', 'bad');
        setText(this.invokeResult, text);
        return;
      }
      const fnError = resp.headers.get('X-Amz-Function-Error');
      const executed = resp.headers.get('X-Amz-Executed-Version');
      const parts = [`${resp.status}`];
      if (fnError) parts.push(`function error: ${fnError}`);
      if (executed) parts.push(`version ${executed}`);
      parts.push(`${ms} ms`);
      setText(this.invokeStatus, parts.join(' · '));
      setClass(this.invokeStatus, 'status-line', fnError ? 'bad' : 'good');
      let shown = text;
      try {
        shown = JSON.stringify(JSON.parse(text), null, 2);
      } catch { /* not JSON: as it came */ }
      setText(this.invokeResult, shown);
      const logResult = resp.headers.get('X-Amz-Log-Result');
      const requestId = resp.headers.get('X-Amzn-RequestId') || '';
      if (logResult) {
        try {
          setText(this.invokeLog, decodeBase64Text(logResult));
        } catch {
          setText(this.invokeLog, logResult);
        }
      } else if (requestId) {
        setText(this.invokeLog, `Reading the log of request ${requestId}…`);
        await this.showRequestLog(requestId, executed || q);
      } else {
        setText(this.invokeLog, '(no log)');
      }
    } catch (e) {
      setText(this.invokeStatus, e && e.status ? `${e.status} ${errorText(e)}` : errorText(e));
      setClass(this.invokeStatus, 'status-line', 'bad');
    } finally {
      this.invokeSubmit.disabled = false;
    }
  }

  onCapacityProvider() {
    const c = this.config || {};
    return Boolean(c.CapacityProviderConfig && c.CapacityProviderConfig.LambdaManagedInstancesCapacityProviderConfig);
  }

  /** Shows an invoke's log lines (up to its REPORT line, which ends them; waits up to ~5 s). */
  async showRequestLog(requestId, qualifier) {
    const query = { RequestId: requestId, Limit: '200' };
    if (qualifier) query.Qualifier = qualifier;
    let lines = [];
    for (let attempt = 0; attempt < 20 && this.alive(); attempt++) {
      try {
        const resp = await this.call('GET', `/fleetfn/v1/functions/${this.enc}/logs`, { query, raw: true });
        const { lines: raw, rest } = splitLines('', await resp.text());
        lines = (rest ? [...raw, rest] : raw).map(parseRecord);
      } catch (e) {
        setText(this.invokeLog, `Could not read the request's log: ${errorText(e)}`);
        return;
      }
      if (lines.some((r) => r.type === 'platform.report')) break;
      await this.sleep(250);
    }
    setText(this.invokeLog, lines.length
      ? lines.map((r) => `${clockOf(r.timestamp)}  ${messageOf(r)}`).join('\n')
      : `No log lines for request ${requestId} yet.`);
  }

  // ----- logs --------------------------------------------------------------------------------

  stopLogs() {
    const l = this.logs;
    l.gen += 1;
    if (l.controller) {
      try { l.controller.abort(); } catch { /* already */ }
    }
    if (l.reader) l.reader.cancel().catch(() => {});
    l.controller = null;
    l.reader = null;
  }

  restartLogs() {
    this.stopLogs();
    this.logs.cursor = null;
    this.logsFilter = this.logsRequestId.value.trim();
    this.logsBox.replaceChildren();
    this.logs.atBottom = true;
    if (!this.alive()) return;
    if (this.logsFollow.checked) {
      this.followLogs(this.logs.gen);
    } else {
      this.readLogsOnce(this.logs.gen);
    }
  }

  logsQuery() {
    const query = {};
    if (this.logsFilter) query.RequestId = this.logsFilter;
    else if (!this.logs.cursor) query.Since = String(Date.now() - 3600 * 1000);
    if (this.logs.cursor) query.Cursor = this.logs.cursor;
    return query;
  }

  async readLogsOnce(gen) {
    setText(this.logsState, 'Loading…');
    try {
      for (let page = 0; page < 20; page++) {
        const query = { ...this.logsQuery(), Limit: '1000' };
        const resp = await this.call('GET', `/fleetfn/v1/functions/${this.enc}/logs`, { query, raw: true });
        if (gen !== this.logs.gen) return;
        if (!resp.ok) throw await errorOf(resp);
        const { lines, rest } = splitLines('', await resp.text());
        if (gen !== this.logs.gen) return;
        this.appendLogLines(rest ? [...lines, rest] : lines);
        this.logs.cursor = resp.headers.get('X-Fleetfn-Cursor') || this.logs.cursor;
        if (resp.headers.get('X-Fleetfn-More') !== 'true') break;
      }
      setText(this.logsState, this.logsBox.childElementCount ? '' : 'No log records.');
    } catch (e) {
      if (gen === this.logs.gen && !isAbort(e)) setText(this.logsState, `Logs unavailable: ${errorText(e)}`);
    }
  }

  async followLogs(gen) {
    const l = this.logs;
    let failures = 0;
    while (gen === l.gen && this.alive()) {
      const controller = new AbortController();
      l.controller = controller;
      let ended = false;
      try {
        setText(this.logsState, this.logsFilter ? `Following request ${this.logsFilter}` : 'Following');
        const query = { ...this.logsQuery(), Follow: 'true', Wait: '60' };
        const resp = await this.call('GET', `/fleetfn/v1/functions/${this.enc}/logs`, { query, raw: true, signal: controller.signal });
        if (gen !== l.gen) {
          if (resp.body) resp.body.cancel().catch(() => {});
          return;
        }
        if (!resp.ok) throw await errorOf(resp);
        const reader = resp.body.getReader();
        l.reader = reader;
        const decoder = new TextDecoder();
        let pending = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (gen !== l.gen) return;
          if (done) break;
          const split = splitLines(pending, decoder.decode(value, { stream: true }));
          pending = split.rest;
          const records = [];
          for (const line of split.lines) {
            const rec = parseRecord(line);
            if (rec.type === 'fleetfn.followEnd') {
              l.cursor = rec.cursor;
              ended = true;
            } else {
              records.push(rec);
            }
          }
          if (records.length) this.appendLogRecords(records);
        }
        l.reader = null;
        failures = 0;
        if (!ended) await this.sleep(1000);
        if (gen === l.gen && !this.logsBox.childElementCount) setText(this.logsState, 'Following · no log records yet');
      } catch (e) {
        l.reader = null;
        if (gen !== l.gen || isAbort(e)) return;
        failures += 1;
        setText(this.logsState, `Logs unavailable: ${errorText(e)} (retrying)`);
        await this.sleep(Math.min(30000, 2000 * failures));
      }
    }
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  appendLogLines(lines) {
    this.appendLogRecords(lines.map(parseRecord));
  }

  appendLogRecords(records) {
    const box = this.logsBox;
    const stick = this.logs.atBottom;
    const frag = document.createDocumentFragment();
    for (const r of records.slice(-LOG_LINES)) frag.append(this.logLine(r));
    box.append(frag);
    let extra = box.childElementCount - LOG_LINES;
    while (extra-- > 0) box.firstElementChild.remove();
    if (stick) box.scrollTop = box.scrollHeight;
    if (this.logsState.textContent.includes('no log records')) setText(this.logsState, 'Following');
  }

  logLine(r) {
    const rec = r && typeof r === 'object' ? r : { message: String(r) };
    const level = String(rec.level || 'INFO').toLowerCase();
    const reqId = typeof rec.requestId === 'string' ? rec.requestId : '';
    const message = messageOf(rec);
    const idEl = reqId
      // Out of the tab order (500 of them); keyboard users filter with #logs-request-id.
      ? h('button', { type: 'button', class: 'log-request', tabindex: -1, title: 'Show only this request', text: reqId })
      : h('span', { class: 'log-request' });
    if (reqId) {
      idEl.addEventListener('click', () => {
        this.logsRequestId.value = reqId;
        this.restartLogs();
      });
    }
    const cls = ['log-line', `level-${level}`];
    if (level === 'error' || level === 'fatal') cls.push('error');
    if (rec.stream === 'platform') cls.push('platform');
    return h('div', { class: cls.join(' '), dataset: { requestId: reqId } },
      h('time', { class: 'log-time', datetime: rec.timestamp || '', title: rec.timestamp || '', text: clockOf(rec.timestamp) }),
      idEl,
      h('span', { class: 'log-msg', text: message }));
  }

  // ----- code upload -------------------------------------------------------------------------

  async uploadCode() {
    setText(this.codeError, '');
    const file = this.codeZip.files && this.codeZip.files[0];
    if (!file) {
      setText(this.codeError, 'Choose a .zip deployment package first.');
      return;
    }
    this.codeSubmit.disabled = true;
    try {
      const zip = base64Of(await file.arrayBuffer());
      const c = await this.call('PUT', `/2015-03-31/functions/${this.enc}/code`, { body: { ZipFile: zip } });
      this.ctx.toast(`Code updated (${this.fmt.bytes(c.CodeSize || file.size)})`);
      this.codeZip.value = '';
      await this.loadFunction();
      if (this.codePublish.checked) await this.publishWhenUpdated();
      await this.loadVersions();
      this.fillQualifiers();
    } catch (e) {
      setText(this.codeError, e.message || String(e));
    } finally {
      this.codeSubmit.disabled = false;
    }
  }

  /** Publishes once the code update has finished (LastUpdateStatus no longer InProgress). */
  async publishWhenUpdated() {
    for (let i = 0; i < 60 && this.alive(); i++) {
      const c = await this.call('GET', `/2015-03-31/functions/${this.enc}/configuration`);
      if (c.LastUpdateStatus !== 'InProgress') break;
      await this.sleep(500);
    }
    const v = await this.call('POST', `/2015-03-31/functions/${this.enc}/versions`, { body: {} });
    this.ctx.toast(`Published version ${v.Version}`);
  }
}

// ---------------------------------------------------------------------------------------------

/** Badge tone of a state: ok, warn or bad. */
export function tone(state) {
  const s = String(state || '').toLowerCase();
  if (['active', 'ready', 'running', 'successful'].includes(s)) return 'ok';
  if (['failed', 'exited', 'inactive', 'terminated'].includes(s)) return 'bad';
  if (['pending', 'starting', 'draining', 'inprogress', 'deleting'].includes(s)) return 'warn';
  return '';
}

function label(v) {
  return /^\d+$/.test(v) ? `Version ${v}` : v;
}

function order(v) {
  if (/^\d+$/.test(v)) return Number(v);
  return v === '$LATEST' ? -2 : -1;
}

function fillSelect(select, options, selected) {
  const same = select.options.length === options.length
    && options.every(([v, label], i) => select.options[i].value === v && select.options[i].textContent === label);
  if (!same) {
    select.replaceChildren(...options.map(([v, label]) => h('option', { value: v, text: label })));
  }
  if (selected !== undefined && options.some(([v]) => v === selected)) select.value = selected;
}

async function errorOf(resp) {
  const text = await resp.text().catch(() => '');
  let type = '';
  let message = text || `HTTP ${resp.status}`;
  try {
    const d = JSON.parse(text);
    type = d.__type || d.Type || d.code || '';
    message = d.message || d.Message || message;
  } catch { /* not JSON */ }
  const e = new Error(message);
  e.status = resp.status;
  e.type = type;
  return e;
}
