// Line charts for the console: an accessible SVG per chart, redrawn in place.
//
// `lineChart(container, {id, title, unit, series: [{name, values, color?}], t, yMax?, now?})`
// draws the last 15 minutes (x from now-900 s to now, 1-second points; `t` holes and `null`
// values are gaps) into `container`. The first call builds the chart's DOM; later calls only
// change path `d` attributes, tick texts and legend values (cheap every second, no layout reads
// except when the container's width changes, which a ResizeObserver reports).
//
// The container gets `data-sum` (sum of every non-null value of every series in the window),
// `data-last` (latest non-null value of the first series, "" when none), `data-points` (length
// of `t`), `role="img"` and an `aria-label` summary; colours come from CSS classes `.s0`…`.s5`.
//
// The pure helpers (niceTicks, segments, pathOf, areaOf, windowSum, lastValue, formatValue,
// timeTicks) are exported for the unit tests in charts.test.mjs.

const SVG = 'http://www.w3.org/2000/svg';
export const WINDOW_SECONDS = 900;
const HEIGHT = 180;
const PAD = { left: 46, right: 12, top: 10, bottom: 22 };
const Y_TICK_SLOTS = 5;
// A point this many seconds after the previous one is joined to it; a longer step is a gap.
const MAX_STEP = 1.5;

/** Rounds `x` up to 1, 2, 2.5 or 5 times a power of ten. */
function niceCeil(x) {
  if (!(x > 0) || !Number.isFinite(x)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * p >= x * (1 - 1e-9)) return m * p;
  }
  return 10 * p;
}

/**
 * Axis ticks from 0 to at least `max`: 3 or 4 intervals of a nice step (1, 2, 2.5, 5 × 10^k).
 * Returns `{ticks, top}` where `ticks[0] === 0` and `top === ticks[ticks.length - 1] >= max`.
 */
export function niceTicks(max) {
  if (!(max > 0) || !Number.isFinite(max)) max = 1;
  let best = null;
  for (const n of [4, 3]) {
    const step = niceCeil(max / n);
    const intervals = Math.max(1, Math.ceil(max / step - 1e-9));
    const top = step * intervals;
    // Prefer the tighter top; on a tie, more ticks.
    if (!best || top < best.top - 1e-12) best = { step, intervals, top };
  }
  const ticks = [];
  for (let i = 0; i <= best.intervals; i++) ticks.push(round(best.step * i));
  return { ticks, top: round(best.top) };
}

function round(x) {
  return Math.round(x * 1e9) / 1e9;
}

/**
 * Splits the points of one series into runs without holes: a null/non-finite value or a step in
 * `t` longer than MAX_STEP seconds starts a new run. Points outside [from, to] are left out.
 * Returns arrays of `[t, value]`.
 */
export function segments(t, values, from, to) {
  const runs = [];
  let run = null;
  let prevT = null;
  const n = Math.min(t.length, values.length);
  for (let i = 0; i < n; i++) {
    const ti = t[i];
    const v = values[i];
    if (ti < from || ti > to) {
      prevT = null;
      run = null;
      continue;
    }
    if (v === null || v === undefined || !Number.isFinite(v)) {
      run = null;
      prevT = ti;
      continue;
    }
    if (run && prevT !== null && ti - prevT <= MAX_STEP) {
      run.push([ti, v]);
    } else {
      run = [[ti, v]];
      runs.push(run);
    }
    prevT = ti;
  }
  return runs;
}

function fix(x) {
  return Math.round(x * 10) / 10;
}

/** Maps data to the plot box: `{x0, x1, y0 (bottom), y1 (top), from, to, top}`. */
function scale(box) {
  const sx = (box.x1 - box.x0) / (box.to - box.from || 1);
  const sy = (box.y0 - box.y1) / (box.top || 1);
  return {
    x: (t) => fix(box.x0 + (t - box.from) * sx),
    y: (v) => fix(box.y0 - Math.min(Math.max(v, 0), box.top * 1.02) * sy),
  };
}

