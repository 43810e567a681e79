//! Instance types: a built-in catalog named and sized like EC2's, overridable by configuration.
//!
//! The built-in prices are **approximate** us-east-1 Linux on-demand list prices as of
//! [`PRICES_AS_OF`]. They are used to rank types (cheapest that fits) and to estimate cost; they are
//! not a bill. Regions, operating systems, discounts (Savings Plans, RIs) and later AWS price changes
//! are not modelled. Override them with [`Catalog::new`] / [`Catalog::with_overrides`] from a config
//! file (the types are `serde`-deserializable; reading the file is the caller's job).

use serde::{Deserialize, Serialize};

/// The date the built-in prices were taken (approximate us-east-1 on-demand, Linux).
pub const PRICES_AS_OF: &str = "2024-06-01";

/// CPU architecture of an instance type (and of a capacity provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

/// One instance type: name (`m7g.xlarge`), family (`m7g`), architecture, size and hourly price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceType {
    pub name: String,
    pub family: String,
    pub arch: Arch,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// On-demand price in USD per hour (approximate for built-in types).
    pub hourly_usd: f64,
}

/// A set of instance types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// When the prices were taken (free text, e.g. `2024-06-01`).
    pub prices_as_of: String,
    pub types: Vec<InstanceType>,
}

/// (family, arch, memory GiB per vCPU, price of `.large` in USD/h). Larger sizes scale linearly,
/// which is how EC2 prices these families.
const FAMILIES: &[(&str, Arch, u64, f64)] = &[
    ("c7i", Arch::X86_64, 2, 0.089_25),
    ("m7i", Arch::X86_64, 4, 0.100_8),
    ("r7i", Arch::X86_64, 8, 0.132_3),
    ("c7g", Arch::Arm64, 2, 0.072_5),
    ("m7g", Arch::Arm64, 4, 0.081_6),
    ("r7g", Arch::Arm64, 8, 0.107_1),
];

/// (size suffix, vCPUs, multiple of `.large`).
const SIZES: &[(&str, u32, f64)] = &[
    ("large", 2, 1.0),
    ("xlarge", 4, 2.0),
    ("2xlarge", 8, 4.0),
    ("4xlarge", 16, 8.0),
    ("8xlarge", 32, 16.0),
];

impl Catalog {
    /// A catalog of the given types.
    pub fn new(prices_as_of: impl Into<String>, types: Vec<InstanceType>) -> Self {
        Self {
            prices_as_of: prices_as_of.into(),
            types,
        }
    }

    /// The built-in catalog: c7i/m7i/r7i (x86_64) and c7g/m7g/r7g (arm64), `.large` to `.8xlarge`,
    /// 30 types, approximate us-east-1 on-demand prices as of [`PRICES_AS_OF`].
    pub fn builtin() -> Self {
        let mut types = Vec::with_capacity(FAMILIES.len() * SIZES.len());
        for &(family, arch, gib_per_vcpu, large_price) in FAMILIES {
            for &(size, vcpus, mult) in SIZES {
                types.push(InstanceType {
                    name: format!("{family}.{size}"),
                    family: family.to_owned(),
                    arch,
                    vcpus,
                    memory_mib: u64::from(vcpus) * gib_per_vcpu * 1024,
                    // Round away floating-point noise (AWS lists up to 5 decimals).
                    hourly_usd: (large_price * mult * 100_000.0).round() / 100_000.0,
                });
            }
        }
        Self::new(PRICES_AS_OF, types)
    }

    /// Replace types with the same name and add new ones (a config file's `instance_types`).
    pub fn with_overrides(mut self, overrides: Vec<InstanceType>) -> Self {
        for o in overrides {
            match self.types.iter_mut().find(|t| t.name == o.name) {
                Some(t) => *t = o,
                None => self.types.push(o),
            }
        }
        self
    }

    /// Look a type up by exact name.
    pub fn get(&self, name: &str) -> Option<&InstanceType> {
        self.types.iter().find(|t| t.name == name)
    }

    /// The types of `arch` a capacity provider may use. `allowed` (if given and non-empty) keeps only
    /// types matching one of its patterns; `excluded` drops types matching any of its patterns.
    /// Patterns are EC2-style: exact names or `*` wildcards (`m7g.*`, `r*`, `*.8xlarge`).
    /// The result is sorted by price, then vCPUs, then name.
    pub fn allowed(
        &self,
        arch: Arch,
        allowed: Option<&[String]>,
        excluded: Option<&[String]>,
    ) -> Vec<InstanceType> {
        let mut out: Vec<InstanceType> = self
            .types
            .iter()
            .filter(|t| t.arch == arch)
            .filter(|t| match allowed {
                Some(pats) if !pats.is_empty() => pats.iter().any(|p| wildcard_match(p, &t.name)),
                _ => true,
            })
            .filter(|t| {
                !excluded.is_some_and(|pats| pats.iter().any(|p| wildcard_match(p, &t.name)))
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            a.hourly_usd
                .total_cmp(&b.hourly_usd)
                .then(a.vcpus.cmp(&b.vcpus))
                .then_with(|| a.name.cmp(&b.name))
        });
        out
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Self::builtin()
    }
}

