//! Resource-based policies of functions: the AddPermission/RemovePermission/GetPolicy wire
//! shapes, the policy document Lambda keeps (one per function, version or alias) and a pure
//! evaluation of it for an anonymous caller ([`PolicyDocument::allows_anyone`]), which decides
//! whether a function URL with `AuthType` `NONE` is public.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The body of AddPermission. `FunctionUrlAuthType` stays a string so a wrong value gets AWS's
/// `ValidationException`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AddPermissionRequest {
    pub statement_id: Option<String>,
    pub action: Option<String>,
    pub principal: Option<String>,
    pub source_arn: Option<String>,
    pub source_account: Option<String>,
    pub event_source_token: Option<String>,
    pub function_url_auth_type: Option<String>,
    /// Restricts `lambda:InvokeFunction` to calls through a function URL.
    pub invoked_via_function_url: Option<bool>,
    pub revision_id: Option<String>,
    #[serde(rename = "PrincipalOrgID")]
    pub principal_org_id: Option<String>,
}

/// The answer of AddPermission: the added statement as a JSON string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddPermissionResponse {
    pub statement: String,
}

/// The answer of GetPolicy: the policy document as a JSON string, and its revision.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetPolicyResponse {
    pub policy: String,
    pub revision_id: String,
}

/// Condition operator → condition key → value, as in IAM (`{"StringEquals":
/// {"lambda:FunctionUrlAuthType": "NONE"}}`).
pub type Conditions = BTreeMap<String, BTreeMap<String, String>>;

/// Who a statement applies to: `"*"`, `{"AWS": arn}` or `{"Service": name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Principal {
    /// Only ever `*` (everyone).
    Literal(String),
    Aws {
        #[serde(rename = "AWS")]
        aws: String,
    },
    Service {
        #[serde(rename = "Service")]
        service: String,
    },
}

impl Principal {
    /// Whether it names everyone (`"*"` or `{"AWS": "*"}`).
    pub fn is_everyone(&self) -> bool {
        match self {
            Self::Literal(s) | Self::Aws { aws: s } => s == "*",
            Self::Service { .. } => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement of a function's policy, as AWS writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyStatement {
    pub sid: String,
    pub effect: Effect,
    pub principal: Principal,
    pub action: String,
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Conditions>,
}

/// A function's (version's, alias's) resource-based policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    pub version: String,
    pub id: String,
    pub statement: Vec<PolicyStatement>,
}

impl Default for PolicyDocument {
    fn default() -> Self {
        Self {
            version: "2012-10-17".into(),
            id: "default".into(),
            statement: Vec::new(),
        }
    }
}

/// A request to evaluate: an action on a resource by an anonymous caller, with the condition
/// keys the request carries (`(key, value)`, keys in any case).
#[derive(Debug, Clone, Copy)]
pub struct AnonymousRequest<'a> {
    pub action: &'a str,
    pub resource: &'a str,
    pub context: &'a [(&'a str, &'a str)],
}

fn action_matches(pattern: &str, action: &str) -> bool {
    pattern == "*"
        || pattern.eq_ignore_ascii_case("lambda:*")
        || pattern.eq_ignore_ascii_case(action)
}

/// IAM's `*`/`?` wildcard match (`StringLike`, `ArnLike`).
fn like(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether one condition operator's keys all hold; a key the request lacks, or an operator
/// this evaluation does not know, does not hold.
fn condition_holds(op: &str, keys: &BTreeMap<String, String>, context: &[(&str, &str)]) -> bool {
    keys.iter().all(|(key, want)| {
        let Some(&(_, got)) = context.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) else {
            return false;
        };
        match op {
            "StringEquals" | "ArnEquals" => got == want,
            "StringEqualsIgnoreCase" => got.eq_ignore_ascii_case(want),
            "StringLike" | "ArnLike" => like(want, got),
            "Bool" => got.eq_ignore_ascii_case(want),
            _ => false,
        }
    })
}

impl PolicyDocument {
    /// Whether the policy lets an anonymous caller make `req`: some `Allow` statement to
    /// everyone matches its action and resource and all its conditions hold, and no `Deny`
    /// statement to everyone matches.
    pub fn allows_anyone(&self, req: &AnonymousRequest<'_>) -> bool {
        let applies = |s: &&PolicyStatement| {
            s.principal.is_everyone()
                && action_matches(&s.action, req.action)
                && (s.resource == req.resource || like(&s.resource, req.resource))
                && s.condition.as_ref().is_none_or(|c| {
                    c.iter()
                        .all(|(op, keys)| condition_holds(op, keys, req.context))
                })
        };
        let mut allowed = false;
        for s in self.statement.iter().filter(applies) {
            match s.effect {
                Effect::Deny => return false,
                Effect::Allow => allowed = true,
            }
        }
        allowed
    }

