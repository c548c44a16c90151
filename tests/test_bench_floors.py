"""The benchmarks' floors run the store's own statements: a schema change must not break
them silently. Each floor runs for a fraction of a second here (what it measures is in
``bench/``, not asserted): every submission it wrote is stored, and its targets too."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from pg import Cluster

from certhook.server.store.sqlite import connect

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_sqlite_floor_writes_what_the_server_writes(tmp_path: Path) -> None:
    floor = _bench("server").bench_floor(tmp_path, 0.2, 8, 5, "smoke")
    conn = connect(str(tmp_path / "floor-smoke.db"), create=False)
    try:
        stored = conn.execute("SELECT count(*) FROM submissions").fetchone()[0]
        assert stored > 0 and stored % 8 == 0  # whole batches of 8, each one commit
        assert floor["batch"] == 8 and floor["rate"] > 0
        assert conn.execute("SELECT count(*) FROM targets").fetchone()[0] == 5
    finally:
        conn.close()


def test_the_postgresql_floor_writes_what_the_server_writes(pg_cluster: Cluster) -> None:
    url = pg_cluster.create_database()
    floor = _bench("postgres").bench_floor(url, 0.2, 8, 5)
    assert floor["rate"] > 0
    from certhook.server import store

    opened = store.open_store(url, create=False)
    try:
        assert len(opened.submissions()) > 0 and len(opened.submissions()) % 8 == 0
        assert len(opened.list_targets(None)) == 5
    finally:
        opened.close()
