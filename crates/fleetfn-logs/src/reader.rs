//! Reading a function's log: every environment's segments merged in timestamp order, filtered,
//! in pages that resume from a [`Cursor`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use base64::Engine;
use jiff::Timestamp;
use serde::Deserialize;

use crate::layout::{function_dir, is_safe_component, list_segments, segment_name, version_dir};
use crate::prune::{DropCounts, read_dropped};

/// Longest record the reader accepts; longer lines are skipped as damaged.
const MAX_RECORD_BYTES: u64 = 8 * 1024 * 1024;
/// Longest cursor accepted.
const MAX_CURSOR_CHARS: usize = 64 * 1024;

/// Which records to return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadQuery {
    /// Only records at or after this time.
    pub since: Option<Timestamp>,
    /// Only records of this invoke.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("the cursor is not one this server returned (it must be passed back unchanged)")]
    Invalid,
}

/// Where a reader stands: per environment stream, the segment and byte offset of its next
/// record. Opaque to clients (URL-safe base64).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(BTreeMap<(String, String), (u64, u64)>);

impl Cursor {
    pub fn encode(&self) -> String {
        let entries: Vec<(&str, &str, u64, u64)> = self
            .0
            .iter()
            .map(|((v, e), (s, o))| (v.as_str(), e.as_str(), *s, *o))
            .collect();
        let json = serde_json::to_vec(&entries).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(s: &str) -> Result<Self, CursorError> {
        if s.len() > MAX_CURSOR_CHARS {
            return Err(CursorError::Invalid);
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim())
            .map_err(|_| CursorError::Invalid)?;
        let entries: Vec<(String, String, u64, u64)> =
            serde_json::from_slice(&raw).map_err(|_| CursorError::Invalid)?;
        let mut map = BTreeMap::new();
        for (v, e, s, o) in entries {
            if !is_safe_component(&v) || !is_safe_component(&e) {
                return Err(CursorError::Invalid);
            }
            map.insert((v, e), (s, o));
        }
        Ok(Self(map))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One page of records (each a JSON object, without its newline).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub records: Vec<Vec<u8>>,
    /// The page stopped at its record or byte limit; more records are available now.
    pub more: bool,
}

/// A segment as last listed.
#[derive(Debug, Clone, Copy)]
struct SegInfo {
    modified: std::time::SystemTime,
}

/// One environment's records in one version.
#[derive(Debug)]
struct Stream {
    dir: PathBuf,
    env_id: String,
    segments: BTreeMap<u64, SegInfo>,
    /// Position of the next unread record.
    seq: u64,
    offset: u64,
    /// Timestamp of the last record read (for records without a readable one).
    last_ts: i128,
    file: Option<BufReader<File>>,
}

/// A record read ahead of the merge, with the position it started at.
struct Head {
    ts: i128,
    line: Vec<u8>,
    seq: u64,
    offset: u64,
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(default, borrow, deserialize_with = "lenient_str")]
    timestamp: Option<Cow<'a, str>>,
    #[serde(
        default,
        borrow,
        rename = "requestId",
        deserialize_with = "lenient_str"
    )]
    request_id: Option<Cow<'a, str>>,
}

/// A string field, or `None` when it holds anything else.
fn lenient_str<'de, D>(d: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            while a
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// Reads `line` into `buf` up to and including `\n`. `Ok(true)`: a whole line; `Ok(false)`:
/// end of the data so far (a partial line is left unread). A line longer than
/// [`MAX_RECORD_BYTES`] comes back empty (skipped as damaged).
fn read_line(r: &mut BufReader<File>, buf: &mut Vec<u8>) -> io::Result<(bool, u64)> {
    buf.clear();
    let n = r.by_ref().take(MAX_RECORD_BYTES).read_until(b'\n', buf)? as u64;
    if buf.last() == Some(&b'\n') {
        return Ok((true, n));
    }
    if n < MAX_RECORD_BYTES {
        return Ok((false, 0));
    }
    // Oversized: skip to the end of it, if it has one yet.
    let mut skipped = n;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok((false, 0));
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                buf.clear();
                return Ok((true, skipped + i as u64 + 1));
            }
            None => {
                let len = chunk.len();
                r.consume(len);
                skipped += len as u64;
            }
        }
    }
}

