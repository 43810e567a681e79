"""`fleetfn status` and `fleetfn wait` against a real `fleetfn serve --no-data-plane`."""

from __future__ import annotations

import json
import re
import time

from fleetfn_testkit import api as h
STATUS_KEYS = {"DataPlane", "CapacityProviders", "Functions"}


def env_keys(cli, keys, **extra):
    return cli.env(AWS_ACCESS_KEY_ID=keys.access_key_id,
                   AWS_SECRET_ACCESS_KEY=keys.secret_access_key, **extra)


def assert_status_document(stdout: str) -> dict:
    doc = json.loads(stdout)
    assert STATUS_KEYS <= doc.keys(), doc
    assert doc["DataPlane"] is False
    assert doc["CapacityProviders"] == [] and doc["Functions"] == []
    if "GeneratedAt" in doc:
        assert isinstance(doc["GeneratedAt"], str)
    return doc


def assert_error(p, pattern: str):
    assert p.returncode == 1, f"rc={p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    assert re.search(pattern, p.stderr), f"{pattern!r} not in stderr: {p.stderr}"
    assert "panicked" not in p.stderr


def test_status_json_with_env_credentials(cli, server, keys):
    p = cli.run("status", "--json", "--endpoint-url", server.endpoint, env=env_keys(cli, keys))
    assert p.returncode == 0, p.stderr
    assert_status_document(p.stdout)
    # Pretty-printed: one key per line.
    assert '\n  "Functions": []' in p.stdout


def test_status_endpoint_from_env_and_human_form(cli, server, keys):
    p = cli.run("status", env=env_keys(cli, keys, FLEETFN_ENDPOINT_URL=server.endpoint))
    assert p.returncode == 0, p.stderr
    assert "data plane: off" in p.stdout
    assert "Capacity providers: none" in p.stdout
    assert "Function versions: none" in p.stdout
    assert "\x1b" not in p.stdout  # not a terminal: no colors


def test_status_with_the_data_dirs_credentials(cli, server, xdg_data_home):
    # No AWS_* variables and no ~/.aws: the key pair comes from <data dir>/credentials.json.
    p = cli.run("status", "--json", "--endpoint-url", server.endpoint,
                "--data-dir", str(server.data_dir))
    assert p.returncode == 0, p.stderr
    assert_status_document(p.stdout)
    # The same through FLEETFN_DATA_DIR, and through the default data dir ($XDG_DATA_HOME/fleetfn).
    for extra in ({"FLEETFN_DATA_DIR": str(server.data_dir)}, {"XDG_DATA_HOME": str(xdg_data_home)}):
        p = cli.run("status", "--json", "--endpoint-url", server.endpoint, env=cli.env(**extra))
        assert p.returncode == 0, f"{extra}: {p.stderr}"
        assert_status_document(p.stdout)


