//! Functions: CreateFunction, GetFunction(Configuration), ListFunctions, UpdateFunctionCode,
//! UpdateFunctionConfiguration, DeleteFunction.

use base64::Engine;
use std::sync::Arc;

use fleetfn_artifacts::{Digest, Limits, validate_zip};
use fleetfn_model::arn::FunctionRef;
use fleetfn_model::limits::{
    LMI_MIN_MEMORY_MB, MAX_LMI_TIMEOUT_SECS, MAX_MEMORY_MB, MAX_TIMEOUT_SECS, MAX_UNZIPPED_BYTES,
    MAX_ZIP_BYTES, MIN_MEMORY_MB,
};
use fleetfn_model::runtimes::{self, SUPPORTED_RUNTIMES};
use fleetfn_model::time::now_lambda;
use fleetfn_model::types::{
    CapacityProviderConfig, CreateFunctionRequest, EnvironmentResponse, FunctionCodeLocation,
    FunctionConfiguration, GetFunctionResponse, LambdaManagedInstancesCapacityProviderConfig,
    LoggingConfig, TracingConfig, UpdateFunctionCodeRequest, UpdateFunctionConfigurationRequest,
    VpcConfigResponse,
};
use fleetfn_model::{ErrorKind, LambdaError, LastUpdateStatus, Result, State};
use fleetfn_store::{Expect, Op, Table};

use crate::records::{FunctionRecord, LATEST, LATEST_PUBLISHED, VersionRecord, alias_key};
use crate::service::{ControlPlane, Page, new_revision_id};
use crate::validate;

/// Every runtime id of the Lambda API (the model's enum).
const LAMBDA_RUNTIMES: &[&str] = &[
    "nodejs",
    "nodejs4.3",
    "nodejs6.10",
    "nodejs8.10",
    "nodejs10.x",
    "nodejs12.x",
    "nodejs14.x",
    "nodejs16.x",
    "java8",
    "java8.al2",
    "java11",
    "python2.7",
    "python3.6",
    "python3.7",
    "python3.8",
    "python3.9",
    "dotnetcore1.0",
    "dotnetcore2.0",
    "dotnetcore2.1",
    "dotnetcore3.1",
    "dotnet6",
    "dotnet8",
    "nodejs4.3-edge",
    "go1.x",
    "ruby2.5",
    "ruby2.7",
    "provided",
    "provided.al2",
    "nodejs18.x",
    "python3.10",
    "java17",
    "ruby3.2",
    "ruby3.3",
    "ruby3.4",
    "python3.11",
    "nodejs20.x",
    "provided.al2023",
    "python3.12",
    "java21",
    "python3.13",
    "nodejs22.x",
    "nodejs24.x",
    "python3.14",
    "java25",
    "dotnet10",
    "ruby4.0",
];

/// The capacity provider name a configuration points at, if any.
pub(crate) fn capacity_provider_name_of(cfg: &FunctionConfiguration) -> Option<String> {
    cfg.capacity_provider_config
        .as_ref()?
        .lambda_managed_instances_capacity_provider_config
        .as_ref()?
        .capacity_provider_arn
        .as_ref()?
        .rsplit(':')
        .next()
        .map(str::to_string)
}

/// A decoded, checked code package and its digest.
pub(crate) struct Package {
    pub bytes: Arc<Vec<u8>>,
    pub digest: Digest,
    /// Total unzipped size of its files.
    pub unzipped: u64,
}

/// Decodes, checks and hashes a package on a blocking thread: up to ≈ 70 MB of base64 is tens
/// of milliseconds of CPU that would otherwise stall every invoke on the runtime's thread.
pub(crate) async fn decode_zip(b64: String) -> Result<Package> {
    tokio::task::spawn_blocking(move || decode_zip_now(&b64))
        .await
        .map_err(|e| LambdaError::service(format!("checking the code package: {e}")))?
}

fn decode_zip_now(b64: &str) -> Result<Package> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| LambdaError::bad_content(format!("ZipFile is not valid base64: {e}")))?;
    if bytes.len() > MAX_ZIP_BYTES {
        return Err(LambdaError::new(
            ErrorKind::RequestEntityTooLarge,
            format!(
                "Zipped code size {} exceeds the maximum of {MAX_ZIP_BYTES} bytes for direct upload.",
                bytes.len()
            ),
        ));
    }
    let limits = Limits {
        max_unzipped_bytes: MAX_UNZIPPED_BYTES,
        ..Limits::default()
    };
    let summary = validate_zip(&bytes, &limits).map_err(|e| LambdaError::invalid(e.to_string()))?;
    let digest = Digest::of(&bytes);
    Ok(Package {
        bytes: Arc::new(bytes),
        digest,
        unzipped: summary.total_uncompressed_size(),
    })
}

