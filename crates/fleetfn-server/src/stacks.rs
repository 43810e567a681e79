//! Stack records of `fleetfn deploy` (`/fleetfn/v1/stacks`): one JSON document per stack name,
//! stored opaquely in the `stacks` table. The server reads only `StackName`, `StackStatus`,
//! `LastUpdatedTime` and sets `Revision`: a write names the revision its writer read (0: the
//! stack must not exist) and is stored with the next one in a single compare-and-set commit, so
//! two deploys of one stack cannot both win.

use fleetfn_model::{ErrorKind, LambdaError, Result};
use fleetfn_store::{Expect, Op, StoreError, Table};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ControlPlane;
use crate::service::store_err;

/// The largest stack record accepted (bytes of its JSON).
pub const MAX_STACK_RECORD_BYTES: usize = 1 << 20;

/// The longest stack name (CloudFormation's).
const MAX_STACK_NAME_LEN: usize = 128;

/// One stack in `GET /fleetfn/v1/stacks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StackSummary {
    pub stack_name: String,
    pub stack_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_time: Option<String>,
    #[serde(default)]
    pub revision: u64,
}

/// `GET /fleetfn/v1/stacks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStacksResponse {
    pub stacks: Vec<StackSummary>,
}

/// A stack record as written: the fields the server reads, and everything else kept as is.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StackDocument {
    stack_name: String,
    stack_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_updated_time: Option<String>,
    #[serde(default)]
    revision: u64,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// Checks a stack name against CloudFormation's rule (`[a-zA-Z][-a-zA-Z0-9]{0,127}`).
pub fn validate_stack_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if first_ok
        && name.len() <= MAX_STACK_NAME_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Ok(());
    }
    Err(LambdaError::new(
        ErrorKind::Validation,
        format!(
            "1 validation error detected: Value '{name}' at 'stackName' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]{{0,127}} \
             (a letter, then up to 127 letters, digits or hyphens)"
        ),
    ))
}

fn not_found(name: &str) -> LambdaError {
    LambdaError::not_found(format!("Stack with id {name} does not exist"))
}

fn stale(name: &str, expected: u64, current: Option<i64>) -> LambdaError {
    let now = match current {
        Some(rev) => format!("is at revision {rev}"),
        None => "does not exist".to_string(),
    };
    let wanted = if expected == 0 {
        "to not exist yet".to_string()
    } else {
        format!("at revision {expected}")
    };
    LambdaError::precondition(format!(
        "Stack {name} {now}, but the write expected it {wanted}: another deploy changed it since \
         it was read. Read it again (fleetfn stacks describe {name}) and retry."
    ))
}

fn validation(message: String) -> LambdaError {
    LambdaError::new(ErrorKind::Validation, message)
}

fn raw(bytes: Vec<u8>) -> Result<Box<RawValue>> {
    let text = String::from_utf8(bytes)
        .map_err(|e| LambdaError::service(format!("fleetfn store error: a stack record: {e}")))?;
    RawValue::from_string(text)
        .map_err(|e| LambdaError::service(format!("fleetfn store error: a stack record: {e}")))
}

