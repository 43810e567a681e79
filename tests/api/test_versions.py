"""PublishVersion and $LATEST.PUBLISHED for LMI functions (lmi-behaviour.md §1.3–§1.6)."""

from fleetfn_testkit import api as h


def _cfg(lam, name, **kw):
    return lam.get_function_configuration(FunctionName=name, **kw)


def _versions(lam, name):
    items, _ = h.paginate(lam.list_versions_by_function, "Versions", 50, FunctionName=name)
    return items


def test_publish_numbered_versions(lam, cp_arn):
    name = h.uniq("fnpub")
    z1, z2 = h.python_zip("v1"), h.python_zip("v2")
    h.create_function(lam, name, cp_arn, zip_bytes=z1)

    v1 = lam.publish_version(FunctionName=name, Description="first")
    assert h.status_of(v1) == 201
    assert v1["Version"] == "1"
    assert v1["FunctionArn"] == h.fn_arn_for(name, "1")
    assert v1["CodeSha256"] == h.code_sha256(z1)
    assert v1["Description"] == "first"
    # Honest state: no execution environments yet -> Pending (or Active once a data
    # plane brought them up) -- never ActiveNonInvocable, which is $LATEST-only.
    assert v1["State"] in h.PUBLISHED_VERSION_STATES, v1["State"]
    assert v1["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]["CapacityProviderArn"] == cp_arn
    got = _cfg(lam, name, Qualifier="1")
    assert got["State"] in h.PUBLISHED_VERSION_STATES
    assert got["Version"] == "1"

    # Nothing changed -> no new version; the existing one is returned.
    again = lam.publish_version(FunctionName=name)
    assert again["Version"] == "1"
    assert again["FunctionArn"] == h.fn_arn_for(name, "1")

    # Code change -> "2"
    h.update_code(lam, name, z2)
    v2 = lam.publish_version(FunctionName=name)
    assert v2["Version"] == "2"
    assert v2["CodeSha256"] == h.code_sha256(z2)

    # Configuration-only change -> "3"
    h.update_config(lam, name, Environment={"Variables": {"KEY": "v"}})
    v3 = lam.publish_version(FunctionName=name)
    assert v3["Version"] == "3"
    assert v3["Environment"]["Variables"] == {"KEY": "v"}

    # Versions are immutable snapshots; $LATEST stays non-invocable.
    assert _cfg(lam, name, Qualifier="1")["CodeSha256"] == h.code_sha256(z1)
    assert _cfg(lam, name, Qualifier="2").get("Environment", {}).get("Variables", {}) == {}
    assert _cfg(lam, name)["State"] == "ActiveNonInvocable"

    listed = _versions(lam, name)
    versions = [v["Version"] for v in listed]
    assert len(versions) == len(set(versions))
    assert {"$LATEST", "1", "2", "3"} <= set(versions)
    for v in listed:
        if v["Version"] == "$LATEST":
            assert v["State"] == "ActiveNonInvocable"
        elif v["Version"].isdigit():
            assert v["State"] in h.PUBLISHED_VERSION_STATES


def test_list_versions_pagination(lam, cp_arn):
    name = h.uniq("fnvpage")
    h.create_function(lam, name, cp_arn)
    for i in range(3):
        h.update_config(lam, name, Description=f"d{i}")
        lam.publish_version(FunctionName=name)
    items, pages = h.paginate(lam.list_versions_by_function, "Versions", 1, FunctionName=name)
    versions = [v["Version"] for v in items]
    assert len(versions) == len(set(versions)), versions
    assert {"$LATEST", "1", "2", "3"} <= set(versions)
    assert pages >= 4


def test_publish_with_wrong_revision_id_fails(lam, cp_arn):
    name = h.uniq("fnprev")
    h.create_function(lam, name, cp_arn)
    h.expect_error(lam, lambda: lam.publish_version(FunctionName=name, RevisionId="not-the-revision"),
                   "PreconditionFailedException", 412, mentions=["revision"])
    assert [v["Version"] for v in _versions(lam, name) if v["Version"].isdigit()] == []
    rev = _cfg(lam, name)["RevisionId"]
    assert lam.publish_version(FunctionName=name, RevisionId=rev)["Version"] == "1"


def test_publish_with_wrong_code_sha_fails(lam, cp_arn):
    name = h.uniq("fnpsha")
    z = h.python_zip()
    h.create_function(lam, name, cp_arn, zip_bytes=z)
    h.expect_error(lam, lambda: lam.publish_version(FunctionName=name, CodeSha256=h.code_sha256(b"other")),
                   "InvalidParameterValueException", 400, mentions=["codesha256"])
    assert lam.publish_version(FunctionName=name, CodeSha256=h.code_sha256(z))["Version"] == "1"


def test_publish_unknown_function(lam):
    name = h.uniq("ghostpub")
    h.expect_error(lam, lambda: lam.publish_version(FunctionName=name), "ResourceNotFoundException", 404,
                   mentions=[name])


def test_publish_to_latest_published(lam, cp_arn):
    name = h.uniq("fnlp")
    z1, z2 = h.python_zip("a"), h.python_zip("b")
    h.create_function(lam, name, cp_arn, zip_bytes=z1)
    resp = lam.publish_version(FunctionName=name, PublishTo="LATEST_PUBLISHED")
    assert h.status_of(resp) == 201
    assert resp["FunctionArn"] == h.fn_arn_for(name, "$LATEST.PUBLISHED")
    assert resp["Version"] == "$LATEST.PUBLISHED"
    assert resp["State"] in h.PUBLISHED_VERSION_STATES
    assert resp["CodeSha256"] == h.code_sha256(z1)

    lp = _cfg(lam, name, Qualifier="$LATEST.PUBLISHED")
    assert lp["FunctionArn"] == h.fn_arn_for(name, "$LATEST.PUBLISHED")
    assert lp["State"] in h.PUBLISHED_VERSION_STATES
    assert lam.get_function(FunctionName=h.fn_arn_for(name, "$LATEST.PUBLISHED"))["Configuration"][
        "CodeSha256"] == h.code_sha256(z1)

    # Republishing replaces it in place (same identifier, new code).
    h.wait_publish_finished(lam, name)  # publishing is asynchronous; republish after it
    h.update_code(lam, name, z2)
    again = lam.publish_version(FunctionName=name, PublishTo="LATEST_PUBLISHED")
    assert again["FunctionArn"] == h.fn_arn_for(name, "$LATEST.PUBLISHED")
    h.poll(lambda: _cfg(lam, name, Qualifier="$LATEST.PUBLISHED"),
           lambda c: c["CodeSha256"] == h.code_sha256(z2), "$LATEST.PUBLISHED to carry the new code")
    # $LATEST itself is still not invocable.
    assert _cfg(lam, name)["State"] == "ActiveNonInvocable"


def test_create_function_publish_to_latest_published(lam, cp_arn):
    name = h.uniq("fncplp")
    resp = lam.create_function(**h.function_request(name, cp_arn, Publish=True, PublishTo="LATEST_PUBLISHED"))
    assert h.status_of(resp) == 201
    lp = h.poll(lambda: _cfg(lam, name, Qualifier="$LATEST.PUBLISHED"), lambda c: True, "$LATEST.PUBLISHED")
    assert lp["FunctionArn"] == h.fn_arn_for(name, "$LATEST.PUBLISHED")
    assert lp["State"] in h.PUBLISHED_VERSION_STATES
    assert _cfg(lam, name)["State"] in ("Pending", "ActiveNonInvocable")


def test_create_function_publish_numbered(lam, cp_arn):
    name = h.uniq("fncp1")
    resp = lam.create_function(**h.function_request(name, cp_arn, Publish=True))
    assert h.status_of(resp) == 201
    v1 = _cfg(lam, name, Qualifier="1")
    assert v1["Version"] == "1"
    assert v1["State"] in h.PUBLISHED_VERSION_STATES


def test_update_code_with_publish_to_latest_published(lam, cp_arn):
    # lmi-behaviour.md §1.5: UpdateFunctionCode(Publish=true, PublishTo=LATEST_PUBLISHED) republishes in one step.
    name = h.uniq("fnuclp")
    h.create_function(lam, name, cp_arn, zip_bytes=h.python_zip("1"))
    z2 = h.python_zip("2")
    lam.update_function_code(FunctionName=name, ZipFile=z2, Publish=True, PublishTo="LATEST_PUBLISHED")
    h.wait_function_settled(lam, name)
    lp = h.poll(lambda: _cfg(lam, name, Qualifier="$LATEST.PUBLISHED"),
                lambda c: c["CodeSha256"] == h.code_sha256(z2), "$LATEST.PUBLISHED with the new code")
    assert lp["State"] in h.PUBLISHED_VERSION_STATES


def test_unknown_version_not_found(lam, cp_arn):
    name = h.uniq("fnv404")
    h.create_function(lam, name, cp_arn)
    h.expect_error(lam, lambda: _cfg(lam, name, Qualifier="99"), "ResourceNotFoundException", 404,
                   mentions=[name, "99"])
    h.expect_error(lam, lambda: _cfg(lam, name, Qualifier="$LATEST.PUBLISHED"), "ResourceNotFoundException", 404)


def test_delete_single_version(lam, cp_arn):
    name = h.uniq("fndelv")
    h.create_function(lam, name, cp_arn)
    lam.publish_version(FunctionName=name)
    h.update_config(lam, name, Description="two")
    lam.publish_version(FunctionName=name)
    resp = lam.delete_function(FunctionName=name, Qualifier="1")
    assert h.status_of(resp) == 202  # LMI deletions are asynchronous (lmi-behaviour.md §1.6)
    h.gone(lambda: _cfg(lam, name, Qualifier="1"), f"{name}:1")
    assert _cfg(lam, name, Qualifier="2")["Version"] == "2"
    assert _cfg(lam, name)["Version"] == "$LATEST"
    # Version numbers are never reused.
    h.update_config(lam, name, Description="three")
    assert lam.publish_version(FunctionName=name)["Version"] == "3"
