"""The `ec2` instance provider against moto's EC2 and STS server (on loopback): `fleetfn server
--instance-provider ec2` on PostgreSQL launches instances in moto as the capacity provider's
operator role, and a small harness plays the hypervisor (`Hypervisor`): every instance of the
cluster that moto has pending or running is "booted" by running its user data, as the
instance's shell would, in a network namespace of its own on the test bridge; an instance moto
has terminated is powered off (its processes killed). All real processes; needs root.

Covered: publish → RunInstances in the three subnets with the type, tags, IMDSv2 and user data
→ the agents join with their single-use tokens → Active → invokes; a "VM" terminated behind
fleetfn's back is replaced in its zone; an orphan instance with the cluster's tag is terminated;
EC2 without capacity for the asked type in a zone → the next allowed type there (a
fault-injecting proxy in front of moto); scale-in terminates the instances in moto.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import postgres
from fleetfn_testkit.dataplane import rust_zip, set_scaling
from fleetfn_testkit.moto import Moto
from fleetfn_testkit.server import FleetfnServer, free_port, process_env

CLUSTER = "ec2test"
# In moto's default account, whose VPC the test reads: assumed-role calls act in the role's account.
ROLE = "arn:aws:iam::123456789012:role/fleetfn-operator"
LIVE = ("pending", "running")


def _ec2(url: str):
    return boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x")


class Hypervisor:
    """Boots moto's instances of the cluster as processes in network namespaces."""

    def __init__(self, ec2, net, binary: Path, base: Path):
        self.ec2 = ec2
        self.net = net
        self.binary = binary
        self.base = base
        # None: an instance without user data (nothing to run).
        self.vms: dict[str, subprocess.Popen | None] = {}
        self.booted: list[str] = []
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + 900
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 - reported by the test, not lost in a thread
                self.errors.append(repr(e))
            self.stop_event.wait(0.3)

    def instances(self) -> list[dict]:
        out = []
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag:fleetfn:cluster", "Values": [CLUSTER]}])
        for page in pages:
            for r in page["Reservations"]:
                out.extend(r["Instances"])
        return out

    def tick(self):
        for i in self.instances():
            iid, state = i["InstanceId"], i["State"]["Name"]
            if state in LIVE and iid not in self.vms:
                self.boot(iid)
            elif state not in LIVE and self.vms.get(iid) is not None and self.vms[iid].poll() is None:
                self.power_off(iid)

    def boot(self, iid: str):
        ud = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"].get("Value")
        if not ud:
            self.vms[iid] = None
            return
        script = base64.b64decode(ud).decode()
        host = self.net.host()
        home = self.base / iid
        home.mkdir(parents=True, exist_ok=True)
        env = process_env(FLEETFN_BIN=str(self.binary), FLEETFN_HOME=str(home),
                          FLEETFN_LISTEN=f"{host.address}:9700", FLEETFN_SANDBOX="off")
        env.pop("FLEETFN_AGENT_TOKEN", None)
        log = open(self.base / f"{iid}.log", "wb")  # noqa: SIM115 - closed with the process
        self.vms[iid] = subprocess.Popen(host.command(["sh", "-c", script]), env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.booted.append(iid)

    def power_off(self, iid: str):
        p = self.vms[iid]
        assert p is not None
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=10)

    def close(self):
        self.stop_event.set()
        self.thread.join(timeout=10)
        for iid, p in self.vms.items():
            if p is not None and p.poll() is None:
                self.power_off(iid)