/// `*`-only glob match (`*` matches any run of characters, including none). Case-sensitive, as EC2.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p = pattern.as_bytes();
    let n = name.as_bytes();
    let (mut pi, mut ni) = (0, 0);
    // Position of the last `*` seen and the name index it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn builtin_has_expected_shapes_and_prices() {
        let c = Catalog::builtin();
        assert_eq!(c.types.len(), 30);
        assert_eq!(c.prices_as_of, PRICES_AS_OF);
        let m = c.get("m7g.xlarge").unwrap();
        assert_eq!((m.vcpus, m.memory_mib, m.arch), (4, 16 * 1024, Arch::Arm64));
        assert!((m.hourly_usd - 0.1632).abs() < 1e-9);
        let r = c.get("r7i.8xlarge").unwrap();
        assert_eq!((r.vcpus, r.memory_mib), (32, 256 * 1024));
        assert!((r.hourly_usd - 2.1168).abs() < 1e-9);
        let ci = c.get("c7i.large").unwrap();
        assert_eq!(
            (ci.vcpus, ci.memory_mib, ci.family.as_str()),
            (2, 4096, "c7i")
        );
        // Graviton is cheaper than the same Intel shape.
        for fam in ["c", "m", "r"] {
            let g = c.get(&format!("{fam}7g.2xlarge")).unwrap();
            let i = c.get(&format!("{fam}7i.2xlarge")).unwrap();
            assert!(g.hourly_usd < i.hourly_usd);
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("m7g.*", "m7g.large"));
        assert!(!wildcard_match("m7g.*", "m7i.large"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("r*", "r7g.8xlarge"));
        assert!(wildcard_match("*.8xlarge", "c7i.8xlarge"));
        assert!(!wildcard_match("*.8xlarge", "c7i.xlarge"));
        assert!(wildcard_match("c7*.*large", "c7g.2xlarge"));
        assert!(wildcard_match("c7g.large", "c7g.large"));
        assert!(!wildcard_match("c7g.large", "c7g.xlarge"));
        assert!(!wildcard_match("", "x"));
        assert!(wildcard_match("", ""));
    }

    #[test]
    fn allowed_filters_arch_allowed_and_excluded() {
        let c = Catalog::builtin();
        let arm = c.allowed(Arch::Arm64, None, None);
        assert_eq!(arm.len(), 15);
        assert!(arm.iter().all(|t| t.arch == Arch::Arm64));
        assert!(arm.windows(2).all(|w| w[0].hourly_usd <= w[1].hourly_usd));
        assert_eq!(arm[0].name, "c7g.large");

        let only_m = c.allowed(Arch::Arm64, Some(&s(&["m7g.*"])), None);
        assert_eq!(only_m.len(), 5);
        assert!(only_m.iter().all(|t| t.family == "m7g"));

        let no_big = c.allowed(Arch::X86_64, None, Some(&s(&["*.8xlarge", "r7i.*"])));
        assert_eq!(no_big.len(), 15 - 3 - 4);
        assert!(
            no_big
                .iter()
                .all(|t| !t.name.ends_with(".8xlarge") && t.family != "r7i")
        );

        // Allowed types of the wrong arch are not returned; empty `allowed` means no restriction.
        assert!(
            c.allowed(Arch::X86_64, Some(&s(&["m7g.*"])), None)
                .is_empty()
        );
        assert_eq!(c.allowed(Arch::X86_64, Some(&[]), None).len(), 15);
    }

    #[test]
    fn overrides_replace_and_add() {
        let mut cheap = Catalog::builtin().get("m7g.large").unwrap().clone();
        cheap.hourly_usd = 0.01;
        let extra = InstanceType {
            name: "m8g.large".into(),
            family: "m8g".into(),
            arch: Arch::Arm64,
            vcpus: 2,
            memory_mib: 8192,
            hourly_usd: 0.09,
        };
        let c = Catalog::builtin().with_overrides(vec![cheap, extra]);
        assert_eq!(c.types.len(), 31);
        assert!((c.get("m7g.large").unwrap().hourly_usd - 0.01).abs() < 1e-12);
        assert_eq!(c.allowed(Arch::Arm64, None, None)[0].name, "m7g.large");
        assert!(c.get("m8g.large").is_some());
    }
}