fn check_runtime(runtime: &str, with_capacity_provider: bool) -> Result<()> {
    validate::one_of(runtime, "runtime", LAMBDA_RUNTIMES)?;
    if runtimes::family(runtime).is_none() {
        let what = if with_capacity_provider {
            format!(
                "Runtime Enum {runtime} does not support specified feature: Lambda Managed Instances."
            )
        } else {
            format!(
                "The runtime parameter of {runtime} is not supported by this fleetfn installation."
            )
        };
        return Err(LambdaError::invalid(format!(
            "{what} Supported runtimes: {}.",
            SUPPORTED_RUNTIMES.join(", ")
        )));
    }
    Ok(())
}

fn check_handler(handler: Option<&str>, runtime: &str) -> Result<()> {
    match handler {
        Some(h) => {
            validate::len_between(h, "handler", 0, 128)?;
            if h.chars().any(char::is_whitespace) {
                return Err(LambdaError::validation(
                    h,
                    "handler",
                    "Member must satisfy regular expression pattern: [^\\s]+",
                ));
            }
            Ok(())
        }
        None if runtime.starts_with("provided") => Ok(()),
        None => Err(LambdaError::invalid(format!(
            "Handler is required for runtime {runtime}: give it as file.function, for example app.handler."
        ))),
    }
}

fn check_logging(cfg: &LoggingConfig, with_cp: bool) -> Result<()> {
    if let Some(f) = &cfg.log_format {
        validate::one_of(f, "loggingConfig.logFormat", &["JSON", "Text"])?;
        if with_cp && f == "Text" {
            return Err(LambdaError::invalid(
                "LogFormat Text is not supported for functions configured with a capacity provider; use JSON.",
            ));
        }
    }
    if let Some(l) = &cfg.application_log_level {
        validate::one_of(
            l,
            "loggingConfig.applicationLogLevel",
            &["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"],
        )?;
    }
    if let Some(l) = &cfg.system_log_level {
        validate::one_of(
            l,
            "loggingConfig.systemLogLevel",
            &["DEBUG", "INFO", "WARN"],
        )?;
    }
    if let Some(g) = &cfg.log_group {
        validate::len_between(g, "loggingConfig.logGroup", 1, 512)?;
    }
    Ok(())
}

/// Fills LMI defaults into the logging config.
fn logging_with_defaults(cfg: Option<LoggingConfig>, name: &str, with_cp: bool) -> LoggingConfig {
    let mut cfg = cfg.unwrap_or_default();
    if cfg.log_format.is_none() {
        cfg.log_format = Some(if with_cp { "JSON" } else { "Text" }.into());
    }
    if cfg.log_format.as_deref() == Some("JSON") {
        cfg.application_log_level
            .get_or_insert_with(|| "INFO".into());
        cfg.system_log_level.get_or_insert_with(|| "INFO".into());
    }
    cfg.log_group
        .get_or_insert_with(|| format!("/aws/lambda/{name}"));
    cfg
}

