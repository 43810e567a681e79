//! Capacity providers: Create, Get, List, Update, Delete, ListFunctionVersionsByCapacityProvider.

use fleetfn_model::arn::{is_simple_name, parse_capacity_provider_name};
use fleetfn_model::limits::{DEFAULT_MAX_VCPU, MAX_CAPACITY_PROVIDERS};
use fleetfn_model::time::now_lambda;
use fleetfn_model::types::{
    CapacityProvider, CapacityProviderScalingConfig, CreateCapacityProviderRequest,
    FunctionVersionsByCapacityProviderListItem, InstanceRequirements,
    ListFunctionVersionsByCapacityProviderResponse, UpdateCapacityProviderRequest,
};
use fleetfn_model::{CapacityProviderState, ErrorKind, LambdaError, Result};
use fleetfn_store::{Expect, Op, Table};

use crate::records::{CapacityProviderRecord, VersionRecord, provider_name};
use crate::service::{ControlPlane, Page};
use crate::validate;

fn validate_scaling(cfg: &CapacityProviderScalingConfig) -> Result<CapacityProviderScalingConfig> {
    let mut out = cfg.clone();
    if let Some(n) = cfg.max_vcpu_count {
        validate::int_between(n, "capacityProviderScalingConfig.maxVCpuCount", 2, 15000)?;
    } else {
        out.max_vcpu_count = Some(i64::from(DEFAULT_MAX_VCPU));
    }
    let mode = cfg.scaling_mode.clone().unwrap_or_else(|| "Auto".into());
    validate::one_of(
        &mode,
        "capacityProviderScalingConfig.scalingMode",
        &["Auto", "Manual"],
    )?;
    if let Some(policies) = &cfg.scaling_policies {
        if policies.is_empty() || policies.len() > 10 {
            return Err(LambdaError::validation(
                &format!("{} policies", policies.len()),
                "capacityProviderScalingConfig.scalingPolicies",
                "Member must have length less than or equal to 10, and greater than or equal to 1",
            ));
        }
        for (i, p) in policies.iter().enumerate() {
            validate::one_of(
                &p.predefined_metric_type,
                &format!(
                    "capacityProviderScalingConfig.scalingPolicies.{}.member.predefinedMetricType",
                    i + 1
                ),
                &["LambdaCapacityProviderAverageCPUUtilization"],
            )?;
            if !(0.0..=100.0).contains(&p.target_value) || p.target_value.is_nan() {
                return Err(LambdaError::validation(
                    &p.target_value.to_string(),
                    &format!(
                        "capacityProviderScalingConfig.scalingPolicies.{}.member.targetValue",
                        i + 1
                    ),
                    "Member must have value less than or equal to 100.0, and greater than or equal to 0.0",
                ));
            }
        }
    }
    match (mode.as_str(), &cfg.scaling_policies) {
        ("Manual", None) => {
            return Err(LambdaError::invalid(
                "ScalingMode Manual requires ScalingPolicies: give at least one LambdaCapacityProviderAverageCPUUtilization target.",
            ));
        }
        ("Auto", Some(_)) => {
            return Err(LambdaError::invalid(
                "ScalingPolicies can only be set with ScalingMode Manual; with Auto, Lambda chooses the target itself.",
            ));
        }
        _ => {}
    }
    out.scaling_mode = Some(mode);
    Ok(out)
}

/// Which instance-type names and patterns capacity providers may use: whether an
/// `AllowedInstanceTypes`/`ExcludedInstanceTypes` entry (an exact name or a `*` pattern) names at
/// least one type of the instance catalog. The catalog lives with the data plane; the control
/// plane only asks.
#[derive(Clone)]
pub struct KnownInstanceTypes(std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl KnownInstanceTypes {
    pub fn new(matches_any: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(matches_any))
    }

    pub fn matches_any(&self, pattern: &str) -> bool {
        (self.0)(pattern)
    }
}

impl std::fmt::Debug for KnownInstanceTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KnownInstanceTypes")
    }
}

