// fleetfn's Node.js runtime bootstrap for Lambda Managed Instances (multi-concurrency).
//
// The main thread starts W worker threads (AWS_LAMBDA_NODEJS_WORKER_COUNT, else one per vCPU,
// never more than AWS_LAMBDA_MAX_CONCURRENCY). Each worker loads the handler once and runs its
// share of AWS_LAMBDA_MAX_CONCURRENCY concurrent loops: GET /next, run the handler, POST
// /response or /error. All loops of a worker share its event loop, so async handlers overlap.
// A handler that cannot be loaded makes the main thread post /init/error and exit 1.
//
// Runtime API calls use node:http with a keep-alive agent rather than fetch: undici (fetch)
// gives up on a response after 300 s without headers, and /next is held open for as long as
// the environment is idle.
//
// Response streaming: the globals `awslambda.streamifyResponse` and `awslambda.HttpResponseStream`
// are installed as on Lambda. A streamified handler gets a writable response stream; its bytes
// are POSTed to /response as they are written (chunked, `Lambda-Runtime-Function-Response-Mode:
// streaming`), and an error after the first byte ends the body with the trailers
// `Lambda-Runtime-Function-Error-Type` and `Lambda-Runtime-Function-Error-Body` (base64 JSON).

import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire, register } from 'node:module';
import { pathToFileURL } from 'node:url';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import util from 'node:util';

const API = process.env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001';
const [API_HOST, API_PORT] = splitHostPort(API);
const BASE = '/2018-06-01/runtime';
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

function splitHostPort(hp) {
  const i = hp.lastIndexOf(':');
  return i < 0 ? [hp, 80] : [hp.slice(0, i), Number(hp.slice(i + 1))];
}

function positiveInt(value, fallback) {
  const n = Number.parseInt(value ?? '', 10);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

function request(method, urlPath, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(body);
    const req = http.request(
      {
        host: API_HOST,
        port: API_PORT,
        method,
        path: urlPath,
        agent,
        headers: data ? { ...headers, 'content-length': data.length } : headers,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Errors and logging

function errorBody(err, typeOverride) {
  if (err instanceof Error) {
    const ctor = err.constructor && err.constructor.name;
    const type = typeOverride || (err.name && err.name !== 'Error' ? err.name : ctor || 'Error');
    return {
      errorType: type,
      errorMessage: err.message ?? '',
      stackTrace: typeof err.stack === 'string' ? err.stack.split('\n') : [],
    };
  }
  return {
    errorType: typeOverride || (err === null ? 'null' : typeof err),
    errorMessage: typeof err === 'string' ? err : util.inspect(err),
    stackTrace: [],
  };
}

class RuntimeError extends Error {
  constructor(type, message) {
    super(message);
    this.name = type;
  }
}

const LEVELS = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4, FATAL: 5 };
const minLevel = LEVELS[(process.env.AWS_LAMBDA_LOG_LEVEL || 'INFO').toUpperCase()] ?? LEVELS.INFO;
const invokeStore = new AsyncLocalStorage();

function emit(level, message, extra) {
  if (LEVELS[level] < minLevel) return;
  const record = { timestamp: new Date().toISOString(), level };
  const requestId = invokeStore.getStore()?.requestId;
  if (requestId) record.requestId = requestId;
  record.message = message;
  if (extra) Object.assign(record, extra);
  const line = JSON.stringify(record) + '\n';
  // A worker's process.stdout is relayed through the main thread asynchronously, so a line
  // written just before the response could be lost if the environment stops right after.
  // Lines up to PIPE_BUF are written to fd 1 directly (atomic on a pipe, so threads never
  // interleave); longer ones take the relayed path.
  if (!isMainThread && Buffer.byteLength(line) <= 4096) {
    try {
      fs.writeSync(1, line);
      return;
    } catch {
      // fall through
    }
  }
  process.stdout.write(line);
}

function installConsole() {
  const methods = { trace: 'TRACE', debug: 'DEBUG', info: 'INFO', log: 'INFO', warn: 'WARN', error: 'ERROR' };
  for (const [method, level] of Object.entries(methods)) {
    console[method] = (...args) => emit(level, util.format(...args));
  }
}

// ---------------------------------------------------------------------------------------------
// Handler loading

function findModule(root, moduleName) {
  for (const ext of ['.js', '.mjs', '.cjs']) {
    const file = path.resolve(root, moduleName + ext);
    if (fs.existsSync(file)) return file;
  }
  return null;
}

function isEsmJs(file, root) {
  let dir = path.dirname(file);
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        return JSON.parse(fs.readFileSync(pkg, 'utf8')).type === 'module';
      } catch {
        return false;
      }
    }
    if (dir === root || dir === path.dirname(dir)) return false;
    dir = path.dirname(dir);
  }
}