impl ControlPlane {
    /// Checks and completes a capacity provider config against memory size and architecture.
    /// Returns the completed config and whether the concurrency was given explicitly.
    pub(crate) async fn check_capacity_provider_config(
        &self,
        cfg: &CapacityProviderConfig,
        runtime: Option<&str>,
        memory: u32,
        arch: &str,
    ) -> Result<(CapacityProviderConfig, bool)> {
        let inner = validate::required(
            &cfg.lambda_managed_instances_capacity_provider_config,
            "capacityProviderConfig.lambdaManagedInstancesCapacityProviderConfig",
        )?;
        let arn = validate::required(
            &inner.capacity_provider_arn,
            "capacityProviderConfig.lambdaManagedInstancesCapacityProviderConfig.capacityProviderArn",
        )?;
        let cp = self.require_capacity_provider(arn).await?;
        let cp_arch = cp
            .provider
            .instance_requirements
            .architectures
            .as_ref()
            .and_then(|a| a.first().cloned())
            .unwrap_or_else(|| "x86_64".into());
        if cp_arch != arch {
            return Err(LambdaError::invalid(format!(
                "The function's architecture ({arch}) must match the capacity provider's architecture ({cp_arch})."
            )));
        }
        let ratio = inner.memory_gib_per_vcpu.unwrap_or(2.0);
        if !(2.0..=8.0).contains(&ratio) {
            return Err(LambdaError::validation(
                &ratio.to_string(),
                "capacityProviderConfig.lambdaManagedInstancesCapacityProviderConfig.executionEnvironmentMemoryGiBPerVCpu",
                "Member must have value less than or equal to 8.0, and greater than or equal to 2.0",
            ));
        }
        if ![2.0, 4.0, 8.0].contains(&ratio) {
            return Err(LambdaError::invalid(format!(
                "ExecutionEnvironmentMemoryGiBPerVCpu {ratio} is not supported; use 2.0, 4.0 or 8.0."
            )));
        }
        if memory < LMI_MIN_MEMORY_MB {
            return Err(LambdaError::invalid(format!(
                "MemorySize {memory} MB is below the minimum of {LMI_MIN_MEMORY_MB} MB for functions configured with a capacity provider."
            )));
        }
        // Only whole GiB multiples of the ratio give a whole number of vCPUs.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let step = (ratio * 1024.0) as u32;
        if !memory.is_multiple_of(step) {
            return Err(LambdaError::invalid(format!(
                "MemorySize {memory} MB must be a multiple of {step} MB for ExecutionEnvironmentMemoryGiBPerVCpu {ratio:.1} (one vCPU per {ratio:.1} GiB)."
            )));
        }
        let explicit = inner.per_execution_environment_max_concurrency.is_some();
        let concurrency = match inner.per_execution_environment_max_concurrency {
            Some(n) => validate::int_u32(
                n,
                "capacityProviderConfig.lambdaManagedInstancesCapacityProviderConfig.perExecutionEnvironmentMaxConcurrency",
                1,
                1600,
            )?,
            None => runtime
                .and_then(runtimes::family)
                .map_or(16, |f| runtimes::default_max_concurrency(f, memory, ratio)),
        };
        Ok((
            CapacityProviderConfig {
                lambda_managed_instances_capacity_provider_config: Some(
                    LambdaManagedInstancesCapacityProviderConfig {
                        capacity_provider_arn: Some(cp.provider.capacity_provider_arn.clone()),
                        per_execution_environment_max_concurrency: Some(i64::from(concurrency)),
                        memory_gib_per_vcpu: Some(ratio),
                    },
                ),
            },
            explicit,
        ))
    }