/** SVG path `d` of a series' runs (a lone point is drawn as a short dash). */
export function pathOf(runs, box) {
  const s = scale(box);
  let d = '';
  for (const run of runs) {
    run.forEach(([t, v], i) => {
      d += `${i ? 'L' : 'M'}${s.x(t)} ${s.y(v)}`;
    });
    if (run.length === 1) d += 'h1';
  }
  return d;
}

/** SVG path `d` of the area under a series' runs, closed to the baseline. */
export function areaOf(runs, box) {
  const s = scale(box);
  let d = '';
  for (const run of runs) {
    if (run.length < 2) continue;
    const first = s.x(run[0][0]);
    const last = s.x(run[run.length - 1][0]);
    d += `M${first} ${box.y0}`;
    for (const [t, v] of run) d += `L${s.x(t)} ${s.y(v)}`;
    d += `L${last} ${box.y0}Z`;
  }
  return d;
}

/** Sum of every non-null value of every series whose `t` lies in [from, to]. */
export function windowSum(t, series, from, to) {
  let sum = 0;
  for (const s of series) {
    const n = Math.min(t.length, s.values.length);
    for (let i = 0; i < n; i++) {
      const v = s.values[i];
      if (t[i] >= from && t[i] <= to && v !== null && v !== undefined && Number.isFinite(v)) {
        sum += v;
      }
    }
  }
  return Math.round(sum * 1e6) / 1e6;
}

/** Latest non-null value of `values`, or null. */
export function lastValue(values) {
  for (let i = values.length - 1; i >= 0; i--) {
    const v = values[i];
    if (v !== null && v !== undefined && Number.isFinite(v)) return v;
  }
  return null;
}

/** Largest non-null value of the series in the window (0 when none). */
function windowMax(t, series, from, to) {
  let max = 0;
  for (const s of series) {
    const n = Math.min(t.length, s.values.length);
    for (let i = 0; i < n; i++) {
      const v = s.values[i];
      if (t[i] >= from && t[i] <= to && Number.isFinite(v) && v > max) max = v;
    }
  }
  return max;
}

/** A value for an axis or legend: compact (1.2k, 3.5M), at most 3 significant digits. */
export function formatValue(v, unit = '') {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  let text;
  if (a >= 1e6) text = trim(v / 1e6) + 'M';
  else if (a >= 1e4) text = trim(v / 1e3) + 'k';
  else if (a >= 100 || Number.isInteger(v)) text = String(Math.round(v));
  else if (a >= 10) text = String(Math.round(v * 10) / 10);
  else if (a >= 1) text = String(Math.round(v * 100) / 100);
  else text = String(Math.round(v * 1000) / 1000);
  if (!unit) return text;
  return unit === '%' ? `${text}%` : `${text} ${unit}`;
}

function trim(x) {
  return String(Math.round(x * 10) / 10);
}

/** Time ticks of the 15-minute window: offsets in seconds before `to` with their labels. */
export function timeTicks() {
  return [
    { offset: 900, label: '-15m' },
    { offset: 600, label: '-10m' },
    { offset: 300, label: '-5m' },
    { offset: 0, label: 'now' },
  ];
}

function el(name, attrs = {}, parent = null) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

function seriesClass(s, i) {
  if (typeof s.color === 'number') return `s${s.color % 6}`;
  if (typeof s.color === 'string' && /^s[0-5]$/.test(s.color)) return s.color;
  return `s${i % 6}`;
}

// Per-container state: the built DOM and the last options (to redraw on resize / hover).
const charts = new WeakMap();

