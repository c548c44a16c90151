"""Shared fixtures: real pebble and certbot on loopback, and the network guard."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from acmeenv import Certbot, Pebble


@pytest.fixture(scope="session")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    if not shutil.which("pebble") and not Path("/usr/bin/pebble").exists():
        pytest.fail("pebble is not installed: run ./test.sh, which installs it")
    with Pebble(tmp_path_factory.mktemp("pebble")) as server:
        yield server


@pytest.fixture
def certbot(pebble: Pebble, tmp_path: Path) -> Certbot:
    return Certbot(pebble, tmp_path / "certbot")
