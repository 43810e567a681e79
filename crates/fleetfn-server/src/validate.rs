//! Request checks shared by several operations, with AWS's error types and wording.

use std::collections::BTreeMap;

use fleetfn_model::types::Tags;
use fleetfn_model::{ErrorKind, LambdaError, Result};

pub(crate) fn required<'a, T>(v: &'a Option<T>, path: &str) -> Result<&'a T> {
    v.as_ref().ok_or_else(|| {
        LambdaError::new(
            ErrorKind::Validation,
            format!(
                "1 validation error detected: Value null at '{path}' failed to satisfy constraint: Member must not be null"
            ),
        )
    })
}

pub(crate) fn len_between(v: &str, path: &str, min: usize, max: usize) -> Result<()> {
    let n = v.chars().count();
    if n < min || n > max {
        return Err(LambdaError::validation(
            v,
            path,
            &format!(
                "Member must have length less than or equal to {max}, and greater than or equal to {min}"
            ),
        ));
    }
    Ok(())
}

/// Checks `min <= v <= max` and returns `v` as `u32` (all Lambda integer members fit).
pub(crate) fn int_u32(v: i64, path: &str, min: u32, max: u32) -> Result<u32> {
    int_between(v, path, i64::from(min), i64::from(max))?;
    Ok(u32::try_from(v).unwrap_or(max))
}