impl Stream {
    /// The next record that passes `query`, or `None` at the end of what is written so far.
    fn next(&mut self, query: &ReadQuery, since_ns: Option<i128>) -> io::Result<Option<Head>> {
        let mut buf = Vec::new();
        loop {
            if self.file.is_none() {
                // Segments deleted under us are skipped (their records are gone).
                if !self.segments.contains_key(&self.seq) {
                    match self.segments.range(self.seq..).next() {
                        Some((&next, _)) => {
                            self.seq = next;
                            self.offset = 0;
                        }
                        None => return Ok(None),
                    }
                }
                let last = self.segments.keys().next_back().copied();
                let Some(info) = self.segments.get(&self.seq).copied() else {
                    continue;
                };
                // A closed segment last written before `since` holds nothing newer.
                if let Some(since) = since_ns
                    && Some(self.seq) != last
                    && nanos_of(info.modified) < since
                {
                    self.advance_segment();
                    continue;
                }
                let path = self.dir.join(segment_name(&self.env_id, self.seq));
                let mut f = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.segments.remove(&self.seq);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                f.seek(SeekFrom::Start(self.offset))?;
                self.file = Some(BufReader::with_capacity(64 * 1024, f));
            }
            let Some(r) = self.file.as_mut() else {
                continue;
            };
            let start = (self.seq, self.offset);
            let (whole, n) = read_line(r, &mut buf)?;
            if !whole {
                // End of this segment for now; a later one means this one is finished.
                self.file = None;
                if self.segments.range(self.seq + 1..).next().is_some() {
                    self.advance_segment();
                    continue;
                }
                return Ok(None);
            }
            self.offset += n;
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            let Ok(probe) = serde_json::from_slice::<Probe<'_>>(&buf) else {
                continue;
            };
            let ts = probe
                .timestamp
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map_or(self.last_ts, |t| t.as_nanosecond());
            self.last_ts = ts;
            if since_ns.is_some_and(|s| ts < s) {
                continue;
            }
            if let Some(want) = &query.request_id
                && probe.request_id.as_deref() != Some(want.as_str())
            {
                continue;
            }
            return Ok(Some(Head {
                ts,
                line: std::mem::take(&mut buf),
                seq: start.0,
                offset: start.1,
            }));
        }
    }

    fn advance_segment(&mut self) {
        self.file = None;
        match self.segments.range(self.seq + 1..).next() {
            Some((&next, _)) => {
                self.seq = next;
                self.offset = 0;
            }
            None => {
                self.seq += 1;
                self.offset = 0;
            }
        }
    }
}

fn nanos_of(t: std::time::SystemTime) -> i128 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// Reads one function's log (all versions, or the given ones).
#[derive(Debug)]
pub struct LogReader {
    function_dir: PathBuf,
    versions: Option<BTreeSet<String>>,
    query: ReadQuery,
    streams: BTreeMap<(String, String), Stream>,
}

impl LogReader {
    /// A reader starting at `cursor` (or at the oldest record). Fails on names that cannot be
    /// log directories.
    pub fn new(
        logs_dir: &Path,
        function: &str,
        versions: Option<Vec<String>>,
        query: ReadQuery,
        cursor: Option<Cursor>,
    ) -> Result<Self, crate::LayoutError> {
        let function_dir = function_dir(logs_dir, function)?;
        if let Some(vs) = &versions {
            for v in vs {
                version_dir(logs_dir, function, v)?;
            }
        }
        let versions: Option<BTreeSet<String>> = versions.map(|v| v.into_iter().collect());
        let mut streams = BTreeMap::new();
        for ((v, e), (seq, offset)) in cursor.map(|c| c.0).unwrap_or_default() {
            if versions.as_ref().is_some_and(|vs| !vs.contains(&v)) {
                continue;
            }
            let stream = Stream {
                dir: function_dir.join(&v),
                env_id: e.clone(),
                segments: BTreeMap::new(),
                seq,
                offset,
                last_ts: i128::MIN,
                file: None,
            };
            streams.insert((v, e), stream);
        }
        Ok(Self {
            function_dir,
            versions,
            query,
            streams,
        })
    }

