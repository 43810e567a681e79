//! Streamed invoke responses between an agent and the server.
//!
//! The server asks for one with [`H_RESPONSE_MODE`]`: streaming` on
//! `POST /v1/environments/{id}/invoke` (plain HTTP, never the invoke mux: each stream gets the
//! flow control of its own HTTP exchange). An agent whose function answers buffered (or fails
//! before it streams) replies as to any invoke. When the function streams, the agent replies
//! `200` with `Content-Type: `[`CONTENT_TYPE`], the function's content type in
//! [`H_STREAM_CONTENT_TYPE`], and a body of frames, each `kind u8 | len u32 (big endian) |
//! len bytes`:
//!
//! * [`KIND_DATA`]: one chunk of the response, as the function wrote it (never empty);
//! * [`KIND_END`]: the last frame. Empty when the function finished its response; otherwise
//!   `type_len u16 (big endian) | error type | error document` (the function's error, or the
//!   agent's: `Sandbox.Timedout`, `Runtime.TruncatedResponse`, `Function.ResponseSizeTooLarge`).
//!
//! A body that ends without an END frame was cut off. No frame's content is longer than
//! [`MAX_FRAME_LEN`]: the agent splits a longer chunk into several DATA frames, and the reader
//! rejects a longer frame before buffering it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Request header: `streaming` asks for a streamed reply.
pub const H_RESPONSE_MODE: &str = "x-fleetfn-response-mode";
/// Value of [`H_RESPONSE_MODE`].
pub const RESPONSE_MODE_STREAMING: &str = "streaming";
/// Reply header of a streamed reply: the function's response content type, when it gave one.
pub const H_STREAM_CONTENT_TYPE: &str = "x-fleetfn-stream-content-type";
/// `Content-Type` of a streamed reply (its body is frames).
pub const CONTENT_TYPE: &str = "application/vnd.fleetfn.response-stream";
/// Frame kind: a chunk of the response.
pub const KIND_DATA: u8 = 0;
/// Frame kind: the end of the response.
pub const KIND_END: u8 = 1;
/// Bytes before each frame's content.
pub const FRAME_HEAD: usize = 5;
/// The longest content of one frame (16 MiB). The runtime's chunks are far smaller (they are
/// the HTTP body frames of its `/response`), and an END frame's error document is bounded
/// by the runtime API's header limits; a DATA chunk over it is split by the sender.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// A function's error that ends a streamed response (`InvokeComplete`'s `ErrorCode` and
/// `ErrorDetails`): its type, and the error document the runtime sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub error_type: String,
    pub payload: Bytes,
}

/// One piece of a streamed response, in order: chunks as the function writes them, then
/// exactly one `End`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamPart {
    Chunk(Bytes),
    /// The end of the stream: `None` when the function finished its response, else its error
    /// (also a timeout, a crash or an oversized response, mid-stream).
    End(Option<StreamError>),
}

/// A malformed stream body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("malformed END frame: {0}")]
    BadEnd(&'static str),
    #[error("frame of {len} bytes, over the {max} byte limit")]
    TooLarge { len: usize, max: usize },
}

/// The head of a DATA frame of `len` bytes (the chunk follows it as is).
pub fn data_head(len: usize) -> [u8; FRAME_HEAD] {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [KIND_DATA, len[0], len[1], len[2], len[3]]
}

/// A whole END frame.
pub fn end_frame(error: Option<&StreamError>) -> Bytes {
    let Some(e) = error else {
        return Bytes::from_static(&[KIND_END, 0, 0, 0, 0]);
    };
    let ty = &e.error_type.as_bytes()[..e.error_type.len().min(usize::from(u16::MAX))];
    let len = 2 + ty.len() + e.payload.len();
    let mut b = BytesMut::with_capacity(FRAME_HEAD + len);
    b.put_u8(KIND_END);
    b.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    b.put_u16(u16::try_from(ty.len()).unwrap_or(u16::MAX));
    b.put_slice(ty);
    b.put_slice(&e.payload);
    b.freeze()
}