fn validate_instance_requirements(
    req: &InstanceRequirements,
    known: Option<&KnownInstanceTypes>,
) -> Result<InstanceRequirements> {
    let mut out = req.clone();
    match &req.architectures {
        Some(a) => {
            validate::architectures(a).map_err(|e| {
                if e.kind == ErrorKind::Validation {
                    LambdaError::new(
                        ErrorKind::Validation,
                        e.message
                            .replace("'architectures", "'instanceRequirements.architectures"),
                    )
                } else {
                    e
                }
            })?;
        }
        None => out.architectures = Some(vec!["x86_64".into()]),
    }
    if req.allowed_instance_types.is_some() && req.excluded_instance_types.is_some() {
        return Err(LambdaError::invalid(
            "AllowedInstanceTypes and ExcludedInstanceTypes are mutually exclusive: specify only one of them.",
        ));
    }
    for (path, list) in [
        (
            "instanceRequirements.allowedInstanceTypes",
            &req.allowed_instance_types,
        ),
        (
            "instanceRequirements.excludedInstanceTypes",
            &req.excluded_instance_types,
        ),
    ] {
        if let Some(list) = list {
            if list.len() > 400 {
                return Err(LambdaError::validation(
                    &format!("{} types", list.len()),
                    path,
                    "Member must have length less than or equal to 400",
                ));
            }
            for t in list {
                let ok = !t.is_empty()
                    && t.len() <= 30
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '*' || c == '-');
                if !ok {
                    return Err(LambdaError::validation(
                        t,
                        path,
                        "Member must satisfy regular expression pattern: [a-zA-Z0-9\\.\\*\\-]+",
                    ));
                }
            }
            if let Some(known) = known {
                let field = if path.ends_with("allowedInstanceTypes") {
                    "AllowedInstanceTypes"
                } else {
                    "ExcludedInstanceTypes"
                };
                if let Some(t) = list.iter().find(|t| !known.matches_any(t)) {
                    return Err(LambdaError::invalid(format!(
                        "{field} contains {t}, which matches no instance type this server can use: give EC2 instance types of the C, M or R families (m7g.large, c7i.*), or add the type to the --catalog file."
                    )));
                }
            }
        }
    }
    Ok(out)
}

impl ControlPlane {
    async fn capacity_provider_record(
        &self,
        name_or_arn: &str,
    ) -> Result<(CapacityProviderRecord, i64)> {
        let name = parse_capacity_provider_name(name_or_arn, &self.scope)?;
        self.get_record(Table::CapacityProviders, &name)
            .await?
            .ok_or_else(|| {
                LambdaError::not_found(format!(
                    "Capacity provider not found: {}",
                    self.scope.capacity_provider_arn(&name)
                ))
            })
    }

