//! Where stack records live: [`StackStore`], over the server's `/fleetfn/v1/stacks` routes
//! ([`HttpStackStore`]) or in memory for tests ([`MemStackStore`]). A put names the revision the
//! writer read (0: the stack must not exist yet); a stale one is [`StoreError::Conflict`].

use bytes::Bytes;
use fleetfn_templates::StackRecord;
use serde::Deserialize;

use crate::client::{Client, ClientError, encode_component};

pub const REVISION_HEADER: &str = "X-Fleetfn-Stack-Revision";

/// One line of the stack list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StackSummary {
    pub stack_name: String,
    pub stack_status: String,
    #[serde(default)]
    pub last_updated_time: String,
    #[serde(default)]
    pub revision: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListAnswer {
    stacks: Vec<StackSummary>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("another deploy changed the stack {0} meanwhile; re-run")]
    Conflict(String),
    #[error("Stack with id {0} does not exist")]
    NotFound(String),
    #[error("stack store: {0}")]
    Client(#[from] ClientError),
    #[error("the stack record of {name} does not parse: {source}")]
    BadRecord {
        name: String,
        source: serde_json::Error,
    },
}

#[allow(async_fn_in_trait)]
pub trait StackStore {
    async fn get(&self, name: &str) -> Result<Option<StackRecord>, StoreError>;
    /// Writes `record` if the stored revision is still `read_revision`; returns what is stored.
    async fn put(
        &self,
        record: &StackRecord,
        read_revision: u64,
    ) -> Result<StackRecord, StoreError>;
    async fn delete(&self, name: &str, read_revision: u64) -> Result<(), StoreError>;
    async fn list(&self) -> Result<Vec<StackSummary>, StoreError>;
}

pub struct HttpStackStore<'a> {
    pub client: &'a Client,
}

fn stack_path(name: &str) -> String {
    format!("/fleetfn/v1/stacks/{}", encode_component(name))
}

fn parse(name: &str, body: &[u8]) -> Result<StackRecord, StoreError> {
    serde_json::from_slice(body).map_err(|source| StoreError::BadRecord {
        name: name.to_owned(),
        source,
    })
}

impl StackStore for HttpStackStore<'_> {
    async fn get(&self, name: &str) -> Result<Option<StackRecord>, StoreError> {
        match self.client.get(&stack_path(name), &[]).await {
            Ok(body) => parse(name, &body).map(Some),
            Err(e) if e.api_kind() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put(
        &self,
        record: &StackRecord,
        read_revision: u64,
    ) -> Result<StackRecord, StoreError> {
        let body = serde_json::to_vec(record).map_err(|source| StoreError::BadRecord {
            name: record.stack_name.clone(),
            source,
        })?;
        let rev = read_revision.to_string();
        match self
            .client
            .send_with_headers(
                http::Method::PUT,
                &stack_path(&record.stack_name),
                &[],
                &[(REVISION_HEADER, &rev)],
                Bytes::from(body),
            )
            .await
        {
            Ok(answer) => parse(&record.stack_name, &answer),
            Err(ClientError::Api { status: 412, .. }) => {
                Err(StoreError::Conflict(record.stack_name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, name: &str, read_revision: u64) -> Result<(), StoreError> {
        let rev = read_revision.to_string();
        match self
            .client
            .send_with_headers(
                http::Method::DELETE,
                &stack_path(name),
                &[],
                &[(REVISION_HEADER, &rev)],
                Bytes::new(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(ClientError::Api { status: 412, .. }) => Err(StoreError::Conflict(name.into())),
            Err(e) if e.api_kind() == Some("ResourceNotFoundException") => {
                Err(StoreError::NotFound(name.into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self) -> Result<Vec<StackSummary>, StoreError> {
        let body = self.client.get("/fleetfn/v1/stacks", &[]).await?;
        let a: ListAnswer =
            serde_json::from_slice(&body).map_err(|source| StoreError::BadRecord {
                name: "(list)".into(),
                source,
            })?;
        Ok(a.stacks)
    }
}

/// An in-memory store with the server's revision rules, for tests.
#[cfg(test)]
#[derive(Default)]
pub struct MemStackStore {
    pub stacks: parking_lot::Mutex<std::collections::BTreeMap<String, StackRecord>>,
}

#[cfg(test)]
impl StackStore for MemStackStore {
    async fn get(&self, name: &str) -> Result<Option<StackRecord>, StoreError> {
        Ok(self.stacks.lock().get(name).cloned())
    }

    async fn put(
        &self,
        record: &StackRecord,
        read_revision: u64,
    ) -> Result<StackRecord, StoreError> {
        let mut stacks = self.stacks.lock();
        let stored = stacks.get(&record.stack_name).map_or(0, |r| r.revision);
        if stored != read_revision {
            return Err(StoreError::Conflict(record.stack_name.clone()));
        }
        let mut r = record.clone();
        r.revision = read_revision + 1;
        stacks.insert(r.stack_name.clone(), r.clone());
        Ok(r)
    }

    async fn delete(&self, name: &str, read_revision: u64) -> Result<(), StoreError> {
        let mut stacks = self.stacks.lock();
        match stacks.get(name) {
            None => Err(StoreError::NotFound(name.into())),
            Some(r) if r.revision != read_revision => Err(StoreError::Conflict(name.into())),
            Some(_) => {
                stacks.remove(name);
                Ok(())
            }
        }
    }

    async fn list(&self) -> Result<Vec<StackSummary>, StoreError> {
        Ok(self
            .stacks
            .lock()
            .values()
            .map(|r| StackSummary {
                stack_name: r.stack_name.clone(),
                stack_status: r.stack_status.clone(),
                last_updated_time: r.last_updated_time.clone(),
                revision: r.revision,
            })
            .collect())
    }
}