pub(crate) fn int_between(v: i64, path: &str, min: i64, max: i64) -> Result<()> {
    if v < min {
        return Err(LambdaError::validation(
            &v.to_string(),
            path,
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if v > max {
        return Err(LambdaError::validation(
            &v.to_string(),
            path,
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    Ok(())
}

pub(crate) fn one_of(v: &str, path: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&v) {
        return Ok(());
    }
    Err(LambdaError::validation(
        v,
        path,
        &format!(
            "Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        ),
    ))
}

/// `arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+`
pub(crate) fn role_arn(v: &str, path: &str) -> Result<()> {
    let ok = (|| {
        let rest = v.strip_prefix("arn:")?;
        let (partition, rest) = rest.split_once(':')?;
        if !(partition.is_empty() || partition.starts_with("aws")) {
            return None;
        }
        let rest = rest.strip_prefix("iam::")?;
        let (account, rest) = rest.split_once(':')?;
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let name = rest.strip_prefix("role")?;
        let name = name.strip_prefix('/').unwrap_or(name);
        (!name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_/".contains(c)))
        .then_some(())
    })()
    .is_some();
    if ok {
        Ok(())
    } else {
        Err(LambdaError::validation(
            v,
            path,
            "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
        ))
    }
}

/// `(arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()`
pub(crate) fn kms_arn(v: &str, path: &str) -> Result<()> {
    if v.is_empty() {
        return Ok(());
    }
    let ok = v
        .strip_prefix("arn:")
        .and_then(|r| r.split_once(':'))
        .and_then(|(p, r)| (p.is_empty() || p.starts_with("aws")).then_some(r))
        .and_then(|r| r.split_once(':'))
        .is_some_and(|(svc, _)| {
            !svc.is_empty()
                && svc
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        });
    if ok {
        Ok(())
    } else {
        Err(LambdaError::validation(
            v,
            path,
            "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()",
        ))
    }
}

/// Tag rules: at most 50 tags, keys 1–128 characters, values up to 256, no `aws:` prefix.
pub(crate) fn tags(tags: &Tags, existing: Option<&Tags>) -> Result<()> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(LambdaError::invalid(format!(
                "Tag key '{k}' must be between 1 and 128 characters long."
            )));
        }
        if v.chars().count() > 256 {
            return Err(LambdaError::invalid(format!(
                "The value of tag '{k}' must be at most 256 characters long."
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(LambdaError::invalid(format!(
                "Tag key '{k}' uses the reserved prefix 'aws:'. Choose a key without it."
            )));
        }
    }
    let total =
        existing.map_or(0, |e| e.keys().filter(|k| !tags.contains_key(*k)).count()) + tags.len();
    if total > 50 {
        return Err(LambdaError::invalid(format!(
            "A resource can have at most 50 tags; this request would give it {total}."
        )));
    }
    Ok(())
}

/// Keys Lambda sets itself and refuses in `Environment.Variables`.
const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_MAX_CONCURRENCY",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// Environment variables: keys `[a-zA-Z]([a-zA-Z0-9_])+`, no reserved keys, 4 KB in total.
pub(crate) fn environment(vars: &BTreeMap<String, String>) -> Result<()> {
    let mut reserved = Vec::new();
    let mut size = 0usize;
    for (k, v) in vars {
        let mut chars = k.chars();
        let valid = k.len() >= 2
            && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(LambdaError::validation(
                k,
                "environment.variables",
                "Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]",
            ));
        }
        if RESERVED_ENV.contains(&k.as_str()) {
            reserved.push(k.as_str());
        }
        size += k.len() + v.len();
    }
    if !reserved.is_empty() {
        return Err(LambdaError::invalid(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
            reserved.join(", ")
        )));
    }
    if size > 4096 {
        return Err(LambdaError::invalid(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {size} bytes"
        )));
    }
    Ok(())
}

pub(crate) fn architectures(archs: &[String]) -> Result<String> {
    if archs.len() != 1 {
        return Err(LambdaError::validation(
            &format!("{archs:?}"),
            "architectures",
            "Member must have length less than or equal to 1, and greater than or equal to 1",
        ));
    }
    one_of(&archs[0], "architectures.member", &["x86_64", "arm64"])?;
    Ok(archs[0].clone())
}

/// A `DeadLetterConfig`: its `TargetArn` an SQS queue or SNS topic ARN; an empty or absent
/// `TargetArn` means none (how UpdateFunctionConfiguration removes it).
pub(crate) fn dead_letter(
    d: Option<&fleetfn_model::types::DeadLetterConfig>,
) -> Result<Option<fleetfn_model::types::DeadLetterConfig>> {
    match d.and_then(|d| d.target_arn.as_deref()) {
        None | Some("") => Ok(None),
        Some(arn) => {
            len_between(arn, "deadLetterConfig.targetArn", 0, 10_000)?;
            fleetfn_model::destination::parse_dead_letter(arn)?;
            Ok(d.cloned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        assert!(role_arn("arn:aws:iam::000000000000:role/lambda-role", "role").is_ok());
        assert!(role_arn("arn:aws:iam::000000000000:role/path/to/r", "role").is_ok());
        assert!(role_arn("arn:aws:iam::0000:role/x", "role").is_err());
        assert!(role_arn("not-an-arn", "role").is_err());
        assert!(role_arn("arn:aws:iam::000000000000:user/x", "role").is_err());
    }

    #[test]
    fn env_vars() {
        let mut v = BTreeMap::new();
        v.insert("GOOD_KEY".into(), "x".into());
        assert!(environment(&v).is_ok());
        v.insert("AWS_REGION".into(), "x".into());
        let e = environment(&v).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameterValue);
        assert!(e.message.contains("AWS_REGION"));
        let mut v = BTreeMap::new();
        v.insert("1bad".into(), "x".into());
        assert_eq!(environment(&v).unwrap_err().kind, ErrorKind::Validation);
        let mut v = BTreeMap::new();
        v.insert("BIG".into(), "x".repeat(5000));
        assert_eq!(
            environment(&v).unwrap_err().kind,
            ErrorKind::InvalidParameterValue
        );
    }

    #[test]
    fn tag_rules() {
        let mut t = Tags::new();
        t.insert("aws:x".into(), "v".into());
        assert!(tags(&t, None).is_err());
        let t: Tags = (0..51)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(tags(&t, None).is_err());
        let t: Tags = (0..50)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(tags(&t, None).is_ok());
    }

    #[test]
    fn ranges_and_enums() {
        assert!(int_between(2048, "memorySize", 128, 32768).is_ok());
        let e = int_between(40000, "memorySize", 128, 32768).unwrap_err();
        assert!(e.message.contains("less than or equal to 32768"));
        assert!(one_of("Auto", "scalingMode", &["Auto", "Manual"]).is_ok());
        assert!(one_of("auto", "scalingMode", &["Auto", "Manual"]).is_err());
        assert!(len_between("", "name", 1, 5).is_err());
        assert!(architectures(&["x86_64".into()]).is_ok());
        assert!(architectures(&["x86_64".into(), "arm64".into()]).is_err());
    }
}