    pub async fn create_function(
        &self,
        mut req: CreateFunctionRequest,
    ) -> Result<FunctionConfiguration> {
        let name_in = validate::required(&req.function_name, "functionName")?;
        let fref = FunctionRef::parse(name_in, &self.scope, 140)?;
        if fref.qualifier.is_some() {
            return Err(LambdaError::invalid(
                "A qualified function name is not allowed in CreateFunction; give the function name without a version or alias.",
            ));
        }
        let name = fref.name;
        let role = validate::required(&req.role, "role")?;
        validate::role_arn(role, "role")?;
        let code = validate::required(&req.code, "code")?;
        let package_type = req.package_type.clone().unwrap_or_else(|| "Zip".into());
        validate::one_of(&package_type, "packageType", &["Zip", "Image"])?;
        if package_type == "Image" || code.image_uri.is_some() {
            return Err(LambdaError::invalid(
                "Container image functions are not supported by fleetfn yet; upload a .zip package with Code.ZipFile.",
            ));
        }
        if code.s3_bucket.is_some() || code.s3_key.is_some() {
            return Err(LambdaError::invalid(
                "fleetfn has no S3: upload the package directly with Code.ZipFile (up to 50 MB zipped).",
            ));
        }
        if code.zip_file.is_none() {
            return Err(LambdaError::invalid(
                "Code.ZipFile is required: upload the function's .zip package.",
            ));
        }
        let runtime = req.runtime.clone().ok_or_else(|| {
            LambdaError::invalid("Runtime is required for functions deployed as a .zip package.")
        })?;
        let with_cp = req.capacity_provider_config.is_some();
        check_runtime(&runtime, with_cp)?;
        check_handler(req.handler.as_deref(), &runtime)?;
        let max_timeout = if with_cp {
            MAX_LMI_TIMEOUT_SECS
        } else {
            MAX_TIMEOUT_SECS
        };
        let timeout = validate::int_u32(req.timeout.unwrap_or(3), "timeout", 1, max_timeout)?;
        let memory = validate::int_u32(
            req.memory_size.unwrap_or(if with_cp {
                LMI_MIN_MEMORY_MB.into()
            } else {
                128
            }),
            "memorySize",
            MIN_MEMORY_MB,
            MAX_MEMORY_MB,
        )?;
        let description = req.description.clone().unwrap_or_default();
        validate::len_between(&description, "description", 0, 256)?;
        let ephemeral = req.ephemeral_storage.clone().unwrap_or_default();
        validate::int_between(ephemeral.size, "ephemeralStorage.size", 512, 10240)?;
        // A capacity-provider function without Architectures runs on its provider's architecture.
        let arch = match (&req.architectures, &req.capacity_provider_config) {
            (Some(a), _) => validate::architectures(a)?,
            (None, Some(cfg)) => match cfg
                .lambda_managed_instances_capacity_provider_config
                .as_ref()
                .and_then(|c| c.capacity_provider_arn.as_deref())
            {
                Some(arn) => self
                    .require_capacity_provider(arn)
                    .await?
                    .provider
                    .instance_requirements
                    .architectures
                    .and_then(|a| a.first().cloned())
                    .unwrap_or_else(|| "x86_64".into()),
                None => "x86_64".into(),
            },
            (None, None) => "x86_64".into(),
        };
        if let Some(env) = &req.environment {
            validate::environment(&env.variables)?;
        }
        if let Some(k) = &req.kms_key_arn {
            validate::kms_arn(k, "kMSKeyArn")?;
        }
        if let Some(t) = &req.tracing_config
            && let Some(m) = &t.mode
        {
            validate::one_of(m, "tracingConfig.mode", &["Active", "PassThrough"])?;
        }
        if req
            .file_system_configs
            .as_ref()
            .is_some_and(|l| !l.is_empty())
        {
            return Err(LambdaError::invalid(
                "FileSystemConfigs (EFS) are not supported by fleetfn.",
            ));
        }
        if req.code_signing_config_arn.is_some() {
            return Err(LambdaError::invalid(
                "Code signing is not supported by fleetfn.",
            ));
        }
        if let Some(logging) = &req.logging_config {
            check_logging(logging, with_cp)?;
        }
        if let Some(p) = &req.publish_to {
            validate::one_of(p, "publishTo", &["LATEST_PUBLISHED"])?;
            if !with_cp {
                return Err(LambdaError::invalid(
                    "PublishTo is only supported for functions configured with a capacity provider.",
                ));
            }
        }
        let tags = req.tags.clone().unwrap_or_default();
        validate::tags(&tags, None)?;
        let (cp_config, concurrency_explicit) = match &req.capacity_provider_config {
            Some(cfg) => {
                let (c, e) = self
                    .check_capacity_provider_config(cfg, Some(&runtime), memory, &arch)
                    .await?;
                (Some(c), e)
            }
            None => (None, false),
        };
        let zip_b64 = req
            .code
            .as_mut()
            .and_then(|c| c.zip_file.take())
            .unwrap_or_default();
        let package = decode_zip(zip_b64).await?;
        let layers = self
            .resolve_function_layers(req.layers.as_deref().unwrap_or_default(), package.unzipped)
            .await?;

        if let Some((existing, _)) = self
            .get_record::<FunctionRecord>(Table::Functions, &name)
            .await?
        {
            let what = if existing.deleting {
                " and is being deleted"
            } else {
                ""
            };
            return Err(LambdaError::conflict(format!(
                "Function already exist: {name}{what}"
            )));
        }
        let digest = self.put_package(&package).await?;
        let latest = FunctionConfiguration {
            function_name: name.clone(),
            function_arn: self.scope.function_arn(&name),
            runtime: Some(runtime),
            role: role.clone(),
            handler: req.handler.clone(),
            code_size: package.bytes.len() as u64,
            description,
            timeout,
            memory_size: memory,
            last_modified: now_lambda(),
            code_sha256: digest.base64(),
            version: LATEST.into(),
            vpc_config: req.vpc_config.as_ref().map(|v| VpcConfigResponse {
                subnet_ids: v.subnet_ids.clone(),
                security_group_ids: v.security_group_ids.clone(),
                vpc_id: None,
            }),
            dead_letter_config: validate::dead_letter(req.dead_letter_config.as_ref())?,
            environment: req.environment.as_ref().map(|e| EnvironmentResponse {
                variables: e.variables.clone(),
            }),
            kms_key_arn: req.kms_key_arn.clone().filter(|k| !k.is_empty()),
            tracing_config: req.tracing_config.clone().unwrap_or(TracingConfig {
                mode: Some("PassThrough".into()),
            }),
            revision_id: new_revision_id(),
            state: if with_cp {
                State::ActiveNonInvocable
            } else {
                State::Active
            },
            state_reason: None,
            state_reason_code: None,
            last_update_status: LastUpdateStatus::Successful,
            last_update_status_reason: None,
            last_update_status_reason_code: None,
            package_type,
            architectures: vec![arch],
            ephemeral_storage: ephemeral,
            logging_config: logging_with_defaults(req.logging_config.clone(), &name, with_cp),
            capacity_provider_config: cp_config,
            layers: crate::layers::wire_layers(&layers),
        };
        let mut record = FunctionRecord {
            latest: latest.clone(),
            code_hex: digest.hex(),
            tags,
            next_version: 1,
            concurrency_explicit,
            last_numbered: None,
            deleting: false,
            code_unzipped: Some(package.unzipped),
            layers,
        };
        let mut ops = Vec::new();
        let mut response = latest;
        if req.publish == Some(true) {
            let target = if req.publish_to.is_some() {
                LATEST_PUBLISHED
            } else {
                ""
            };
            let (version, mut vops) = self.publish_ops(&mut record, None, target, None).await?;
            response = version.config.clone();
            ops.append(&mut vops);
        }
        ops.insert(0, Op::put(Table::Functions, &name, &record, Expect::Absent));
        self.commit(ops).await.map_err(|e| {
            if e.kind == ErrorKind::ResourceConflict {
                LambdaError::conflict(format!("Function already exist: {name}"))
            } else {
                e
            }
        })?;
        Ok(response)
    }