function build(container, opts) {
  container.replaceChildren();
  container.classList.add('chart');
  const head = document.createElement('div');
  head.className = 'chart-head';
  const title = document.createElement('h3');
  title.className = 'chart-title';
  const legend = document.createElement('ul');
  legend.className = 'chart-legend';
  head.append(title, legend);
  const svg = el('svg', { class: 'chart-svg', 'aria-hidden': 'true', focusable: 'false' });
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.style.width = '100%';
  svg.style.height = `${HEIGHT}px`;
  svg.style.display = 'block';
  const grid = el('g', { class: 'chart-grid' }, svg);
  const yLabels = el('g', { class: 'chart-axis chart-y' }, svg);
  const xLabels = el('g', { class: 'chart-axis chart-x' }, svg);
  const areas = el('g', { class: 'chart-areas' }, svg);
  const lines = el('g', { class: 'chart-lines' }, svg);
  const cursor = el('line', { class: 'chart-cursor', x1: 0, x2: 0, y1: 0, y2: 0 }, svg);
  cursor.style.display = 'none';
  const gridLines = [];
  const yTexts = [];
  for (let i = 0; i < Y_TICK_SLOTS; i++) {
    gridLines.push(el('line', {}, grid));
    const tx = el('text', { 'text-anchor': 'end', 'dominant-baseline': 'middle' }, yLabels);
    yTexts.push(tx);
  }
  const xTexts = timeTicks().map((tick, i, all) => {
    const anchor = i === 0 ? 'start' : i === all.length - 1 ? 'end' : 'middle';
    const tx = el('text', { 'text-anchor': anchor }, xLabels);
    tx.textContent = tick.label;
    return tx;
  });
  const xGrid = timeTicks().map(() => el('line', { class: 'chart-vgrid' }, grid));
  const readout = document.createElement('p');
  readout.className = 'chart-readout';
  readout.setAttribute('aria-hidden', 'true');
  container.append(head, svg, readout);

  const state = {
    svg, title, legend, gridLines, yTexts, xTexts, xGrid, areas, lines, cursor, readout,
    paths: [], areaPaths: [], legendItems: [], width: 0, opts, key: '',
  };
  state.width = Math.max(240, Math.round(container.clientWidth || 600));
  if (typeof ResizeObserver === 'function') {
    state.observer = new ResizeObserver((entries) => {
      const w = Math.max(240, Math.round(entries[0].contentRect.width));
      if (w !== state.width && container.isConnected) {
        state.width = w;
        draw(container, state, state.opts);
      }
    });
    state.observer.observe(container);
  }
  svg.addEventListener('pointermove', (ev) => hover(state, ev));
  svg.addEventListener('pointerleave', () => {
    state.cursor.style.display = 'none';
    state.readout.textContent = '';
  });
  return state;
}

function ensureSeries(state, series) {
  const key = series.map((s, i) => `${s.name}|${seriesClass(s, i)}`).join(',');
  if (key === state.key) return;
  state.key = key;
  state.lines.replaceChildren();
  state.areas.replaceChildren();
  state.legend.replaceChildren();
  state.paths = [];
  state.areaPaths = [];
  state.legendItems = [];
  series.forEach((s, i) => {
    const cls = seriesClass(s, i);
    const p = el('path', { class: `line ${cls}` }, state.lines);
    const a = el('path', { class: `area ${cls}` }, state.areas);
    if (typeof s.color === 'string' && !/^s[0-5]$/.test(s.color)) {
      p.style.stroke = s.color;
      a.style.fill = s.color;
    }
    state.paths.push(p);
    state.areaPaths.push(a);
    const li = document.createElement('li');
    const swatch = document.createElement('span');
    swatch.className = `swatch ${cls}`;
    const name = document.createElement('span');
    name.className = 'legend-name';
    name.textContent = s.name;
    const value = document.createElement('span');
    value.className = 'legend-value';
    li.append(swatch, name, value);
    state.legend.appendChild(li);
    state.legendItems.push(value);
  });
}

