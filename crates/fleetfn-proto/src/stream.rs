//! The invoke stream (`fleetfn-invoke/1`): every invoke a server sends one agent, multiplexed as
//! length-prefixed binary frames over one connection that starts as an HTTP/1.1 upgrade of the
//! agent API (so it is authenticated, and over TLS or a Unix socket, exactly like the rest of that
//! API). Compared with one HTTP exchange per invoke, frames that queue up while the socket is busy
//! leave in one write and are read in one read, and neither side parses HTTP per invoke.
//!
//! A frame is `len: u32 | kind: u8 | id: u64 | body` (big-endian; `len` counts from `kind`):
//!
//! | kind | direction | body |
//! |---|---|---|
//! | 1 INVOKE | server → agent | `env_id: s16, request_id: s16, client_context: o32, tenant_id: o16, payload` |
//! | 2 CANCEL | server → agent | (none): the server gave up on `id` |
//! | 16 DONE | agent → server | `function_error: o16, payload` |
//! | 17 REJECTED | agent → server | `reason: s16` (a [`ThrottleReason`] header value), `detail` |
//! | 18 GONE | agent → server | (none): no such environment |
//! | 19 INVALID | agent → server | `reason` |
//!
//! `s16`/`s32` is a length (u16/u32) and UTF-8 bytes; `o16`/`o32` the same with the length's
//! maximum meaning "absent"; a trailing field takes the rest of the frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::{InvokeReply, ThrottleReason};

/// The `Upgrade` token; a new framing gets a new token, and an agent that does not know it
/// answers 404, after which the server sends invokes as HTTP requests.
pub const PROTOCOL: &str = "fleetfn-invoke/1";
/// The agent API path that upgrades to the stream.
pub const PATH: &str = "/invoke-stream";
/// The largest frame either side accepts (a 6 MB payload and its fields fit).
pub const MAX_FRAME: usize = 8 << 20;
/// Bytes before the body: `len`, `kind`, `id`.
const HEAD: usize = 4 + 1 + 8;

const INVOKE: u8 = 1;
const CANCEL: u8 = 2;
const DONE: u8 = 16;
const REJECTED: u8 = 17;
const GONE: u8 = 18;
const INVALID: u8 = 19;

/// One invoke, as the agent reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeFrame {
    pub env_id: String,
    pub request_id: String,
    /// Base64 of the client context's JSON, as the API received it.
    pub client_context: Option<String>,
    pub tenant_id: Option<String>,
    pub payload: Bytes,
}

/// A frame a server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToAgent {
    Invoke(u64, InvokeFrame),
    Cancel(u64),
}

/// A malformed stream: the reader closes the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("frame shorter than its header")]
    Short,
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("a field runs past the end of its frame")]
    Truncated,
    #[error("a text field is not UTF-8")]
    NotUtf8,
}

fn frame_head(buf: &mut BytesMut, kind: u8, id: u64, body_len: usize) {
    buf.reserve(HEAD + body_len);
    buf.put_u32(u32::try_from(1 + 8 + body_len).unwrap_or(u32::MAX));
    buf.put_u8(kind);
    buf.put_u64(id);
}

/// Field lengths above a u16 are cut to what fits: request ids, environment ids and tenant ids
/// are far shorter (the API bounds them), and a cut never crosses a frame.
fn put_s16(buf: &mut BytesMut, s: &str) {
    let n = s.len().min(usize::from(u16::MAX) - 1);
    buf.put_u16(n as u16);
    buf.put_slice(&s.as_bytes()[..n]);
}

fn put_o16(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_s16(buf, s),
        None => buf.put_u16(u16::MAX),
    }
}

fn put_o32(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            buf.put_u32(s.len() as u32);
            buf.put_slice(s.as_bytes());
        }
        None => buf.put_u32(u32::MAX),
    }
}