    /// Resolves `Qualifier` for a read: `$LATEST`, `$LATEST.PUBLISHED`, a number or an alias.
    pub(crate) async fn resolve_config(
        &self,
        fref: &FunctionRef,
    ) -> Result<(FunctionRecord, FunctionConfiguration)> {
        let (rec, _) = self.function(&fref.name).await?;
        let cfg = match fref.qualifier.as_deref() {
            None | Some(LATEST) => rec.latest.clone(),
            Some(q) if q == LATEST_PUBLISHED || q.chars().all(|c| c.is_ascii_digit()) => {
                self.version(&fref.name, q).await?.0.config
            }
            Some(alias) => {
                let (a, _) = self
                    .get_record::<fleetfn_model::types::AliasConfiguration>(
                        Table::Aliases,
                        &alias_key(&fref.name, alias),
                    )
                    .await?
                    .ok_or_else(|| self.function_not_found(&fref.name, Some(alias)))?;
                if a.function_version == LATEST {
                    rec.latest.clone()
                } else {
                    self.version(&fref.name, &a.function_version)
                        .await?
                        .0
                        .config
                }
            }
        };
        Ok((rec, cfg))
    }

    pub async fn get_function(&self, fref: &FunctionRef) -> Result<GetFunctionResponse> {
        let (rec, configuration) = self.resolve_config(fref).await?;
        let code_hex = if configuration.version == LATEST {
            rec.code_hex.clone()
        } else {
            self.version(&fref.name, &configuration.version)
                .await
                .map(|(v, _)| v.code_hex)
                .unwrap_or_else(|_| rec.code_hex.clone())
        };
        Ok(GetFunctionResponse {
            configuration,
            code: FunctionCodeLocation {
                repository_type: "fleetfn".into(),
                location: format!("fleetfn://artifacts/sha256/{code_hex}"),
            },
            tags: if fref.qualifier.is_none() {
                Some(rec.tags)
            } else {
                None
            },
        })
    }

    pub async fn get_function_configuration(
        &self,
        fref: &FunctionRef,
    ) -> Result<FunctionConfiguration> {
        Ok(self.resolve_config(fref).await?.1)
    }

