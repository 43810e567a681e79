// Node.js response-streaming fixture for fleetfn (runtime nodejs22.x, ESM). The function's
// handler setting picks the export. Parameters come from the event itself (InvokeWithResponseStream)
// or from a function URL event's query string: `n` chunks (default 3), `delay_ms` between them
// (default 1000), `bytes` for `pipe`.
//
// | handler | response |
// | --- | --- |
// | index.chunks | streamified, `text/plain`: `chunk {i}\n` n times, delay_ms apart |
// | index.http | streamified through HttpResponseStream.from: status 201, headers x-fixture: node-stream and content-type text/plain, cookies a=1 and b=2; Path=/, then the chunks |
// | index.fails | streamified: `before\n`, delay_ms, then throws StreamBoom |
// | index.failsEarly | streamified: throws EarlyBoom before writing anything |
// | index.pipe | streamified: `bytes` bytes (default 1 MiB) of `x` through stream.pipeline from a Readable |
// | index.notFound | streamified: HttpResponseStream.from with status 404 and x-fixture: not-found, then end('Not Found') (no write) |
// | index.empty | streamified: HttpResponseStream.from with status 204 and x-fixture: empty, then end() (no body at all) |
// | index.buffered | not streamified: returns {"buffered":true} |
// | index.handler | streamified: one of the above by `mode` (event or query string), else by a URL's path (`/http`, `/fails`, …), else `chunks` |
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function param(event, name, fallback) {
  const raw = event?.[name] ?? event?.queryStringParameters?.[name];
  const n = Number(raw);
  return raw === undefined || !Number.isFinite(n) ? fallback : n;
}

async function writeChunks(stream, event) {
  const n = param(event, 'n', 3);
  const delay = param(event, 'delay_ms', 1000);
  for (let i = 0; i < n; i++) {
    if (i > 0) await sleep(delay);
    stream.write(`chunk ${i}\n`);
  }
}

class StreamBoom extends Error {
  constructor(message) {
    super(message);
    this.name = 'StreamBoom';
  }
}

class EarlyBoom extends Error {
  constructor(message) {
    super(message);
    this.name = 'EarlyBoom';
  }
}

export const chunks = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.setContentType('text/plain');
  await writeChunks(responseStream, event);
  responseStream.end();
});

export const http = awslambda.streamifyResponse(async (event, responseStream) => {
  const stream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 201,
    headers: { 'content-type': 'text/plain', 'x-fixture': 'node-stream' },
    cookies: ['a=1', 'b=2; Path=/'],
  });
  await writeChunks(stream, event);
  stream.end();
});

export const fails = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('before\n');
  await sleep(param(event, 'delay_ms', 1000));
  throw new StreamBoom('failed after the first chunk');
});

export const failsEarly = awslambda.streamifyResponse(async () => {
  throw new EarlyBoom('failed before writing');
});

export const pipe = awslambda.streamifyResponse(async (event, responseStream) => {
  const total = param(event, 'bytes', 1 << 20);
  async function* source() {
    const block = Buffer.alloc(64 * 1024, 'x');
    for (let sent = 0; sent < total; sent += block.length) {
      yield block.subarray(0, Math.min(block.length, total - sent));
    }
  }
  await pipeline(Readable.from(source()), responseStream);
});

export const notFound = awslambda.streamifyResponse(async (event, responseStream) => {
  const stream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 404,
    headers: { 'content-type': 'text/plain', 'x-fixture': 'not-found' },
  });
  stream.end('Not Found');
});

export const empty = awslambda.streamifyResponse(async (event, responseStream) => {
  awslambda.HttpResponseStream.from(responseStream, { statusCode: 204, headers: { 'x-fixture': 'empty' } }).end();
});

export const buffered = async () => ({ buffered: true });

const MODES = { chunks, http, fails, failsEarly, pipe, notFound, empty };

export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  const fromPath = typeof event?.rawPath === 'string' ? event.rawPath.replace(/^\/+/, '') : undefined;
  const mode = event?.mode ?? event?.queryStringParameters?.mode ?? fromPath;
  const chosen = Object.hasOwn(MODES, mode) ? MODES[mode] : chunks;
  return chosen(event, responseStream, context);
});