/// Appends an INVOKE frame's head and fields; the payload follows as its own buffer (it is not
/// copied into the head).
pub fn encode_invoke_head(buf: &mut BytesMut, id: u64, f: &InvokeHead<'_>, payload_len: usize) {
    let fields = 2
        + f.env_id.len().min(usize::from(u16::MAX) - 1)
        + 2
        + f.request_id.len().min(usize::from(u16::MAX) - 1)
        + 4
        + f.client_context.map_or(0, str::len)
        + 2
        + f.tenant_id
            .map_or(0, |t| t.len().min(usize::from(u16::MAX) - 1));
    frame_head(buf, INVOKE, id, fields + payload_len);
    put_s16(buf, f.env_id);
    put_s16(buf, f.request_id);
    put_o32(buf, f.client_context);
    put_o16(buf, f.tenant_id);
}

/// An invoke's fields by reference, for encoding.
#[derive(Debug, Clone, Copy)]
pub struct InvokeHead<'a> {
    pub env_id: &'a str,
    pub request_id: &'a str,
    pub client_context: Option<&'a str>,
    pub tenant_id: Option<&'a str>,
}

pub fn encode_cancel(buf: &mut BytesMut, id: u64) {
    frame_head(buf, CANCEL, id, 0);
}

/// Appends a reply frame's head and fields; for DONE the payload is returned to be written
/// after it (not copied), for the others it is empty.
pub fn encode_reply(buf: &mut BytesMut, id: u64, reply: &InvokeReply) -> Bytes {
    match reply {
        InvokeReply::Done {
            payload,
            function_error,
        } => {
            let fe = function_error.as_deref();
            let fields = 2 + fe.map_or(0, |s| s.len().min(usize::from(u16::MAX) - 1));
            frame_head(buf, DONE, id, fields + payload.len());
            put_o16(buf, fe);
            payload.clone()
        }
        InvokeReply::Rejected { reason, detail } => {
            let r = reason.as_header();
            frame_head(buf, REJECTED, id, 2 + r.len() + detail.len());
            put_s16(buf, r);
            buf.put_slice(detail.as_bytes());
            Bytes::new()
        }
        InvokeReply::Gone => {
            frame_head(buf, GONE, id, 0);
            Bytes::new()
        }
        InvokeReply::Invalid { reason } => {
            frame_head(buf, INVALID, id, reason.len());
            buf.put_slice(reason.as_bytes());
            Bytes::new()
        }
    }
}

/// One frame to write: its head and fields, then its payload (kept apart so a large payload is
/// never copied).
#[derive(Debug, Clone, Default)]
pub struct OutFrame {
    pub head: Bytes,
    pub payload: Bytes,
}

/// Payloads up to this size are copied into the write buffer beside their heads; larger ones
/// are written as they are.
const COPY_PAYLOAD_UP_TO: usize = 16 * 1024;

/// Read buffer size of either end: below glibc's 64 KiB threshold at which a free consolidates
/// the heap (a 64 KiB buffer per read cost ≈ 9 % of an agent's CPU).
pub const READ_BUF: usize = 16 * 1024;

/// Frames written together at most (bounds the write buffer).
pub const MAX_BATCH: usize = 128;

/// Writes `frames` with as few writes as their sizes allow (one, unless a payload is large).
pub async fn write_frames<'a, W: AsyncWrite + Unpin>(
    w: &mut W,
    buf: &mut BytesMut,
    frames: impl IntoIterator<Item = &'a OutFrame>,
) -> std::io::Result<()> {
    for f in frames {
        buf.extend_from_slice(&f.head);
        if f.payload.len() <= COPY_PAYLOAD_UP_TO {
            buf.extend_from_slice(&f.payload);
        } else {
            w.write_all(buf).await?;
            buf.clear();
            w.write_all(&f.payload).await?;
        }
    }
    if !buf.is_empty() {
        w.write_all(buf).await?;
        buf.clear();
    }
    w.flush().await
}

