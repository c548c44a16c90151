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

from acmeenv import Certbot, Pebble

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
