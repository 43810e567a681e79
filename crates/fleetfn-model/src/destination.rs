//! Targets of asynchronous-invocation records: the destinations of a function's event invoke
//! config (SQS, SNS, EventBridge, another Lambda function) and its dead-letter queue (SQS or
//! SNS), parsed from their ARNs once, when configured.

use crate::arn::{FunctionRef, Scope};
use crate::error::{LambdaError, Result};

/// Where a record is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An SQS queue ARN (`arn:aws:sqs:REGION:ACCOUNT:NAME`).
    Sqs(String),
    /// An SNS topic ARN (`arn:aws:sns:REGION:ACCOUNT:NAME`).
    Sns(String),
    /// An EventBridge event bus ARN (`arn:aws:events:REGION:ACCOUNT:event-bus/NAME`).
    EventBus(String),
    /// A function of this installation, invoked asynchronously with the record.
    Function(FunctionRef),
}

/// `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE` with every part present.
fn split(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(res)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let ok = partition.starts_with("aws")
        && !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && !res.is_empty();
    ok.then_some((service, region, account, res))
}

fn name_ok(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// A destination of an event invoke config (`DestinationConfig.OnSuccess/OnFailure.Destination`).
pub fn parse_destination(arn: &str, scope: &Scope) -> Result<Target> {
    let bad = || {
        LambdaError::invalid(format!(
            "The destination ARN {arn} is invalid: give an SQS queue, SNS topic, EventBridge event bus or Lambda function ARN."
        ))
    };
    let (service, _, _, res) = split(arn).ok_or_else(bad)?;
    match service {
        "sqs" if name_ok(res, 80) => Ok(Target::Sqs(arn.to_owned())),
        "sns" if name_ok(res, 256) => Ok(Target::Sns(arn.to_owned())),
        "events"
            if res
                .strip_prefix("event-bus/")
                .is_some_and(|n| name_ok(n, 256)) =>
        {
            Ok(Target::EventBus(arn.to_owned()))
        }
        "lambda" if res.starts_with("function:") => {
            let f = FunctionRef::parse(arn, scope, 140).map_err(|_| bad())?;
            Ok(Target::Function(f))
        }
        _ => Err(bad()),
    }
}

/// A function's dead-letter queue (`DeadLetterConfig.TargetArn`): SQS or SNS only.
pub fn parse_dead_letter(arn: &str) -> Result<Target> {
    let bad = || {
        LambdaError::invalid(format!(
            "The provided target arn {arn} is invalid: a dead-letter queue is an SQS queue or SNS topic ARN."
        ))
    };
    match split(arn).ok_or_else(bad)? {
        ("sqs", _, _, res) if name_ok(res, 80) => Ok(Target::Sqs(arn.to_owned())),
        ("sns", _, _, res) if name_ok(res, 256) => Ok(Target::Sns(arn.to_owned())),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_by_service() {
        let s = Scope::default();
        assert_eq!(
            parse_destination("arn:aws:sqs:us-east-1:123456789012:q-1", &s).unwrap(),
            Target::Sqs("arn:aws:sqs:us-east-1:123456789012:q-1".into())
        );
        assert!(matches!(
            parse_destination("arn:aws:sns:eu-west-1:123456789012:t.fifo", &s).unwrap(),
            Target::Sns(_)
        ));
        assert!(matches!(
            parse_destination(
                "arn:aws:events:us-east-1:123456789012:event-bus/default",
                &s
            )
            .unwrap(),
            Target::EventBus(_)
        ));
        match parse_destination("arn:aws:lambda:us-east-1:000000000000:function:f:live", &s)
            .unwrap()
        {
            Target::Function(f) => {
                assert_eq!(f.name, "f");
                assert_eq!(f.qualifier.as_deref(), Some("live"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_destinations_are_refused() {
        let s = Scope::default();
        for arn in [
            "",
            "arn",
            "arn:aws:s3:::bucket",
            "arn:aws:sqs:us-east-1:123:q",
            "arn:aws:sqs:us-east-1:123456789012:",
            "arn:aws:sqs:us-east-1:123456789012:a/b",
            "arn:aws:sqs:US-EAST-1:123456789012:q",
            "arn:aws:events:us-east-1:123456789012:rule/x",
            "arn:aws:lambda:us-east-1:000000000000:layer:x",
            "arn:aws:lambda:us-east-1:000000000000:function:",
            "arn:aws:dynamodb:us-east-1:123456789012:table/t",
            "kafka://broker",
        ] {
            let e = parse_destination(arn, &s).unwrap_err();
            assert_eq!(
                e.kind.type_name(),
                "InvalidParameterValueException",
                "{arn}"
            );
        }
        assert!(parse_dead_letter("arn:aws:events:us-east-1:123456789012:event-bus/x").is_err());
        assert!(parse_dead_letter("arn:aws:lambda:us-east-1:000000000000:function:f").is_err());
        assert!(parse_dead_letter("arn:aws:sqs:us-east-1:123456789012:dlq").is_ok());
    }
}
