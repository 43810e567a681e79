//! Resource-based policies: AddPermission, RemovePermission and GetPolicy for a function
//! (unqualified), a version or an alias, each its own policy stored by `function/qualifier`
//! with a revision id of its own.

use fleetfn_model::arn::FunctionRef;
use fleetfn_model::policy::{
    AddPermissionRequest, AddPermissionResponse, Conditions, Effect, GetPolicyResponse,
    PolicyDocument, PolicyStatement, Principal,
};
use fleetfn_model::url::AuthType;
use fleetfn_model::{ErrorKind, LambdaError, Result, Scope};
use fleetfn_store::{Expect, Op, Table};
use serde::{Deserialize, Serialize};

use crate::records::{LATEST, LATEST_PUBLISHED, alias_key, version_key};
use crate::service::{ControlPlane, new_revision_id};
use crate::validate;

/// A stored policy and its revision id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PolicyRecord {
    pub revision_id: String,
    pub document: PolicyDocument,
}

/// Store key of the policy of a function (`None`, or `$LATEST`), version or alias.
pub(crate) fn policy_key(function: &str, qualifier: Option<&str>) -> String {
    format!("{function}/{}", qualifier.unwrap_or(LATEST))
}

/// The largest policy document, in bytes of its JSON, as on AWS.
pub const MAX_POLICY_BYTES: usize = 20_480;

const REVISION_MISMATCH: &str = "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to retrieve the latest Revision Id";

fn no_policy() -> LambdaError {
    LambdaError::not_found("No policy is associated with the given resource.")
}

fn pattern(v: &str, path: &str, ok: bool, re: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(LambdaError::validation(
            v,
            path,
            &format!("Member must satisfy regular expression pattern: {re}"),
        ))
    }
}