    /// Whether a function URL with `AuthType` `NONE` on `resource` is public: since October
    /// 2025 that takes both `lambda:InvokeFunctionUrl` and `lambda:InvokeFunction` allowed to
    /// everyone for calls through the URL.
    pub fn allows_public_url(&self, resource: &str) -> bool {
        let context = [
            ("lambda:FunctionUrlAuthType", "NONE"),
            ("lambda:InvokedViaFunctionUrl", "true"),
        ];
        ["lambda:InvokeFunctionUrl", "lambda:InvokeFunction"]
            .iter()
            .all(|action| {
                self.allows_anyone(&AnonymousRequest {
                    action,
                    resource,
                    context: &context,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:f";

    fn stmt(
        sid: &str,
        principal: Principal,
        action: &str,
        cond: &[(&str, &str, &str)],
    ) -> PolicyStatement {
        let mut c = Conditions::new();
        for (op, k, v) in cond {
            c.entry(op.to_string())
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
        PolicyStatement {
            sid: sid.into(),
            effect: Effect::Allow,
            principal,
            action: action.into(),
            resource: ARN.into(),
            condition: (!c.is_empty()).then_some(c),
        }
    }

    fn everyone() -> Principal {
        Principal::Literal("*".into())
    }

    fn doc(statement: Vec<PolicyStatement>) -> PolicyDocument {
        PolicyDocument {
            statement,
            ..PolicyDocument::default()
        }
    }

    #[test]
    fn public_url_needs_both_actions() {
        let url = stmt(
            "url",
            everyone(),
            "lambda:InvokeFunctionUrl",
            &[("StringEquals", "lambda:FunctionUrlAuthType", "NONE")],
        );
        let invoke = stmt(
            "invoke",
            everyone(),
            "lambda:InvokeFunction",
            &[("Bool", "lambda:InvokedViaFunctionUrl", "true")],
        );
        assert!(!doc(vec![url.clone()]).allows_public_url(ARN));
        assert!(!doc(vec![invoke.clone()]).allows_public_url(ARN));
        assert!(doc(vec![url, invoke]).allows_public_url(ARN));
        // Another resource (an alias's ARN) is not covered.
        assert!(
            !doc(vec![stmt("all", everyone(), "lambda:*", &[])])
                .allows_public_url(&format!("{ARN}:live"))
        );
    }

    #[test]
    fn wildcards_and_principals() {
        assert!(doc(vec![stmt("all", everyone(), "lambda:*", &[])]).allows_public_url(ARN));
        assert!(doc(vec![stmt("all", everyone(), "*", &[])]).allows_public_url(ARN));
        let aws_star = Principal::Aws { aws: "*".into() };
        assert!(doc(vec![stmt("all", aws_star, "lambda:*", &[])]).allows_public_url(ARN));
        let account = Principal::Aws {
            aws: "arn:aws:iam::000000000000:root".into(),
        };
        assert!(!doc(vec![stmt("acct", account, "lambda:*", &[])]).allows_public_url(ARN));
        let service = Principal::Service {
            service: "s3.amazonaws.com".into(),
        };
        assert!(!doc(vec![stmt("svc", service, "lambda:*", &[])]).allows_public_url(ARN));
        assert!(
            !doc(vec![stmt("x", everyone(), "lambda:GetFunction", &[])]).allows_public_url(ARN)
        );
        assert!(!PolicyDocument::default().allows_public_url(ARN));
    }

    #[test]
    fn conditions() {
        let with = |cond: &[(&str, &str, &str)]| {
            doc(vec![stmt("c", everyone(), "lambda:*", cond)]).allows_public_url(ARN)
        };
        assert!(!with(&[(
            "StringEquals",
            "lambda:FunctionUrlAuthType",
            "AWS_IAM"
        )]));
        assert!(with(&[(
            "StringEquals",
            "LAMBDA:functionUrlAuthType",
            "NONE"
        )]));
        assert!(!with(&[("Bool", "lambda:InvokedViaFunctionUrl", "false")]));
        assert!(with(&[("Bool", "lambda:InvokedViaFunctionUrl", "True")]));
        // Keys an anonymous URL call does not carry never hold.
        assert!(!with(&[(
            "StringEquals",
            "AWS:SourceAccount",
            "000000000000"
        )]));
        assert!(!with(&[("ArnLike", "AWS:SourceArn", "*")]));
        // Unknown operators do not hold.
        assert!(!with(&[(
            "NumericEquals",
            "lambda:FunctionUrlAuthType",
            "NONE"
        )]));
        assert!(with(&[("StringLike", "lambda:FunctionUrlAuthType", "N*E")]));
    }

    #[test]
    fn deny_wins() {
        let mut deny = stmt("deny", everyone(), "lambda:InvokeFunction", &[]);
        deny.effect = Effect::Deny;
        assert!(!doc(vec![stmt("all", everyone(), "lambda:*", &[]), deny]).allows_public_url(ARN));
    }

    #[test]
    fn like_matches_iam_wildcards() {
        assert!(like("a*c", "abbbc"));
        assert!(like("a?c", "abc"));
        assert!(!like("a?c", "abbc"));
        assert!(like("*", ""));
        assert!(!like("abc", "abcd"));
    }

    #[test]
    fn serializes_as_aws() {
        let s = stmt(
            "FunctionURLAllowPublicAccess",
            everyone(),
            "lambda:InvokeFunctionUrl",
            &[("StringEquals", "lambda:FunctionUrlAuthType", "NONE")],
        );
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!(
                r#"{{"Sid":"FunctionURLAllowPublicAccess","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunctionUrl","Resource":"{ARN}","Condition":{{"StringEquals":{{"lambda:FunctionUrlAuthType":"NONE"}}}}}}"#
            )
        );
        let svc = Principal::Service {
            service: "s3.amazonaws.com".into(),
        };
        assert_eq!(
            serde_json::to_string(&svc).unwrap(),
            r#"{"Service":"s3.amazonaws.com"}"#
        );
        let back: PolicyDocument =
            serde_json::from_str(&serde_json::to_string(&doc(vec![s])).unwrap()).unwrap();
        assert_eq!(back.statement[0].principal, everyone());
    }
}
