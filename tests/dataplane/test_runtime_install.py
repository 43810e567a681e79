"""Runtime support that cannot be installed (issue 14): with the package registries out of reach
(pip's index and npm's registry pointed at a closed port on loopback, no caches), the first
publish of a Python or Node.js function fails with `InvalidRuntime` and the package manager's
reason, instead of hanging or starting environments without their SDK.
"""

from __future__ import annotations

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit.server import FleetfnServer, free_port


@pytest.mark.parametrize("runtime,needle", [
    ("python", "could not install awslambdaric"),
    ("node", "could not install the AWS SDK for JavaScript"),
])
def test_an_unreachable_registry_fails_the_publish_with_the_reason(runtime, needle, fleetfn_binary, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    srv = FleetfnServer(
        fleetfn_binary, tmp_path / "data", tmp_path / "logs", name=f"noregistry-{runtime}", data_plane=True,
        extra_env={
            # A runtime dir of its own: nothing installed yet.
            "FLEETFN_RUNTIME_DIR": str(tmp_path / "runtimes"),
            "PIP_INDEX_URL": f"{closed}/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2",
            "PIP_NO_CACHE_DIR": "1", "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "",
            "npm_config_registry": f"{closed}/", "npm_config_fetch_retries": "0",
            "npm_config_cache": str(tmp_path / "npm-cache"), "npm_config_prefer_online": "true",
        })
    srv.start()
    try:
        lam = dp.no_retry_client(srv.endpoint)
        cp = h.uniq("noregcp")
        h.create_active_cp(lam, cp, VpcConfig={"SubnetIds": list(dp.ZONES), "SecurityGroupIds": list(h.SECURITY_GROUPS)})
        name = dp.create_lmi_function(lam, h.cp_arn_for(cp), runtime)
        pub = dp.wait_published(lam, srv.endpoint, [dp.publish(lam, name, runtime)], timeout=120)[0]
        assert pub.final["State"] == "Failed", pub.final
        assert pub.final["StateReasonCode"] == "InvalidRuntime", pub.final
        assert needle in pub.final["StateReason"], pub.final
    finally:
        srv.stop()