async function importModule(file, root) {
  const url = pathToFileURL(file).href;
  if (file.endsWith('.mjs') || (file.endsWith('.js') && isEsmJs(file, root))) {
    return import(url);
  }
  const require = createRequire(file);
  try {
    return require(file);
  } catch (err) {
    if (err && (err.code === 'ERR_REQUIRE_ESM' || err.code === 'ERR_REQUIRE_ASYNC_MODULE')) return import(url);
    throw err;
  }
}

// ES modules do not read NODE_PATH: bare specifiers a function cannot resolve from its own
// node_modules fall back to the runtime's (the AWS SDK), as on Lambda. The function's own copy
// wins because the fallback runs only after the normal resolution failed.
const SDK_RESOLVER = `
let parents = [];
export function initialize(data) { parents = data.parents; }
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    const bare = !/^(\\.|\\/|[a-zA-Z][a-zA-Z0-9+.-]*:)/.test(specifier);
    if (!err || err.code !== 'ERR_MODULE_NOT_FOUND' || !bare) throw err;
    for (const parentURL of parents) {
      try { return await next(specifier, { ...context, parentURL }); } catch {}
    }
    throw err;
  }
}`;

// Registering the hook costs ≈ 35 ms per worker thread (Node.js runs hooks on a thread of their
// own), so it is registered only for code that names a runtime package it does not bundle.
const SCAN_LIMIT_FILES = 2000;
const SCAN_LIMIT_BYTES = 16 * 1024 * 1024;

function runtimePackages() {
  const names = new Set();
  for (const dir of (process.env.NODE_PATH || '').split(':').filter((d) => d.endsWith('node_modules'))) {
    let scopes = [];
    try {
      scopes = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const s of scopes) {
      if (!s.startsWith('@')) {
        if (!s.startsWith('.')) names.add(s);
        continue;
      }
      try {
        for (const p of fs.readdirSync(path.join(dir, s))) names.add(`${s}/${p}`);
      } catch {
        // not a directory
      }
    }
  }
  return names;
}

/** Whether the function's own sources (not its node_modules) import a runtime package it does not bundle. */
function needsSdkResolver(root) {
  if (typeof register !== 'function') return false;
  const available = runtimePackages();
  if (available.size === 0) return false;
  const wanted = new Set();
  const stack = [root];
  let files = 0;
  let bytes = 0;
  while (stack.length > 0 && files < SCAN_LIMIT_FILES && bytes < SCAN_LIMIT_BYTES) {
    const dir = stack.pop();
    let entries = [];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'node_modules' && !e.name.startsWith('.')) stack.push(p);
      } else if (/\.(m?js|cjs)$/.test(e.name)) {
        files += 1;
        let text = '';
        try {
          text = fs.readFileSync(p, 'utf8');
        } catch {
          continue;
        }
        bytes += text.length;
        for (const m of text.matchAll(/['"]((@[\w.-]+\/)?[\w.-]+)(\/[^'"]*)?['"]/g)) {
          if (available.has(m[1])) wanted.add(m[1]);
        }
      }
    }
  }
  for (const name of wanted) {
    if (!fs.existsSync(path.join(root, 'node_modules', name))) return true;
  }
  return false;
}

function registerSdkResolver() {
  const dirs = (process.env.NODE_PATH || '').split(':').filter((d) => d.endsWith('node_modules'));
  if (dirs.length === 0 || typeof register !== 'function') return;
  const parents = dirs.map((d) => pathToFileURL(path.join(d, '_')).href);
  register(`data:text/javascript,${encodeURIComponent(SDK_RESOLVER)}`, { data: { parents } });
}

