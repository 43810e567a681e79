//! The AWS event stream framing (`application/vnd.amazon.eventstream`) of
//! `InvokeWithResponseStream`: each message is a prelude (total length, headers length, CRC32
//! of those 8 bytes), string headers (`:event-type`, `:content-type`, `:message-type`), the
//! payload and a CRC32 of everything before it. [`Frames`] turns a streamed (or buffered)
//! invoke into `PayloadChunk` messages and one `InvokeComplete`. No message is longer than
//! [`MAX_MESSAGE`] (the event stream's 16 MiB): a longer chunk is split across messages, and
//! `InvokeComplete`'s fields are truncated.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use fleetfn_contracts::{InvokeOutcome, StreamError, StreamPart};
use serde::Serialize;
use tokio::sync::mpsc::Receiver;

/// The header value type `string` of the event stream encoding.
const STRING: u8 = 7;

/// The longest message, prelude and CRCs included, that event stream decoders take (the
/// encoding's limit is 16 MiB; botocore allows a payload of up to 24 MiB).
pub(crate) const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Room for the prelude, headers and message CRC of our messages (well under 1 KiB).
const OVERHEAD: usize = 1024;

/// The most function bytes one `PayloadChunk` carries.
pub(crate) const MAX_CHUNK: usize = MAX_MESSAGE - OVERHEAD;

/// `InvokeComplete` field bounds, in UTF-8 bytes before JSON escaping (which at most
/// sextuples a byte, `\u0000`): the document stays below [`MAX_CHUNK`] whatever the error.
const MAX_ERROR_CODE: usize = 1024;
const MAX_ERROR_DETAILS: usize = 2 * 1024 * 1024;
const MAX_LOG_RESULT: usize = 64 * 1024;

/// One event message (`:message-type: event`) of type `event_type` carrying `payload`, which
/// callers keep within [`MAX_CHUNK`] bytes.
pub(crate) fn event(event_type: &str, content_type: &str, payload: &[u8]) -> Bytes {
    let headers: [(&str, &str); 3] = [
        (":event-type", event_type),
        (":content-type", content_type),
        (":message-type", "event"),
    ];
    let headers_len: usize = headers
        .iter()
        .map(|(n, v)| 1 + n.len() + 1 + 2 + v.len())
        .sum();
    let total = 12 + headers_len + payload.len() + 4;
    assert!(
        headers_len <= OVERHEAD - 16 && total <= MAX_MESSAGE,
        "event stream message of {total} bytes: callers split or bound payloads"
    );
    let mut out = BytesMut::with_capacity(total);
    // The lengths fit (checked above); the header names and values are ours, all short.
    out.put_u32(u32::try_from(total).expect("at most MAX_MESSAGE"));
    out.put_u32(u32::try_from(headers_len).expect("at most OVERHEAD"));
    let prelude_crc = crc32fast::hash(&out[..8]);
    out.put_u32(prelude_crc);
    for (name, value) in headers {
        out.put_u8(u8::try_from(name.len()).expect("a short header name"));
        out.put_slice(name.as_bytes());
        out.put_u8(STRING);
        out.put_u16(u16::try_from(value.len()).expect("a short header value"));
        out.put_slice(value.as_bytes());
    }
    out.put_slice(payload);
    let crc = crc32fast::hash(&out);
    out.put_u32(crc);
    out.freeze()
}

/// A `PayloadChunk` with the function's bytes as they are (at most [`MAX_CHUNK`] of them).
pub(crate) fn payload_chunk(bytes: &[u8]) -> Bytes {
    event("PayloadChunk", "application/octet-stream", bytes)
}

