//! [`AgentApi`]: what the data plane asks of one agent, as a trait so the data plane can run
//! against an in-memory agent in tests. [`AgentClient`] is the implementation over HTTP.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::{
    AgentClient, AgentReport, ClientError, EnvironmentRequest, InvokeReply, StreamedReply,
};

/// A boxed `Send` future, so `dyn AgentApi` works.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The operations the data plane performs on one agent. Every call ends within its bound (the
/// control deadline, `wait` plus the control deadline for reports, `deadline` for invokes):
/// an agent that does not answer in time yields [`ClientError::NoAnswer`].
pub trait AgentApi: Send + Sync + std::fmt::Debug {
    /// Asks the agent to run an environment (idempotent per id).
    fn put_environment<'a>(
        &'a self,
        env_id: &'a str,
        spec: &'a EnvironmentRequest,
    ) -> BoxFuture<'a, Result<(), ClientError>>;

    /// Drains and stops an environment; unknown ids are fine.
    fn delete_environment<'a>(&'a self, env_id: &'a str) -> BoxFuture<'a, Result<(), ClientError>>;

    /// Hands an environment renewed execution-role credentials.
    fn put_credentials<'a>(
        &'a self,
        env_id: &'a str,
        credentials: &'a crate::RoleCredentials,
    ) -> BoxFuture<'a, Result<(), ClientError>>;

    /// The agent's report; with `after`, waits (up to `wait`) until its revision exceeds it.
    fn report(
        &self,
        after: Option<u64>,
        wait: Duration,
    ) -> BoxFuture<'_, Result<AgentReport, ClientError>>;

    /// Sends one invoke to an environment; `deadline` bounds the whole exchange.
    #[allow(clippy::too_many_arguments)]
    fn invoke<'a>(
        &'a self,
        deadline: Duration,
        env_id: &'a str,
        request_id: &'a str,
        payload: Bytes,
        client_context: Option<&'a str>,
        tenant_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<InvokeReply, ClientError>>;

    /// Sends one invoke whose response may come back streamed ([`crate::response`]).
    /// `deadline` bounds the whole exchange, stream included. By default the invoke is sent as
    /// by [`AgentApi::invoke`] and its whole reply awaited.
    #[allow(clippy::too_many_arguments)]
    fn invoke_stream<'a>(
        &'a self,
        deadline: Duration,
        env_id: &'a str,
        request_id: &'a str,
        payload: Bytes,
        client_context: Option<&'a str>,
        tenant_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<StreamedReply, ClientError>> {
        Box::pin(async move {
            self.invoke(
                deadline,
                env_id,
                request_id,
                payload,
                client_context,
                tenant_id,
            )
            .await
            .map(StreamedReply::Reply)
        })
    }
}

impl AgentApi for AgentClient {
    fn put_environment<'a>(
        &'a self,
        env_id: &'a str,
        spec: &'a EnvironmentRequest,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(AgentClient::put_environment(self, env_id, spec))
    }

    fn delete_environment<'a>(&'a self, env_id: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(AgentClient::delete_environment(self, env_id))
    }

    fn put_credentials<'a>(
        &'a self,
        env_id: &'a str,
        credentials: &'a crate::RoleCredentials,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(AgentClient::put_credentials(self, env_id, credentials))
    }

    fn report(
        &self,
        after: Option<u64>,
        wait: Duration,
    ) -> BoxFuture<'_, Result<AgentReport, ClientError>> {
        Box::pin(AgentClient::report(self, after, wait))
    }

    fn invoke<'a>(
        &'a self,
        deadline: Duration,
        env_id: &'a str,
        request_id: &'a str,
        payload: Bytes,
        client_context: Option<&'a str>,
        tenant_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<InvokeReply, ClientError>> {
        Box::pin(AgentClient::invoke(
            self,
            deadline,
            env_id,
            request_id,
            payload,
            client_context,
            tenant_id,
        ))
    }

    fn invoke_stream<'a>(
        &'a self,
        deadline: Duration,
        env_id: &'a str,
        request_id: &'a str,
        payload: Bytes,
        client_context: Option<&'a str>,
        tenant_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<StreamedReply, ClientError>> {
        Box::pin(AgentClient::invoke_stream(
            self,
            deadline,
            env_id,
            request_id,
            payload,
            client_context,
            tenant_id,
        ))
    }
}