async function loadHandler(root, handlerString, sdkResolver) {
  if (sdkResolver) registerSdkResolver();
  if (!handlerString) throw new RuntimeError('Runtime.MalformedHandlerName', 'No handler is configured (_HANDLER is empty).');
  const slash = handlerString.lastIndexOf('/');
  const dirPart = slash >= 0 ? handlerString.slice(0, slash + 1) : '';
  const rest = handlerString.slice(slash + 1);
  const dot = rest.indexOf('.');
  if (dot <= 0 || dot === rest.length - 1) {
    throw new RuntimeError('Runtime.MalformedHandlerName', `Bad handler ${handlerString}: expected file.export`);
  }
  const moduleName = dirPart + rest.slice(0, dot);
  const exportPath = rest.slice(dot + 1).split('.');
  const file = findModule(root, moduleName);
  if (!file) {
    throw new RuntimeError(
      'Runtime.ImportModuleError',
      `Error: Cannot find module '${moduleName}' (looked for ${moduleName}.js, .mjs and .cjs in ${root})`,
    );
  }
  let mod;
  try {
    mod = await importModule(file, root);
  } catch (err) {
    if (err instanceof SyntaxError) {
      throw new RuntimeError('Runtime.UserCodeSyntaxError', `${err.name}: ${err.message}`);
    }
    if (err && err.code === 'MODULE_NOT_FOUND') {
      throw new RuntimeError('Runtime.ImportModuleError', `Error: ${err.message}`);
    }
    throw err;
  }
  const walk = (obj) => exportPath.reduce((o, k) => (o == null ? undefined : o[k]), obj);
  let fn = walk(mod);
  if (typeof fn !== 'function' && mod && mod.default) fn = walk(mod.default);
  if (typeof fn !== 'function') {
    throw new RuntimeError('Runtime.HandlerNotFound', `${handlerString} is undefined or not exported`);
  }
  return fn;
}

// ---------------------------------------------------------------------------------------------
// Invocation loop (worker threads)

