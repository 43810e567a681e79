//! `fleetfn deploy` and `fleetfn stacks`: a CloudFormation template (JSON or YAML; SAM's
//! transform applied; a CDK app's `cdk.out/<Stack>.template.json` with its asset manifest) deployed
//! against a fleetfn server through its public API, and recorded as a stack there.
//!
//! Flow: parse → SAM transform → evaluate (parameters, conditions, order) → read the previous
//! stack record → plan (`plan.rs`) → print it (`--dry-run` stops here) → apply in dependency
//! order with rollback on failure (`apply.rs`) → write the record, naming the revision read
//! (a concurrent deploy makes that fail rather than be overwritten).

pub mod apply;
pub mod cdk;
pub mod code;
pub mod plan;
pub mod resources;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use fleetfn_templates::{StackContext, StackRecord, StackResource};
use serde_json::Value;

use crate::client::{self, ConnectArgs};
use code::CodePackage;
use resources::function::{CodeSource, code_source};
use resources::{Api, LambdaOps, OpError, Settings};
use store::{HttpStackStore, StackStore};

const EXAMPLES: &str = "\
Examples:
  fleetfn deploy --template template.yaml --stack-name demo
  fleetfn deploy --template template.yaml --stack-name demo --parameter-overrides Memory=2048 Stage=prod
  fleetfn deploy --template cdk.out/MyStack.template.json        (stack name MyStack)
  fleetfn deploy --template template.yaml --stack-name demo --dry-run

The plan lists every resource: `+ Create`, `~ Update` (with the changed properties), `-/+ Replace`,
`- Delete`, `= NoChange`, `! Skip (unsupported type)`. Code comes from Code.ZipFile, a local path
(a directory is zipped; a .zip is used as is; SAM CodeUri), or an S3Key found in the CDK asset
manifest next to the template. On failure the stack is rolled back and the command exits 1 with
`Resource <LogicalId> (<Type>) failed: <ErrorType>: <message>`.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct DeployArgs {
    /// The template file: CloudFormation JSON or YAML (short intrinsic tags), SAM, or a CDK app's
    /// cdk.out/<Stack>.template.json.
    #[arg(long, value_name = "FILE")]
    pub template: PathBuf,
    /// The stack's name [default: the file name without .template.json/.json/.yaml/.yml].
    #[arg(long, value_name = "NAME")]
    pub stack_name: Option<String>,
    /// Parameter values, `Key=Value` each (several after one flag, or the flag repeated).
    #[arg(long, num_args = 1.., value_name = "KEY=VALUE")]
    pub parameter_overrides: Vec<String>,
    /// Print the plan and stop: nothing is changed.
    #[arg(long)]
    pub dry_run: bool,
    /// Resource types fleetfn does not deploy are an error (before anything is applied) instead
    /// of a warning.
    #[arg(long)]
    pub strict: bool,
    /// Do not wait for published versions to be Active.
    #[arg(long)]
    pub no_wait: bool,
    /// Deploy although the stack record says another deploy is in progress (one that was
    /// killed before it finished: what it changed is then planned against the record before it).
    #[arg(long)]
    pub force: bool,
    /// Seconds to wait for each published version to be Active.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    pub wait_timeout: f64,
    /// The account id in ARNs the template builds itself (AWS::AccountId; the server's
    /// --account-id).
    #[arg(
        long,
        env = "FLEETFN_ACCOUNT_ID",
        default_value = "000000000000",
        value_name = "ID"
    )]
    pub account_id: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, clap::Args)]
pub struct StacksArgs {
    #[command(subcommand)]
    pub command: StacksCommand,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum StacksCommand {
    /// The deployed stacks: name, status, last update, revision.
    List,
    /// A stack's record as JSON: resources with physical ids and attributes (`--properties`:
    /// and the properties applied), outputs, parameters (NoEcho ones as ****), the template.
    Describe {
        /// The stack's name.
        name: String,
        /// Include each resource's properties as applied (they may hold values of NoEcho
        /// parameters, which are otherwise never shown).
        #[arg(long)]
        properties: bool,
    },
    /// Delete a stack's resources (dependents first) and its record.
    Delete {
        /// The stack's name.
        name: String,
    },
}

/// The stack name from a template path: `cdk.out/MyStack.template.json` → `MyStack`.
pub fn default_stack_name(template: &Path) -> Option<String> {
    let name = template.file_name()?.to_string_lossy().into_owned();
    let stem = [
        ".template.json",
        ".template.yaml",
        ".template.yml",
        ".json",
        ".yaml",
        ".yml",
        ".template",
    ]
    .iter()
    .find_map(|s| name.strip_suffix(s))
    .unwrap_or(&name);
    Some(stem.to_owned())
}

/// Stack names as CloudFormation takes them: `[a-zA-Z][-a-zA-Z0-9]{0,127}`.
pub fn check_stack_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !ok {
        anyhow::bail!(
            "stack name {name:?}: a stack name starts with a letter and has only letters, digits \
             and hyphens (at most 128); pass --stack-name"
        );
    }
    Ok(())
}

