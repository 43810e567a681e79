//! The runtimes this installation can run, and their LMI defaults.

/// How a runtime family starts an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeFamily {
    /// `provided.*`: the package's own `bootstrap`.
    Provided,
    /// `python3.x`: AWS's runtime interface client on a host interpreter.
    Python,
    /// `nodejs*`: fleetfn's Node.js bootstrap.
    Node,
    /// `java*`: fleetfn's Java runtime client on a JDK.
    Java,
}

/// Runtimes fleetfn accepts for capacity-provider functions.
pub const SUPPORTED_RUNTIMES: &[&str] = &[
    "provided.al2023",
    "provided.al2",
    "python3.13",
    "python3.14",
    "nodejs22.x",
    "nodejs24.x",
    "java21",
    "java25",
];

pub fn family(runtime: &str) -> Option<RuntimeFamily> {
    if !SUPPORTED_RUNTIMES.contains(&runtime) {
        return None;
    }
    Some(if runtime.starts_with("provided") {
        RuntimeFamily::Provided
    } else if runtime.starts_with("python") {
        RuntimeFamily::Python
    } else if runtime.starts_with("java") {
        RuntimeFamily::Java
    } else {
        RuntimeFamily::Node
    })
}

/// Default `PerExecutionEnvironmentMaxConcurrency` per vCPU, as LMI documents it
/// (Python 16, Node.js 64; Java/.NET 32, which we also use for `provided.*`).
pub fn default_concurrency_per_vcpu(family: RuntimeFamily) -> u32 {
    match family {
        RuntimeFamily::Python => 16,
        RuntimeFamily::Node => 64,
        RuntimeFamily::Provided | RuntimeFamily::Java => 32,
    }
}

/// vCPUs of one environment: memory (MiB) ÷ (GiB per vCPU × 1024), at least 1.
pub fn vcpus(memory_mb: u32, gib_per_vcpu: f64) -> f64 {
    (f64::from(memory_mb) / (gib_per_vcpu * 1024.0)).max(1.0)
}

/// The default per-environment concurrency for a runtime at a size, capped at 1600.
pub fn default_max_concurrency(family: RuntimeFamily, memory_mb: u32, gib_per_vcpu: f64) -> u32 {
    let v = vcpus(memory_mb, gib_per_vcpu).floor();
    // v is at most 16 (32 GiB ÷ 2), so the product fits comfortably.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = (v as u32) * default_concurrency_per_vcpu(family);
    n.clamp(1, 1600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_defaults() {
        assert_eq!(family("python3.13"), Some(RuntimeFamily::Python));
        assert_eq!(family("nodejs22.x"), Some(RuntimeFamily::Node));
        assert_eq!(family("provided.al2023"), Some(RuntimeFamily::Provided));
        assert_eq!(family("java21"), Some(RuntimeFamily::Java));
        assert_eq!(family("java17"), None);
        assert_eq!(
            default_max_concurrency(RuntimeFamily::Python, 2048, 2.0),
            16
        );
        assert_eq!(default_max_concurrency(RuntimeFamily::Node, 8192, 2.0), 256);
        assert_eq!(
            default_max_concurrency(RuntimeFamily::Node, 32768, 2.0),
            1024
        );
        assert_eq!(vcpus(16384, 2.0), 8.0);
    }
}