function parseJson(value) {
  if (value === undefined || value === '') return undefined;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

function makeContext(headers) {
  const deadline = Number(headers['lambda-runtime-deadline-ms']) || Date.now();
  const env = process.env;
  return {
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJson(headers['lambda-runtime-client-context']),
    identity: parseJson(headers['lambda-runtime-cognito-identity']),
    tenantId: headers['lambda-runtime-aws-tenant-id'],
    xRayTraceId: headers['lambda-runtime-trace-id'],
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

function callHandler(handler, event, context) {
  if (handler.length >= 3) {
    return new Promise((resolve, reject) => {
      const done = (err, result) => (err ? reject(err) : resolve(result));
      const r = handler(event, context, done);
      if (r && typeof r.then === 'function') r.then(resolve, reject);
    });
  }
  return handler(event, context);
}

async function postError(requestId, err, typeOverride) {
  const body = errorBody(err, typeOverride);
  emit('ERROR', 'Invoke Error', { errorType: body.errorType, errorMessage: body.errorMessage, stackTrace: body.stackTrace });
  await request('POST', `${BASE}/invocation/${encodeURIComponent(requestId)}/error`, JSON.stringify(body), {
    'content-type': 'application/json',
    'lambda-runtime-function-error-type': body.errorType,
  });
}

// ---------------------------------------------------------------------------------------------
// Response streaming (awslambda.streamifyResponse, awslambda.HttpResponseStream)

// The markers AWS's runtime puts on a streamified handler (Symbol.for, so code that checks for
// them finds the same symbols).
const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.highWaterMark');
const STREAM_RESPONSE = 'response';
const STREAM_CONTENT_TYPE = 'application/octet-stream';
const HTTP_INTEGRATION_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';
const TRAILER_ERROR_TYPE = 'Lambda-Runtime-Function-Error-Type';
const TRAILER_ERROR_BODY = 'Lambda-Runtime-Function-Error-Body';
// How long a streamified handler that returned without ending its stream is waited for past
// the invoke's deadline (the Runtime API has given up on it by then).
const UNENDED_STREAM_GRACE_MS = 1000;

class InvalidStreamingOperation extends Error {
  constructor(message) {
    super(message);
    this.name = 'Runtime.InvalidStreamingOperation';
  }
}

/** `awslambda.HttpResponseStream`: a JSON prelude (status, headers, cookies) and 8 NUL bytes before the body. */
class HttpResponseStream {
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType(HTTP_INTEGRATION_CONTENT_TYPE);
    // JSON text never contains a NUL byte, so the delimiter cannot occur inside the prelude.
    const metadata = JSON.stringify(prelude ?? {});
    underlyingStream._onBeforeFirstWrite = (write) => {
      write(metadata);
      write(new Uint8Array(8));
    };
    return underlyingStream;
  }
}

function installGlobals() {
  const off = process.env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA;
  if (off === '1' || off === 'true') return;
  globalThis.awslambda = {
    ...globalThis.awslambda,
    streamifyResponse(handler, options) {
      handler[HANDLER_STREAMING] = STREAM_RESPONSE;
      if (typeof options?.highWaterMark === 'number') {
        handler[HANDLER_HIGHWATERMARK] = Number.parseInt(String(options.highWaterMark), 10);
      }
      return handler;
    },
    HttpResponseStream,
  };
}

/**
 * The response stream a streamified handler writes to. The POST to /response is opened at the
 * first write (or at the end, for an empty body), so a handler that fails before writing anything
 * reports an ordinary /error. Each chunk is handed to the request as it is written, and a write's
 * callback (what `pipeline` and the stream's own buffer wait for) runs once the chunk reached the
 * socket: a slow reader slows the writer down.
 */
class ResponseStream extends Writable {
  constructor(requestId, highWaterMark) {
    super(highWaterMark > 0 ? { highWaterMark } : {});
    this.requestId = requestId;
    this.socketHighWaterMark = highWaterMark > 0 ? highWaterMark : undefined;
    this.contentType = STREAM_CONTENT_TYPE;
    this.started = false; // write() was called: the content type is fixed
    this.req = null; // the POST, once opened
    this.answered = null; // settles with the Runtime API's answer to the POST
    this.pendingError = null; // sent as trailers when the body ends
    this._onBeforeFirstWrite = undefined;
    // A failed stream is reported by handleStreaming (stream.errored); a handler that writes
    // without listening for errors must not bring the whole worker down.
    this.on('error', () => {});
  }

  setContentType(contentType) {
    if (this.started) throw new InvalidStreamingOperation('Cannot set content-type, too late.');
    this.contentType = String(contentType);
  }

  write(chunk, encoding, callback) {
    if (!this.started && !this.writableEnded && !this.destroyed) {
      this.started = true;
      const hook = this._onBeforeFirstWrite;
      if (typeof hook === 'function') hook((c) => super.write(c));
    }
    let data = chunk;
    if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) data = JSON.stringify(chunk);
    return super.write(data, encoding, callback);
  }

  end(chunk, encoding, callback) {
    if (typeof chunk === 'function') return this.end(undefined, undefined, chunk);
    if (typeof encoding === 'function') return this.end(chunk, undefined, encoding);
    if (chunk !== undefined && chunk !== null) {
      this.write(chunk, encoding);
    } else if (!this.started && !this.writableEnded && !this.destroyed) {
      // An HttpResponseStream with no body still sends its prelude (AWS's runtime loses it
      // when end() comes without a write, and the status and headers with it).
      this.started = true;
      const hook = this._onBeforeFirstWrite;
      if (typeof hook === 'function') hook((c) => super.write(c));
    }
    return super.end(callback);
  }

  open() {
    if (this.req) return this.req;
    const options = {
      host: API_HOST,
      port: API_PORT,
      method: 'POST',
      path: `${BASE}/invocation/${encodeURIComponent(this.requestId)}/response`,
      agent,
      headers: {
        'Lambda-Runtime-Function-Response-Mode': 'streaming',
        'Transfer-Encoding': 'chunked',
        'Content-Type': this.contentType,
        Trailer: `${TRAILER_ERROR_TYPE}, ${TRAILER_ERROR_BODY}`,
      },
    };
    if (this.socketHighWaterMark) {
      // A connection of its own whose socket buffers no more than the handler asked for.
      options.agent = false;
      options.createConnection = (opts, cb) =>
        net.createConnection({ ...opts, highWaterMark: this.socketHighWaterMark }, cb);
    }
    const req = http.request(options);
    this.req = req;
    this.answered = new Promise((resolve, reject) => {
      req.on('response', (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
    });
    // Observed by whoever awaits it; never an unhandled rejection.
    this.answered.catch(() => {});
    return req;
  }

  _write(chunk, encoding, callback) {
    // The callback runs once the chunk is on the socket (or with the error that kept it off).
    this.open().write(chunk, encoding, (err) => callback(err || undefined));
  }

  _final(callback) {
    const req = this.open();
    if (this.pendingError) this.addErrorTrailers(this.pendingError);
    req.end();
    this.answered.then(
      (answer) => {
        if (answer.status >= 300) {
          emit('ERROR', `fleetfn bootstrap: the Runtime API refused a streamed response: ${answer.status} ${answer.body.toString('utf8').slice(0, 500)}`);
        }
        callback();
      },
      (err) => callback(err),
    );
  }

  _destroy(err, callback) {
    // The POST stays open: the invoke's failure is reported on it afterwards (fail()).
    callback(err);
  }

  addErrorTrailers(body) {
    this.req.addTrailers({
      [TRAILER_ERROR_TYPE]: body.errorType,
      [TRAILER_ERROR_BODY]: Buffer.from(JSON.stringify(body)).toString('base64'),
    });
  }

  /** Reports `err` for this invoke: /error when nothing was written yet, else trailers ending the body. */
  async fail(err) {
    const body = errorBody(err);
    if (!this.started && !this.writableEnded) {
      this.destroy();
      await postError(this.requestId, err);
      return;
    }
    emit('ERROR', 'Invoke Error', { errorType: body.errorType, errorMessage: body.errorMessage, stackTrace: body.stackTrace });
    if (!this.destroyed && !this.writableFinished) {
      // Chunks already written go out first, then _final sends the trailers (unless it already
      // ran: then the body is complete and the error can only be logged, as on Lambda).
      this.pendingError = body;
      await new Promise((resolve) => {
        this.once('close', resolve);
        if (!this.writableEnded) this.end();
      });
      return;
    }
    if (this.destroyed) {
      const req = this.open();
      if (!req.writableEnded && !req.destroyed) {
        this.addErrorTrailers(body);
        req.end();
        await this.answered.catch(() => {});
      }
    }
  }

  /** Resolves when the body was sent and answered, or the stream failed; false past `deadlineMs`. */
  settled(deadlineMs) {
    if (this.writableFinished || this.destroyed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), Math.max(0, deadlineMs - Date.now()) + UNENDED_STREAM_GRACE_MS);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.once('close', done);
    });
  }
}

