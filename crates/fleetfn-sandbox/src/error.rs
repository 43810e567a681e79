//! [`JailError`]: a failed setup step of the helper, and the one line it prints for it on stderr
//! (`fleetfn-sandbox: <step>: <error>`), which the agent parses back. Shared by the helper
//! (`jail`) and the root filesystem plan (`rootfs`), which both fail with it, without either
//! importing the other.

use std::fmt::Display;

/// Prefix of the helper's one-line failure message on stderr.
pub const MESSAGE_PREFIX: &str = "fleetfn-sandbox: ";

/// A setup step failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {error}")]
pub struct JailError {
    /// What was being done, e.g. `bind /srv/code on /root/var/task`, `setuid`, `exec /var/task/bootstrap`.
    pub step: String,
    /// The error text (from the OS, usually).
    pub error: String,
}

impl JailError {
    pub fn new(step: impl Into<String>, error: impl Display) -> Self {
        Self {
            step: step.into(),
            error: error.to_string(),
        }
    }

    /// The line the helper prints: `fleetfn-sandbox: <step>: <error>`.
    pub fn message(&self) -> String {
        format!("{MESSAGE_PREFIX}{self}")
    }

    /// Parses a stderr line the helper printed (the agent uses this to report an init failure).
    /// Returns `None` for any other line.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim_end().strip_prefix(MESSAGE_PREFIX)?;
        // Steps contain no ": " (paths aside, which never end in ':'), errors may.
        let (step, error) = rest.split_once(": ")?;
        Some(Self::new(step, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_helper_messages() {
        let err = JailError::new(
            "exec /var/task/bootstrap",
            "ENOENT: No such file or directory",
        );
        let line = err.message();
        assert_eq!(
            line,
            "fleetfn-sandbox: exec /var/task/bootstrap: ENOENT: No such file or directory"
        );
        assert_eq!(JailError::parse(&format!("{line}\n")), Some(err));
        assert_eq!(JailError::parse("Traceback (most recent call last):"), None);
    }
}