class CapacityProxy(http.server.ThreadingHTTPServer):
    """Forwards to moto, but answers RunInstances of (type, subnet) pairs in `refuse` with EC2's
    InsufficientInstanceCapacity, as EC2 does when a zone is out of a type."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.refuse: set[tuple[str, str]] = set()
        self.refused: list[tuple[str, str]] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        form = dict(kv.split("=", 1) for kv in body.decode().split("&") if "=" in kv)
        pair = (urllib.request.unquote(form.get("InstanceType", "")), urllib.request.unquote(form.get("SubnetId", "")))
        if form.get("Action") == "RunInstances" and pair in self.server.refuse:
            self.server.refused.append(pair)
            doc = ("<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>We currently do "
                   f"not have sufficient {pair[0]} capacity in the Availability Zone you requested.</Message>"
                   "</Error></Errors><RequestID>r</RequestID></Response>").encode()
            self.send_response(500)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(doc)))
            self.end_headers()
            self.wfile.write(doc)
            return
        req = urllib.request.Request(self.server.upstream + self.path, data=body, method="POST",
                                     headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, data, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "text/xml")
        except urllib.error.HTTPError as e:
            status, data, ctype = e.code, e.read(), e.headers.get("Content-Type", "text/xml")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def ec2_fleet(fleetfn_binary, tmp_path, test_net):
    """moto (behind the capacity proxy), the hypervisor, and a `fleetfn server` leader with the
    ec2 provider on the test bridge."""
    moto = Moto(tmp_path / "moto.log", None)
    proxy = CapacityProxy(moto.url)
    ec2 = _ec2(moto.url)
    subnets = sorted(ec2.describe_subnets()["Subnets"], key=lambda s: s["AvailabilityZone"])[:3]
    sg = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    hv = Hypervisor(ec2, test_net, fleetfn_binary, tmp_path / "vms")
    # Pricing instruments for `fleetfn cost`: a 30 % Savings Plan on c7i.
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"Discounts": [{"Match": "c7i.*", "Kind": "SavingsPlan", "Rate": 0.30}]}))
    pg = postgres.session_server()
    srv = FleetfnServer(
        fleetfn_binary, tmp_path / "data", tmp_path / "logs", name="a", command="server",
        store_url=pg.database_for(tmp_path / "cluster"), data_plane=True, host=test_net.gateway,
        extra_env={"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "x",
                   "AWS_ENDPOINT_URL_EC2": proxy.url, "AWS_ENDPOINT_URL_STS": moto.url,
                   "AWS_ENDPOINT_URL_SSM": moto.url,
                   "AWS_EC2_METADATA_DISABLED": "true"})
    # The join URL names the server's own port: chosen before the start.
    srv.port = free_port(test_net.gateway)
    srv.extra_args = ["--metrics-listen", "off", "--instance-provider", "ec2", "--ec2-image-id", image,
                      "--ec2-join-url", f"http://{test_net.gateway}:{srv.port}", "--ec2-cluster", CLUSTER,
                      "--ec2-agent-arg=--allow-plain-http", "--ec2-join-timeout", "60",
                      "--ec2-orphan-grace", "2", "--ec2-describe-every", "1", "--idle-instance-after", "2",
                      "--catalog", str(catalog)]
    srv.start(same_port=True)
    fleet = type("Fleet", (), {})()
    fleet.srv, fleet.ec2, fleet.hv, fleet.proxy = srv, ec2, hv, proxy
    fleet.subnets = [s["SubnetId"] for s in subnets]
    fleet.sg, fleet.image, fleet.moto_url = sg, image, moto.url
    try:
        yield fleet
    finally:
        srv.stop()
        hv.close()
        proxy.shutdown()
        moto.stop()
        assert not hv.errors, hv.errors


def _deploy(f, allowed=("c7i.large",), envs: int = 3) -> tuple[str, str]:
    lam = h.make_client(f.srv.endpoint)
    cp = f.cp = h.create_active_cp(
        lam, h.uniq("ec2"), VpcConfig={"SubnetIds": f.subnets, "SecurityGroupIds": [f.sg]},
        PermissionsConfig={"CapacityProviderOperatorRoleArn": ROLE},
        InstanceRequirements={"Architectures": ["x86_64"], "AllowedInstanceTypes": list(allowed)})
    name = h.uniq("fn")
    lam.create_function(**h.function_request(
        name, None, runtime="provided.al2023", zip_bytes=rust_zip(),
        CapacityProviderConfig=h.lmi_config(cp["CapacityProviderArn"], PerExecutionEnvironmentMaxConcurrency=8)))
    h.wait_function_settled(lam, name)
    version = lam.publish_version(FunctionName=name)["Version"]
    set_scaling(lam, name, version, envs, envs)
    cfg = h.poll(lambda: lam.get_function(FunctionName=name, Qualifier=version)["Configuration"],
                 lambda c: c["State"] != "Pending", f"{name}:{version} to leave Pending", timeout=120)
    assert cfg["State"] == "Active", (cfg, f.srv.logs(80))
    return name, version


def _live(f) -> list[dict]:
    return [i for i in f.hv.instances() if i["State"]["Name"] in LIVE]


def _invoke(f, name, version, event):
    lam = h.make_client(f.srv.endpoint)
    resp = lam.invoke(FunctionName=name, Qualifier=version, Payload=json.dumps(event).encode())
    body = resp["Payload"].read()
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, (resp, body)
    return json.loads(body)


def _ready_zones(f, name) -> list[str]:
    r = h.raw_request(f.srv.endpoint, "GET", "/fleetfn/v1/environments", timeout=10.0)
    return sorted(e["Zone"] for e in r.json()["Environments"] if e["FunctionName"] == name and e["State"] == "Ready")


def test_publish_launches_tagged_imdsv2_instances_in_three_subnets_that_join_and_serve(ec2_fleet):
    f = ec2_fleet
    name, version = _deploy(f)
    live = _live(f)
    assert sorted(i["SubnetId"] for i in live) == sorted(f.subnets), live
    for i in live:
        assert i["InstanceType"] == "c7i.large"
        assert i["ImageId"] == f.image
        assert i["MetadataOptions"]["HttpTokens"] == "required"
        tags = {t["Key"]: t["Value"] for t in i["Tags"]}
        assert tags["fleetfn:cluster"] == CLUSTER
        assert tags["fleetfn:zone"] == i["SubnetId"]
        assert tags["fleetfn:instance-id"].startswith("i-")
        ud = base64.b64decode(f.ec2.describe_instance_attribute(
            InstanceId=i["InstanceId"], Attribute="userData")["UserData"]["Value"]).decode()
        assert ud.startswith("#!/bin/sh\n") and "'--join'" in ud and i["SubnetId"] in ud
    # The agents joined with single-use tokens, one each, all used.
    tokens = h.raw_request(f.srv.endpoint, "GET", "/fleetfn/v1/join-tokens").json()["JoinTokens"]
    assert len(tokens) == 3 and all(t["SingleUse"] and t["Used"] for t in tokens), tokens
    assert _ready_zones(f, name) == sorted(f.subnets)
    # The instance catalog came from the endpoint's DescribeInstanceTypes.
    assert "instance types from EC2's DescribeInstanceTypes" in f.srv.logs(400)
    for n in range(6):
        event = {"op": "echo", "n": n}
        assert _invoke(f, name, version, event) == event
    # `fleetfn cost` of the cluster: the instances at the Savings Plan rate, LMI's fee on
    # on-demand.
    doc = h.raw_request(f.srv.endpoint, "GET", "/fleetfn/v1/cost", query={"Since": "1h"}).json()
    p = [c for c in doc["CapacityProviders"] if c["Name"] == f.cp["CapacityProviderArn"].rsplit(":", 1)[-1]][0]
    assert {i["InstanceType"] for i in p["Instances"]} == {"c7i.large"}, p
    on_demand = sum(i["OnDemandUsd"] for i in p["Instances"])
    assert on_demand > 0, p
    for i in p["Instances"]:
        assert i["Discount"]["Rate"] == 0.30 and abs(i["CostUsd"] - 0.7 * i["OnDemandUsd"]) < 1e-9, i
    assert abs(p["Cost"]["LmiFeeUsd"] - 0.15 * on_demand) < 1e-9, p["Cost"]


def test_a_vm_terminated_behind_fleetfns_back_is_replaced_in_its_zone(ec2_fleet):
    f = ec2_fleet
    name, version = _deploy(f)
    victim = _live(f)[0]
    f.ec2.terminate_instances(InstanceIds=[victim["InstanceId"]])
    replacement = h.poll(
        lambda: [i for i in _live(f) if i["SubnetId"] == victim["SubnetId"] and i["InstanceId"] != victim["InstanceId"]],
        lambda r: len(r) == 1, "a replacement instance in the victim's subnet", timeout=60)
    assert replacement[0]["InstanceType"] == "c7i.large"
    h.poll(lambda: _ready_zones(f, name), lambda z: z == sorted(f.subnets),
           "three Ready environments again, one per subnet", timeout=60)
    assert _invoke(f, name, version, {"op": "echo", "after": "replace"}) == {"op": "echo", "after": "replace"}


def test_an_orphan_instance_of_the_cluster_is_terminated_and_others_are_left(ec2_fleet):
    f = ec2_fleet
    name, _ = _deploy(f, envs=1)
    run = lambda tags: f.ec2.run_instances(  # noqa: E731
        ImageId=f.image, InstanceType="c7i.large", MinCount=1, MaxCount=1, SubnetId=f.subnets[0],
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"][0]["InstanceId"]
    # Its user data is empty: the hypervisor boots nothing that joins.
    orphan = run([{"Key": "fleetfn:cluster", "Value": CLUSTER}, {"Key": "fleetfn:instance-id", "Value": "i-lost"}])
    other = run([{"Key": "fleetfn:cluster", "Value": "someone-else"}])
    h.poll(lambda: f.ec2.describe_instances(InstanceIds=[orphan])["Reservations"][0]["Instances"][0]["State"]["Name"],
           lambda s: s in ("shutting-down", "terminated"), "the orphan to be terminated", timeout=30)
    assert f.ec2.describe_instances(InstanceIds=[other])["Reservations"][0]["Instances"][0]["State"]["Name"] in LIVE
    assert len(_live(f)) == 1, "fleetfn's own instance stays"


def test_no_capacity_for_the_type_in_a_zone_falls_back_to_the_next_allowed_type(ec2_fleet):
    f = ec2_fleet
    f.proxy.refuse.add(("c7i.large", f.subnets[1]))
    name, version = _deploy(f, allowed=("c7i.large", "c7i.xlarge"))
    by_subnet = {i["SubnetId"]: i["InstanceType"] for i in _live(f)}
    assert by_subnet == {f.subnets[0]: "c7i.large", f.subnets[1]: "c7i.xlarge", f.subnets[2]: "c7i.large"}, by_subnet
    assert f.proxy.refused == [("c7i.large", f.subnets[1])]
    # Status shows what EC2 had no capacity for.
    status = h.raw_request(f.srv.endpoint, "GET", "/fleetfn/v1/status").json()
    cp = [c for c in status["CapacityProviders"] if c["Name"] == f.cp["CapacityProviderArn"].rsplit(":", 1)[-1]][0]
    assert [(x["InstanceType"], x["Zone"], x["Code"]) for x in cp["CapacityFallbacks"]] == \
        [("c7i.large", f.subnets[1], "InsufficientInstanceCapacity")], cp
    assert _invoke(f, name, version, {"op": "echo"}) == {"op": "echo"}


def test_scale_in_terminates_the_instances_in_ec2(ec2_fleet):
    f = ec2_fleet
    name, version = _deploy(f)
    launched = {i["InstanceId"] for i in _live(f)}
    lam = h.make_client(f.srv.endpoint)
    lam.delete_function(FunctionName=name)
    h.poll(lambda: [i for i in f.hv.instances() if i["InstanceId"] in launched and i["State"]["Name"] in LIVE],
           lambda left: left == [], "every instance of the deleted function terminated in EC2", timeout=60)


def test_an_image_change_through_ssm_replaces_the_instances_one_by_one_under_load_without_a_failed_invoke(ec2_fleet):
    f = ec2_fleet
    name, version = _deploy(f)
    old = {i["InstanceId"] for i in _live(f)}
    # The new image is named by AWS's public SSM parameter (moto serves it): resolved by fleetfn.
    parameter = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    ssm = boto3.client("ssm", endpoint_url=f.moto_url, region_name="us-east-1",
                       aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x")
    new_image = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    assert new_image != f.image

    failures: list[str] = []
    done = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def client(k: int):
        lam = h.make_client(f.srv.endpoint)
        for n in range(5000):
            if stop.is_set():
                return
            try:
                event = {"op": "echo", "k": k, "n": n}
                resp = lam.invoke(FunctionName=name, Qualifier=version, Payload=json.dumps(event).encode())
                body = json.loads(resp["Payload"].read())
                ok = resp["StatusCode"] == 200 and "FunctionError" not in resp and body == event
            except Exception as e:  # noqa: BLE001 - every failure counts
                ok, body = False, repr(e)
            with lock:
                done[0] += 1
                if not ok:
                    failures.append(str(body))

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    try:
        # The capacity provider's instances should now boot another image.
        lam = h.make_client(f.srv.endpoint)
        lam.tag_resource(Resource=f.cp["CapacityProviderArn"], Tags={"fleetfn:ec2-image-id": f"resolve:ssm:{parameter}"})
        h.poll(lambda: _live(f), lambda live: len(live) == 3 and all(i["ImageId"] == new_image for i in live),
               "three instances of the new image and none of the old", timeout=150)
        h.poll(lambda: _ready_zones(f, name), lambda z: z == sorted(f.subnets),
               "three Ready environments, one per subnet", timeout=30)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not failures, (len(failures), failures[:5])
    assert done[0] > 50, done
    assert not old & {i["InstanceId"] for i in _live(f)}
    # One at a time: never more than one instance of the old image retiring (four live at most).
    log = f.srv.logs(2000)
    assert log.count("replacing an instance") == 3, log[-4000:]