fn all_chars(v: &str, extra: &str) -> bool {
    !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// `StatementId` of AddPermission: `([a-zA-Z0-9-_]+)`, 1–100; RemovePermission also allows `.`.
fn check_statement_id(v: &str, dots: bool) -> Result<()> {
    validate::len_between(v, "statementId", 1, 100)?;
    if dots {
        pattern(v, "statementId", all_chars(v, "-_."), "([a-zA-Z0-9-_.]+)")
    } else {
        pattern(v, "statementId", all_chars(v, "-_"), "([a-zA-Z0-9-_]+)")
    }
}

/// `(lambda:[*]|lambda:[a-zA-Z]+|[*])`
fn check_action(v: &str) -> Result<()> {
    validate::len_between(v, "action", 0, 10_000)?;
    let ok = v == "*"
        || v.strip_prefix("lambda:").is_some_and(|a| {
            a == "*" || (!a.is_empty() && a.chars().all(|c| c.is_ascii_alphabetic()))
        });
    pattern(v, "action", ok, "(lambda:[*]|lambda:[a-zA-Z]+|[*])")
}

/// The statement's principal: `*`, an account id (its root), an ARN, or a service.
fn principal(v: &str) -> Result<Principal> {
    validate::len_between(v, "principal", 0, 2048)?;
    pattern(
        v,
        "principal",
        !v.is_empty() && !v.chars().any(char::is_whitespace),
        "[^\\s]+",
    )?;
    if v == "*" {
        return Ok(Principal::Literal(v.to_owned()));
    }
    if v.len() == 12 && v.chars().all(|c| c.is_ascii_digit()) {
        return Ok(Principal::Aws {
            aws: format!("arn:aws:iam::{v}:root"),
        });
    }
    if v.starts_with("arn:") {
        return Ok(Principal::Aws { aws: v.to_owned() });
    }
    if v.contains('.') && !v.contains(':') {
        return Ok(Principal::Service {
            service: v.to_owned(),
        });
    }
    Err(LambdaError::invalid(
        "The provided principal was invalid. Please check the principal and try again.",
    ))
}

/// `arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:(region)?:(\d{12})?:(.*)`, loosely: six parts.
fn check_source_arn(v: &str) -> Result<()> {
    validate::len_between(v, "sourceArn", 0, 10_000)?;
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && all_chars(parts[2], "-")
        && (parts[4].is_empty()
            || (parts[4].len() == 12 && parts[4].chars().all(|c| c.is_ascii_digit())));
    pattern(
        v,
        "sourceArn",
        ok,
        "arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\\-])+:((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1})?:(\\d{12})?:(.*)",
    )
}

/// The statement AddPermission adds, as AWS writes it.
fn statement(
    scope: &Scope,
    fref: &FunctionRef,
    req: &AddPermissionRequest,
) -> Result<PolicyStatement> {
    let sid = validate::required(&req.statement_id, "statementId")?;
    check_statement_id(sid, false)?;
    let action = validate::required(&req.action, "action")?;
    check_action(action)?;
    let principal = principal(validate::required(&req.principal, "principal")?)?;
    let mut cond = Conditions::new();
    let mut add = |op: &str, key: &str, value: &str| {
        cond.entry(op.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
    };
    if let Some(a) = &req.source_arn {
        check_source_arn(a)?;
        add("ArnLike", "AWS:SourceArn", a);
    }
    if let Some(a) = &req.source_account {
        validate::len_between(a, "sourceAccount", 0, 12)?;
        pattern(
            a,
            "sourceAccount",
            a.len() == 12 && a.chars().all(|c| c.is_ascii_digit()),
            "\\d{12}",
        )?;
        add("StringEquals", "AWS:SourceAccount", a);
    }
    if let Some(t) = &req.event_source_token {
        validate::len_between(t, "eventSourceToken", 0, 256)?;
        pattern(
            t,
            "eventSourceToken",
            all_chars(t, "._-"),
            "[a-zA-Z0-9._\\-]+",
        )?;
        add("StringEquals", "lambda:EventSourceToken", t);
    }
    if let Some(o) = &req.principal_org_id {
        validate::len_between(o, "principalOrgID", 12, 34)?;
        let ok = o.strip_prefix("o-").is_some_and(|r| {
            (10..=32).contains(&r.len())
                && r.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
        pattern(o, "principalOrgID", ok, "o-[a-z0-9]{10,32}")?;
        add("StringEquals", "aws:PrincipalOrgID", o);
    }
    if let Some(t) = &req.function_url_auth_type {
        validate::one_of(t, "functionUrlAuthType", &AuthType::NAMES)?;
        add("StringEquals", "lambda:FunctionUrlAuthType", t);
    }
    if req.invoked_via_function_url == Some(true) {
        add("Bool", "lambda:InvokedViaFunctionUrl", "true");
    }
    Ok(PolicyStatement {
        sid: sid.clone(),
        effect: Effect::Allow,
        principal,
        action: action.clone(),
        resource: match &fref.qualifier {
            Some(q) => scope.qualified_function_arn(&fref.name, q),
            None => scope.function_arn(&fref.name),
        },
        condition: (!cond.is_empty()).then_some(cond),
    })
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| LambdaError::service(format!("encoding a policy: {e}")))
}

impl ControlPlane {
    /// The function, version or alias a policy operation names, checked to exist (`$LATEST`
    /// is the unqualified function), and checks of the records read, so that a policy is not
    /// created for one deleted meanwhile.
    async fn policy_target(&self, fref: &FunctionRef) -> Result<(FunctionRef, Vec<Op>)> {
        let (f, frev) = self.function(&fref.name).await?;
        if f.deleting {
            return Err(self.function_not_found(&fref.name, None));
        }
        let mut guards = vec![Op::check(Table::Functions, &fref.name, frev)];
        let qualifier = match fref.qualifier.as_deref() {
            None | Some(LATEST) => None,
            Some(q) if q == LATEST_PUBLISHED || q.chars().all(|c| c.is_ascii_digit()) => {
                let (_, vrev) = self.version(&fref.name, q).await?;
                guards.push(Op::check(Table::Versions, version_key(&fref.name, q), vrev));
                Some(q.to_owned())
            }
            Some(alias) => {
                let key = alias_key(&fref.name, alias);
                let Some((_, arev)) = self
                    .get_record::<serde::de::IgnoredAny>(Table::Aliases, &key)
                    .await?
                else {
                    return Err(self.function_not_found(&fref.name, Some(alias)));
                };
                guards.push(Op::check(Table::Aliases, key, arev));
                Some(alias.to_owned())
            }
        };
        Ok((
            FunctionRef {
                name: fref.name.clone(),
                qualifier,
            },
            guards,
        ))
    }

    /// AddPermission: adds a statement to the policy of a function, version or alias.
    pub async fn add_permission(
        &self,
        fref: &FunctionRef,
        req: AddPermissionRequest,
    ) -> Result<AddPermissionResponse> {
        if fref.qualifier.as_deref() == Some(LATEST) {
            return Err(LambdaError::invalid(
                "We currently do not support adding policies for $LATEST.",
            ));
        }
        let stmt = statement(&self.scope, fref, &req)?;
        for _ in 0..crate::service::RACE_ATTEMPTS {
            let (target, guards) = self.policy_target(fref).await?;
            let key = policy_key(&target.name, target.qualifier.as_deref());
            let existing = self
                .get_record::<PolicyRecord>(Table::Policies, &key)
                .await?;
            if let Some(want) = &req.revision_id
                && existing
                    .as_ref()
                    .is_none_or(|(p, _)| p.revision_id != *want)
            {
                return Err(LambdaError::precondition(REVISION_MISMATCH));
            }
            let (mut doc, expect) = match &existing {
                Some((p, rev)) => (p.document.clone(), Expect::Revision(*rev)),
                None => (PolicyDocument::default(), Expect::Absent),
            };
            if doc.statement.iter().any(|s| s.sid == stmt.sid) {
                return Err(LambdaError::conflict(
                    "The statement id (sid) provided already exists. Please provide a new statement id, or remove the existing statement.",
                ));
            }
            doc.statement.push(stmt.clone());
            let size = to_json(&doc)?.len();
            if size > MAX_POLICY_BYTES {
                return Err(LambdaError::new(
                    ErrorKind::PolicyLengthExceeded,
                    format!(
                        "The final policy size ({size}) is bigger than the limit ({MAX_POLICY_BYTES})."
                    ),
                ));
            }
            let rec = PolicyRecord {
                revision_id: new_revision_id(),
                document: doc,
            };
            let mut ops = vec![Op::put(Table::Policies, &key, &rec, expect)];
            ops.extend(guards);
            if self.commit_unless_raced(ops).await?.is_some() {
                return Ok(AddPermissionResponse {
                    statement: to_json(&stmt)?,
                });
            }
        }
        Err(LambdaError::conflict(
            "The policy is being changed concurrently. Retry the request.",
        ))
    }

    /// RemovePermission: removes a statement; the policy goes with its last statement.
    pub async fn remove_permission(
        &self,
        fref: &FunctionRef,
        statement_id: &str,
        revision_id: Option<&str>,
    ) -> Result<()> {
        check_statement_id(statement_id, true)?;
        let (target, _) = self.policy_target(fref).await?;
        let key = policy_key(&target.name, target.qualifier.as_deref());
        for _ in 0..crate::service::RACE_ATTEMPTS {
            let Some((mut p, rev)) = self
                .get_record::<PolicyRecord>(Table::Policies, &key)
                .await?
            else {
                return Err(no_policy());
            };
            if revision_id.is_some_and(|r| r != p.revision_id) {
                return Err(LambdaError::precondition(REVISION_MISMATCH));
            }
            let before = p.document.statement.len();
            p.document.statement.retain(|s| s.sid != statement_id);
            if p.document.statement.len() == before {
                return Err(LambdaError::not_found(format!(
                    "Statement {statement_id} is not found in resource policy."
                )));
            }
            let op = if p.document.statement.is_empty() {
                Op::delete(Table::Policies, &key, rev)
            } else {
                p.revision_id = new_revision_id();
                Op::put(Table::Policies, &key, &p, Expect::Revision(rev))
            };
            if self.commit_unless_raced(vec![op]).await?.is_some() {
                return Ok(());
            }
        }
        Err(LambdaError::conflict(
            "The policy is being changed concurrently. Retry the request.",
        ))
    }

    /// GetPolicy: the policy document as a JSON string, and its revision id.
    pub async fn get_policy(&self, fref: &FunctionRef) -> Result<GetPolicyResponse> {
        let (target, _) = self.policy_target(fref).await?;
        let (p, _) = self
            .get_record::<PolicyRecord>(
                Table::Policies,
                &policy_key(&target.name, target.qualifier.as_deref()),
            )
            .await?
            .ok_or_else(no_policy)?;
        Ok(GetPolicyResponse {
            policy: to_json(&p.document)?,
            revision_id: p.revision_id,
        })
    }

    /// The policy of a function (`None`), version or alias, if it has one.
    pub(crate) async fn policy_document(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Option<PolicyDocument>> {
        Ok(self
            .get_record::<PolicyRecord>(Table::Policies, &policy_key(function, qualifier))
            .await?
            .map(|(p, _)| p.document))
    }

    /// The op deleting the policy of one version or alias, if it has one.
    pub(crate) async fn policy_delete_op(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<Op>> {
        let key = policy_key(function, Some(qualifier));
        Ok(self
            .get_record::<serde::de::IgnoredAny>(Table::Policies, &key)
            .await?
            .map(|(_, rev)| Op::delete(Table::Policies, key, rev)))
    }

    /// Ops deleting every policy of `function` and its versions and aliases.
    pub(crate) async fn policy_delete_ops_all(&self, function: &str) -> Result<Vec<Op>> {
        Ok(self
            .list_records::<serde::de::IgnoredAny>(
                Table::Policies,
                &format!("{function}/"),
                None,
                100_000,
            )
            .await?
            .into_iter()
            .map(|(_, key, rev)| Op::delete(Table::Policies, key, rev))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(sid: &str, action: &str, principal: &str) -> AddPermissionRequest {
        AddPermissionRequest {
            statement_id: Some(sid.into()),
            action: Some(action.into()),
            principal: Some(principal.into()),
            ..AddPermissionRequest::default()
        }
    }

    fn fref(q: Option<&str>) -> FunctionRef {
        FunctionRef {
            name: "f".into(),
            qualifier: q.map(str::to_owned),
        }
    }

    #[test]
    fn statements_as_aws_writes_them() {
        let scope = Scope::default();
        let mut r = req("url", "lambda:InvokeFunctionUrl", "*");
        r.function_url_auth_type = Some("NONE".into());
        let s = statement(&scope, &fref(None), &r).unwrap();
        assert_eq!(
            to_json(&s).unwrap(),
            r#"{"Sid":"url","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunctionUrl","Resource":"arn:aws:lambda:us-east-1:000000000000:function:f","Condition":{"StringEquals":{"lambda:FunctionUrlAuthType":"NONE"}}}"#
        );
        let mut r = req("s3", "lambda:InvokeFunction", "s3.amazonaws.com");
        r.source_arn = Some("arn:aws:s3:::bucket".into());
        r.source_account = Some("111122223333".into());
        let s = statement(&scope, &fref(Some("live")), &r).unwrap();
        assert_eq!(
            to_json(&s).unwrap(),
            r#"{"Sid":"s3","Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:us-east-1:000000000000:function:f:live","Condition":{"ArnLike":{"AWS:SourceArn":"arn:aws:s3:::bucket"},"StringEquals":{"AWS:SourceAccount":"111122223333"}}}"#
        );
        let s = statement(&scope, &fref(None), &req("a", "lambda:*", "111122223333")).unwrap();
        assert_eq!(
            s.principal,
            Principal::Aws {
                aws: "arn:aws:iam::111122223333:root".into()
            }
        );
        let mut r = req("via", "lambda:InvokeFunction", "*");
        r.invoked_via_function_url = Some(true);
        let s = statement(&scope, &fref(None), &r).unwrap();
        assert_eq!(
            s.condition.unwrap()["Bool"]["lambda:InvokedViaFunctionUrl"],
            "true"
        );
    }

    #[test]
    fn refuses_bad_members() {
        let scope = Scope::default();
        let err = |r: AddPermissionRequest| statement(&scope, &fref(None), &r).unwrap_err();
        assert_eq!(err(req("a b", "lambda:*", "*")).kind, ErrorKind::Validation);
        assert_eq!(
            err(req("a", "lambda:Invoke-Function", "*")).kind,
            ErrorKind::Validation
        );
        assert_eq!(
            err(req("a", "s3:GetObject", "*")).kind,
            ErrorKind::Validation
        );
        let e = err(req("a", "lambda:*", "someone"));
        assert_eq!(e.kind, ErrorKind::InvalidParameterValue);
        let mut r = req("a", "lambda:*", "*");
        r.function_url_auth_type = Some("PUBLIC".into());
        assert!(err(r).message.contains("[NONE, AWS_IAM]"));
        let mut r = req("a", "lambda:*", "*");
        r.source_account = Some("123".into());
        assert!(err(r).message.contains("'sourceAccount'"));
        let mut r = req("a", "lambda:*", "*");
        r.source_arn = Some("bucket".into());
        assert!(err(r).message.contains("'sourceArn'"));
        let mut r = req("a", "lambda:*", "*");
        r.principal_org_id = Some("o-short".into());
        assert!(err(r).message.contains("'principalOrgID'"));
        let e = err(AddPermissionRequest::default());
        assert!(e.message.contains("'statementId'"), "{}", e.message);
        assert!(check_statement_id("a.b", true).is_ok());
        assert!(check_statement_id("a.b", false).is_err());
    }
}
