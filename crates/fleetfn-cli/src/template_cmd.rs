//! `fleetfn template render`: a template after the SAM transform, in CloudFormation's JSON form, as
//! `fleetfn deploy` would apply it (no server needed). Also the content version of a local code path
//! that the SAM transform puts in `Code.S3ObjectVersion`, shared with `fleetfn deploy`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fleetfn_templates::StackContext;
use fleetfn_templates::sam::{self, SamOptions};
use sha2::{Digest, Sha256};

#[derive(Debug, clap::Args)]
pub struct TemplateArgs {
    #[command(subcommand)]
    pub command: TemplateCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TemplateCommand {
    /// Print the template after the SAM transform (CloudFormation's JSON form) on stdout.
    Render(RenderArgs),
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The template file (JSON or YAML).
    #[arg(long)]
    pub template: PathBuf,
    /// The stack name (AWS::StackName); default: the file's stem.
    #[arg(long)]
    pub stack_name: Option<String>,
    /// AWS::Region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// AWS::AccountId.
    #[arg(long, default_value = "123456789012")]
    pub account_id: String,
    /// Parameter values, `Key=Value` each.
    #[arg(long, num_args = 1..)]
    pub parameter_overrides: Vec<String>,
}

pub fn run(args: TemplateArgs) -> anyhow::Result<()> {
    match args.command {
        TemplateCommand::Render(args) => render(args),
    }
}

fn render(args: RenderArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.template)
        .with_context(|| format!("reading {}", args.template.display()))?;
    let template = fleetfn_templates::parse(&text)?;
    let stack_name = match args.stack_name {
        Some(name) => name,
        None => args
            .template
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .context("--stack-name is needed: the template path has no file name")?,
    };
    let partition = partition_of(&args.region);
    let ctx = StackContext {
        stack_id: format!(
            "arn:{partition}:cloudformation:{}:{}:stack/{stack_name}/fleetfn",
            args.region, args.account_id
        ),
        stack_name,
        region: args.region,
        account_id: args.account_id,
        partition: partition.to_string(),
    };
    let mut overrides = BTreeMap::new();
    for kv in &args.parameter_overrides {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--parameter-overrides: '{kv}' is not Key=Value"))?;
        overrides.insert(k.to_string(), v.to_string());
    }
    let dir = args
        .template
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let version = |path: &str| local_code_version(&dir, path).ok();
    let opts = SamOptions {
        parameter_overrides: overrides,
        local_code_version: Some(&version),
    };
    let out = sam::transform_with(&template, &ctx, &opts)?;
    println!("{}", serde_json::to_string_pretty(&out.to_json())?);
    Ok(())
}

/// The partition of a region (`aws-cn` for cn-*, `aws-us-gov` for us-gov-*, else `aws`).
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The content version of a local code path (relative to `template_dir` unless absolute): the first
/// 32 hex digits of a SHA-256 over a file's bytes, or over a directory's files (sorted relative
/// paths, each followed by its length and bytes); file times and modes don't count.
pub fn local_code_version(template_dir: &Path, path: &str) -> std::io::Result<String> {
    let root = template_dir.join(path);
    let mut hasher = Sha256::new();
    if root.is_file() {
        hasher.update(std::fs::read(&root)?);
    } else {
        let mut files = Vec::new();
        collect_files(&root, &root, &mut files)?;
        files.sort();
        for rel in files {
            let bytes = std::fs::read(root.join(&rel))?;
            hasher.update(rel.as_bytes());
            hasher.update([0]);
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(&bytes);
        }
    }
    let digest = hasher.finalize();
    Ok(digest.iter().take(16).map(|b| format!("{b:02x}")).collect())
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(root, &path, out)?;
        } else if path.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_code_version_follows_content_not_times() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/pkg")).unwrap();
        std::fs::write(dir.path().join("src/app.py"), "a").unwrap();
        std::fs::write(dir.path().join("src/pkg/m.py"), "b").unwrap();
        let v1 = local_code_version(dir.path(), "src").unwrap();
        assert_eq!(v1.len(), 32);
        std::fs::write(dir.path().join("src/app.py"), "a").unwrap();
        assert_eq!(local_code_version(dir.path(), "src").unwrap(), v1);
        std::fs::write(dir.path().join("src/app.py"), "c").unwrap();
        assert_ne!(local_code_version(dir.path(), "src").unwrap(), v1);
        assert!(local_code_version(dir.path(), "missing").is_err());
    }
}
