//! Test-only (a dev-dependency): tests that need something of the host — root with namespaces
//! and cgroups, `node`, Python with awslambdaric, a tool such as `nft` or `curl`, a PostgreSQL
//! server ([`postgres`]: a throwaway cluster) — and how they report that it is missing.
//!
//! Such a test is `#[ignore = "needs <what>; run by scripts/test (opt out:
//! FLEETFN_TEST_OPT_OUT=<tag>)"]` and lives in a module named `needs_<tag>` (`needs_root::`,
//! `needs_node::`, …; a test needing two is in both, `needs_root::needs_nft::`). A plain `cargo test` lists it as ignored with that
//! reason, never as passed. `scripts/test-rust` (called by `scripts/test`) runs the workspace with
//! `--include-ignored`, leaving out the tags named in [`OPT_OUT_VAR`] (`--skip needs_<tag>::`), and
//! fails when any test was still ignored. A test that runs without its prerequisite fails
//! through [`require`] with the reason and the way out.
//!
//! The tags: [`ROOT`], [`NFT`], [`NODE`], [`PYTHON`], [`CURL`], [`POSTGRES`], [`JAVA`], [`CHROMIUM`], [`MOTO`] ([`TAGS`]).

pub mod postgres;

use std::path::{Path, PathBuf};

/// Names the tags whose tests are left out, e.g. `FLEETFN_TEST_OPT_OUT=root,node` (commas or
/// spaces); `all` leaves out every tag. Read by `scripts/test-rust` and the Python suites.
pub const OPT_OUT_VAR: &str = "FLEETFN_TEST_OPT_OUT";

/// Root, every namespace unsharable, usable memory+cpu cgroups (`fleetfn-sandbox`'s probe).
pub const ROOT: &str = "root";
/// `nft` (nftables) on `PATH`.
pub const NFT: &str = "nft";
/// `node` on `PATH`.
pub const NODE: &str = "node";
/// A `python3.13` interpreter for which awslambdaric can be installed (from PyPI on first use).
pub const PYTHON: &str = "python";
/// `curl` on `PATH`.
pub const CURL: &str = "curl";
/// A PostgreSQL server: PostgreSQL's server binaries for a throwaway cluster, or
/// `FLEETFN_TEST_POSTGRES_URL` ([`postgres`]).
pub const POSTGRES: &str = "postgres";

/// `javac` on `PATH` (tests compile Java handlers; the functions run on the Java runtime fleetfn
/// installs).
pub const JAVA: &str = "java";

/// Chromium and its WebDriver (`chromium`, `chromedriver`): only the Python browser suite
/// (tests/console) needs it; no Rust test does.
pub const CHROMIUM: &str = "chromium";

/// `moto_server` (PyPI `moto[server]`, which scripts/test installs in its venv) on `PATH`: the
/// EC2 and STS endpoint of the EC2 client's tests.
pub const MOTO: &str = "moto";

/// Every tag, as `scripts/test-rust` knows them (it refuses an opt-out of an unknown tag).
pub const TAGS: [&str; 9] = [
    ROOT, NFT, NODE, PYTHON, CURL, POSTGRES, JAVA, CHROMIUM, MOTO,
];

/// The tags named in [`OPT_OUT_VAR`].
pub fn opted_out_tags() -> Vec<String> {
    parse_opt_out(&std::env::var(OPT_OUT_VAR).unwrap_or_default())
}

fn parse_opt_out(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Whether [`OPT_OUT_VAR`] names `tag` (or `all`).
pub fn opted_out(tag: &str) -> bool {
    opted_out_tags().iter().any(|t| t == tag || t == "all")
}

/// The value of a prerequisite, or a failed test saying which one is missing and why.
///
/// Call it first thing in a `needs_<tag>` test. It never returns early to "pass": a test that
/// cannot run is left out by `cargo test` (it is `#[ignore]`d) or by the opt-out, not here.
#[track_caller]
pub fn require<T>(tag: &str, found: Result<T, String>) -> T {
    match found {
        Ok(value) => value,
        Err(why) => panic!("{}", missing_message(tag, &why, opted_out(tag))),
    }
}

fn missing_message(tag: &str, why: &str, opted_out: bool) -> String {
    let way_out = if opted_out {
        format!(
            "{OPT_OUT_VAR} names `{tag}`, but this run included the test: run it through \
             scripts/test-rust, or pass `--skip needs_{tag}::` yourself"
        )
    } else {
        format!(
            "provide it, or leave these tests out explicitly with {OPT_OUT_VAR}={tag} \
             (scripts/test-rust then passes `--skip needs_{tag}::`)"
        )
    };
    format!("prerequisite `{tag}` missing: {why}; {way_out}")
}

/// `name` found as an executable file in a directory of `PATH`.
pub fn program(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| format!("no `{name}` on PATH"))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_takes_commas_spaces_and_any_case() {
        assert_eq!(
            parse_opt_out(" root,Node  python,"),
            ["root", "node", "python"]
        );
        assert!(parse_opt_out("").is_empty());
    }

    #[test]
    fn the_message_names_the_tag_the_reason_and_the_way_out() {
        let m = missing_message(NODE, "no `node` on PATH", false);
        assert_eq!(
            m,
            "prerequisite `node` missing: no `node` on PATH; provide it, or leave these tests out \
             explicitly with FLEETFN_TEST_OPT_OUT=node (scripts/test-rust then passes \
             `--skip needs_node::`)"
        );
        let m = missing_message(ROOT, "not root", true);
        assert!(
            m.contains("names `root`, but this run included the test"),
            "{m}"
        );
    }

    #[test]
    #[should_panic(expected = "prerequisite `curl` missing: no curl here")]
    fn require_fails_the_test_without_the_prerequisite() {
        require::<()>(CURL, Err("no curl here".into()));
    }

    #[test]
    fn require_hands_back_what_was_found() {
        assert_eq!(require(CURL, Ok::<_, String>(7)), 7);
    }

    #[test]
    fn scripts_test_rust_knows_the_same_tags() {
        let script = include_str!("../../../scripts/test-rust");
        let line = script
            .lines()
            .find_map(|l| l.strip_prefix("TAGS=\""))
            .expect("a TAGS=\"…\" line in scripts/test-rust");
        let tags: Vec<&str> = line.trim_end_matches('"').split(' ').collect();
        assert_eq!(tags, TAGS);
    }

    #[test]
    fn program_finds_sh_and_not_a_made_up_name() {
        assert!(program("sh").is_ok());
        assert_eq!(
            program("fleetfn-no-such-program").unwrap_err(),
            "no `fleetfn-no-such-program` on PATH"
        );
    }
}
