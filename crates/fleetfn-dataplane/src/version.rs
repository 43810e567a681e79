//! What a published version asks of the data plane, as pure functions of its record: its
//! `[min, max]` environments, the count it is sized to, the environment request an agent gets,
//! its placement key, and the names users see (`12`, `$LATEST.PUBLISHED`). Depends on no other
//! module of the crate.

use fleetfn_metrics::VersionLabels;
use fleetfn_model::limits::DEFAULT_MIN_ENVIRONMENTS;
use fleetfn_model::runtimes;
use fleetfn_model::{LastUpdateStatus, State};
use fleetfn_proto::EnvironmentRequest;
use fleetfn_scheduler::Arch;
use fleetfn_server::VersionRecord;

/// A version's `[min, max]` environments from its applied scaling config (LMI default min 3, no
/// max); `None` when it should run nothing (Failed, Deleting).
pub(crate) fn bounds(v: &VersionRecord) -> Option<(u32, Option<u32>)> {
    if matches!(v.config.state, State::Deleting | State::Failed) {
        return None;
    }
    let applied = &v.scaling.applied;
    let to_u32 = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
    let max = applied.max_execution_environments.map(to_u32);
    let min = applied
        .min_execution_environments
        .map_or(DEFAULT_MIN_ENVIRONMENTS, to_u32);
    Some((max.map_or(min, |m| min.min(m)), max))
}

/// Whether a publish of the version is rolling out (not yet `Active`/`Successful`).
pub(crate) fn rolling_out(v: &VersionRecord) -> bool {
    v.config.state == State::Pending || v.config.last_update_status == LastUpdateStatus::InProgress
}

/// The environment count a version is sized to: the scaler's last answer (`scaler`), or
/// `before_first_tick` until the scaler has sized it, always within the applied `[min, max]`.
/// The scaler stores its answer once a second, while the deployer acts on a new scaling config
/// as soon as it is applied (Min = Max = 0 stops every environment at once): clamping here keeps
/// what the deployer converges to, the status document and the metrics within the config in
/// force, without waiting for the scaler's next tick.
pub(crate) fn desired_within(
    bounds: (u32, Option<u32>),
    scaler: Option<u32>,
    before_first_tick: u32,
) -> u32 {
    let (min, max) = bounds;
    scaler
        .unwrap_or(before_first_tick)
        .clamp(min, max.unwrap_or(u32::MAX).max(min))
}

/// The provider's architecture (`x86_64` unless it says `arm64`).
pub(crate) fn arch_of(p: &fleetfn_model::types::CapacityProvider) -> Arch {
    match p
        .instance_requirements
        .architectures
        .as_ref()
        .and_then(|a| a.first())
        .map(String::as_str)
    {
        Some("arm64") => Arch::Arm64,
        _ => Arch::X86_64,
    }
}

/// What an agent is asked to run for one environment of the version.
pub(crate) fn env_request(v: &VersionRecord, region: &str) -> EnvironmentRequest {
    let c = &v.config;
    let lmi = c
        .capacity_provider_config
        .as_ref()
        .and_then(|p| p.lambda_managed_instances_capacity_provider_config.clone());
    let ratio = lmi
        .as_ref()
        .and_then(|l| l.memory_gib_per_vcpu)
        .unwrap_or(2.0);
    let concurrency = lmi
        .as_ref()
        .and_then(|l| l.per_execution_environment_max_concurrency)
        .unwrap_or(1);
    EnvironmentRequest {
        function_name: c.function_name.clone(),
        version: v.version.clone(),
        qualified_arn: c.function_arn.clone(),
        runtime: c.runtime.clone().unwrap_or_default(),
        handler: c.handler.clone(),
        code_sha256_hex: v.code_hex.clone(),
        code_size: c.code_size,
        memory_mb: c.memory_size,
        timeout_secs: c.timeout,
        max_concurrency: u32::try_from(concurrency.clamp(1, 1600)).unwrap_or(1),
        vcpus: runtimes::vcpus(c.memory_size, ratio),
        ephemeral_storage_mb: u32::try_from(c.ephemeral_storage.size).unwrap_or(512),
        region: region.to_string(),
        env_vars: c
            .environment
            .as_ref()
            .map(|e| e.variables.clone())
            .unwrap_or_default(),
        placement: None,
        credentials: None,
        // The snapshot taken at publish: a layer version deleted since still runs here.
        layers: v
            .layers
            .iter()
            .map(|l| fleetfn_proto::LayerPackage {
                arn: l.arn.clone(),
                sha256_hex: l.sha256_hex.clone(),
                size: l.size,
            })
            .collect(),
    }
}

