// Unit tests of the function page's pure helpers (not served; only the fixed asset list is embedded).
// Run: node --test crates/fleetfn-api/console/js/pages/function.test.mjs
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  mergeSeries, emptySeries, splitLines, publishedVersions, routingText, base64Of, decodeBase64Text, tone,
} from './function.js';

function answer(T, extra = {}) {
  const n = T.length;
  const z = () => Array(n).fill(0);
  return {
    Version: '1', T, Invocations: T.map((t) => t % 7), Errors: z(),
    Throttles: { Concurrency: z(), CPU: z(), Memory: z(), Disk: z() },
    DurationP50Ms: Array(n).fill(null), DurationP99Ms: Array(n).fill(null),
    CpuUtilization: z(), InFlight: z(), DesiredEnvironments: z(), ReadyEnvironments: z(), ...extra,
  };
}

test('series points are appended once and the window keeps the last 15 minutes', () => {
  const buf = emptySeries();
  mergeSeries(buf, answer([1000, 1001, 1002]), 1002);
  assert.deepEqual(buf.T, [1000, 1001, 1002]);
  // An overlapping answer adds only the new points.
  mergeSeries(buf, answer([1001, 1002, 1003]), 1003);
  assert.deepEqual(buf.T, [1000, 1001, 1002, 1003]);
  assert.deepEqual(buf.Invocations, [1000 % 7, 1001 % 7, 1002 % 7, 1003 % 7]);
  assert.equal(buf.Throttles.CPU.length, 4);
  // 15 minutes later the old points are gone; every array stays aligned with T.
  const T = Array.from({ length: 900 }, (_, i) => 1004 + i);
  mergeSeries(buf, answer(T), 1903);
  assert.equal(buf.T.length, 900);
  assert.equal(buf.T[0], 1004);
  for (const k of ['Invocations', 'Errors', 'DurationP50Ms', 'CpuUtilization', 'ReadyEnvironments']) {
    assert.equal(buf[k].length, 900, k);
  }
  for (const r of ['Concurrency', 'CPU', 'Memory', 'Disk']) assert.equal(buf.Throttles[r].length, 900);
  // Missing arrays in an answer become nulls, not holes.
  mergeSeries(buf, { T: [1904], Invocations: [5] }, 1904);
  assert.equal(buf.Errors[buf.Errors.length - 1], null);
  assert.equal(buf.Throttles.Disk[buf.Throttles.Disk.length - 1], null);
  assert.equal(buf.T.length, 900);
  mergeSeries(buf, undefined, 1904);
  assert.equal(buf.T.length, 900);
});

test('NDJSON chunks split into whole lines, the rest kept for the next chunk', () => {
  let r = splitLines('', '{"a":1}\n{"b"');
  assert.deepEqual(r, { lines: ['{"a":1}'], rest: '{"b"' });
  r = splitLines(r.rest, ':2}\n\n{"c":3}\n');
  assert.deepEqual(r, { lines: ['{"b":2}', '{"c":3}'], rest: '' });
});

test('versions, routing weights, base64 and tones', () => {
  assert.deepEqual(publishedVersions([{ Version: '$LATEST' }, { Version: '2' }, { Version: '10' }, { Version: '1' }]),
    ['10', '2', '1']);
  assert.deepEqual(publishedVersions([{ Version: '$LATEST' }, { Version: '$LATEST.PUBLISHED' }, { Version: '3' }]),
    ['3', '$LATEST.PUBLISHED']);
  assert.equal(routingText({ FunctionVersion: '1' }), '1: 100%');
  assert.equal(routingText({ FunctionVersion: '1', RoutingConfig: { AdditionalVersionWeights: { 2: 0.1 } } }),
    '1: 90% · 2: 10%');
  const bytes = new Uint8Array(70000).map((_, i) => i % 251);
  assert.deepEqual(new Uint8Array(Buffer.from(base64Of(bytes.buffer), 'base64')), bytes);
  assert.equal(decodeBase64Text(Buffer.from('START é\nEND').toString('base64')), 'START é\nEND');
  assert.equal(tone('Active'), 'ok');
  assert.equal(tone('Pending'), 'warn');
  assert.equal(tone('Failed'), 'bad');
  assert.equal(tone(undefined), '');
});
