//! Points in time and durations as users write them: `10m`, `2h`, `1d`, RFC 3339, epoch ms.

use std::time::Duration;

use jiff::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error(
        "{0:?} is not a time: use a duration back from now like 30s, 10m, 2h, 24h, 1d or 1w, an RFC 3339 time like 2026-01-02T15:04:05Z, or epoch milliseconds"
    )]
    Since(String),
    #[error(
        "{0:?} is not a time: use an RFC 3339 time like 2026-01-02T15:04:05Z or epoch milliseconds"
    )]
    Absolute(String),
    #[error("{0:?} is not a duration: use a number with s, m, h, d or w (e.g. 10m, 7d)")]
    Duration(String),
    #[error("{0:?} is too far back")]
    OutOfRange(String),
}

/// `30s`, `10m`, `2h`, `1d`, `1w`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, TimeError> {
    let t = s.trim();
    let bad = || TimeError::Duration(s.to_owned());
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| TimeError::OutOfRange(s.to_owned()))
}

/// An absolute time: RFC 3339 (`2026-01-02T15:04:05Z`, offsets allowed) or epoch milliseconds.
pub fn parse_time(s: &str) -> Result<Timestamp, TimeError> {
    let t = s.trim();
    if !t.is_empty() && t.len() <= 16 && t.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = t.parse().map_err(|_| TimeError::Absolute(s.to_owned()))?;
        return Timestamp::from_millisecond(ms).map_err(|_| TimeError::OutOfRange(s.to_owned()));
    }
    t.parse::<Timestamp>()
        .map_err(|_| TimeError::Absolute(s.to_owned()))
}

/// What `--since` takes: a duration back from `now` (`10m`, `2h`, `1d`) or an absolute time.
/// A bare number must be epoch milliseconds (12 digits or more), so `10` is refused rather
/// than read as 10 ms after 1970.
pub fn parse_since(s: &str, now: Timestamp) -> Result<Timestamp, TimeError> {
    let t = s.trim();
    if t.len() < 12 && t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TimeError::Since(s.to_owned()));
    }
    let relative = t
        .strip_suffix(['s', 'm', 'h', 'd', 'w'])
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if relative {
        let back = parse_duration(t).map_err(|_| TimeError::OutOfRange(s.to_owned()))?;
        let span = jiff::SignedDuration::try_from(back)
            .map_err(|_| TimeError::OutOfRange(s.to_owned()))?;
        return now
            .checked_sub(span)
            .map_err(|_| TimeError::OutOfRange(s.to_owned()));
    }
    parse_time(t).map_err(|e| match e {
        TimeError::Absolute(_) => TimeError::Since(s.to_owned()),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn since_ending_in_a_multibyte_character_is_an_error_not_a_panic() {
        // Found by fuzz/api_parse (`GET /fleetfn/v1/cost?Since=48h%FF` panicked the handler).
        let now = ts("2026-01-10T12:00:00Z");
        assert!(matches!(
            parse_since("48h\u{FFFD}", now),
            Err(TimeError::Since(_))
        ));
        assert!(matches!(parse_since("é", now), Err(TimeError::Since(_))));
        assert!(parse_since("1\u{FFFD}", now).is_err());
    }

    #[test]
    fn since_relative_and_absolute() {
        let now = ts("2026-01-10T12:00:00Z");
        assert_eq!(parse_since("10m", now).unwrap(), ts("2026-01-10T11:50:00Z"));
        assert_eq!(parse_since("2h", now).unwrap(), ts("2026-01-10T10:00:00Z"));
        assert_eq!(parse_since("1d", now).unwrap(), ts("2026-01-09T12:00:00Z"));
        assert_eq!(parse_since("1w", now).unwrap(), ts("2026-01-03T12:00:00Z"));
        assert_eq!(parse_since("30s", now).unwrap(), ts("2026-01-10T11:59:30Z"));
        assert_eq!(
            parse_since("2026-01-02T03:04:05.678Z", now).unwrap(),
            ts("2026-01-02T03:04:05.678Z")
        );
        assert_eq!(
            parse_since("2026-01-02T05:04:05+02:00", now).unwrap(),
            ts("2026-01-02T03:04:05Z")
        );
        assert_eq!(
            parse_since("1767225600000", now).unwrap(),
            ts("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn since_rejects_garbage_with_a_hint() {
        let now = ts("2026-01-10T12:00:00Z");
        for bad in [
            "",
            "10",
            "m",
            "10x",
            "ten minutes",
            "-5m",
            "2026-13-01",
            "1.5h",
        ] {
            let e = parse_since(bad, now).unwrap_err();
            assert!(e.to_string().contains("10m"), "{bad}: {e}");
        }
        assert!(matches!(
            parse_since("99999999999999999w", now),
            Err(TimeError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_since("9999999999999999", now),
            Err(TimeError::OutOfRange(_))
        ));
    }

    #[test]
    fn absolute_and_durations() {
        assert!(parse_time("10m").is_err());
        assert_eq!(parse_time("0").unwrap(), Timestamp::UNIX_EPOCH);
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("7 days").is_err());
    }
}
