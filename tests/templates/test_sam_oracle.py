"""The SAM transform checked against AWS's own translator (PyPI aws-sam-translator) as an oracle,
and cfn-lint run on every template of the suite.

For each template in sam/ (one or more SAM features each: LMI capacity provider and function,
Globals, InlineCode and a given Role, S3 code forms and role options, AutoPublishAlias forms,
capacity provider options and resource attributes, SQS events, EventInvokeConfig) and the
end-to-end test's sam_e2e/template.yaml, `fleetfn template render` and
samtranslator's `transform` must give the same Resources (ids, types, attributes, properties) and
Outputs. The only input difference: a local `CodeUri` path P is given to samtranslator as
`s3://fleetfn-local/P?versionId=V`, which is what fleetfn's transform means by it (V = the code's
content version, computed here as fleetfn computes it; see docs/TEMPLATES.md and
template_cmd::local_code_version). Output normalizations: Tags lists are compared in key order
(fleetfn's JSON maps do not keep a template's key order); a resource without Properties equals
one with `Properties: {}` and `DependsOn: X` equals `DependsOn: [X]`.

Errors: templates in sam/invalid/ must fail in both, with the same causes where fleetfn words
them like samtranslator.

cfn-lint: every template file under tests/templates (JSON/YAML templates, CDK's *.template.json;
not the invalid/ directories, whose templates are wrong on purpose) must pass with no error and
no warning, except the warnings listed in LINT_ALLOWED_WARNINGS with why.

aws-sam-translator and cfn-lint are in tests/requirements.txt: a missing one fails the import,
never skips. Environment variables: FLEETFN_BIN (fleetfn_testkit.server).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from samtranslator.translator.transform import transform as sam_transform
from samtranslator.yaml_helper import yaml_parse

HERE = Path(__file__).resolve().parent
SAM_DIR = HERE / "sam"
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "oracle"

# The feature templates, and the end-to-end test's SAM template (tests/templates/test_deploy.py).
SAM_TEMPLATES = sorted(SAM_DIR.glob("*.yaml")) + sorted((HERE / "sam_e2e").glob("*.yaml"))
INVALID_TEMPLATES = sorted((SAM_DIR / "invalid").glob("*.yaml"))

# cfn-lint warnings accepted, by rule, with why.
LINT_ALLOWED_WARNINGS = {
    # The CDK's own synthesized output declares DependsOn on the role that a GetAtt already implies.
    "W3005": "cdk/",
}


class _NoManagedPolicies:
    """samtranslator's managed policy loader: it asks IAM for policy names it does not have in its
    bundled map; offline, there is none."""

    def load(self):
        return {}


def local_code_version(template_dir: Path, path: str) -> str:
    """fleetfn_cli::template_cmd::local_code_version in Python: SHA-256 over a file's bytes or a
    directory's files (sorted relative paths, each + NUL + big-endian u64 length + bytes)."""
    root = template_dir / path
    h = hashlib.sha256()
    if root.is_file():
        h.update(root.read_bytes())
    else:
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        for rel in files:
            data = (root / rel).read_bytes()
            h.update(rel.encode())
            h.update(b"\0")
            h.update(len(data).to_bytes(8, "big"))
            h.update(data)
    return h.hexdigest()[:32]


def _as_s3(code_uri, template_dir: Path):
    if isinstance(code_uri, str) and "://" not in code_uri:
        version = local_code_version(template_dir, code_uri)
        return f"s3://fleetfn-local/{code_uri}?versionId={version}"
    return code_uri


def oracle(path: Path, overrides: dict[str, str] | None = None) -> dict:
    """samtranslator's output for the template, local CodeUri paths given as fleetfn-local S3 URIs."""
    template = yaml_parse(path.read_text())
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function" and "CodeUri" in props:
            props["CodeUri"] = _as_s3(props["CodeUri"], path.parent)
    glob = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in glob:
        glob["CodeUri"] = _as_s3(glob["CodeUri"], path.parent)
    params = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": STACK,
              "AWS::Partition": "aws", **(overrides or {})}
    old = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = REGION  # samtranslator asks boto3 for a region
    try:
        return sam_transform(template, params, _NoManagedPolicies())
    finally:
        if old is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = old


