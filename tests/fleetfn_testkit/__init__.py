"""The black-box suites' shared testkit (tests/conftest.py puts tests/ on the path).

- `server`: the `fleetfn serve` process (binary lookup, free ports, readiness, logs, stop) and a
  factory of extra servers.
- `api`: keys, boto3 clients, SigV4, unique names, capacity providers, zips, waiters.
- `dataplane`: LMI functions from tests/dataplane/functions, publishing, invokes, environments.
- `capacity`: the status document, bounded load generators, an instance's agent process.
- `resources`: capacity providers and functions one test makes and deletes.
- `postgres`: the suites' store (FLEETFN_TEST_STORE=postgres: a throwaway PostgreSQL cluster per
  session, a database per data dir).
- `prereq`: tests that need root or a host tool, the opt-out (FLEETFN_TEST_OPT_OUT) and the
  strict mode (FLEETFN_TEST_STRICT=1) that fails a session with a skip nobody opted out of.

Suite conftests keep only what is their own (their server's flags, their fixtures).
"""
