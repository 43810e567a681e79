"""Tests that need something of the host, and how their skips are judged.

A test that cannot run here is skipped with a reason naming its prerequisite's tag, the same
tags as the Rust tests' (crates/fleetfn-testutil): `needs root: ...`. FLEETFN_TEST_OPT_OUT
(`root,node`, or `all`) leaves out the tests of the tags it names, and their reason says so:
`opted out (FLEETFN_TEST_OPT_OUT names root): needs root: ...`. With FLEETFN_TEST_STRICT=1 (scripts/test sets it) a session in
which any test was skipped for another reason fails (tests/conftest.py), so a run that could
not test something is never green by accident.
"""

from __future__ import annotations

import os
import shutil

import pytest

OPT_OUT_VAR = "FLEETFN_TEST_OPT_OUT"
STRICT_VAR = "FLEETFN_TEST_STRICT"
# As in scripts/test-rust and crates/fleetfn-testutil.
TAGS = ("root", "nft", "node", "python", "curl", "postgres", "java", "chromium", "moto")
_OPT_OUT_PREFIX = "opted out ("


def opted_out_tags() -> list[str]:
    value = os.environ.get(OPT_OUT_VAR, "")
    return [t for t in value.replace(",", " ").lower().split() if t]


def unknown_opt_outs() -> list[str]:
    return [t for t in opted_out_tags() if t not in TAGS and t != "all"]


def opted_out(tag: str) -> bool:
    tags = opted_out_tags()
    return tag in tags or "all" in tags


def strict() -> bool:
    return os.environ.get(STRICT_VAR, "") not in ("", "0")


def reason(tag: str, why: str) -> str:
    """The skip reason for a missing `tag`: says whether the tag was opted out."""
    assert tag in TAGS, f"unknown prerequisite tag {tag!r} (known: {', '.join(TAGS)})"
    text = f"needs {tag}: {why}"
    return f"{_OPT_OUT_PREFIX}{OPT_OUT_VAR} names {tag}): {text}" if opted_out(tag) else text


def is_opt_out(skip_reason: str) -> bool:
    return skip_reason.startswith(_OPT_OUT_PREFIX)


def skip(tag: str, why: str):
    """Skips the current test (or a fixture's tests) because `tag` is missing or opted out."""
    pytest.skip(reason(tag, why))


def require(tag: str, missing: str | None):
    """Skips unless `tag` is present (`missing` is None) and not opted out: an opted-out tag
    leaves its tests out even where they could run, as the Rust tests' `--skip` does."""
    if missing is not None or opted_out(tag):
        skip(tag, missing or "present, but opted out")


def root_missing(tools: tuple[str, ...] = ()) -> str | None:
    """Why this host cannot run root-only tests (not root, or a tool missing), or None."""
    if os.geteuid() != 0:
        return "not root"
    for tool in tools:
        if shutil.which(tool) is None:
            return f"no `{tool}` on PATH"
    return None


def needs_root(why: str):
    """A mark skipping the test unless it runs as root (and `root` is not opted out); `why`
    says what root gives it."""
    missing = root_missing()
    return pytest.mark.skipif(missing is not None or opted_out("root"),
                              reason=reason("root", f"{why} ({missing or 'opted out'})"))
