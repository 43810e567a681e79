"""TagResource / UntagResource / ListTags (/2017-03-31/tags/{ARN}) and GetAccountSettings."""

import pytest

from fleetfn_testkit import api as h


@pytest.fixture(params=["function", "capacity-provider"])
def taggable(request, lam, cp_arn):
    """(ARN, initial tags) for a freshly created resource of each taggable kind."""
    initial = {"created-by": "tests"}
    if request.param == "function":
        name = h.uniq("fntag")
        h.create_function(lam, name, cp_arn, Tags=initial)
        return h.fn_arn_for(name), initial
    name = h.uniq("cptag")
    h.create_cp(lam, name, Tags=initial)
    h.wait_cp_active(lam, name)
    return h.cp_arn_for(name), initial


def test_tag_untag_list(lam, taggable):
    arn, initial = taggable
    assert lam.list_tags(Resource=arn)["Tags"] == initial

    resp = lam.tag_resource(Resource=arn, Tags={"team": "platform", "cost-center": "42"})
    assert h.status_of(resp) == 204
    assert lam.list_tags(Resource=arn)["Tags"] == {**initial, "team": "platform", "cost-center": "42"}

    # Re-tagging an existing key overwrites its value.
    lam.tag_resource(Resource=arn, Tags={"team": "infra"})
    assert lam.list_tags(Resource=arn)["Tags"]["team"] == "infra"

    resp = lam.untag_resource(Resource=arn, TagKeys=["team", "created-by", "not-there"])
    assert h.status_of(resp) == 204
    assert lam.list_tags(Resource=arn)["Tags"] == {"cost-center": "42"}


@pytest.mark.parametrize("kind", ["function", "capacity-provider"])
def test_tags_on_unknown_resource(lam, kind):
    name = h.uniq("ghosttag")
    arn = h.fn_arn_for(name) if kind == "function" else h.cp_arn_for(name)
    h.expect_error(lam, lambda: lam.list_tags(Resource=arn), "ResourceNotFoundException", 404, mentions=[name])
    h.expect_error(lam, lambda: lam.tag_resource(Resource=arn, Tags={"a": "b"}), "ResourceNotFoundException", 404)
    h.expect_error(lam, lambda: lam.untag_resource(Resource=arn, TagKeys=["a"]), "ResourceNotFoundException", 404)


def test_tags_require_arn(lam, cp_arn):
    name = h.uniq("fntagname")
    h.create_function(lam, name, cp_arn)
    # TaggableResource pattern requires an ARN, not a bare name.
    h.expect_error(lam, lambda: lam.list_tags(Resource=name), ("ValidationException", "InvalidParameterValueException"),
                   400, mentions=["arn", "resource"])


def test_get_account_settings(lam, cp_arn):
    z = h.python_zip(h.uniq("acct"))
    h.create_function(lam, h.uniq("fnacct"), cp_arn, zip_bytes=z)
    resp = lam.get_account_settings()
    assert h.status_of(resp) == 200
    limit, usage = resp["AccountLimit"], resp["AccountUsage"]
    for key in ("TotalCodeSize", "CodeSizeUnzipped", "CodeSizeZipped", "ConcurrentExecutions"):
        assert isinstance(limit[key], int) and limit[key] > 0, (key, limit)
    assert usage["FunctionCount"] >= 1
    assert usage["TotalCodeSize"] >= len(z)

    before = usage["FunctionCount"]
    h.create_function(lam, h.uniq("fnacct2"), cp_arn)
    assert lam.get_account_settings()["AccountUsage"]["FunctionCount"] == before + 1