/// The first [`MAX_CHUNK`] bytes of `rest` as a `PayloadChunk`, leaving the others in `rest`.
/// A chunk within the bound is one message as it is (chunks are never merged: latency).
fn next_payload_chunk(rest: &mut Bytes) -> Bytes {
    let piece = rest.split_to(rest.len().min(MAX_CHUNK));
    payload_chunk(&piece)
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncated(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The `InvokeComplete` document: empty when the function finished, else its error.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InvokeComplete {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_details: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_result: Option<String>,
}

impl InvokeComplete {
    pub(crate) fn from_error(e: Option<&StreamError>) -> Self {
        match e {
            None => Self::default(),
            Some(e) => Self {
                error_code: Some(e.error_type.clone()),
                error_details: Some(String::from_utf8_lossy(&e.payload).into_owned()),
                log_result: None,
            },
        }
    }

    /// The message, its fields truncated so that it stays within [`MAX_MESSAGE`].
    pub(crate) fn encode(&self) -> Bytes {
        let cut = |f: &Option<String>, max| f.as_deref().map(|v| truncated(v, max).to_owned());
        let bounded = Self {
            error_code: cut(&self.error_code, MAX_ERROR_CODE),
            error_details: cut(&self.error_details, MAX_ERROR_DETAILS),
            log_result: cut(&self.log_result, MAX_LOG_RESULT),
        };
        let json = serde_json::to_vec(&bounded).unwrap_or_else(|_| b"{}".to_vec());
        event("InvokeComplete", "application/json", &json)
    }
}

/// The error type in a function's error document (`errorType`), if it has one.
fn error_type_of(doc: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(rename = "errorType")]
        error_type: Option<String>,
    }
    serde_json::from_slice::<Doc>(doc).ok()?.error_type
}

/// The whole event stream of an answer that came back buffered: its payload in one
/// `PayloadChunk` (several past [`MAX_CHUNK`]), then `InvokeComplete`; a function error is
/// reported in `InvokeComplete` alone (`ErrorCode` the document's `errorType`, else the
/// `X-Amz-Function-Error` value; `ErrorDetails` the document).
pub(crate) fn buffered(outcome: &InvokeOutcome) -> Bytes {
    match &outcome.function_error {
        None => {
            let mut out = BytesMut::new();
            let mut rest = outcome.payload.clone();
            while !rest.is_empty() {
                out.extend_from_slice(&next_payload_chunk(&mut rest));
            }
            if outcome.payload.is_empty() {
                out.extend_from_slice(&payload_chunk(&[]));
            }
            out.extend_from_slice(&InvokeComplete::default().encode());
            out.freeze()
        }
        Some(fe) => InvokeComplete::from_error(Some(&StreamError {
            error_type: error_type_of(&outcome.payload).unwrap_or_else(|| fe.clone()),
            payload: outcome.payload.clone(),
        }))
        .encode(),
    }
}

/// The messages of a streamed answer, as its parts arrive: a `PayloadChunk` per non-empty
/// chunk (several, one at a time, for a chunk past [`MAX_CHUNK`]), then `InvokeComplete`. A
/// stream whose sender went away without its end completes with `ErrorCode`
/// `Runtime.StreamInterrupted`.
pub(crate) struct Frames {
    parts: Receiver<StreamPart>,
    /// What is left of a chunk too long for one message.
    rest: Bytes,
    done: bool,
}

impl Frames {
    pub(crate) fn new(parts: Receiver<StreamPart>) -> Self {
        Self {
            parts,
            rest: Bytes::new(),
            done: false,
        }
    }
}