async function handleStreaming(handler, requestId, event, context, deadlineMs) {
  const stream = new ResponseStream(requestId, handler[HANDLER_HIGHWATERMARK]);
  try {
    const pending = handler(event, stream, context);
    if (!pending || typeof pending.then !== 'function') {
      throw new Error('Streaming does not support non-async handlers.');
    }
    const result = await pending;
    if (result !== undefined) console.warn('Streaming handlers ignore return values.');
    if (!(await stream.settled(deadlineMs))) {
      // Never ended: the Runtime API has timed the invoke out; free the connection.
      if (stream.req) stream.req.destroy();
      stream.destroy();
      return;
    }
    if (!stream.writableFinished) {
      throw stream.errored || new Error('Response stream is not finished.');
    }
  } catch (err) {
    await stream.fail(err);
  }
}

async function handleOne(handler, next) {
  const requestId = next.headers['lambda-runtime-aws-request-id'];
  if (!requestId) return;
  await invokeStore.run({ requestId }, async () => {
    let event;
    try {
      const text = next.body.toString('utf8');
      event = text.length ? JSON.parse(text) : {};
    } catch (err) {
      await postError(requestId, err, 'Runtime.UnmarshalError');
      return;
    }
    if (handler[HANDLER_STREAMING] === STREAM_RESPONSE) {
      const deadlineMs = Number(next.headers['lambda-runtime-deadline-ms']) || Date.now();
      await handleStreaming(handler, requestId, event, makeContext(next.headers), deadlineMs);
      return;
    }
    let result;
    try {
      result = await callHandler(handler, event, makeContext(next.headers));
    } catch (err) {
      await postError(requestId, err);
      return;
    }
    let body;
    try {
      body = JSON.stringify(result === undefined ? null : result);
    } catch (err) {
      await postError(requestId, err, 'Runtime.MarshalError');
      return;
    }
    await request('POST', `${BASE}/invocation/${encodeURIComponent(requestId)}/response`, body, {
      'content-type': 'application/json',
    });
  });
}

