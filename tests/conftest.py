"""Shared fixtures: real pebble and certbot on loopback, and hypothesis's profiles."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

import server_helpers
from acmeenv import Certbot, Pebble
from pg import pg_cluster, pg_url  # noqa: F401  (fixtures, for every module)

# hypothesis profiles. No profile asserts on time: no deadline (hypothesis's
# 200 ms default is a wall-clock assertion) and no too_slow health check.
# A test's own @settings (max_examples, suppress_health_check) overrides the
# profile's value of that setting and inherits the rest: settings() objects
# are made after this file is read.
#
# ci: what ./test.sh runs when CI is set. The same examples on every run and
#   machine (derandomize), no example database (nothing carried over).
# dev: the default. Random examples; failures are saved in .hypothesis/ and
#   replayed first next time.
# fuzz: ./fuzz.sh, random seeds and many examples; see README "Testing".
_QUIET = [HealthCheck.too_slow]
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("dev", deadline=None, suppress_health_check=_QUIET)
settings.register_profile("fuzz", max_examples=2000, deadline=None, database=None,
                          suppress_health_check=_QUIET, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI")
                                                               else "dev"))


@pytest.fixture(scope="session")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    if not shutil.which("pebble") and not Path("/usr/bin/pebble").exists():
        pytest.fail("pebble is not installed: run ./test.sh, which installs it")
    with Pebble(tmp_path_factory.mktemp("pebble")) as server:
        yield server


@pytest.fixture
def certbot(pebble: Pebble, tmp_path: Path) -> Certbot:
    return Certbot(pebble, tmp_path / "certbot")


# -- the store: the server suite runs on SQLite and on PostgreSQL -------------------------

# The modules that run on both stores (server_helpers.new_db / fresh_db give each test a
# fresh database on its backend). A test that inspects the SQLite file itself says so with
# @pytest.mark.sqlite_only("why") and runs on SQLite only.
BOTH_STORES = frozenset({
    "test_server_addresses",
    "test_server_audit",
    "test_server_ca",
    "test_server_chain",
    "test_server_channels",
    "test_server_crash",
    "test_server_http",
    "test_server_keys",
    "test_server_line",
    "test_server_lost_answers",
    "test_server_loop",
    "test_server_metrics",
    "test_server_nodes",
    "test_server_vantages",
    "test_server_notify",
    "test_server_recheck",
    "test_server_report",
    "test_server_resolve",
    "test_server_ssrf",
    "test_server_store",
    "test_server_targets",
    "test_server_throttle",
    "test_server_tlsbio",
    "test_store_interface",
})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): runs on the SQLite store only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__ not in BOTH_STORES or "backend" not in metafunc.fixturenames:
        return
    only = metafunc.definition.get_closest_marker("sqlite_only")
    metafunc.parametrize("backend", ["sqlite"] if only else ["sqlite", "postgres"],
                         indirect=True)


@pytest.fixture(autouse=True)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The store this test runs on ("sqlite" unless its module is in BOTH_STORES)."""
    name = getattr(request, "param", "sqlite")
    if name == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        if not cluster.running:  # a test that stopped it and failed before starting it
            cluster.start()
        server_helpers.BACKEND.update(name=name, new_database=cluster.create_database)
    try:
        yield name
    finally:
        server_helpers.BACKEND.update(name="sqlite", new_database=None)