def test_status_with_a_profile(cli, server, keys, tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text(f"[ops]\naws_access_key_id = {keys.access_key_id}\n"
                     f"aws_secret_access_key = {keys.secret_access_key}\n")
    config = tmp_path / "config"
    config.write_text("[profile ops]\nregion = us-east-1\n")
    env = cli.env(AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_CONFIG_FILE=str(config),
                  # an explicit --profile wins over these, as in the AWS CLI
                  AWS_ACCESS_KEY_ID="AKIDWRONG", AWS_SECRET_ACCESS_KEY="wrong")
    p = cli.run("status", "--json", "--profile", "ops", "--endpoint-url", server.endpoint, env=env)
    assert p.returncode == 0, p.stderr
    assert_status_document(p.stdout)

    p = cli.run("status", "--profile", "nope", "--endpoint-url", server.endpoint, env=env)
    assert_error(p, r'profile "nope" was not found')


def test_wrong_secret_is_refused(cli, server, keys):
    env = cli.env(AWS_ACCESS_KEY_ID=keys.access_key_id, AWS_SECRET_ACCESS_KEY="not-the-secret")
    p = cli.run("status", "--endpoint-url", server.endpoint, env=env)
    assert_error(p, r"^fleetfn: InvalidSignatureException: \S")
    assert keys.access_key_id in p.stderr and "environment variables" in p.stderr
    assert p.stdout == ""


def test_unknown_key_is_refused(cli, server):
    env = cli.env(AWS_ACCESS_KEY_ID="AKIDUNKNOWN0000", AWS_SECRET_ACCESS_KEY="whatever")
    p = cli.run("status", "--endpoint-url", server.endpoint, env=env)
    assert_error(p, r"^fleetfn: UnrecognizedClientException: \S")


def test_no_credentials_anywhere(cli, server, tmp_path):
    p = cli.run("status", "--endpoint-url", server.endpoint, "--data-dir", str(tmp_path / "empty"))
    assert_error(p, r"^fleetfn: no credentials")
    assert "AWS_ACCESS_KEY_ID" in p.stderr and "credentials.json" in p.stderr


def test_wait_for_an_unknown_function(cli, server, keys):
    name = h.uniq("nofn")
    p = cli.run("wait", name, "--qualifier", "$LATEST.PUBLISHED", "--endpoint-url", server.endpoint,
                env=env_keys(cli, keys))
    assert_error(p, r"^fleetfn: ResourceNotFoundException: .*" + re.escape(name))


def test_wait_times_out_without_a_data_plane(cli, server, keys, lam):
    cp = h.create_active_cp(lam, h.uniq("clicp"))
    name = h.uniq("clifn")
    h.create_function(lam, name, cp["CapacityProviderArn"])
    lam.publish_version(FunctionName=name, PublishTo="LATEST_PUBLISHED")
    state = lam.get_function_configuration(FunctionName=name, Qualifier="$LATEST.PUBLISHED")["State"]
    assert state == "Pending"  # nothing ever starts its environments

    env = env_keys(cli, keys)
    started = time.monotonic()
    p = cli.run("wait", name, "--qualifier", "$LATEST.PUBLISHED", "--timeout", "1",
                "--endpoint-url", server.endpoint, env=env)
    elapsed = time.monotonic() - started
    assert_error(p, r"^fleetfn: timed out after 1s waiting for .*to be Active; last seen: State Pending")
    assert 0.9 <= elapsed < 10, elapsed
    assert p.stderr.count("\n") == 1  # stderr is not a terminal: no progress output

    # A publish never finishes without a data plane: waiting for Pending times out as well,
    # since the update stays InProgress.
    p = cli.run("wait", name, "--qualifier", "$LATEST.PUBLISHED", "--state", "Pending",
                "--timeout", "0.5", "--endpoint-url", server.endpoint, env=env)
    assert_error(p, r"^fleetfn: timed out after 0.5s .*to be Pending; .*LastUpdateStatus InProgress")

    # $LATEST has settled (create_function waited for it): waiting for the state boto3 sees
    # returns at once. The function's ARN works as the name, and no qualifier means $LATEST.
    latest = lam.get_function_configuration(FunctionName=name)
    assert latest["LastUpdateStatus"] != "InProgress"
    p = cli.run("wait", h.fn_arn_for(name), "--state", latest["State"], "--timeout", "10",
                "--endpoint-url", server.endpoint, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and p.stderr == ""

    # $LATEST of a capacity-provider function is ActiveNonInvocable (lmi-behaviour.md), never
    # Active: the timeout says so.
    assert latest["State"] == "ActiveNonInvocable"
    p = cli.run("wait", name, "--timeout", "0.3", "--endpoint-url", server.endpoint, env=env)
    assert_error(p, r"last seen: State ActiveNonInvocable.*never Active.*--qualifier")


def test_server_down(cli, keys):
    port = api_free_port()
    endpoint = f"http://127.0.0.1:{port}"
    for args in (["status"], ["wait", "f", "--timeout", "5"]):
        started = time.monotonic()
        p = cli.run(*args, "--endpoint-url", endpoint, env=env_keys(cli, keys))
        assert_error(p, r"^fleetfn: could not connect to " + re.escape(endpoint))
        assert "fleetfn serve" in p.stderr
        assert time.monotonic() - started < 5


def api_free_port() -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