function draw(container, state, opts) {
  const { title = '', unit = '', series = [], t = [], yMax } = opts;
  const to = Number.isFinite(opts.now) ? opts.now
    : t.length ? t[t.length - 1] : Math.floor(Date.now() / 1000);
  const from = to - WINDOW_SECONDS;
  const W = state.width;
  const box = { x0: PAD.left, x1: W - PAD.right, y0: HEIGHT - PAD.bottom, y1: PAD.top, from, to };
  const max = Number.isFinite(yMax) && yMax > 0
    ? Math.max(yMax, windowMax(t, series, from, to)) : windowMax(t, series, from, to);
  const { ticks, top } = niceTicks(max);
  box.top = top;

  state.svg.setAttribute('viewBox', `0 0 ${W} ${HEIGHT}`);
  if (state.title.textContent !== title) state.title.textContent = title;
  ensureSeries(state, series);

  const s = scale(box);
  for (let i = 0; i < Y_TICK_SLOTS; i++) {
    const line = state.gridLines[i];
    const text = state.yTexts[i];
    if (i < ticks.length) {
      const y = s.y(ticks[i]);
      setAttrs(line, { x1: box.x0, x2: box.x1, y1: y, y2: y });
      line.style.display = '';
      setAttrs(text, { x: box.x0 - 6, y });
      text.textContent = formatValue(ticks[i], i === ticks.length - 1 ? unit : '');
      text.style.display = '';
    } else {
      line.style.display = 'none';
      text.style.display = 'none';
    }
  }
  timeTicks().forEach((tick, i) => {
    const x = s.x(to - tick.offset);
    setAttrs(state.xTexts[i], { x, y: HEIGHT - 6 });
    setAttrs(state.xGrid[i], { x1: x, x2: x, y1: box.y1, y2: box.y0 });
  });

  const summary = [];
  series.forEach((ser, i) => {
    const runs = segments(t, ser.values, from, to);
    state.paths[i].setAttribute('d', pathOf(runs, box));
    state.areaPaths[i].setAttribute('d', series.length === 1 ? areaOf(runs, box) : '');
    const last = lastValue(ser.values);
    state.legendItems[i].textContent = formatValue(last, unit);
    summary.push(`${ser.name} ${formatValue(last, unit)}`);
  });

  container.dataset.sum = String(windowSum(t, series, from, to));
  const first = series.length ? lastValue(series[0].values) : null;
  container.dataset.last = first === null ? '' : String(first);
  container.dataset.points = String(t.length);
  container.setAttribute('role', 'img');
  const peak = formatValue(windowMax(t, series, from, to), unit);
  container.setAttribute('aria-label',
    `${title}, last 15 minutes, ${t.length} points. Latest: ${summary.join(', ') || 'no data'}. Peak ${peak}.`);
  state.box = box;
}

function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
}

/** Index of the last `t` ≤ `x` (binary search), or -1. */
export function indexAt(t, x) {
  let lo = 0;
  let hi = t.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (t[mid] <= x) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

function hover(state, ev) {
  const box = state.box;
  const opts = state.opts;
  if (!box || !opts) return;
  const rect = state.svg.getBoundingClientRect();
  if (!rect.width) return;
  const vx = ((ev.clientX - rect.left) / rect.width) * state.width;
  if (vx < box.x0 || vx > box.x1) {
    state.cursor.style.display = 'none';
    state.readout.textContent = '';
    return;
  }
  const at = box.from + ((vx - box.x0) / (box.x1 - box.x0)) * (box.to - box.from);
  const i = indexAt(opts.t || [], at);
  setAttrs(state.cursor, { x1: fix(vx), x2: fix(vx), y1: box.y1, y2: box.y0 });
  state.cursor.style.display = '';
  const ago = Math.max(0, Math.round(box.to - at));
  const when = ago >= 60 ? `-${Math.floor(ago / 60)}m${String(ago % 60).padStart(2, '0')}s` : `-${ago}s`;
  const parts = (opts.series || []).map((s) => {
    const v = i >= 0 && Math.abs(opts.t[i] - at) <= MAX_STEP ? s.values[i] : null;
    return `${s.name} ${formatValue(v, opts.unit || '')}`;
  });
  state.readout.textContent = `${when}: ${parts.join(' · ')}`;
}

/**
 * Draws (or redraws) a chart into `container`. See the header comment for the options.
 */
export function lineChart(container, opts) {
  if (!container) return;
  let state = charts.get(container);
  if (!state || !container.contains(state.svg)) {
    if (state && state.observer) state.observer.disconnect();
    state = build(container, opts);
    charts.set(container, state);
  }
  if (opts.id && !container.id) container.id = opts.id;
  state.opts = opts;
  draw(container, state, opts);
}
