//! Entry points for the fuzz targets in `fuzz/` (not a public API): how the function URL
//! endpoint reads what a function answers, which a hostile function controls — the buffered
//! answer's mapping, a streamed answer's HTTP prelude and the search for the 8 NUL bytes that
//! end it.

use bytes::Bytes;

use crate::url::response;

/// What the endpoint makes of an answer: the status and header count it would send, or `None`
/// when it would answer `502` (malformed).
pub fn url_answer(payload: &[u8]) -> Option<(u16, usize)> {
    response::buffered(&Bytes::copy_from_slice(payload))
        .ok()
        .map(|a| (a.head.status.as_u16(), a.head.headers.len()))
}

/// The same for a streamed answer's prelude (the JSON before the 8 NUL bytes).
pub fn url_prelude(json: &[u8]) -> Option<(u16, usize)> {
    response::prelude(json)
        .ok()
        .map(|h| (h.status.as_u16(), h.headers.len()))
}

/// Where the prelude ends in `buf`, searching from `from`.
pub fn url_prelude_end(buf: &[u8], from: usize) -> Option<usize> {
    response::find_prelude_end(buf, from)
}