impl tokio_stream::Stream for Frames {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if !self.rest.is_empty() {
                return Poll::Ready(Some(Ok(next_payload_chunk(&mut self.rest))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            let part = std::task::ready!(self.parts.poll_recv(cx));
            let frame = match part {
                Some(StreamPart::Chunk(b)) if b.is_empty() => continue,
                Some(StreamPart::Chunk(mut b)) => {
                    let frame = next_payload_chunk(&mut b);
                    self.rest = b;
                    frame
                }
                Some(StreamPart::End(e)) => {
                    self.done = true;
                    InvokeComplete::from_error(e.as_ref()).encode()
                }
                None => {
                    self.done = true;
                    InvokeComplete::from_error(Some(&interrupted())).encode()
                }
            };
            return Poll::Ready(Some(Ok(frame)));
        }
    }
}

/// The error of a stream that ended without its end (the data plane dropped it).
pub(crate) fn interrupted() -> StreamError {
    StreamError {
        error_type: "Runtime.StreamInterrupted".into(),
        payload: Bytes::from_static(
            br#"{"errorType":"Runtime.StreamInterrupted","errorMessage":"The response stream ended before the function finished it."}"#,
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A decoded message: its headers and payload, every length and CRC checked.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) struct Decoded {
        pub headers: Vec<(String, String)>,
        pub payload: Vec<u8>,
    }

    impl Decoded {
        pub(crate) fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// Decodes a concatenation of messages, checking every length and CRC.
    pub(crate) fn decode_all(mut b: &[u8]) -> Vec<Decoded> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let total = u32_at(b, 0) as usize;
            let headers_len = u32_at(b, 4) as usize;
            assert_eq!(u32_at(b, 8), crc32fast::hash(&b[..8]), "prelude CRC");
            assert_eq!(
                u32_at(b, total - 4),
                crc32fast::hash(&b[..total - 4]),
                "message CRC"
            );
            let mut h = &b[12..12 + headers_len];
            let mut headers = Vec::new();
            while !h.is_empty() {
                let n = h[0] as usize;
                let name = std::str::from_utf8(&h[1..1 + n]).unwrap().to_string();
                assert_eq!(h[1 + n], STRING);
                let vl = u16::from_be_bytes([h[2 + n], h[3 + n]]) as usize;
                let value = std::str::from_utf8(&h[4 + n..4 + n + vl])
                    .unwrap()
                    .to_string();
                headers.push((name, value));
                h = &h[4 + n + vl..];
            }
            out.push(Decoded {
                headers,
                payload: b[12 + headers_len..total - 4].to_vec(),
            });
            b = &b[total..];
        }
        out
    }

    #[test]
    fn a_message_matches_a_known_encoding() {
        // Hand-computed layout: 12-byte prelude, three string headers, payload, CRC.
        let m = event("PayloadChunk", "application/octet-stream", b"hi");
        let headers_len = (1 + 11 + 1 + 2 + 12) + (1 + 13 + 1 + 2 + 24) + (1 + 13 + 1 + 2 + 5);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(m.len(), 12 + headers_len + 2 + 4);
        assert_eq!(u32_at(&m, 4) as usize, headers_len);
        // The IEEE CRC32 of the prelude, as botocore checks it (zlib.crc32).
        assert_eq!(u32_at(&m, 8), crc32fast::hash(&m[..8]));
        assert_eq!(&m[12..25], b"\x0b:event-type\x07");
        let d = decode_all(&m);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].header(":event-type"), Some("PayloadChunk"));
        assert_eq!(d[0].header(":message-type"), Some("event"));
        assert_eq!(d[0].payload, b"hi");
        // crc32fast is the IEEE polynomial: CRC32("123456789") = 0xCBF43926.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn a_buffered_answer_is_one_chunk_then_complete_and_an_error_only_complete() {
        let ok = InvokeOutcome {
            payload: Bytes::from_static(b"{\"a\":1}"),
            function_error: None,
        };
        let d = decode_all(&buffered(&ok));
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].payload, b"{\"a\":1}");
        assert_eq!(d[1].header(":event-type"), Some("InvokeComplete"));
        assert_eq!(d[1].header(":content-type"), Some("application/json"));
        assert_eq!(d[1].payload, b"{}");
        let err = InvokeOutcome {
            payload: Bytes::from_static(b"{\"errorType\":\"ValueError\",\"errorMessage\":\"x\"}"),
            function_error: Some("Unhandled".into()),
        };
        let d = decode_all(&buffered(&err));
        assert_eq!(d.len(), 1);
        let doc: serde_json::Value = serde_json::from_slice(&d[0].payload).unwrap();
        assert_eq!(doc["ErrorCode"], "ValueError");
        assert_eq!(
            doc["ErrorDetails"],
            "{\"errorType\":\"ValueError\",\"errorMessage\":\"x\"}"
        );
    }

    #[tokio::test]
    async fn streamed_parts_become_chunks_then_complete() {
        use tokio_stream::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tx.send(StreamPart::Chunk(Bytes::from_static(b"one")))
            .await
            .unwrap();
        tx.send(StreamPart::Chunk(Bytes::new())).await.unwrap();
        tx.send(StreamPart::Chunk(Bytes::from_static(b"two")))
            .await
            .unwrap();
        tx.send(StreamPart::End(Some(StreamError {
            error_type: "Runtime.TimedOut".into(),
            payload: Bytes::from_static(b"{}"),
        })))
        .await
        .unwrap();
        let frames: Vec<Bytes> = Frames::new(rx).map(|f| f.unwrap()).collect().await;
        let all: Vec<u8> = frames.concat();
        let d = decode_all(&all);
        assert_eq!(d.len(), 3, "the empty chunk is skipped");
        assert_eq!(d[0].payload, b"one");
        assert_eq!(d[1].payload, b"two");
        assert_eq!(
            d[2].payload,
            br#"{"ErrorCode":"Runtime.TimedOut","ErrorDetails":"{}"}"#
        );
        // A sender that goes away without the end: completed with an error.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(tx);
        let frames: Vec<Bytes> = Frames::new(rx).map(|f| f.unwrap()).collect().await;
        let d = decode_all(&frames.concat());
        let doc: serde_json::Value = serde_json::from_slice(&d[0].payload).unwrap();
        assert_eq!(doc["ErrorCode"], "Runtime.StreamInterrupted");
    }

    #[tokio::test]
    async fn a_chunk_past_the_message_limit_is_split_and_small_ones_are_kept() {
        use tokio_stream::StreamExt;
        let big: Bytes = (0..2 * MAX_CHUNK + 5).map(|i| i as u8).collect();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tx.send(StreamPart::Chunk(Bytes::from_static(b"a")))
            .await
            .unwrap();
        tx.send(StreamPart::Chunk(big.clone())).await.unwrap();
        tx.send(StreamPart::Chunk(Bytes::from_static(b"b")))
            .await
            .unwrap();
        tx.send(StreamPart::End(None)).await.unwrap();
        let frames: Vec<Bytes> = Frames::new(rx).map(|f| f.unwrap()).collect().await;
        assert_eq!(
            frames.len(),
            6,
            "a, three pieces of the big chunk, b, complete"
        );
        assert!(frames.iter().all(|f| f.len() <= MAX_MESSAGE));
        let d = decode_all(&frames.concat());
        assert_eq!(d[0].payload, b"a");
        let pieces: Vec<usize> = d[1..4].iter().map(|m| m.payload.len()).collect();
        assert_eq!(pieces, [MAX_CHUNK, MAX_CHUNK, 5]);
        assert_eq!(
            d[1..4]
                .iter()
                .flat_map(|m| m.payload.clone())
                .collect::<Vec<u8>>(),
            big
        );
        assert!(
            d[1..4]
                .iter()
                .all(|m| m.header(":event-type") == Some("PayloadChunk"))
        );
        assert_eq!(d[4].payload, b"b");
        assert_eq!(d[5].payload, b"{}");

        // A buffered answer past the limit is split the same way.
        let ok = InvokeOutcome {
            payload: big.clone(),
            function_error: None,
        };
        let d = decode_all(&buffered(&ok));
        assert_eq!(d.len(), 4);
        assert_eq!(
            d[..3]
                .iter()
                .flat_map(|m| m.payload.clone())
                .collect::<Vec<u8>>(),
            big
        );
        let empty = InvokeOutcome {
            payload: Bytes::new(),
            function_error: None,
        };
        let d = decode_all(&buffered(&empty));
        assert_eq!((d.len(), d[0].payload.len()), (2, 0));
    }

    #[test]
    fn invoke_complete_stays_within_the_message_limit() {
        // NULs are escaped to six bytes each: the worst case for the JSON document.
        let details = "\0".repeat(20 * 1024 * 1024);
        let e = StreamError {
            error_type: "T".repeat(100_000),
            payload: Bytes::from(details.clone()),
        };
        let m = InvokeComplete::from_error(Some(&e)).encode();
        assert!(m.len() <= MAX_MESSAGE, "{}", m.len());
        let d = decode_all(&m);
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Doc {
            error_code: String,
            error_details: String,
        }
        let doc: Doc = serde_json::from_slice(&d[0].payload).unwrap();
        assert_eq!(doc.error_code, "T".repeat(MAX_ERROR_CODE));
        assert_eq!(doc.error_details.len(), MAX_ERROR_DETAILS);
        assert!(details.starts_with(&doc.error_details));
        // A cut never splits a character.
        assert_eq!(truncated("aé", 2), "a");
        assert_eq!(truncated("aé", 3), "aé");
    }
}