    fn version_names(&self) -> io::Result<Vec<String>> {
        if let Some(vs) = &self.versions {
            return Ok(vs.iter().cloned().collect());
        }
        let entries = match std::fs::read_dir(&self.function_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && let Some(name) = entry.file_name().to_str()
                && is_safe_component(name)
            {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }

    /// Lists the segments again: new environments and segments join, vanished ones leave.
    fn scan(&mut self) -> io::Result<()> {
        let mut seen: BTreeMap<(String, String), BTreeMap<u64, SegInfo>> = BTreeMap::new();
        for v in self.version_names()? {
            for s in list_segments(&self.function_dir.join(&v))? {
                seen.entry((v.clone(), s.env_id.clone()))
                    .or_default()
                    .insert(
                        s.seq,
                        SegInfo {
                            modified: s.modified,
                        },
                    );
            }
        }
        self.streams.retain(|k, _| seen.contains_key(k));
        for (key, segments) in seen {
            let first = segments.keys().next().copied().unwrap_or(0);
            let stream = self.streams.entry(key.clone()).or_insert_with(|| Stream {
                dir: self.function_dir.join(&key.0),
                env_id: key.1.clone(),
                segments: BTreeMap::new(),
                seq: first,
                offset: 0,
                last_ts: i128::MIN,
                file: None,
            });
            stream.segments = segments;
        }
        Ok(())
    }

    /// The records available now after the cursor, merged by timestamp: at most `limit`
    /// records and about `max_bytes` (at least one record).
    pub fn read_page(&mut self, limit: usize, max_bytes: usize) -> io::Result<Page> {
        self.scan()?;
        let since_ns = self.query.since.map(Timestamp::as_nanosecond);
        let query = self.query.clone();
        let mut streams: Vec<&mut Stream> = self.streams.values_mut().collect();
        let mut heads: Vec<Option<Head>> = Vec::with_capacity(streams.len());
        let mut heap = BinaryHeap::new();
        for (i, s) in streams.iter_mut().enumerate() {
            let h = s.next(&query, since_ns)?;
            if let Some(h) = &h {
                heap.push(std::cmp::Reverse((h.ts, i)));
            }
            heads.push(h);
        }
        let mut page = Page::default();
        let mut bytes = 0usize;
        while let Some(std::cmp::Reverse((_, i))) = heap.pop() {
            let Some(h) = heads[i].take() else {
                continue;
            };
            let full = page.records.len() >= limit
                || (!page.records.is_empty() && bytes + h.line.len() > max_bytes);
            if full {
                heads[i] = Some(h);
                page.more = true;
                break;
            }
            bytes += h.line.len() + 1;
            page.records.push(h.line);
            if let Some(next) = streams[i].next(&query, since_ns)? {
                heap.push(std::cmp::Reverse((next.ts, i)));
                heads[i] = Some(next);
            }
        }
        // Records read ahead but not returned are read again next time.
        for (s, h) in streams.iter_mut().zip(heads) {
            if let Some(h) = h {
                s.seq = h.seq;
                s.offset = h.offset;
            }
            s.file = None;
        }
        Ok(page)
    }

    /// Where the next page starts.
    pub fn cursor(&self) -> Cursor {
        Cursor(
            self.streams
                .iter()
                .map(|(k, s)| (k.clone(), (s.seq, s.offset)))
                .collect(),
        )
    }
}

/// What pruning dropped for these versions (all of the function's when `None`).
pub fn dropped_for(
    logs_dir: &Path,
    function: &str,
    versions: Option<&[String]>,
) -> Result<DropCounts, crate::LayoutError> {
    let dir = function_dir(logs_dir, function)?;
    let names: Vec<String> = match versions {
        Some(v) => v.to_vec(),
        None => std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter(|n| is_safe_component(n))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut all = DropCounts::default();
    for v in names {
        all.add(&read_dropped(&version_dir(logs_dir, function, &v)?));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogLimits;
    use crate::writer::SegmentWriter;
    use std::time::Duration;

    fn rec(ts: &str, id: &str, msg: &str) -> Vec<u8> {
        serde_json::to_vec(
            &serde_json::json!({"timestamp": ts, "level": "INFO", "requestId": id, "message": msg}),
        )
        .unwrap()
    }

    fn messages(page: &Page) -> Vec<String> {
        page.records
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(r).unwrap();
                v["message"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    fn limits() -> LogLimits {
        LogLimits::new(64 * 1024, 1024 * 1024, Duration::from_secs(3600)).unwrap()
    }

    #[test]
    fn merges_environments_and_versions_by_time() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = tmp.path();
        let mut a = SegmentWriter::open(&logs.join("fn/1"), "a", limits()).unwrap();
        let mut b = SegmentWriter::open(&logs.join("fn/2"), "b", limits()).unwrap();
        a.write_line(&rec("2026-01-01T00:00:01Z", "r1", "a1"))
            .unwrap();
        b.write_line(&rec("2026-01-01T00:00:02Z", "r2", "b2"))
            .unwrap();
        a.write_line(&rec("2026-01-01T00:00:03Z", "r1", "a3"))
            .unwrap();
        b.write_line(b"not json").unwrap();
        b.write_line(&rec("2026-01-01T00:00:04.5+00:00", "r2", "b4"))
            .unwrap();
        a.flush().unwrap();
        b.flush().unwrap();
        let mut r = LogReader::new(logs, "fn", None, ReadQuery::default(), None).unwrap();
        let page = r.read_page(100, 1 << 20).unwrap();
        assert_eq!(messages(&page), ["a1", "b2", "a3", "b4"]);
        assert!(!page.more);

        let q = ReadQuery {
            since: Some("2026-01-01T00:00:02Z".parse().unwrap()),
            request_id: Some("r1".into()),
        };
        let mut r = LogReader::new(logs, "fn", None, q, None).unwrap();
        assert_eq!(messages(&r.read_page(100, 1 << 20).unwrap()), ["a3"]);

        let mut r = LogReader::new(
            logs,
            "fn",
            Some(vec!["2".into()]),
            ReadQuery::default(),
            None,
        )
        .unwrap();
        assert_eq!(messages(&r.read_page(100, 1 << 20).unwrap()), ["b2", "b4"]);
        let mut r = LogReader::new(logs, "nope", None, ReadQuery::default(), None).unwrap();
        assert!(r.read_page(100, 1 << 20).unwrap().records.is_empty());
    }

    #[test]
    fn pages_resume_from_the_cursor_and_follow_new_records() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = tmp.path();
        let mut a = SegmentWriter::open(&logs.join("fn/1"), "a", limits()).unwrap();
        let mut b = SegmentWriter::open(&logs.join("fn/1"), "b", limits()).unwrap();
        for i in 0..10 {
            let w = if i % 2 == 0 { &mut a } else { &mut b };
            w.write_line(&rec(
                &format!("2026-01-01T00:00:{i:02}Z"),
                "r",
                &format!("m{i}"),
            ))
            .unwrap();
        }
        a.flush().unwrap();
        b.flush().unwrap();
        let mut r = LogReader::new(logs, "fn", None, ReadQuery::default(), None).unwrap();
        let p1 = r.read_page(4, 1 << 20).unwrap();
        assert_eq!(messages(&p1), ["m0", "m1", "m2", "m3"]);
        assert!(p1.more);
        // A new reader from the encoded cursor continues where the first stopped.
        let cursor = Cursor::decode(&r.cursor().encode()).unwrap();
        let mut r2 = LogReader::new(logs, "fn", None, ReadQuery::default(), Some(cursor)).unwrap();
        let p2 = r2.read_page(100, 1 << 20).unwrap();
        assert_eq!(messages(&p2), ["m4", "m5", "m6", "m7", "m8", "m9"]);
        assert!(!p2.more);
        assert!(r2.read_page(100, 1 << 20).unwrap().records.is_empty());
        // Following: a partial line is not returned until it is complete; new environments
        // and new segments are picked up.
        let seg = b.current_path();
        use std::io::Write as _;
        let mut raw = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        let line = rec("2026-01-01T00:01:00Z", "r", "late");
        raw.write_all(&line[..10]).unwrap();
        assert!(r2.read_page(100, 1 << 20).unwrap().records.is_empty());
        raw.write_all(&line[10..]).unwrap();
        raw.write_all(b"\n").unwrap();
        let mut c = SegmentWriter::open(&logs.join("fn/2"), "c", limits()).unwrap();
        c.write_line(&rec("2026-01-01T00:00:59Z", "r", "new env"))
            .unwrap();
        c.flush().unwrap();
        assert_eq!(
            messages(&r2.read_page(100, 1 << 20).unwrap()),
            ["new env", "late"]
        );
        // Byte limit: at least one record per page.
        let mut r3 = LogReader::new(logs, "fn", None, ReadQuery::default(), None).unwrap();
        let p = r3.read_page(100, 1).unwrap();
        assert_eq!(p.records.len(), 1);
        assert!(p.more);
    }

    #[test]
    fn rotation_and_pruning_under_a_reader() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = tmp.path();
        let lim = LogLimits::new(64 * 1024, 1024 * 1024, Duration::from_secs(3600)).unwrap();
        let mut w = SegmentWriter::open(&logs.join("fn/1"), "a", lim).unwrap();
        let pad = "p".repeat(900);
        let mut n = 0u64;
        let mut write = |w: &mut SegmentWriter, count: u64| {
            for _ in 0..count {
                let ts = format!("2026-01-01T00:00:00.{:09}Z", n);
                w.write_line(&rec(&ts, "r", &format!("{n} {pad}"))).unwrap();
                n += 1;
            }
            w.flush().unwrap();
        };
        write(&mut w, 200);
        let mut r = LogReader::new(logs, "fn", None, ReadQuery::default(), None).unwrap();
        let first = r.read_page(usize::MAX, usize::MAX).unwrap();
        assert_eq!(first.records.len(), 200);
        // Many more than the cap holds: the reader skips what was deleted and never repeats.
        write(&mut w, 3000);
        let rest = r.read_page(usize::MAX, usize::MAX).unwrap();
        let nums: Vec<u64> = messages(&rest)
            .iter()
            .map(|m| m.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
        assert_eq!(*nums.last().unwrap(), 3199);
        assert!(nums[0] >= 200);
        let dropped = dropped_for(logs, "fn", None).unwrap();
        assert_eq!(dropped.lines + nums.len() as u64, 3200, "{dropped:?}");
    }

    #[test]
    fn cursors_and_names_are_checked() {
        assert!(Cursor::decode("!!").is_err());
        assert!(
            Cursor::decode("W1siLi4iLCJlIiwxLDJdXQ").is_err(),
            "a '..' version"
        );
        assert_eq!(
            Cursor::decode(&Cursor::default().encode()).unwrap(),
            Cursor::default()
        );
        let tmp = tempfile::tempdir().unwrap();
        assert!(LogReader::new(tmp.path(), "..", None, ReadQuery::default(), None).is_err());
        assert!(
            LogReader::new(
                tmp.path(),
                "f",
                Some(vec!["a/b".into()]),
                ReadQuery::default(),
                None
            )
            .is_err()
        );
    }
}