/// The next whole frame in `buf` as `(kind, id, body)`, or `None` until more bytes arrive.
fn next_frame(buf: &mut BytesMut) -> Result<Option<(u8, u64, Bytes)>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    if len < 9 {
        return Err(FrameError::Short);
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    // A small frame is copied out, so the read buffer stays unshared and its space is reused
    // (no allocation per read); a large one is split off without a copy.
    let mut frame = if len <= COPY_PAYLOAD_UP_TO {
        let f = Bytes::copy_from_slice(&buf[..len]);
        buf.advance(len);
        f
    } else {
        buf.split_to(len).freeze()
    };
    let kind = frame.get_u8();
    let id = frame.get_u64();
    Ok(Some((kind, id, frame)))
}

fn take_str(b: &mut Bytes, n: usize) -> Result<String, FrameError> {
    if b.remaining() < n {
        return Err(FrameError::Truncated);
    }
    let raw = b.split_to(n);
    String::from_utf8(raw.to_vec()).map_err(|_| FrameError::NotUtf8)
}

fn get_s16(b: &mut Bytes) -> Result<String, FrameError> {
    if b.remaining() < 2 {
        return Err(FrameError::Truncated);
    }
    let n = usize::from(b.get_u16());
    take_str(b, n)
}

fn get_o16(b: &mut Bytes) -> Result<Option<String>, FrameError> {
    if b.remaining() < 2 {
        return Err(FrameError::Truncated);
    }
    match b.get_u16() {
        u16::MAX => Ok(None),
        n => take_str(b, usize::from(n)).map(Some),
    }
}

fn get_o32(b: &mut Bytes) -> Result<Option<String>, FrameError> {
    if b.remaining() < 4 {
        return Err(FrameError::Truncated);
    }
    match b.get_u32() {
        u32::MAX => Ok(None),
        n => take_str(b, n as usize).map(Some),
    }
}

fn rest_str(b: Bytes) -> Result<String, FrameError> {
    String::from_utf8(b.to_vec()).map_err(|_| FrameError::NotUtf8)
}

/// The next frame a server sent, from the agent's read buffer.
pub fn decode_to_agent(buf: &mut BytesMut) -> Result<Option<ToAgent>, FrameError> {
    let Some((kind, id, mut b)) = next_frame(buf)? else {
        return Ok(None);
    };
    match kind {
        INVOKE => {
            let env_id = get_s16(&mut b)?;
            let request_id = get_s16(&mut b)?;
            let client_context = get_o32(&mut b)?;
            let tenant_id = get_o16(&mut b)?;
            Ok(Some(ToAgent::Invoke(
                id,
                InvokeFrame {
                    env_id,
                    request_id,
                    client_context,
                    tenant_id,
                    payload: b,
                },
            )))
        }
        CANCEL => Ok(Some(ToAgent::Cancel(id))),
        k => Err(FrameError::Kind(k)),
    }
}

