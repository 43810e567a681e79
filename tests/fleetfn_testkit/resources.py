"""Capacity providers and functions one test makes and deletes at its end (capacity, metrics)."""

from __future__ import annotations

from . import dataplane as dp
from . import api as h


dp_client = dp.no_retry_client


class Resources:
    """Capacity providers and functions one test made; deleted at its end."""

    def __init__(self, lam):
        self.lam = lam
        self.cps: list[str] = []
        self.functions: list[str] = []

    def cp(self, **overrides) -> str:
        name = h.uniq("capcp")
        overrides.setdefault("VpcConfig", {"SubnetIds": list(dp.ZONES),
                                           "SecurityGroupIds": list(h.SECURITY_GROUPS)})
        h.create_active_cp(self.lam, name, **overrides)
        self.cps.append(name)
        return name

    def function(self, cp_name: str, runtime: str = "rust", **kwargs) -> str:
        name = dp.create_lmi_function(self.lam, h.cp_arn_for(cp_name), runtime, name=h.uniq("cap"), **kwargs)
        self.functions.append(name)
        return name

    def close(self):
        for name in self.functions:
            dp.delete_function_quietly(self.lam, name)
        for name in self.cps:
            try:
                h.delete_cp_when_free(self.lam, name)
            except BaseException as err:  # noqa: BLE001 - cleanup must not hide results
                print(f"could not delete capacity provider {name}: {err}")