def render(binary: Path, path: Path, overrides: dict[str, str] | None = None,
           check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(binary), "template", "render", "--template", str(path), "--stack-name", STACK,
           "--region", REGION, "--account-id", ACCOUNT]
    if overrides:
        cmd += ["--parameter-overrides", *[f"{k}={v}" for k, v in overrides.items()]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, f"fleetfn template render failed:\n{proc.stderr}"
    return proc


def normalize_resource(resource: dict) -> dict:
    """A resource without Properties is one with `Properties: {}`, and `DependsOn: X` is
    `DependsOn: [X]` (fleetfn's JSON form writes both that way)."""
    out = normalize(resource)
    if out.get("Properties") == {}:
        del out["Properties"]
    if isinstance(out.get("DependsOn"), str):
        out["DependsOn"] = [out["DependsOn"]]
    return out


def normalize(value):
    """Tags lists sorted by Key."""
    if isinstance(value, dict):
        out = {k: normalize(v) for k, v in value.items()}
        tags = out.get("Tags")
        if isinstance(tags, list) and all(isinstance(t, dict) and "Key" in t for t in tags):
            out["Tags"] = sorted(tags, key=lambda t: str(t["Key"]))
        return out
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def assert_same_template(ours: dict, theirs: dict):
    ours_r, theirs_r = ours.get("Resources", {}), theirs.get("Resources", {})
    assert sorted(ours_r) == sorted(theirs_r), "logical ids differ"
    for logical_id in sorted(theirs_r):
        assert normalize_resource(ours_r[logical_id]) == normalize_resource(theirs_r[logical_id]), (
            f"{logical_id} differs:\nfleetfn:        {json.dumps(ours_r[logical_id], sort_keys=True)}"
            f"\nsamtranslator:  {json.dumps(theirs_r[logical_id], sort_keys=True)}")
    assert ours.get("Outputs", {}) == theirs.get("Outputs", {})
    for section in ("Parameters", "Conditions", "Mappings", "AWSTemplateFormatVersion", "Description"):
        assert ours.get(section) == theirs.get(section), section
    assert "Transform" not in ours and "Globals" not in ours


@pytest.mark.parametrize("path", SAM_TEMPLATES, ids=[f"{p.parent.name}/{p.stem}" for p in SAM_TEMPLATES])
def test_transform_equals_samtranslator(fleetfn_binary, path):
    ours = json.loads(render(fleetfn_binary, path).stdout)
    assert_same_template(ours, oracle(path))


def test_parameter_overrides_reach_the_alias_and_the_version_id(fleetfn_binary):
    path = SAM_DIR / "alias_params.yaml"
    overrides = {"AliasName": "canary", "Memory": "512"}
    ours = json.loads(render(fleetfn_binary, path, overrides).stdout)
    theirs = oracle(path, overrides)
    assert "AllPropsAliascanary" in ours["Resources"]
    assert_same_template(ours, theirs)


def test_code_change_changes_the_version_id(fleetfn_binary, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(e, c):\n    return 1\n")
    template = tmp_path / "t.yaml"
    template.write_text((SAM_DIR / "lmi.yaml").read_text())

    def versions():
        out = json.loads(render(fleetfn_binary, template).stdout)
        return sorted(k for k, v in out["Resources"].items() if v["Type"] == "AWS::Lambda::Version")

    first = versions()
    (tmp_path / "src" / "app.py").write_text("def handler(e, c):\n    return 2\n")
    second = versions()
    assert len(first) == len(second) == 1 and first != second
    assert_same_template(json.loads(render(fleetfn_binary, template).stdout), oracle(template))


def _sam_error_causes(path: Path) -> list[str]:
    from samtranslator.model.exceptions import InvalidDocumentException

    try:
        oracle(path)
    except InvalidDocumentException as e:
        return sorted(cause.message for cause in e.causes)
    raise AssertionError(f"samtranslator accepted {path.name}")


@pytest.mark.parametrize("path", INVALID_TEMPLATES, ids=[p.stem for p in INVALID_TEMPLATES])
def test_invalid_templates_fail_in_both(fleetfn_binary, path):
    theirs = _sam_error_causes(path)
    proc = render(fleetfn_binary, path, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "Transform AWS::Serverless-2016-10-31 failed with: Invalid Serverless Application " \
           f"Specification document. Number of errors found: {len(theirs)}." in proc.stderr, proc.stderr
    for cause in theirs:
        assert cause in proc.stderr, f"samtranslator's cause missing:\n{cause}\nfleetfn said:\n{proc.stderr}"


def _lint_targets() -> list[Path]:
    out = []
    for p in sorted(HERE.rglob("*")):
        rel = p.relative_to(HERE)
        if not p.is_file() or "invalid" in rel.parts or "__pycache__" in rel.parts:
            continue
        if p.suffix in (".yaml", ".yml") and "cdk.out" not in rel.parts:
            out.append(p)
        elif p.name.endswith(".template.json"):
            out.append(p)
    return out


def test_cfn_lint_accepts_every_template():
    targets = _lint_targets()
    assert any(p.parent == SAM_DIR for p in targets) and len(targets) >= len(SAM_TEMPLATES)
    proc = subprocess.run([sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())",
                           "--format", "json",
                           *[str(p) for p in targets]],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 2, 4, 6, 8, 10, 12, 14), proc.stderr
    findings = json.loads(proc.stdout or "[]")
    bad = []
    for f in findings:
        rule = f["Rule"]["Id"]
        where = Path(f["Filename"]).resolve().relative_to(HERE).as_posix()
        allowed = LINT_ALLOWED_WARNINGS.get(rule)
        if rule.startswith("W") and allowed is not None and where.startswith(allowed):
            continue
        if rule.startswith("I"):
            continue
        bad.append(f"{where}:{f['Location']['Start']['LineNumber']}: {rule} {f['Message']}")
    assert not bad, "cfn-lint:\n" + "\n".join(bad)


def test_oracle_sees_the_lmi_resources():
    """The oracle itself knows LMI (an older aws-sam-translator would not: the comparison would be
    meaningless)."""
    out = oracle(SAM_DIR / "lmi.yaml")
    types = {v["Type"] for v in out["Resources"].values()}
    assert {"AWS::Lambda::CapacityProvider", "AWS::Lambda::Function", "AWS::Lambda::Version",
            "AWS::Lambda::Alias", "AWS::Lambda::Url", "AWS::IAM::Role"} <= types
    function = copy.deepcopy(out["Resources"]["MyFunction"]["Properties"])
    assert "LambdaManagedInstancesCapacityProviderConfig" in function["CapacityProviderConfig"]