    pub async fn create_capacity_provider(
        &self,
        req: CreateCapacityProviderRequest,
    ) -> Result<CapacityProvider> {
        let name = validate::required(&req.capacity_provider_name, "capacityProviderName")?;
        let name = parse_capacity_provider_name(name, &self.scope)?;
        let vpc = validate::required(&req.vpc_config, "vpcConfig")?;
        if vpc.subnet_ids.is_empty() || vpc.subnet_ids.len() > 16 {
            return Err(LambdaError::validation(
                &format!("{:?}", vpc.subnet_ids),
                "vpcConfig.subnetIds",
                "Member must have length less than or equal to 16, and greater than or equal to 1",
            ));
        }
        if vpc.security_group_ids.len() > 5 {
            return Err(LambdaError::validation(
                &format!("{:?}", vpc.security_group_ids),
                "vpcConfig.securityGroupIds",
                "Member must have length less than or equal to 5, and greater than or equal to 0",
            ));
        }
        for s in &vpc.subnet_ids {
            validate::len_between(s, "vpcConfig.subnetIds.member", 1, 1024)?;
        }
        let mut uniq = vpc.subnet_ids.clone();
        uniq.sort();
        uniq.dedup();
        if uniq.len() != vpc.subnet_ids.len() {
            return Err(LambdaError::invalid(
                "SubnetIds must not contain duplicates.",
            ));
        }
        let perms = validate::required(&req.permissions_config, "permissionsConfig")?;
        validate::role_arn(
            &perms.capacity_provider_operator_role_arn,
            "permissionsConfig.capacityProviderOperatorRoleArn",
        )?;
        let instance_requirements = validate_instance_requirements(
            &req.instance_requirements.clone().unwrap_or_default(),
            self.instance_types.as_ref(),
        )?;
        let scaling = validate_scaling(
            &req.capacity_provider_scaling_config
                .clone()
                .unwrap_or_default(),
        )?;
        if let Some(k) = &req.kms_key_arn {
            validate::kms_arn(k, "kmsKeyArn")?;
        }
        let tags = req.tags.clone().unwrap_or_default();
        validate::tags(&tags, None)?;
        if self
            .store
            .count(Table::CapacityProviders, "")
            .await
            .map_err(crate::service::store_err)?
            >= MAX_CAPACITY_PROVIDERS
        {
            return Err(LambdaError::new(
                ErrorKind::CapacityProviderLimitExceeded,
                format!(
                    "This account already has {MAX_CAPACITY_PROVIDERS} capacity providers, the most it can have. Delete one first."
                ),
            ));
        }
        let provider = CapacityProvider {
            capacity_provider_arn: self.scope.capacity_provider_arn(&name),
            state: CapacityProviderState::Pending,
            vpc_config: vpc.clone(),
            permissions_config: perms.clone(),
            instance_requirements,
            capacity_provider_scaling_config: scaling,
            kms_key_arn: req.kms_key_arn.clone().filter(|k| !k.is_empty()),
            last_modified: now_lambda(),
            propagate_tags: req.propagate_tags.clone(),
            telemetry_config: req.telemetry_config.clone(),
        };
        let record = CapacityProviderRecord {
            provider: provider.clone(),
            tags,
        };
        self.commit(vec![Op::put(
            Table::CapacityProviders,
            &name,
            &record,
            Expect::Absent,
        )])
        .await
        .map_err(|e| {
            if e.kind == ErrorKind::ResourceConflict {
                LambdaError::conflict(format!(
                    "Capacity provider already exists: {}",
                    provider.capacity_provider_arn
                ))
            } else {
                e
            }
        })?;
        Ok(provider)
    }

    pub async fn get_capacity_provider(&self, name: &str) -> Result<CapacityProvider> {
        Ok(self.capacity_provider_record(name).await?.0.provider)
    }

    pub async fn list_capacity_providers(
        &self,
        state: Option<&str>,
        marker: Option<&str>,
        max_items: Option<u32>,
    ) -> Result<Page<CapacityProvider>> {
        let state = state
            .map(|s| {
                let names: Vec<&str> = CapacityProviderState::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect();
                validate::one_of(s, "state", &names)?;
                s.parse::<CapacityProviderState>()
                    .map_err(|e| LambdaError::invalid(e.to_string()))
            })
            .transpose()?;
        if let Some(m) = max_items {
            validate::int_between(i64::from(m), "maxItems", 1, 50)?;
        }
        let limit = max_items.unwrap_or(50) as usize;
        let mut items = Vec::new();
        let mut after = marker.map(str::to_string);
        // Filtered listing: keep reading until the page is full or the table ends.
        loop {
            let batch: Vec<(CapacityProviderRecord, String, i64)> = self
                .list_records(Table::CapacityProviders, "", after.as_deref(), 100)
                .await?;
            let done = batch.len() < 100;
            for (rec, key, _) in batch {
                after = Some(key.clone());
                if state.is_none_or(|s| rec.provider.state == s) {
                    if items.len() == limit {
                        // One more matching item exists: the page ends before it.
                        let next_marker = items.last().map(|p| provider_name(p).to_string());
                        return Ok(Page { items, next_marker });
                    }
                    items.push(rec.provider);
                }
            }
            if done {
                return Ok(Page {
                    items,
                    next_marker: None,
                });
            }
        }
    }

