//! Function logs on disk, shared by the agents that write them and the API that reads them.
//!
//! Layout: `<logs dir>/<function>/<version>/<env id>.<seq>.jsonl`, one JSON record per line.
//! Each environment writes its own segments ([`SegmentWriter`]): a new segment when the current
//! one reaches the segment size (or a quarter of the maximum age), and after writing a quarter
//! segment it prunes the version's directory so that all its segments together stay under the
//! cap ([`LogLimits`]): the oldest closed segments go first, and segments older than the maximum
//! age go anyway. What is deleted is counted in `<version>/dropped.json` ([`DropCounts`]).
//!
//! A segment is *live* while its writer holds an exclusive `flock` on it; pruning (by any writer
//! of the version, in any process, or by [`sweep`]) deletes only segments nobody holds. Nothing
//! is shared between environments on the write path: no common lock, no `fsync`.
//!
//! [`LogReader`] merges the segments of a function (some or all versions) in timestamp order,
//! filtered by time and request id, and resumes from a [`Cursor`] (per environment: segment and
//! byte offset), which also serves to follow new records as they are written.
#![forbid(unsafe_code)]

mod layout;
mod limits;
mod prune;
mod reader;
mod time;
mod writer;

pub use layout::{
    DROPPED_FILE, LayoutError, Segment, function_dir, is_safe_component, list_segments,
    parse_segment_name, segment_name, version_dir,
};
pub use limits::{LimitsError, LogLimits, LogStore, parse_size};
pub use prune::{DropCounts, PruneOutcome, prune_version_dir, read_dropped, record_drops, sweep};
pub use reader::{Cursor, CursorError, LogReader, Page, ReadQuery, dropped_for};
pub use time::{TimeError, parse_duration, parse_since, parse_time};
pub use writer::SegmentWriter;
