//! Function scaling config: PutFunctionScalingConfig, GetFunctionScalingConfig.

use fleetfn_model::arn::FunctionRef;
use fleetfn_model::limits::MAX_ENVIRONMENTS;
use fleetfn_model::types::{
    FunctionScalingConfig, GetFunctionScalingConfigResponse, PutFunctionScalingConfigRequest,
};
use fleetfn_model::{ErrorKind, LambdaError, Result, State};
use fleetfn_store::{Expect, Op, Table};

use crate::records::{LATEST_PUBLISHED, VersionRecord, version_key};
use crate::service::ControlPlane;
use crate::validate;
use crate::versions::default_scaling;

fn check_qualifier(q: Option<&str>) -> Result<&str> {
    let q = q.ok_or_else(|| {
        LambdaError::new(
            ErrorKind::Validation,
            "1 validation error detected: Value null at 'qualifier' failed to satisfy constraint: Member must not be null",
        )
    })?;
    if q == LATEST_PUBLISHED
        || (!q.is_empty() && q.len() <= 128 && q.chars().all(|c| c.is_ascii_digit()))
    {
        Ok(q)
    } else {
        Err(LambdaError::validation(
            q,
            "qualifier",
            "Member must satisfy regular expression pattern: (\\$LATEST\\.PUBLISHED|[0-9]+)",
        ))
    }
}

impl ControlPlane {
    async fn scaling_target(&self, fref: &FunctionRef) -> Result<(VersionRecord, i64, String)> {
        let q = check_qualifier(fref.qualifier.as_deref())?.to_string();
        let (f, _) = self.function(&fref.name).await?;
        if f.latest.capacity_provider_config.is_none() {
            return Err(LambdaError::new(
                ErrorKind::AccessDenied,
                "The function provided by the arn does not contain a capacity provider configuration",
            ));
        }
        let (v, rev) = self.version(&fref.name, &q).await?;
        Ok((v, rev, q))
    }

    pub async fn put_function_scaling_config(
        &self,
        fref: &FunctionRef,
        req: PutFunctionScalingConfigRequest,
    ) -> Result<State> {
        let given = req.function_scaling_config.unwrap_or_default();
        for _ in 1..crate::service::RACE_ATTEMPTS {
            if let Some(state) = self.put_scaling_once(fref, &given).await? {
                return Ok(state);
            }
        }
        // The last attempt reports a lost race as the conflict it is.
        self.put_scaling_once(fref, &given).await?.ok_or_else(|| {
            LambdaError::conflict(format!(
                "The operation cannot be performed at this time. An update is in progress for resource: {}. Retry the request.",
                self.scope.function_arn(&fref.name)
            ))
        })
    }

    /// One attempt of [`Self::put_function_scaling_config`]; `None` when its write lost a race.
    async fn put_scaling_once(
        &self,
        fref: &FunctionRef,
        given: &FunctionScalingConfig,
    ) -> Result<Option<State>> {
        if let Some(n) = given.min_execution_environments {
            validate::int_between(
                n,
                "functionScalingConfig.minExecutionEnvironments",
                0,
                i64::from(MAX_ENVIRONMENTS),
            )?;
        }
        if let Some(n) = given.max_execution_environments {
            validate::int_between(
                n,
                "functionScalingConfig.maxExecutionEnvironments",
                0,
                i64::from(MAX_ENVIRONMENTS),
            )?;
        }
        let (mut v, rev, q) = self.scaling_target(fref).await?;
        if v.config.state == State::Failed {
            return Err(LambdaError::conflict(format!(
                "Function version {} is Failed; publish a new version instead of scaling this one.",
                v.config.function_arn
            )));
        }
        if v.config.state == State::Deleting {
            return Err(LambdaError::conflict(format!(
                "Function version {} is being deleted.",
                v.config.function_arn
            )));
        }
        // An unspecified member reverts to its default (min 3, no max).
        let defaults = default_scaling();
        let min = given
            .min_execution_environments
            .or(defaults.min_execution_environments);
        let max = given.max_execution_environments;
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            return Err(LambdaError::invalid(format!(
                "MinExecutionEnvironments ({lo}) must be less than or equal to MaxExecutionEnvironments ({hi})."
            )));
        }
        v.scaling.requested = Some(FunctionScalingConfig {
            min_execution_environments: min,
            max_execution_environments: max,
        });
        Ok(self
            .commit_unless_raced(vec![Op::put(
                Table::Versions,
                version_key(&fref.name, &q),
                &v,
                Expect::Revision(rev),
            )])
            .await?
            .map(|_| v.config.state))
    }

    pub async fn get_function_scaling_config(
        &self,
        fref: &FunctionRef,
    ) -> Result<GetFunctionScalingConfigResponse> {
        let (v, _, _) = self.scaling_target(fref).await?;
        Ok(GetFunctionScalingConfigResponse {
            function_arn: v.config.function_arn,
            applied_function_scaling_config: Some(v.scaling.applied),
            requested_function_scaling_config: v.scaling.requested,
        })
    }
}