async function runLoop(handler) {
  let backoff = 10;
  for (;;) {
    let next;
    try {
      next = await request('GET', `${BASE}/invocation/next`);
    } catch (err) {
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 1000);
      continue;
    }
    if (next.status !== 200) {
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 1000);
      continue;
    }
    backoff = 10;
    try {
      await handleOne(handler, next);
    } catch (err) {
      emit('ERROR', `fleetfn bootstrap: could not report an invoke result: ${err && err.message}`);
    }
  }
}

async function workerMain({ loops, sdkResolver }) {
  installConsole();
  installGlobals();
  let handler;
  try {
    handler = await loadHandler(process.env.LAMBDA_TASK_ROOT || process.cwd(), process.env._HANDLER, sdkResolver);
  } catch (err) {
    const body = errorBody(err);
    parentPort.postMessage({ type: 'init-error', error: body });
    // Stay alive until the main thread has reported it and exits the process.
    setInterval(() => {}, 1 << 30);
    return;
  }
  for (let i = 0; i < loops; i++) runLoop(handler);
}

// ---------------------------------------------------------------------------------------------
// Main thread

function mainThread() {
  installConsole();
  const maxConcurrency = positiveInt(process.env.AWS_LAMBDA_MAX_CONCURRENCY, 1);
  const vcpuArg = process.argv.find((a) => a.startsWith('--vcpus='));
  const vcpus = vcpuArg ? Number(vcpuArg.slice('--vcpus='.length)) : os.availableParallelism();
  const defaultWorkers = Math.max(1, Math.ceil(Number.isFinite(vcpus) && vcpus > 0 ? vcpus : 1));
  const workers = Math.min(maxConcurrency, positiveInt(process.env.AWS_LAMBDA_NODEJS_WORKER_COUNT, defaultWorkers));
  let alive = workers;
  let initFailed = false;
  const sdkResolver = needsSdkResolver(process.env.LAMBDA_TASK_ROOT || process.cwd());
  for (let i = 0; i < workers; i++) {
    const loops = Math.floor(maxConcurrency / workers) + (i < maxConcurrency % workers ? 1 : 0);
    const worker = new Worker(new URL(import.meta.url), { workerData: { id: i, loops, sdkResolver } });
    worker.on('message', async (msg) => {
      if (msg && msg.type === 'init-error' && !initFailed) {
        initFailed = true;
        emit('ERROR', `${msg.error.errorType}: ${msg.error.errorMessage}`, { errorType: msg.error.errorType });
        try {
          await request('POST', `${BASE}/init/error`, JSON.stringify(msg.error), {
            'content-type': 'application/json',
            'lambda-runtime-function-error-type': msg.error.errorType,
          });
        } finally {
          process.exit(1);
        }
      }
    });
    worker.on('error', (err) => {
      emit('ERROR', `runtime worker ${i} crashed: ${err && err.stack ? err.stack : err}`);
    });
    worker.on('exit', (code) => {
      alive -= 1;
      if (alive === 0 && !initFailed) {
        emit('ERROR', `all runtime workers exited (last exit code ${code})`);
        process.exit(code || 1);
      }
    });
  }
}

if (isMainThread) {
  mainThread();
} else {
  workerMain(workerData);
}
