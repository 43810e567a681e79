//! Timestamps in the formats Lambda uses.

/// `LastModified` as Lambda writes it: `2026-11-27T09:00:00.000+0000`.
pub fn lambda_timestamp(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

pub fn now_lambda() -> String {
    lambda_timestamp(jiff::Timestamp::now())
}

/// A `--since` value: a duration back from `now` (`90s`, `10m`, `24h`, `7d`) or an RFC 3339
/// timestamp. The error says what is accepted.
pub fn parse_since(value: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
    let v = value.trim();
    let bad = || {
        format!(
            "'{value}' is not a time: use a duration back from now like 90s, 10m, 24h or 7d, or an RFC 3339 timestamp like 2026-11-27T09:00:00Z"
        )
    };
    if let Some(unit) = v.chars().last().filter(char::is_ascii_alphabetic)
        && v.len() > 1
        && v[..v.len() - 1].chars().all(|c| c.is_ascii_digit())
    {
        let n: i64 = v[..v.len() - 1].parse().map_err(|_| bad())?;
        let secs = match unit {
            's' => Some(n),
            'm' => n.checked_mul(60),
            'h' => n.checked_mul(3600),
            'd' => n.checked_mul(86_400),
            _ => None,
        }
        .ok_or_else(bad)?;
        return now
            .checked_sub(jiff::SignedDuration::from_secs(secs))
            .map_err(|_| bad());
    }
    v.parse::<jiff::Timestamp>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    #[test]
    fn since_takes_durations_and_timestamps() {
        let now: jiff::Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
        let p = |s| super::parse_since(s, now).map(|t| t.to_string());
        assert_eq!(p("10m").unwrap(), "2026-11-27T11:50:00Z");
        assert_eq!(p("24h").unwrap(), "2026-11-26T12:00:00Z");
        assert_eq!(p("7d").unwrap(), "2026-11-20T12:00:00Z");
        assert_eq!(p("90s").unwrap(), "2026-11-27T11:58:30Z");
        assert_eq!(p("2026-11-27T09:00:00Z").unwrap(), "2026-11-27T09:00:00Z");
        for bad in [
            "",
            "h",
            "10",
            "10x",
            "-5m",
            "yesterday",
            "99999999999999999999d",
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.contains("24h"), "{bad}: {e}");
        }
    }

    #[test]
    fn formats_like_lambda() {
        let ts: jiff::Timestamp = "2026-11-27T09:00:00.5Z".parse().unwrap();
        assert_eq!(super::lambda_timestamp(ts), "2026-11-27T09:00:00.500+0000");
    }
}