/// Reassembles frames from a body's pieces, however they are split.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` until one is complete.
    pub fn next_part(&mut self) -> Result<Option<StreamPart>, FrameError> {
        if self.buf.len() < FRAME_HEAD {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if kind != KIND_DATA && kind != KIND_END {
            return Err(FrameError::UnknownKind(kind));
        }
        // Checked before anything is reserved: the peer declares the length.
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        if self.buf.len() < FRAME_HEAD + len {
            self.buf.reserve(FRAME_HEAD + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(FRAME_HEAD);
        let mut content = self.buf.split_to(len).freeze();
        if kind == KIND_DATA {
            return Ok(Some(StreamPart::Chunk(content)));
        }
        if content.is_empty() {
            return Ok(Some(StreamPart::End(None)));
        }
        if content.len() < 2 {
            return Err(FrameError::BadEnd("no error type length"));
        }
        let ty_len = usize::from(content.get_u16());
        if content.len() < ty_len {
            return Err(FrameError::BadEnd("error type longer than the frame"));
        }
        let ty = content.split_to(ty_len);
        let error_type = String::from_utf8(ty.to_vec())
            .map_err(|_| FrameError::BadEnd("error type not UTF-8"))?;
        Ok(Some(StreamPart::End(Some(StreamError {
            error_type,
            payload: content,
        }))))
    }

    /// Whether bytes of an unfinished frame are waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_split_anywhere() {
        let err = StreamError {
            error_type: "Sandbox.Timedout".into(),
            payload: Bytes::from_static(br#"{"errorType":"Sandbox.Timedout"}"#),
        };
        let mut wire = Vec::new();
        for chunk in [&b"hello "[..], b"world"] {
            wire.extend_from_slice(&data_head(chunk.len()));
            wire.extend_from_slice(chunk);
        }
        wire.extend_from_slice(&end_frame(Some(&err)));
        wire.extend_from_slice(&end_frame(None));
        for split in 1..wire.len() {
            let mut d = Decoder::default();
            let mut parts = Vec::new();
            for piece in wire.chunks(split) {
                d.push(piece);
                while let Some(p) = d.next_part().unwrap() {
                    parts.push(p);
                }
            }
            assert!(d.is_empty());
            assert_eq!(
                parts,
                [
                    StreamPart::Chunk(Bytes::from_static(b"hello ")),
                    StreamPart::Chunk(Bytes::from_static(b"world")),
                    StreamPart::End(Some(err.clone())),
                    StreamPart::End(None),
                ]
            );
        }
    }

    #[test]
    fn malformed_frames_are_errors() {
        let mut d = Decoder::default();
        d.push(&[9, 0, 0, 0, 0]);
        assert_eq!(d.next_part(), Err(FrameError::UnknownKind(9)));
        let mut d = Decoder::default();
        d.push(&[KIND_END, 0, 0, 0, 3, 0, 9, b'x']);
        assert!(matches!(d.next_part(), Err(FrameError::BadEnd(_))));
    }

    #[test]
    fn a_frame_over_the_cap_is_rejected_before_it_is_buffered() {
        let mut d = Decoder::default();
        d.push(&[KIND_DATA, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            d.next_part(),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: MAX_FRAME_LEN
            })
        );
        assert!(
            d.buf.capacity() < 1024,
            "nothing reserved for the declared length"
        );
        let mut d = Decoder::default();
        d.push(&data_head(MAX_FRAME_LEN + 1));
        assert!(matches!(d.next_part(), Err(FrameError::TooLarge { .. })));
        // A frame of exactly the cap is fine.
        let mut d = Decoder::default();
        d.push(&data_head(MAX_FRAME_LEN));
        assert_eq!(d.next_part(), Ok(None));
        d.push(&vec![7u8; MAX_FRAME_LEN]);
        assert!(
            matches!(d.next_part(), Ok(Some(StreamPart::Chunk(c))) if c.len() == MAX_FRAME_LEN)
        );
    }
}
