//! The `probe` op: what a hostile tenant would try from inside its environment (connect to
//! addresses, speak HTTP to them, resolve names, ask the kernel for namespaces, mounts and
//! tracing, write `/tmp`, read paths). It reports what happened and judges nothing; the
//! isolation suite decides what must fail. Every attempt is bounded by a timeout.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::{Map, Value, json};

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).to_string(),
        None if e.kind() == std::io::ErrorKind::TimedOut
            || e.kind() == std::io::ErrorKind::WouldBlock =>
        {
            "timeout".into()
        }
        None => e.kind().to_string(),
    }
}

fn open(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| errno_name(&e))?
        .next()
        .ok_or_else(|| "no address".to_string())?;
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut => "timeout".into(),
        _ => errno_name(&e),
    })?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    Ok(stream)
}

fn connect(host: &str, port: u16) -> String {
    match open(host, port, Duration::from_secs(1)) {
        Ok(_) => "connected".into(),
        Err(e) => e,
    }
}

fn http(host: &str, port: u16, method: &str, path: &str) -> Value {
    let body = if method == "POST" { "forged" } else { "" };
    let mut stream = match open(host, port, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) => return json!([e, ""]),
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = stream.write_all(req.as_bytes()) {
        return json!([errno_name(&e), ""]);
    }
    let mut data = Vec::new();
    let _ = stream.take(65_536).read_to_end(&mut data);
    let text = String::from_utf8_lossy(&data);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .filter(|l| !l.is_empty())
        .unwrap_or("empty reply");
    json!([status, rest.chars().take(512).collect::<String>()])
}

fn outcome<T>(r: nix::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

fn syscalls() -> Value {
    use nix::sched::{CloneFlags, unshare};
    json!({
        "userns": outcome(unshare(CloneFlags::CLONE_NEWUSER)),
        "mountns": outcome(unshare(CloneFlags::CLONE_NEWNS)),
        "netns": outcome(unshare(CloneFlags::CLONE_NEWNET)),
        "mount": outcome(nix::mount::mount(
            Some("none"),
            "/tmp",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )),
        "ptrace": outcome(nix::sys::ptrace::attach(nix::unistd::Pid::from_raw(1))),
    })
}

fn pairs<'a>(event: &'a Value, key: &str) -> impl Iterator<Item = &'a Vec<Value>> {
    event
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
}

/// Runs the probe the event describes (same fields as the Python and Node probes).
pub fn run(event: &Value, request_id: &str) -> Value {
    let mut out = Map::new();
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        });
    out.insert("uid".into(), json!(uid));
    if event.get("connect").is_some() {
        let mut m = Map::new();
        for p in pairs(event, "connect") {
            if let (Some(h), Some(port)) = (
                p.first().and_then(Value::as_str),
                p.get(1).and_then(Value::as_u64),
            ) {
                let port = u16::try_from(port).unwrap_or(0);
                m.insert(format!("{h}:{port}"), json!(connect(h, port)));
            }
        }
        out.insert("connect".into(), Value::Object(m));
    }
    if event.get("http").is_some() {
        let mut m = Map::new();
        for p in pairs(event, "http") {
            let s = |i: usize| p.get(i).and_then(Value::as_str).unwrap_or_default();
            let port = u16::try_from(p.get(1).and_then(Value::as_u64).unwrap_or(0)).unwrap_or(0);
            m.insert(
                format!("{} {}:{port}{}", s(2), s(0), s(3)),
                http(s(0), port, s(2), s(3)),
            );
        }
        out.insert("http".into(), Value::Object(m));
    }
    if let Some(names) = event.get("resolve").and_then(Value::as_array) {
        let mut m = Map::new();
        for name in names.iter().filter_map(Value::as_str) {
            let r = (name, 0)
                .to_socket_addrs()
                .map_err(|e| format!("error: {e}"))
                .and_then(|mut a| {
                    a.find(std::net::SocketAddr::is_ipv4)
                        .map(|a| a.ip().to_string())
                        .ok_or_else(|| "error: no IPv4 address".to_string())
                });
            m.insert(name.into(), json!(r.unwrap_or_else(|e| e)));
        }
        out.insert("resolve".into(), Value::Object(m));
    }
    if event.get("syscalls").and_then(Value::as_bool) == Some(true) {
        out.insert("syscalls".into(), syscalls());
    }
    if let Some(token) = event.get("tmp_token").and_then(Value::as_str) {
        let path = std::path::Path::new("/tmp").join(token);
        let ok = std::fs::write(&path, request_id).is_ok()
            && std::fs::read_to_string(&path).is_ok_and(|s| s == request_id);
        out.insert("tmp_write".into(), json!(ok));
    }
    if let Some(paths) = event.get("read").and_then(Value::as_array) {
        let mut m = Map::new();
        for p in paths.iter().filter_map(Value::as_str) {
            let r = match std::fs::read(p) {
                Ok(b) => format!("read:{}", String::from_utf8_lossy(&b[..b.len().min(64)])),
                Err(e) => errno_name(&e),
            };
            m.insert(p.into(), json!(r));
        }
        out.insert("read".into(), Value::Object(m));
    }
    Value::Object(out)
}