impl ControlPlane {
    /// Every stack, by name.
    pub async fn list_stacks(&self) -> Result<ListStacksResponse> {
        const PAGE: usize = 100;
        let mut stacks = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let recs = self
                .store
                .list(Table::Stacks, "", after.as_deref(), PAGE)
                .await
                .map_err(store_err)?;
            for rec in &recs {
                let mut s: StackSummary = crate::service::decode(rec)?;
                s.revision = u64::try_from(rec.revision).unwrap_or_default();
                stacks.push(s);
            }
            match recs.last() {
                Some(last) if recs.len() == PAGE => after = Some(last.key.clone()),
                _ => break,
            }
        }
        Ok(ListStacksResponse { stacks })
    }

    /// The stack's record as stored (with its `Revision`).
    pub async fn get_stack(&self, name: &str) -> Result<Box<RawValue>> {
        validate_stack_name(name)?;
        let rec = self
            .store
            .get(Table::Stacks, name)
            .await
            .map_err(store_err)?
            .ok_or_else(|| not_found(name))?;
        raw(rec.value)
    }

    /// Stores `body` (a JSON object whose `StackName` is `name`, at most
    /// [`MAX_STACK_RECORD_BYTES`]) as the stack's record if the stack is at revision
    /// `expected` (0: absent), with `Revision` set to `expected + 1`; answers the stored record.
    pub async fn put_stack(&self, name: &str, expected: u64, body: &[u8]) -> Result<Box<RawValue>> {
        validate_stack_name(name)?;
        if body.len() > MAX_STACK_RECORD_BYTES {
            return Err(LambdaError::new(
                ErrorKind::RequestEntityTooLarge,
                format!(
                    "The stack record is {} bytes; a stack record must be at most \
                     {MAX_STACK_RECORD_BYTES} bytes. Keep the template's inline code \
                     (ZipFile) small or deploy fewer resources per stack.",
                    body.len()
                ),
            ));
        }
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| validation(format!("The stack record is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(validation(
                "The stack record must be a JSON object (with StackName and StackStatus)".into(),
            ));
        }
        let mut doc: StackDocument = serde_json::from_value(value)
            .map_err(|e| validation(format!("The stack record is not a stack record: {e}")))?;
        if doc.stack_name != name {
            return Err(validation(format!(
                "The stack record's StackName '{}' does not match the stack '{name}' of the path",
                doc.stack_name
            )));
        }
        let expected_rev = i64::try_from(expected).map_err(|_| {
            validation(format!(
                "X-Fleetfn-Stack-Revision {expected} is out of range"
            ))
        })?;
        let current = self
            .store
            .get(Table::Stacks, name)
            .await
            .map_err(store_err)?
            .map(|r| r.revision);
        if current.unwrap_or(0) != expected_rev {
            return Err(stale(name, expected, current));
        }
        doc.revision = expected + 1;
        if doc.last_updated_time.is_none() {
            doc.last_updated_time = Some(fleetfn_model::time::now_lambda());
        }
        let bytes = serde_json::to_vec(&doc)
            .map_err(|e| LambdaError::service(format!("encoding the stack record: {e}")))?;
        let expect = if expected == 0 {
            Expect::Absent
        } else {
            Expect::Revision(expected_rev)
        };
        let put = Op::Put {
            table: Table::Stacks,
            key: name.to_string(),
            value: bytes.clone(),
            expect,
        };
        match self.store.commit(vec![put]).await {
            Ok(_) => raw(bytes),
            Err(StoreError::Conflict { .. }) => {
                let now = self
                    .store
                    .get(Table::Stacks, name)
                    .await
                    .map_err(store_err)?
                    .map(|r| r.revision);
                Err(stale(name, expected, now))
            }
            Err(e) => Err(store_err(e)),
        }
    }

    /// Deletes the stack's record (only its record: the deploy deletes the resources), if it is
    /// at revision `expected` when one is given.
    pub async fn delete_stack(&self, name: &str, expected: Option<u64>) -> Result<()> {
        validate_stack_name(name)?;
        for _ in 0..crate::service::RACE_ATTEMPTS {
            let rec = self
                .store
                .get(Table::Stacks, name)
                .await
                .map_err(store_err)?
                .ok_or_else(|| not_found(name))?;
            if let Some(want) = expected
                && i64::try_from(want).ok() != Some(rec.revision)
            {
                return Err(stale(name, want, Some(rec.revision)));
            }
            match self
                .store
                .commit(vec![Op::delete(Table::Stacks, name, rec.revision)])
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) if expected.is_none() => {}
                Err(StoreError::Conflict { .. }) => {
                    let now = self
                        .store
                        .get(Table::Stacks, name)
                        .await
                        .map_err(store_err)?
                        .map(|r| r.revision);
                    return Err(stale(name, expected.unwrap_or(0), now));
                }
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(LambdaError::conflict(format!(
            "Stack {name} kept changing while it was being deleted; retry the request."
        )))
    }
}

#[cfg(test)]
mod tests {
    use fleetfn_model::ErrorKind;
    use serde_json::json;

    use super::*;