/// The placement key of a version's publish: environments of an older publish of the same
/// version only take room.
pub(crate) fn placement_key(vkey: &str, publish_hash: &str) -> String {
    format!("{vkey}#{publish_hash}")
}

/// `fn/000000000012` → `12`; `$LATEST.PUBLISHED` stays.
pub(crate) fn display_version(v: &str) -> String {
    if v.starts_with('$') {
        return v.to_string();
    }
    let t = v.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.into() }
}

/// `fn/000000000012` → `function="fn", version="12"`; `$LATEST.PUBLISHED` stays.
pub(crate) fn labels(vkey: &str) -> VersionLabels {
    let (function, version) = vkey.split_once('/').unwrap_or((vkey, ""));
    VersionLabels::new(function, display_version(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_count_follows_an_applied_config_before_the_next_tick() {
        // The scaler sized the version to 3 under Min 3; Min = Max = 0 is then applied and the
        // deployer stops everything before the scaler ticks again: the count is 0, not 3.
        assert_eq!(desired_within((0, Some(0)), Some(3), 0), 0);
        // A lowered maximum caps the scaler's answer, a raised minimum lifts it.
        assert_eq!(desired_within((1, Some(2)), Some(5), 1), 2);
        assert_eq!(desired_within((4, None), Some(1), 4), 4);
        // Within the bounds the scaler's answer stands.
        assert_eq!(desired_within((0, Some(6)), Some(3), 0), 3);
        assert_eq!(desired_within((1, None), Some(u32::MAX), 1), u32::MAX);
        // Before the first tick: the fallback, clamped the same way.
        assert_eq!(desired_within((0, Some(3)), None, 5), 3);
        assert_eq!(desired_within((2, Some(3)), None, 0), 2);
        // A maximum below the minimum: the minimum wins (as `bounds` already makes min ≤ max).
        assert_eq!(desired_within((3, Some(1)), Some(0), 0), 3);
    }

    #[test]
    fn version_labels_are_the_names_users_see() {
        assert_eq!(
            labels("hello/000000000012"),
            VersionLabels::new("hello", "12")
        );
        assert_eq!(
            labels("hello/$LATEST.PUBLISHED"),
            VersionLabels::new("hello", "$LATEST.PUBLISHED")
        );
        assert_eq!(display_version("000000000000"), "0");
    }

    #[test]
    fn environments_get_the_layers_the_version_was_published_with() {
        use fleetfn_server::LayerSnapshot;
        let layer = |n: u8| LayerSnapshot {
            arn: format!("arn:aws:lambda:us-east-1:000000000000:layer:l{n}:1"),
            sha256_hex: format!("{n:064x}"),
            size: u64::from(n) * 10,
            unzipped: u64::from(n) * 100,
        };
        let v = VersionRecord {
            function: "f".into(),
            version: "1".into(),
            config: fleetfn_model::types::FunctionConfiguration::default(),
            code_hex: String::new(),
            publish_hash: String::new(),
            scaling: fleetfn_server::records::ScalingState::default(),
            capacity_provider: None,
            layers: vec![layer(2), layer(1)],
        };
        let req = env_request(&v, "us-east-1");
        // In extraction order, the zip's digest and size (not the unzipped size).
        assert_eq!(
            req.layers,
            vec![
                fleetfn_proto::LayerPackage {
                    arn: layer(2).arn,
                    sha256_hex: layer(2).sha256_hex,
                    size: 20,
                },
                fleetfn_proto::LayerPackage {
                    arn: layer(1).arn,
                    sha256_hex: layer(1).sha256_hex,
                    size: 10,
                },
            ]
        );
    }
}