/// The next reply an agent sent, from the server's read buffer.
pub fn decode_reply(buf: &mut BytesMut) -> Result<Option<(u64, InvokeReply)>, FrameError> {
    let Some((kind, id, mut b)) = next_frame(buf)? else {
        return Ok(None);
    };
    let reply = match kind {
        DONE => {
            let function_error = get_o16(&mut b)?;
            InvokeReply::Done {
                payload: b,
                function_error,
            }
        }
        REJECTED => {
            let reason = ThrottleReason::from_header(&get_s16(&mut b)?);
            InvokeReply::Rejected {
                reason,
                detail: rest_str(b)?,
            }
        }
        GONE => InvokeReply::Gone,
        INVALID => InvokeReply::Invalid {
            reason: rest_str(b)?,
        },
        k => return Err(FrameError::Kind(k)),
    };
    Ok(Some((id, reply)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoke_bytes(id: u64, h: &InvokeHead<'_>, payload: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        encode_invoke_head(&mut buf, id, h, payload.len());
        buf.put_slice(payload);
        buf
    }

    #[test]
    fn invokes_and_cancels_round_trip_byte_by_byte() {
        let head = InvokeHead {
            env_id: "e-1",
            request_id: "7c1a",
            client_context: Some("eyJhIjoxfQ=="),
            tenant_id: None,
        };
        let mut wire = invoke_bytes(42, &head, b"{\"x\":1}");
        encode_cancel(&mut wire, 42);
        let mut wire2 = invoke_bytes(
            43,
            &InvokeHead {
                tenant_id: Some("t"),
                client_context: None,
                ..head
            },
            b"",
        );
        wire.extend_from_slice(&wire2.split());
        // Fed one byte at a time: nothing is decoded from a partial frame.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(f) = decode_to_agent(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                ToAgent::Invoke(
                    42,
                    InvokeFrame {
                        env_id: "e-1".into(),
                        request_id: "7c1a".into(),
                        client_context: Some("eyJhIjoxfQ==".into()),
                        tenant_id: None,
                        payload: Bytes::from_static(b"{\"x\":1}"),
                    }
                ),
                ToAgent::Cancel(42),
                ToAgent::Invoke(
                    43,
                    InvokeFrame {
                        env_id: "e-1".into(),
                        request_id: "7c1a".into(),
                        client_context: None,
                        tenant_id: Some("t".into()),
                        payload: Bytes::new(),
                    }
                ),
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn every_reply_round_trips() {
        let replies = [
            InvokeReply::Done {
                payload: Bytes::from_static(b"ok"),
                function_error: None,
            },
            InvokeReply::Done {
                payload: Bytes::new(),
                function_error: Some("Unhandled".into()),
            },
            InvokeReply::Rejected {
                reason: ThrottleReason::Cpu,
                detail: "over the CPU ceiling".into(),
            },
            InvokeReply::Gone,
            InvokeReply::Invalid {
                reason: "bad client context".into(),
            },
        ];
        let mut wire = BytesMut::new();
        for (i, r) in replies.iter().enumerate() {
            let payload = encode_reply(&mut wire, i as u64, r);
            wire.extend_from_slice(&payload);
        }
        for (i, r) in replies.iter().enumerate() {
            assert_eq!(
                decode_reply(&mut wire).unwrap(),
                Some((i as u64, r.clone()))
            );
        }
        assert_eq!(decode_reply(&mut wire).unwrap(), None);
    }

    #[test]
    fn hostile_frames_are_refused_not_trusted() {
        // Over the size limit: refused from the length alone, before any body arrives.
        let mut buf = BytesMut::from(&((MAX_FRAME + 1) as u32).to_be_bytes()[..]);
        assert_eq!(
            decode_to_agent(&mut buf),
            Err(FrameError::TooLarge(MAX_FRAME + 1))
        );
        // Shorter than kind + id.
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 1, 0, 0][..]);
        assert_eq!(decode_to_agent(&mut buf), Err(FrameError::Short));
        // A field length past the frame's end.
        let mut buf = BytesMut::new();
        frame_head(&mut buf, INVOKE, 1, 2);
        buf.put_u16(500);
        assert_eq!(decode_to_agent(&mut buf), Err(FrameError::Truncated));
        // A reply kind sent to an agent, and an unknown kind.
        let mut buf = BytesMut::new();
        frame_head(&mut buf, GONE, 1, 0);
        assert_eq!(decode_to_agent(&mut buf), Err(FrameError::Kind(GONE)));
        let mut buf = BytesMut::new();
        frame_head(&mut buf, 99, 1, 0);
        assert_eq!(decode_reply(&mut buf), Err(FrameError::Kind(99)));
        // Not UTF-8 where text is expected.
        let mut buf = BytesMut::new();
        frame_head(&mut buf, INVALID, 1, 2);
        buf.put_slice(&[0xff, 0xfe]);
        assert_eq!(decode_reply(&mut buf), Err(FrameError::NotUtf8));
    }
}