    fn record(name: &str, status: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "StackName": name,
            "StackStatus": status,
            "StackId": format!("arn:aws:cloudformation:us-east-1:000000000000:stack/{name}/1"),
            "LastUpdatedTime": "2026-12-04T22:00:00.000+0000",
            "Resources": {"Fn": {"LogicalId": "Fn", "PhysicalId": "app-Fn-abc"}},
            "Revision": 99,
        }))
        .unwrap()
    }

    fn parse(raw: &RawValue) -> serde_json::Value {
        serde_json::from_str(raw.get()).unwrap()
    }

    #[tokio::test]
    async fn put_get_list_delete_with_revisions() {
        let (_dir, cp) = crate::tests::cp().await;
        assert!(cp.list_stacks().await.unwrap().stacks.is_empty());
        let e = cp.get_stack("app").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceNotFound);
        assert_eq!(e.message, "Stack with id app does not exist");

        let stored = parse(
            &cp.put_stack("app", 0, &record("app", "CREATE_COMPLETE"))
                .await
                .unwrap(),
        );
        // The server's revision wins over the writer's; the rest is kept as written.
        assert_eq!(stored["Revision"], 1);
        assert_eq!(stored["Resources"]["Fn"]["PhysicalId"], "app-Fn-abc");
        assert_eq!(parse(&cp.get_stack("app").await.unwrap()), stored);

        // A second creator, and a writer of a stale revision, are refused.
        let e = cp
            .put_stack("app", 0, &record("app", "CREATE_COMPLETE"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PreconditionFailed);
        assert!(e.message.contains("is at revision 1"), "{}", e.message);
        let e = cp
            .put_stack("app", 2, &record("app", "UPDATE_COMPLETE"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PreconditionFailed);

        let stored = parse(
            &cp.put_stack("app", 1, &record("app", "UPDATE_COMPLETE"))
                .await
                .unwrap(),
        );
        assert_eq!(stored["Revision"], 2);
        cp.put_stack("other", 0, &record("other", "CREATE_COMPLETE"))
            .await
            .unwrap();
        let list = cp.list_stacks().await.unwrap();
        assert_eq!(
            list.stacks,
            vec![
                StackSummary {
                    stack_name: "app".into(),
                    stack_status: "UPDATE_COMPLETE".into(),
                    last_updated_time: Some("2026-12-04T22:00:00.000+0000".into()),
                    revision: 2,
                },
                StackSummary {
                    stack_name: "other".into(),
                    stack_status: "CREATE_COMPLETE".into(),
                    last_updated_time: Some("2026-12-04T22:00:00.000+0000".into()),
                    revision: 1,
                },
            ]
        );

        let e = cp.delete_stack("app", Some(1)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::PreconditionFailed);
        cp.delete_stack("app", Some(2)).await.unwrap();
        let e = cp.delete_stack("app", None).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceNotFound);
        // Gone: it can be created again from revision 0.
        let stored = parse(
            &cp.put_stack("app", 0, &record("app", "CREATE_COMPLETE"))
                .await
                .unwrap(),
        );
        assert_eq!(stored["Revision"], 1);
        cp.delete_stack("other", None).await.unwrap();
        assert_eq!(cp.list_stacks().await.unwrap().stacks.len(), 1);
    }

    #[tokio::test]
    async fn concurrent_writers_of_one_revision_one_wins() {
        let (_dir, cp) = crate::tests::cp().await;
        cp.put_stack("app", 0, &record("app", "CREATE_COMPLETE"))
            .await
            .unwrap();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let cp = cp.clone();
            set.spawn(async move {
                cp.put_stack("app", 1, &record("app", "UPDATE_COMPLETE"))
                    .await
            });
        }
        let results = set.join_all().await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "{results:?}");
        for r in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(r.kind, ErrorKind::PreconditionFailed);
        }
        assert_eq!(parse(&cp.get_stack("app").await.unwrap())["Revision"], 2);
    }

    #[tokio::test]
    async fn bad_names_bodies_and_sizes_are_refused() {
        let (_dir, cp) = crate::tests::cp().await;
        for bad in ["", "1app", "app_1", "app.x", &"a".repeat(129)] {
            let e = cp
                .put_stack(bad, 0, &record(bad, "CREATE_COMPLETE"))
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "{bad}");
        }
        validate_stack_name(&"a".repeat(128)).unwrap();
        validate_stack_name("My-Stack-2").unwrap();

        let e = cp.put_stack("app", 0, b"[1, 2]").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        assert!(e.message.contains("JSON object"), "{}", e.message);
        let e = cp.put_stack("app", 0, b"{not json").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        let e = cp
            .put_stack("app", 0, br#"{"StackName": "app"}"#)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        assert!(e.message.contains("StackStatus"), "{}", e.message);
        let e = cp
            .put_stack("app", 0, &record("other", "CREATE_COMPLETE"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        assert!(e.message.contains("does not match"), "{}", e.message);

        let big = serde_json::to_vec(&json!({
            "StackName": "app", "StackStatus": "CREATE_COMPLETE",
            "TemplateBody": "x".repeat(MAX_STACK_RECORD_BYTES),
        }))
        .unwrap();
        let e = cp.put_stack("app", 0, &big).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::RequestEntityTooLarge);
        assert!(cp.list_stacks().await.unwrap().stacks.is_empty());
    }
}