    pub async fn list_functions(
        &self,
        all_versions: bool,
        marker: Option<&str>,
        max_items: Option<u32>,
    ) -> Result<Page<FunctionConfiguration>> {
        if let Some(m) = max_items {
            validate::int_between(i64::from(m), "maxItems", 1, 10000)?;
        }
        if all_versions {
            return self.list_all_versions(marker, max_items).await;
        }
        let page = self
            .page::<FunctionRecord>(Table::Functions, "", marker, max_items, 50)
            .await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|(rec, _, _)| rec.latest)
                .collect(),
            next_marker: page.next_marker,
        })
    }

    /// `ListFunctions` with `FunctionVersion=ALL`: every function's `$LATEST` followed by its
    /// versions, paged by entries as AWS counts `MaxItems` (not by functions). The marker is
    /// the last entry given: `<function>` for its `$LATEST`, `<function>/<version key>` for a
    /// version.
    async fn list_all_versions(
        &self,
        marker: Option<&str>,
        max_items: Option<u32>,
    ) -> Result<Page<FunctionConfiguration>> {
        let limit = max_items.map_or(50, |m| (m as usize).clamp(1, 50));
        let mut items: Vec<(FunctionConfiguration, String)> = Vec::new();
        let mut after_fn = None;
        if let Some(m) = marker {
            let (function, after_version) = match m.split_once('/') {
                Some((f, v)) => (f, Some(format!("{f}/{v}"))),
                None => (m, None),
            };
            for (v, key, _) in self
                .list_records::<VersionRecord>(
                    Table::Versions,
                    &format!("{function}/"),
                    after_version.as_deref(),
                    limit + 1,
                )
                .await?
            {
                items.push((v.config, key));
            }
            after_fn = Some(function.to_owned());
        }
        while items.len() <= limit {
            let batch = self
                .list_records::<FunctionRecord>(Table::Functions, "", after_fn.as_deref(), 50)
                .await?;
            let Some((_, last, _)) = batch.last() else {
                break;
            };
            after_fn = Some(last.clone());
            for (rec, key, _) in batch {
                let name = rec.latest.function_name.clone();
                items.push((rec.latest, key));
                if items.len() > limit {
                    break;
                }
                for (v, vkey, _) in self
                    .list_records::<VersionRecord>(
                        Table::Versions,
                        &format!("{name}/"),
                        None,
                        limit + 1 - items.len(),
                    )
                    .await?
                {
                    items.push((v.config, vkey));
                }
                if items.len() > limit {
                    break;
                }
            }
        }
        let next_marker = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|(_, k)| k.clone())
        } else {
            None
        };
        Ok(Page {
            items: items.into_iter().map(|(c, _)| c).collect(),
            next_marker,
        })
    }

    fn check_revision(rec: &FunctionRecord, revision_id: Option<&str>) -> Result<()> {
        if let Some(r) = revision_id
            && r != rec.latest.revision_id
        {
            return Err(LambdaError::precondition(
                "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
            ));
        }
        Ok(())
    }

    fn unqualified(fref: &FunctionRef) -> Result<()> {
        match fref.qualifier.as_deref() {
            None | Some(LATEST) => Ok(()),
            Some(q) => Err(LambdaError::invalid(format!(
                "Only $LATEST can be updated; {q} is a published version or alias, which is immutable."
            ))),
        }
    }

    pub async fn update_function_code(
        &self,
        fref: &FunctionRef,
        mut req: UpdateFunctionCodeRequest,
    ) -> Result<FunctionConfiguration> {
        Self::unqualified(fref)?;
        let (mut rec, rev) = self.function(&fref.name).await?;
        if rec.deleting {
            return Err(self.function_not_found(&fref.name, None));
        }
        Self::check_revision(&rec, req.revision_id.as_deref())?;
        if req.image_uri.is_some() {
            return Err(LambdaError::invalid(
                "Container images are not supported by fleetfn yet; upload a .zip package with ZipFile.",
            ));
        }
        if req.s3_bucket.is_some() || req.s3_key.is_some() {
            return Err(LambdaError::invalid(
                "fleetfn has no S3: upload the package directly with ZipFile.",
            ));
        }
        if req.zip_file.is_none() {
            return Err(LambdaError::invalid(
                "ZipFile is required: upload the function's .zip package.",
            ));
        }
        if let Some(p) = &req.publish_to {
            validate::one_of(p, "publishTo", &["LATEST_PUBLISHED"])?;
            if rec.latest.capacity_provider_config.is_none() {
                return Err(LambdaError::invalid(
                    "PublishTo is only supported for functions configured with a capacity provider.",
                ));
            }
        }
        if let Some(a) = &req.architectures {
            let arch = validate::architectures(a)?;
            if let Some(cp) = capacity_provider_name_of(&rec.latest) {
                let cp_rec = self
                    .require_capacity_provider(&self.scope.capacity_provider_arn(&cp))
                    .await?;
                let cp_arch = cp_rec
                    .provider
                    .instance_requirements
                    .architectures
                    .and_then(|a| a.first().cloned())
                    .unwrap_or_else(|| "x86_64".into());
                if cp_arch != arch {
                    return Err(LambdaError::invalid(format!(
                        "The function's architecture ({arch}) must match the capacity provider's architecture ({cp_arch})."
                    )));
                }
            }
            rec.latest.architectures = vec![arch];
        }
        let package = decode_zip(req.zip_file.take().unwrap_or_default()).await?;
        let total = package.unzipped + rec.layers.iter().map(|l| l.unzipped).sum::<u64>();
        if total > MAX_UNZIPPED_BYTES {
            return Err(crate::layers::too_large_with_layers(total));
        }
        if req.dry_run == Some(true) {
            let mut preview = rec.latest.clone();
            preview.code_sha256 = package.digest.base64();
            preview.code_size = package.bytes.len() as u64;
            return Ok(preview);
        }
        let digest = self.put_package(&package).await?;
        rec.code_hex = digest.hex();
        rec.latest.code_sha256 = digest.base64();
        rec.latest.code_size = package.bytes.len() as u64;
        rec.code_unzipped = Some(package.unzipped);
        rec.latest.last_modified = now_lambda();
        rec.latest.revision_id = new_revision_id();
        rec.latest.last_update_status = LastUpdateStatus::Successful;
        let mut ops = Vec::new();
        let mut response = rec.latest.clone();
        if req.publish == Some(true) {
            let target = if req.publish_to.is_some() {
                LATEST_PUBLISHED
            } else {
                ""
            };
            let (version, mut vops) = self.publish_ops(&mut rec, None, target, None).await?;
            response = version.config.clone();
            ops.append(&mut vops);
        }
        ops.insert(
            0,
            Op::put(Table::Functions, &fref.name, &rec, Expect::Revision(rev)),
        );
        self.commit(ops).await?;
        Ok(response)
    }

    pub async fn update_function_configuration(
        &self,
        fref: &FunctionRef,
        req: UpdateFunctionConfigurationRequest,
    ) -> Result<FunctionConfiguration> {
        Self::unqualified(fref)?;
        let (mut rec, rev) = self.function(&fref.name).await?;
        if rec.deleting {
            return Err(self.function_not_found(&fref.name, None));
        }
        Self::check_revision(&rec, req.revision_id.as_deref())?;
        let cfg = &mut rec.latest;
        if let Some(role) = &req.role {
            validate::role_arn(role, "role")?;
            cfg.role = role.clone();
        }
        if let Some(runtime) = &req.runtime {
            check_runtime(runtime, cfg.capacity_provider_config.is_some())?;
            cfg.runtime = Some(runtime.clone());
        }
        if let Some(h) = &req.handler {
            cfg.handler = Some(h.clone());
        }
        check_handler(
            cfg.handler.as_deref(),
            cfg.runtime.as_deref().unwrap_or_default(),
        )?;
        if let Some(d) = &req.description {
            validate::len_between(d, "description", 0, 256)?;
            cfg.description = d.clone();
        }
        if let Some(t) = req.timeout {
            // Capacity-provider functions may run asynchronous and mapping invokes 90 minutes.
            let max = if cfg.capacity_provider_config.is_some() {
                MAX_LMI_TIMEOUT_SECS
            } else {
                MAX_TIMEOUT_SECS
            };
            cfg.timeout = validate::int_u32(t, "timeout", 1, max)?;
        }
        if let Some(m) = req.memory_size {
            cfg.memory_size = validate::int_u32(m, "memorySize", MIN_MEMORY_MB, MAX_MEMORY_MB)?;
        }
        if let Some(env) = &req.environment {
            validate::environment(&env.variables)?;
            cfg.environment = Some(EnvironmentResponse {
                variables: env.variables.clone(),
            });
        }
        if let Some(v) = &req.vpc_config {
            cfg.vpc_config = Some(VpcConfigResponse {
                subnet_ids: v.subnet_ids.clone(),
                security_group_ids: v.security_group_ids.clone(),
                vpc_id: None,
            });
        }
        if let Some(d) = &req.dead_letter_config {
            cfg.dead_letter_config = validate::dead_letter(Some(d))?;
        }
        if let Some(k) = &req.kms_key_arn {
            validate::kms_arn(k, "kMSKeyArn")?;
            cfg.kms_key_arn = Some(k.clone()).filter(|k| !k.is_empty());
        }
        if let Some(t) = &req.tracing_config {
            if let Some(m) = &t.mode {
                validate::one_of(m, "tracingConfig.mode", &["Active", "PassThrough"])?;
            }
            cfg.tracing_config = t.clone();
        }
        if let Some(e) = &req.ephemeral_storage {
            validate::int_between(e.size, "ephemeralStorage.size", 512, 10240)?;
            cfg.ephemeral_storage = e.clone();
        }
        let with_cp = cfg.capacity_provider_config.is_some();
        if let Some(l) = &req.logging_config {
            check_logging(l, with_cp)?;
            let merged = LoggingConfig {
                log_format: l
                    .log_format
                    .clone()
                    .or_else(|| cfg.logging_config.log_format.clone()),
                application_log_level: l
                    .application_log_level
                    .clone()
                    .or_else(|| cfg.logging_config.application_log_level.clone()),
                system_log_level: l
                    .system_log_level
                    .clone()
                    .or_else(|| cfg.logging_config.system_log_level.clone()),
                log_group: l
                    .log_group
                    .clone()
                    .or_else(|| cfg.logging_config.log_group.clone()),
            };
            cfg.logging_config = merged;
        }
        let previous = cfg
            .capacity_provider_config
            .as_ref()
            .and_then(|c| c.lambda_managed_instances_capacity_provider_config.clone());
        match (&req.capacity_provider_config, &previous) {
            (Some(_), None) => {
                return Err(LambdaError::invalid(
                    "CapacityProviderConfig isn't supported for Lambda Default functions.",
                ));
            }
            (new, Some(prev)) => {
                // Re-check the (possibly unchanged) provider config against the new size.
                let given = new.clone().unwrap_or(CapacityProviderConfig {
                    lambda_managed_instances_capacity_provider_config: Some(
                        LambdaManagedInstancesCapacityProviderConfig {
                            capacity_provider_arn: prev.capacity_provider_arn.clone(),
                            per_execution_environment_max_concurrency: if rec.concurrency_explicit {
                                prev.per_execution_environment_max_concurrency
                            } else {
                                None
                            },
                            memory_gib_per_vcpu: prev.memory_gib_per_vcpu,
                        },
                    ),
                });
                let arch = cfg
                    .architectures
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "x86_64".into());
                let (completed, explicit) = self
                    .check_capacity_provider_config(
                        &given,
                        cfg.runtime.as_deref(),
                        cfg.memory_size,
                        &arch,
                    )
                    .await?;
                let cfg = &mut rec.latest;
                cfg.capacity_provider_config = Some(completed);
                rec.concurrency_explicit = explicit;
            }
            (None, None) => {}
        }
        if let Some(arns) = &req.layers {
            let code_unzipped = self.code_unzipped(&rec).await?;
            rec.layers = self.resolve_function_layers(arns, code_unzipped).await?;
            rec.latest.layers = crate::layers::wire_layers(&rec.layers);
        }
        let cfg = &mut rec.latest;
        cfg.last_modified = now_lambda();
        cfg.revision_id = new_revision_id();
        cfg.last_update_status = LastUpdateStatus::Successful;
        let response = cfg.clone();
        self.commit(vec![Op::put(
            Table::Functions,
            &fref.name,
            &rec,
            Expect::Revision(rev),
        )])
        .await?;
        Ok(response)
    }

    /// DeleteFunction. Returns the HTTP status: 202 when deletion of a capacity-provider
    /// function continues in the background, 204 otherwise.
    pub async fn delete_function(&self, fref: &FunctionRef) -> Result<u16> {
        let (mut rec, rev) = self.function(&fref.name).await?;
        match fref.qualifier.as_deref() {
            Some(LATEST) => Err(LambdaError::invalid(
                "$LATEST version cannot be deleted without deleting the function.",
            )),
            Some(q) if q == LATEST_PUBLISHED || q.chars().all(|c| c.is_ascii_digit()) => {
                self.delete_version(&fref.name, q).await
            }
            Some(alias) => Err(LambdaError::invalid(format!(
                "{alias} is an alias; delete it with DeleteAlias, or give a version number as Qualifier."
            ))),
            None => {
                if rec.deleting {
                    return Ok(202);
                }
                if rec.latest.capacity_provider_config.is_some() {
                    // Versions turn Deleting now; the reconciler stops their environments and
                    // removes the records.
                    rec.deleting = true;
                    rec.latest.state = State::Deleting;
                    let mut ops = vec![Op::put(
                        Table::Functions,
                        &fref.name,
                        &rec,
                        Expect::Revision(rev),
                    )];
                    for (mut v, key, vrev) in self
                        .list_records::<VersionRecord>(
                            Table::Versions,
                            &format!("{}/", fref.name),
                            None,
                            100_000,
                        )
                        .await?
                    {
                        v.config.state = State::Deleting;
                        v.config.state_reason =
                            Some("The function version is being deleted.".into());
                        v.config.state_reason_code = None;
                        v.config.last_update_status = LastUpdateStatus::InProgress;
                        ops.push(Op::put(Table::Versions, key, &v, Expect::Revision(vrev)));
                    }
                    self.commit(ops).await?;
                    Ok(202)
                } else {
                    let mut ops = vec![Op::delete(Table::Functions, &fref.name, rev)];
                    ops.extend(self.version_and_alias_delete_ops(&fref.name).await?);
                    self.commit(ops).await?;
                    Ok(204)
                }
            }
        }
    }

    /// Ops that remove every version, index entry and alias of a function.
    pub(crate) async fn version_and_alias_delete_ops(&self, name: &str) -> Result<Vec<Op>> {
        let mut ops = Vec::new();
        for (v, key, vrev) in self
            .list_records::<VersionRecord>(Table::Versions, &format!("{name}/"), None, 100_000)
            .await?
        {
            ops.push(Op::delete(Table::Versions, key, vrev));
            if let Some(cp) = &v.capacity_provider {
                ops.extend(self.index_delete_op(cp, name, &v.version).await?);
            }
        }
        for (_, key, arev) in self
            .list_records::<serde_json::Value>(Table::Aliases, &format!("{name}/"), None, 100_000)
            .await?
        {
            ops.push(Op::delete(Table::Aliases, key, arev));
        }
        ops.extend(self.event_config_delete_ops(name).await?);
        ops.extend(self.url_delete_ops_all(name).await?);
        ops.extend(self.policy_delete_ops_all(name).await?);
        Ok(ops)
    }
}