    pub async fn update_capacity_provider(
        &self,
        name: &str,
        req: UpdateCapacityProviderRequest,
    ) -> Result<CapacityProvider> {
        let (mut rec, rev) = self.capacity_provider_record(name).await?;
        if rec.provider.state == CapacityProviderState::Deleting {
            return Err(LambdaError::conflict(format!(
                "Capacity provider {} is being deleted and cannot be updated.",
                rec.provider.capacity_provider_arn
            )));
        }
        if let Some(s) = &req.capacity_provider_scaling_config {
            // Members not given keep their current values.
            let current = &rec.provider.capacity_provider_scaling_config;
            let merged = CapacityProviderScalingConfig {
                max_vcpu_count: s.max_vcpu_count.or(current.max_vcpu_count),
                scaling_mode: s
                    .scaling_mode
                    .clone()
                    .or_else(|| current.scaling_mode.clone()),
                scaling_policies: if s.scaling_mode.as_deref() == Some("Auto") {
                    s.scaling_policies.clone()
                } else {
                    s.scaling_policies
                        .clone()
                        .or_else(|| current.scaling_policies.clone())
                },
            };
            rec.provider.capacity_provider_scaling_config = validate_scaling(&merged)?;
        }
        if let Some(p) = &req.propagate_tags {
            rec.provider.propagate_tags = Some(p.clone());
        }
        rec.provider.last_modified = now_lambda();
        let key = rec.name().to_string();
        self.commit(vec![Op::put(
            Table::CapacityProviders,
            key,
            &rec,
            Expect::Revision(rev),
        )])
        .await?;
        Ok(rec.provider)
    }

    pub async fn delete_capacity_provider(&self, name: &str) -> Result<CapacityProvider> {
        let (mut rec, rev) = self.capacity_provider_record(name).await?;
        let key = parse_capacity_provider_name(name, &self.scope)?;
        let attached = self
            .store
            .count(Table::CapacityProviderVersions, &format!("{key}/"))
            .await
            .map_err(crate::service::store_err)?;
        if attached > 0 {
            return Err(LambdaError::conflict(format!(
                "You cannot delete a capacity provider that has function versions attached ({attached} attached). To delete this capacity provider, first remove its association with all function versions (delete the versions or their functions)."
            )));
        }
        rec.provider.state = CapacityProviderState::Deleting;
        rec.provider.last_modified = now_lambda();
        self.commit(vec![Op::put(
            Table::CapacityProviders,
            &key,
            &rec,
            Expect::Revision(rev),
        )])
        .await?;
        Ok(rec.provider)
    }

    pub async fn list_function_versions_by_capacity_provider(
        &self,
        name: &str,
        marker: Option<&str>,
        max_items: Option<u32>,
    ) -> Result<ListFunctionVersionsByCapacityProviderResponse> {
        let (rec, _) = self.capacity_provider_record(name).await?;
        if let Some(m) = max_items {
            validate::int_between(i64::from(m), "maxItems", 1, 50)?;
        }
        let key = parse_capacity_provider_name(name, &self.scope)?;
        let page = self
            .page::<serde_json::Value>(
                Table::CapacityProviderVersions,
                &format!("{key}/"),
                marker,
                max_items,
                50,
            )
            .await?;
        let mut function_versions = Vec::with_capacity(page.items.len());
        for (index, _, _) in page.items {
            let vkey = index
                .get("version_key")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            if let Some((v, _)) = self
                .get_record::<VersionRecord>(Table::Versions, &vkey)
                .await?
            {
                function_versions.push(FunctionVersionsByCapacityProviderListItem {
                    function_arn: v.config.function_arn.clone(),
                    state: v.config.state,
                });
            }
        }
        Ok(ListFunctionVersionsByCapacityProviderResponse {
            capacity_provider_arn: rec.provider.capacity_provider_arn,
            function_versions,
            next_marker: page.next_marker,
        })
    }

