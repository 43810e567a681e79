// A hostile Node.js function for tests/isolation: it tries what the event asks and reports
// what happened, without judging. Every attempt is bounded by a timeout.
import net from "node:net";
import dns from "node:dns/promises";
import fs from "node:fs";
import { spawnSync } from "node:child_process";

function connect(host, port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (r) => { s.destroy(); resolve(r); };
    s.setTimeout(timeoutMs, () => done("timeout"));
    s.on("connect", () => done("connected"));
    s.on("error", (e) => done(e.code || String(e)));
  });
}

function http(host, port, method, path, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const body = method === "POST" ? "forged" : "";
    const s = net.connect({ host, port });
    let data = "";
    const done = (r) => { s.destroy(); resolve(r); };
    s.setTimeout(timeoutMs, () => done(["timeout", ""]));
    s.on("connect", () => s.write(`${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`));
    s.on("data", (d) => { data += d.toString(); if (data.length > 65536) s.end(); });
    s.on("end", () => {
      const [head, rest = ""] = data.split("\r\n\r\n");
      done([head.split("\r\n")[0] || "empty reply", rest.slice(0, 512)]);
    });
    s.on("error", (e) => done([e.code || String(e), ""]));
  });
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { timeout: 5000, encoding: "utf8" });
  if (r.error) return r.error.code || String(r.error);
  return r.status === 0 ? "ok" : `exit ${r.status}: ${(r.stderr || "").trim().slice(0, 200)}`;
}

export const handler = async (event, context) => {
  const result = { uid: process.getuid() };
  if (event.connect) {
    result.connect = {};
    for (const [h, p] of event.connect) result.connect[`${h}:${p}`] = await connect(h, p);
  }
  if (event.http) {
    result.http = {};
    for (const [h, p, m, path] of event.http) result.http[`${m} ${h}:${p}${path}`] = await http(h, p, m, path);
  }
  if (event.resolve) {
    result.resolve = {};
    for (const name of event.resolve) {
      try { result.resolve[name] = (await dns.lookup(name, { family: 4 })).address; }
      catch (e) { result.resolve[name] = `error: ${e.code || e}`; }
    }
  }
  if (event.syscalls) {
    result.syscalls = {
      userns: run("unshare", ["-U", "true"]),
      mountns: run("unshare", ["-m", "true"]),
      netns: run("unshare", ["-n", "true"]),
      mount: run("mount", ["-t", "tmpfs", "none", "/tmp"]),
    };
  }
  if (event.tmp_token) {
    const path = `/tmp/${event.tmp_token}`;
    fs.writeFileSync(path, context.awsRequestId);
    result.tmp_write = fs.readFileSync(path, "utf8") === context.awsRequestId;
  }
  if (event.read) {
    result.read = {};
    for (const p of event.read) {
      try { result.read[p] = "read:" + fs.readFileSync(p).subarray(0, 64).toString(); }
      catch (e) { result.read[p] = e.code || String(e); }
    }
  }
  return result;
};
