"""fleetfn's own client commands (a package, so its conftest and test_cli do not shadow
tests/api's `conftest` and `test_cli` modules)."""
