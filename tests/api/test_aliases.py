"""Aliases on LMI function versions."""

import pytest

from fleetfn_testkit import api as h


@pytest.fixture
def fn_with_versions(lam, cp_arn):
    """A function with published versions 1 and 2."""
    name = h.uniq("fnal")
    h.create_function(lam, name, cp_arn, zip_bytes=h.python_zip("1"))
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    h.update_code(lam, name, h.python_zip("2"))
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    return name


def test_alias_crud(lam, fn_with_versions):
    name = fn_with_versions
    created = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="prod")
    assert h.status_of(created) == 201
    assert created["AliasArn"] == h.fn_arn_for(name, "live")
    assert created["Name"] == "live"
    assert created["FunctionVersion"] == "1"
    assert created["Description"] == "prod"
    assert created["RevisionId"]

    got = lam.get_alias(FunctionName=name, Name="live")
    for k in ("AliasArn", "Name", "FunctionVersion", "Description", "RevisionId"):
        assert got[k] == created[k], k

    lam.create_alias(FunctionName=name, Name="beta", FunctionVersion="2")
    aliases, _ = h.paginate(lam.list_aliases, "Aliases", 1, FunctionName=name)
    assert sorted(a["Name"] for a in aliases) == ["beta", "live"]
    only_v2 = lam.list_aliases(FunctionName=name, FunctionVersion="2")["Aliases"]
    assert [a["Name"] for a in only_v2] == ["beta"]

    updated = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                               RoutingConfig={"AdditionalVersionWeights": {"1": 0.25}})
    assert h.status_of(updated) == 200
    assert updated["FunctionVersion"] == "2"
    assert updated["RoutingConfig"]["AdditionalVersionWeights"] == {"1": 0.25}
    assert updated["RevisionId"] != created["RevisionId"]
    got = lam.get_alias(FunctionName=name, Name="live")
    assert got["FunctionVersion"] == "2"
    assert got["RoutingConfig"]["AdditionalVersionWeights"] == {"1": 0.25}
    assert got["Description"] == "prod"  # untouched fields persist

    # The alias resolves as a qualifier and as a qualified ARN.
    cfg = lam.get_function_configuration(FunctionName=name, Qualifier="live")
    assert cfg["Version"] == "2"
    cfg = lam.get_function_configuration(FunctionName=h.fn_arn_for(name, "live"))
    assert cfg["Version"] == "2"

    deleted = lam.delete_alias(FunctionName=name, Name="live")
    assert h.status_of(deleted) == 204
    h.expect_error(lam, lambda: lam.get_alias(FunctionName=name, Name="live"), "ResourceNotFoundException", 404,
                   mentions=["live"])
    assert [a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]] == ["beta"]


def test_alias_to_missing_version(lam, fn_with_versions):
    h.expect_error(lam, lambda: lam.create_alias(FunctionName=fn_with_versions, Name="x", FunctionVersion="42"),
                   "ResourceNotFoundException", 404, mentions=["42", "version"])


def test_alias_routing_to_missing_version(lam, fn_with_versions):
    h.expect_error(lam, lambda: lam.create_alias(FunctionName=fn_with_versions, Name="canary", FunctionVersion="1",
                                                 RoutingConfig={"AdditionalVersionWeights": {"42": 0.1}}),
                   ("ResourceNotFoundException", "InvalidParameterValueException"), (400, 404), mentions=["42"])


def test_duplicate_alias_conflicts(lam, fn_with_versions):
    lam.create_alias(FunctionName=fn_with_versions, Name="dup", FunctionVersion="1")
    h.expect_error(lam, lambda: lam.create_alias(FunctionName=fn_with_versions, Name="dup", FunctionVersion="2"),
                   "ResourceConflictException", 409, mentions=["dup", "exist"])
    assert lam.get_alias(FunctionName=fn_with_versions, Name="dup")["FunctionVersion"] == "1"


def test_numeric_alias_name_rejected(lam, fn_with_versions):
    # Alias pattern (?!^[0-9]+$)... : an alias may not look like a version number.
    h.expect_error(lam, lambda: lam.create_alias(FunctionName=fn_with_versions, Name="123", FunctionVersion="1"),
                   "ValidationException", 400, mentions=["name", "alias"])


def test_update_alias_revision_guard(lam, fn_with_versions):
    lam.create_alias(FunctionName=fn_with_versions, Name="guarded", FunctionVersion="1")
    h.expect_error(lam, lambda: lam.update_alias(FunctionName=fn_with_versions, Name="guarded", FunctionVersion="2",
                                                 RevisionId="stale"),
                   "PreconditionFailedException", 412, mentions=["revision"])
    assert lam.get_alias(FunctionName=fn_with_versions, Name="guarded")["FunctionVersion"] == "1"


def test_alias_on_unknown_function(lam):
    name = h.uniq("ghostal")
    h.expect_error(lam, lambda: lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1"),
                   "ResourceNotFoundException", 404, mentions=[name])
    h.expect_error(lam, lambda: lam.get_alias(FunctionName=name, Name="live"), "ResourceNotFoundException", 404)


def test_alias_to_latest_published(lam, cp_arn):
    # CreateAlias.FunctionVersion accepts $LATEST.PUBLISHED (VersionWithLatestPublished).
    name = h.uniq("fnallp")
    h.create_function(lam, name, cp_arn)
    lam.publish_version(FunctionName=name, PublishTo="LATEST_PUBLISHED")
    a = lam.create_alias(FunctionName=name, Name="current", FunctionVersion="$LATEST.PUBLISHED")
    assert a["FunctionVersion"] == "$LATEST.PUBLISHED"
    assert lam.get_alias(FunctionName=name, Name="current")["FunctionVersion"] == "$LATEST.PUBLISHED"