fn parse_overrides(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for kv in items {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--parameter-overrides: {kv:?} is not Key=Value"))?;
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

fn now() -> String {
    fleetfn_model::time::now_lambda()
}

/// Builds a function's code package from its resolved properties.
pub fn package_for(template: &Path, properties: &Value) -> Result<CodePackage, OpError> {
    let dir = template.parent().unwrap_or(Path::new("."));
    let code = properties
        .get("Code")
        .ok_or_else(|| OpError::validation("Code is required"))?;
    let runtime = properties.get("Runtime").and_then(Value::as_str);
    let codeerr = |e: code::CodeError| OpError::validation(format!("Code: {e}"));
    match code_source(code)? {
        CodeSource::Inline(text) => code::inline(&text, runtime).map_err(codeerr),
        CodeSource::Path(p) => code::from_path(&dir.join(&p)).map_err(codeerr),
        CodeSource::S3 { bucket, key } => {
            let manifests = cdk::manifests_for(template);
            let asset = cdk::find_asset(&manifests, &key)
                .map_err(|e| OpError::validation(format!("Code: {e}")))?
                .ok_or_else(|| {
                    OpError::validation(format!(
                        "Code: s3://{bucket}/{key} is not in a CDK asset manifest next to the \
                         template ({}); fleetfn cannot read S3: give a local path or inline \
                         ZipFile",
                        if manifests.is_empty() {
                            "there is none".to_owned()
                        } else {
                            manifests
                                .iter()
                                .map(|m| m.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ))
                })?;
            if asset.zip_directory && asset.path.is_dir() {
                code::zip_dir(&asset.path).map_err(codeerr)
            } else {
                code::from_path(&asset.path).map_err(codeerr)
            }
        }
    }
}

pub async fn run_deploy(args: DeployArgs) -> anyhow::Result<()> {
    let stack_name = match &args.stack_name {
        Some(n) => n.clone(),
        None => default_stack_name(&args.template)
            .context("--stack-name is needed: the template path has no file name")?,
    };
    check_stack_name(&stack_name)?;
    let text = std::fs::read_to_string(&args.template)
        .with_context(|| format!("reading {}", args.template.display()))?;
    let template = fleetfn_templates::parse(&text)?;
    let overrides = parse_overrides(&args.parameter_overrides)?;
    if !(args.wait_timeout.is_finite() && args.wait_timeout > 0.0) {
        anyhow::bail!("--wait-timeout must be a positive number of seconds");
    }

    let resolved = client::resolve(
        &args.connect,
        &client::ProcessEnv,
        &crate::default_data_dir(),
    )?;
    let region = resolved.region.clone();
    let client = client::Client::new(resolved)?;
    let stacks = HttpStackStore { client: &client };
    let previous = stacks
        .get(&stack_name)
        .await
        .map_err(|e| anyhow::anyhow!("reading the stack record: {e}"))?;
    let partition = crate::template_cmd::partition_of(&region).to_owned();
    let stack_id = previous
        .as_ref()
        .map(|p| p.stack_id.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            format!(
                "arn:{partition}:cloudformation:{region}:{}:stack/{stack_name}/{}",
                args.account_id,
                uuid_like()
            )
        });
    let ctx = StackContext {
        stack_name: stack_name.clone(),
        region: region.clone(),
        account_id: args.account_id.clone(),
        partition: partition.clone(),
        stack_id: stack_id.clone(),
    };
    let dir = args
        .template
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let version = move |path: &str| crate::template_cmd::local_code_version(&dir, path).ok();
    let opts = fleetfn_templates::sam::SamOptions {
        parameter_overrides: overrides.clone(),
        local_code_version: Some(&version),
    };
    let transformed = fleetfn_templates::sam::transform_with(&template, &ctx, &opts)?;
    let ev = fleetfn_templates::Evaluator::new(&transformed, ctx, &overrides)?;
    for w in ev.warnings() {
        eprintln!("warning: {w}");
    }

    // A stack that never got created (ROLLBACK_COMPLETE) has nothing to update.
    let prev_resources: BTreeMap<String, StackResource> = previous
        .as_ref()
        .map(|p| p.resources.clone())
        .unwrap_or_default();
    let template_path = args.template.clone();
    let mut package = |_: &str, props: &Value| package_for(&template_path, props);
    let plan = plan::make(&ev, &prev_resources, args.strict, &mut package)?;

    let skipped = plan.skipped();
    if !skipped.is_empty() {
        eprintln!(
            "warning: fleetfn does not deploy these resources; they are skipped (--strict makes \
             this an error): {}",
            skipped
                .iter()
                .map(|s| format!("{} ({})", s.logical_id, s.resource_type))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // Another deploy holds the stack (its *_IN_PROGRESS record): refused before anything is
    // changed, unless that deploy died and --force says so.
    if let Some(p) = &previous
        && p.stack_status.ends_with("_IN_PROGRESS")
        && !args.force
        && !args.dry_run
    {
        anyhow::bail!(
            "stack {stack_name} is {} since {}: another deploy is running. If it was killed \
             before it finished, deploy again with --force",
            p.stack_status,
            p.last_updated_time
        );
    }
    let is_update = previous.as_ref().is_some_and(|p| {
        !p.stack_status.starts_with("ROLLBACK") && p.stack_status != "CREATE_IN_PROGRESS"
    });
    println!(
        "Plan for stack {stack_name} ({}):",
        if is_update { "update" } else { "create" }
    );
    print!("{}", plan.render());
    if args.dry_run {
        println!("Dry run: nothing was changed.");
        return Ok(());
    }

    let parameters: BTreeMap<String, String> = ev
        .parameter_values()
        .into_iter()
        .map(|(k, v)| (k, v.display()))
        .collect();
    if let Some(p) = &previous
        && is_update
        && !plan.has_changes()
        && p.template_body == text
        && p.parameters == parameters
        && p.stack_status.ends_with("_COMPLETE")
        && !p.stack_status.contains("ROLLBACK")
    {
        println!("No changes to deploy. Stack {stack_name} is up to date.");
        return Ok(());
    }

    let settings = Settings {
        partition,
        account_id: args.account_id.clone(),
        wait: !args.no_wait,
        wait_timeout: Duration::from_secs_f64(args.wait_timeout),
    };
    let ops = LambdaOps {
        api: Api { client: &client },
        settings,
    };
    let created_at = previous
        .as_ref()
        .filter(|_| is_update)
        .map(|p| p.creation_time.clone())
        .unwrap_or_else(now);
    // The stack is taken first: its record says *_IN_PROGRESS (a compare-and-set on the
    // revision read), so of two deploys started together one stops here with nothing changed.
    let in_progress = match (&previous, is_update) {
        (Some(p), true) => StackRecord {
            stack_status: "UPDATE_IN_PROGRESS".into(),
            status_reason: None,
            last_updated_time: now(),
            ..p.clone()
        },
        _ => StackRecord {
            stack_name: stack_name.clone(),
            stack_id: stack_id.clone(),
            stack_status: "CREATE_IN_PROGRESS".into(),
            creation_time: created_at.clone(),
            last_updated_time: now(),
            template_body: text.clone(),
            parameters: parameters.clone(),
            ..Default::default()
        },
    };
    let taken = stacks
        .put(&in_progress, previous.as_ref().map_or(0, |p| p.revision))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let read_revision = taken.revision;
    let result = apply::apply(
        &ops,
        &ev,
        &plan,
        &prev_resources,
        &stack_name,
        &mut package,
        &mut apply::PrintProgress,
    )
    .await;
    match result {
        Ok(outcome) => {
            let outputs = ev
                .outputs(&outcome.known)
                .context("evaluating the outputs")?;
            let status = if is_update {
                "UPDATE_COMPLETE"
            } else {
                "CREATE_COMPLETE"
            };
            let record = StackRecord {
                stack_name: stack_name.clone(),
                stack_id,
                stack_status: status.into(),
                status_reason: None,
                revision: read_revision,
                creation_time: created_at,
                last_updated_time: now(),
                template_body: text,
                parameters,
                resources: outcome.resources,
                outputs,
            };
            let stored = stacks
                .put(&record, read_revision)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for w in &outcome.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "Stack {stack_name}: {status} (revision {})",
                stored.revision
            );
            if !stored.outputs.is_empty() {
                println!("Outputs:");
                for (k, o) in &stored.outputs {
                    let v = match &o.value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    println!("  {k} = {v}");
                }
            }
            Ok(())
        }
        Err(failure) => {
            let rolled_back = failure.rollback_errors.is_empty();
            let status = match (is_update, rolled_back) {
                (true, true) => "UPDATE_ROLLBACK_COMPLETE",
                (true, false) => "UPDATE_ROLLBACK_FAILED",
                (false, true) => "ROLLBACK_COMPLETE",
                (false, false) => "ROLLBACK_FAILED",
            };
            let mut record = match (&previous, is_update) {
                (Some(p), true) => p.clone(),
                _ => StackRecord {
                    stack_name: stack_name.clone(),
                    stack_id,
                    creation_time: created_at,
                    template_body: text,
                    parameters,
                    ..Default::default()
                },
            };
            // What the rollback left behind stays known (a replacement's new copy that could not
            // be deleted shares its logical id with the old one: only the message names it).
            for r in &failure.leftovers {
                if r.status == "UPDATE_FAILED" || !record.resources.contains_key(&r.logical_id) {
                    record.resources.insert(r.logical_id.clone(), r.clone());
                }
            }
            record.stack_status = status.into();
            record.status_reason = Some(failure.to_string());
            record.last_updated_time = now();
            record.revision = read_revision;
            if let Err(e) = stacks.put(&record, read_revision).await {
                eprintln!("warning: could not record the rollback: {e}");
            }
            let mut msg = failure.to_string();
            if rolled_back {
                msg.push_str(&format!("; the stack was rolled back ({status})"));
            } else {
                msg.push_str(&format!(
                    "; the rollback failed too ({status}): {}",
                    failure.rollback_errors.join("; ")
                ));
            }
            Err(anyhow::anyhow!(msg))
        }
    }
}

/// Writes `text` to stdout; a reader that went away (`| head`) ends the output quietly instead
/// of a panic.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    let hex = |n: usize, r: &mut rand::rngs::ThreadRng| -> String {
        (0..n)
            .map(|_| char::from_digit(r.random_range(0..16), 16).unwrap_or('0'))
            .collect()
    };
    format!(
        "{}-{}-{}-{}-{}",
        hex(8, &mut r),
        hex(4, &mut r),
        hex(4, &mut r),
        hex(4, &mut r),
        hex(12, &mut r)
    )
}

pub async fn run_stacks(args: StacksArgs) -> anyhow::Result<()> {
    let resolved = client::resolve(
        &args.connect,
        &client::ProcessEnv,
        &crate::default_data_dir(),
    )?;
    let region = resolved.region.clone();
    let client = client::Client::new(resolved)?;
    let stacks = HttpStackStore { client: &client };
    match args.command {
        StacksCommand::List => {
            let list = stacks.list().await?;
            let mut out = format!(
                "{:<32} {:<26} {:<26} REVISION\n",
                "NAME", "STATUS", "UPDATED"
            );
            for s in list {
                out.push_str(&format!(
                    "{:<32} {:<26} {:<26} {}\n",
                    s.stack_name, s.stack_status, s.last_updated_time, s.revision
                ));
            }
            write_stdout(&out)
        }
        StacksCommand::Describe { name, properties } => {
            let record = stacks
                .get(&name)
                .await?
                .ok_or_else(|| store::StoreError::NotFound(name.clone()))?;
            let mut json = serde_json::to_value(&record)?;
            if !properties
                && let Some(rs) = json.get_mut("Resources").and_then(Value::as_object_mut)
            {
                for r in rs.values_mut() {
                    if let Some(o) = r.as_object_mut() {
                        o.remove("Properties");
                    }
                }
            }
            write_stdout(&format!("{}\n", serde_json::to_string_pretty(&json)?))
        }
        StacksCommand::Delete { name } => {
            let record = stacks
                .get(&name)
                .await?
                .ok_or_else(|| store::StoreError::NotFound(name.clone()))?;
            let ops = LambdaOps {
                api: Api { client: &client },
                settings: Settings {
                    partition: crate::template_cmd::partition_of(&region).to_owned(),
                    account_id: String::new(),
                    wait: false,
                    wait_timeout: Duration::from_secs(1),
                },
            };
            let failed = delete_resources(&ops, &record, &mut apply::PrintProgress).await;
            if failed.is_empty() {
                stacks.delete(&name, record.revision).await?;
                println!("Stack {name}: DELETE_COMPLETE");
                Ok(())
            } else {
                let mut kept = record.clone();
                kept.resources
                    .retain(|id, _| failed.iter().any(|(f, _)| f == id));
                for r in kept.resources.values_mut() {
                    r.status = "DELETE_FAILED".into();
                }
                let reason = failed
                    .iter()
                    .map(|(id, e)| format!("{id}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                kept.stack_status = "DELETE_FAILED".into();
                kept.status_reason = Some(reason.clone());
                kept.last_updated_time = now();
                stacks.put(&kept, record.revision).await?;
                anyhow::bail!("deleting stack {name} failed: {reason}")
            }
        }
    }
}

/// Deletes a stack's resources, dependents first; returns the ones that could not be deleted.
pub async fn delete_resources<O: resources::Ops>(
    ops: &O,
    record: &StackRecord,
    progress: &mut dyn apply::Progress,
) -> Vec<(String, OpError)> {
    let mut all: Vec<&StackResource> = record.resources.values().collect();
    plan::sort_for_deletion(&mut all);
    let mut failed = Vec::new();
    for r in all {
        if let Err(e) = apply::delete_recorded(ops, r, true, progress).await {
            failed.push((r.logical_id.clone(), e));
        }
    }
    failed
}

#[cfg(test)]
mod tests;
