//! Timestamps in the formats Lambda uses.

/// `LastModified` as Lambda writes it: `2026-11-27T09:00:00.000+0000`.
pub fn lambda_timestamp(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

pub fn now_lambda() -> String {
    lambda_timestamp(jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_like_lambda() {
        let ts: jiff::Timestamp = "2026-11-27T09:00:00.5Z".parse().unwrap();
        assert_eq!(super::lambda_timestamp(ts), "2026-11-27T09:00:00.500+0000");
    }
}
