// Unit tests of the chart helpers (not served; only the console's fixed asset list is embedded).
// Run: node --test crates/fleetfn-api/console/js/charts.test.mjs
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  niceTicks, segments, pathOf, areaOf, windowSum, lastValue, formatValue, timeTicks, indexAt,
  WINDOW_SECONDS,
} from './charts.js';

test('nice ticks cover the maximum with 3 or 4 round steps', () => {
  for (const max of [0, 0.3, 1, 3, 7, 9.5, 10, 13, 42, 99, 101, 250, 1234, 98765, 0.012]) {
    const { ticks, top } = niceTicks(max);
    assert.equal(ticks[0], 0, `max ${max}`);
    assert.equal(ticks[ticks.length - 1], top);
    assert.ok(top >= max, `top ${top} >= ${max}`);
    assert.ok(ticks.length >= 2 && ticks.length <= 5, `${max}: ${ticks}`);
    const step = ticks[1];
    const mant = step / 10 ** Math.floor(Math.log10(step));
    assert.ok([1, 2, 2.5, 5].some((m) => Math.abs(m - mant) < 1e-9), `step ${step}`);
    // Not wasteful: the top is less than twice the maximum (for a positive maximum).
    if (max > 0) assert.ok(top < 2 * max + 1e-9, `${max}: top ${top}`);
  }
  assert.deepEqual(niceTicks(100).ticks, [0, 25, 50, 75, 100]);
  assert.deepEqual(niceTicks(0).ticks, [0, 0.25, 0.5, 0.75, 1]);
  assert.deepEqual(niceTicks(NaN).top, 1);
});

test('segments split at null values and holes in t, and keep the window', () => {
  const t = [100, 101, 102, 103, 105, 106, 107];
  const v = [1, 2, null, 4, 5, 6, 7];
  assert.deepEqual(segments(t, v, 0, 1000), [
    [[100, 1], [101, 2]],
    [[103, 4]],
    [[105, 5], [106, 6], [107, 7]],
  ]);
  assert.deepEqual(segments(t, v, 101, 106), [[[101, 2]], [[103, 4]], [[105, 5], [106, 6]]]);
  assert.deepEqual(segments([], [], 0, 1), []);
  // Mismatched lengths never read past either array.
  assert.deepEqual(segments([1, 2, 3], [5], 0, 10), [[[1, 5]]]);
});

test('paths map the window to the plot box; lone points are dashes; areas close to the base', () => {
  const box = { x0: 0, x1: 900, y0: 100, y1: 0, from: 0, to: 900, top: 10 };
  assert.equal(pathOf([[[0, 0], [450, 5], [900, 10]]], box), 'M0 100L450 50L900 0');
  assert.equal(pathOf([[[10, 2]]], box), 'M10 80h1');
  assert.equal(pathOf([[[0, 1], [1, 1]], [[5, 1], [6, 1]]], box), 'M0 90L1 90M5 90L6 90');
  assert.equal(areaOf([[[0, 1], [1, 1]], [[5, 1]]], box), 'M0 100L0 90L1 90L1 100Z');
  // Values past the top are clipped just above it; negatives to the baseline.
  assert.equal(pathOf([[[0, 1000], [1, -5]]], box), 'M0 -2L1 100');
  assert.equal(pathOf([], box), '');
});

test('window sums count every non-null value of every series inside the window', () => {
  const t = [1, 2, 3, 4];
  const series = [{ name: 'a', values: [1, null, 2, 3] }, { name: 'b', values: [0.1, 0.2, NaN, undefined] }];
  assert.equal(windowSum(t, series, 0, 10), 6.3);
  assert.equal(windowSum(t, series, 2, 3), 2.2);
  assert.equal(windowSum([], [], 0, 1), 0);
});

test('last values, formatting, time ticks and lookup', () => {
  assert.equal(lastValue([1, 2, null]), 2);
  assert.equal(lastValue([null, undefined]), null);
  assert.equal(formatValue(null, 'ms'), '–');
  assert.equal(formatValue(3, '/s'), '3 /s');
  assert.equal(formatValue(12.345, 'ms'), '12.3 ms');
  assert.equal(formatValue(0.1234), '0.123');
  assert.equal(formatValue(45.6, '%'), '45.6%');
  assert.equal(formatValue(15300), '15.3k');
  assert.equal(formatValue(2500000), '2.5M');
  const ticks = timeTicks();
  assert.equal(ticks[0].offset, WINDOW_SECONDS);
  assert.equal(ticks[ticks.length - 1].label, 'now');
  assert.equal(indexAt([1, 2, 3, 5], 4), 2);
  assert.equal(indexAt([1, 2, 3, 5], 0), -1);
  assert.equal(indexAt([1, 2, 3, 5], 9), 3);
});