    /// Names of all capacity providers (for the reconciler).
    pub(crate) async fn all_capacity_providers(
        &self,
    ) -> Result<Vec<(CapacityProviderRecord, i64)>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let batch: Vec<(CapacityProviderRecord, String, i64)> = self
                .list_records(Table::CapacityProviders, "", after.as_deref(), 500)
                .await?;
            let done = batch.len() < 500;
            for (r, k, rev) in batch {
                after = Some(k);
                out.push((r, rev));
            }
            if done {
                return Ok(out);
            }
        }
    }

    /// Resolves a capacity provider ARN from a function's config to an existing provider name.
    pub(crate) async fn require_capacity_provider(
        &self,
        arn: &str,
    ) -> Result<CapacityProviderRecord> {
        let name = fleetfn_model::arn::parse_capacity_provider_arn(arn, &self.scope).map_err(|e| {
            if e.kind == ErrorKind::Validation {
                LambdaError::new(
                    ErrorKind::Validation,
                    e.message.replace(
                        "'capacityProviderArn'",
                        "'capacityProviderConfig.lambdaManagedInstancesCapacityProviderConfig.capacityProviderArn'",
                    ),
                )
            } else {
                e
            }
        })?;
        debug_assert!(is_simple_name(&name));
        let (rec, _) = self
            .get_record::<CapacityProviderRecord>(Table::CapacityProviders, &name)
            .await?
            .ok_or_else(|| LambdaError::not_found(format!("Capacity provider not found: {arn}")))?;
        if rec.provider.state == CapacityProviderState::Deleting {
            return Err(LambdaError::conflict(format!(
                "Capacity provider {arn} is being deleted; choose another capacity provider."
            )));
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod known_type_tests {
    use fleetfn_model::ErrorKind;
    use fleetfn_model::types::{
        CapacityProviderPermissionsConfig, CapacityProviderVpcConfig,
        CreateCapacityProviderRequest, InstanceRequirements,
    };

    use super::KnownInstanceTypes;

    fn req(
        name: &str,
        allowed: Option<&[&str]>,
        excluded: Option<&[&str]>,
    ) -> CreateCapacityProviderRequest {
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        CreateCapacityProviderRequest {
            capacity_provider_name: Some(name.into()),
            vpc_config: Some(CapacityProviderVpcConfig {
                subnet_ids: vec!["subnet-a".into()],
                security_group_ids: vec![],
            }),
            permissions_config: Some(CapacityProviderPermissionsConfig {
                capacity_provider_operator_role_arn: "arn:aws:iam::000000000000:role/op".into(),
            }),
            instance_requirements: Some(InstanceRequirements {
                architectures: Some(vec!["arm64".into()]),
                allowed_instance_types: allowed.map(list),
                excluded_instance_types: excluded.map(list),
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn unknown_instance_types_are_named() {
        let (_d, cp) = crate::tests::cp().await;
        // Without a catalog (a bare control plane), any well-formed name is accepted.
        cp.create_capacity_provider(req("any", Some(&["m7g.huge"]), None))
            .await
            .unwrap();
        let known = ["m7g.large", "m7g.xlarge", "c7i.large"];
        let cp = cp.with_instance_types(KnownInstanceTypes::new(move |p| {
            known.iter().any(|t| {
                p == *t
                    || p.strip_suffix('*')
                        .is_some_and(|prefix| t.starts_with(prefix))
            })
        }));
        cp.create_capacity_provider(req("ok", Some(&["m7g.large", "m7g.*"]), None))
            .await
            .unwrap();
        let e = cp
            .create_capacity_provider(req("typo", Some(&["m7g.large", "m7g.huge"]), None))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameterValue);
        assert!(
            e.message.starts_with(
                "AllowedInstanceTypes contains m7g.huge, which matches no instance type"
            ),
            "{}",
            e.message
        );
        let e = cp
            .create_capacity_provider(req("typo2", None, Some(&["z9.*"])))
            .await
            .unwrap_err();
        assert!(
            e.message.starts_with("ExcludedInstanceTypes contains z9.*"),
            "{}",
            e.message
        );
    }
}
