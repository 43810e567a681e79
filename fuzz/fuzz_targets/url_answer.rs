//! A function's answer as its URL's HTTP response (`fleetfn_api::fuzzing`): the buffered
//! mapping, a streamed answer's prelude, and the search for the 8 NUL bytes that end the
//! prelude, fed in pieces as a stream delivers it. Checks: no panic; a mapped answer has a
//! status the endpoint may send (three digits, not informational: 200–999) and at most 201
//! header values (100 headers, 100 cookies, the content type); the incremental search finds
//! the same end as a search of the whole buffer.
#![no_main]

use fleetfn_api::fuzzing::{url_answer, url_prelude, url_prelude_end};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for mapped in [url_answer(data), url_prelude(data)].into_iter().flatten() {
        let (status, headers) = mapped;
        assert!((200..1000).contains(&status), "status {status}");
        assert!(headers <= 201, "{headers} header values");
    }
    // Deliver `data` in pieces whose sizes come from its first byte, searching as the endpoint
    // does: from where the last search stopped, less 7 bytes.
    let whole = url_prelude_end(data, 0);
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut searched: usize = 0;
    let mut found = None;
    let mut len = 0;
    while len < data.len() {
        len = (len + step).min(data.len());
        if let Some(at) = url_prelude_end(&data[..len], searched.saturating_sub(7)) {
            found = Some(at);
            break;
        }
        searched = len;
    }
    assert_eq!(found, whole);
});
