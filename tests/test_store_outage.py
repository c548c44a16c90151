"""PostgreSQL stopped and started under load: no false ``ok``, nothing lost, nothing twice.

Clients submit on the line protocol as the reporting client does: each keeps
what was not acknowledged (its spool) and sends it again, with the same id,
until the server says ``ok``. While the cluster (tests/pg.py) is down, every
request sent gets ``error unavailable``; the auditor records nothing and
logs the outage once; when the cluster is back every submission is stored,
exactly once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Callable

import pytest
from server_helpers import (
    FakeProbe,
    LineClient,
    add_line,
    config,
    connect_db,
    running,
    wait_until,
)

from certhook.server import store

if TYPE_CHECKING:
    from pg import Cluster

CLIENTS = 4
PER_CLIENT = 60


class _Client(threading.Thread):
    """A client with a spool: each submission is sent until it is acknowledged."""

    def __init__(self, n: int, address: tuple[str, int], key: str) -> None:
        super().__init__(daemon=True)
        self.address, self.key = address, key
        self.spool = [f"c{n}-{i}" for i in range(PER_CLIENT)]
        self.acked: list[str] = []
        self.answers: list[tuple[float, str, bytes]] = []  # (sent at, id, answer)
        self.stop = threading.Event()

    def run(self) -> None:
        client = LineClient(self.address)
        try:
            while self.spool and not self.stop.is_set():
                sub = self.spool[0]
                sent = time.monotonic()
                answer = client.ask(add_line(self.key, f"{sub}.example", id=sub))
                self.answers.append((sent, sub, answer))
                if answer.startswith(b"ok"):
                    self.acked.append(self.spool.pop(0))
                else:
                    time.sleep(0.05)  # the client's retry later
                time.sleep(0.01)
        finally:
            client.close()


def test_postgresql_stopped_and_started_under_load(
        pg_cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    db = pg_cluster.create_database()
    opened = store.open_store(db)
    key = opened.add_account("alice")
    opened.close()
    probe = FakeProbe()
    caplog.set_level(logging.WARNING, logger="certhook")
    with running(config(db, first_probe_delay=0.0), probe_fn=probe) as srv:
        assert srv.line_address
        clients = [_Client(n, srv.line_address, key) for n in range(CLIENTS)]
        for c in clients:
            c.start()
        try:
            wait_until(lambda: sum(len(c.acked) for c in clients) >= CLIENTS * 5,
                       what="submissions before the outage")
            pg_cluster.stop()
            down, down_wall = time.monotonic(), time.time()
            wait_until(lambda: all(any(sent > down for sent, _, _ in c.answers)
                                   for c in clients), what="answers during the outage")
            # over HTTPS/HTTP too: 503, and when to try again
            assert srv.http_address
            host, port = srv.http_address[:2]
            request = urllib.request.Request(
                f"http://{host}:{port}/api/v1/submissions", method="POST",
                data=json.dumps({"domain": "http.example", "id": "h-1"}).encode(),
                headers={"Authorization": f"Bearer {key}",
                         "Content-Type": "application/json"})
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with pytest.raises(urllib.error.HTTPError) as caught:
                opener.open(request, timeout=15)
            assert caught.value.code == 503 and caught.value.headers["Retry-After"] == "10"
            time.sleep(1.0)
            up, up_wall = time.monotonic(), time.time()
            pg_cluster.start()
            wait_until(lambda: not any(c.spool for c in clients), timeout=60,
                       what="every spool delivered")
        finally:
            for c in clients:
                c.stop.set()
                c.join(20)
            if not pg_cluster.running:
                pg_cluster.start()
        during = [(sub, answer) for c in clients for sent, sub, answer in c.answers
                  if down < sent < up]
        assert during, "no request was sent while the database was down"
        assert all(answer.startswith(b"error unavailable") for _, answer in during), [
            a for a in during if not a[1].startswith(b"error unavailable")][:5]
        wait_until(lambda: len(probe.calls) >= CLIENTS * PER_CLIENT, timeout=60,
                   what="every target probed")
    sent = {f"c{n}-{i}" for n in range(CLIENTS) for i in range(PER_CLIENT)}
    acked = [sub for c in clients for sub in c.acked]
    assert sorted(acked) == sorted(sent)
    with connect_db(db) as raw:
        stored = [r[0] for r in raw.execute("SELECT client_id FROM submissions")]
        # the auditor recorded nothing while the database was down
        assert raw.execute("SELECT count(*) FROM results WHERE time > ? AND time < ?",
                           (down_wall, up_wall)).fetchone()[0] == 0
    assert sorted(stored) == sorted(sent)  # every one, none twice
    # the outage was logged once per component, without a traceback
    paused = [r for r in caplog.records if "database is unavailable" in r.getMessage()]
    assert paused and all(r.exc_info is None for r in paused)
    assert len([r for r in paused if r.getMessage().startswith("writer:")]) == 1
    assert not [r for r in caplog.records if r.exc_info is not None]
    assert [r for r in caplog.records if "resumed" in r.getMessage()]


def test_a_stopping_node_gives_back_its_leases_over_a_dropped_connection(
        caplog: pytest.LogCaptureFixture) -> None:
    """The notifier and the auditor give back their leases as they stop. A connection the
    database dropped while it was restarting fails once (the next call reconnects): that is
    retried, not a traceback; a database still down is one line; other errors are logged."""
    from certhook.errors import StoreUnavailable
    from certhook.server.outage import release_leases

    log = logging.getLogger("certhook.test")
    calls: list[int] = []

    def flaky(failures: int, error: Exception) -> Callable[[], None]:
        def release() -> None:
            calls.append(1)
            if len(calls) <= failures:
                raise error
        return release

    down = StoreUnavailable("db = postgresql://certhook:***@127.0.0.1:1/x: unavailable")
    with caplog.at_level(logging.WARNING, "certhook.test"):
        release_leases("notifier", flaky(1, down), log)  # a dropped connection, then back
        assert len(calls) == 2 and not caplog.records
        calls.clear()
        release_leases("notifier", flaky(5, down), log)  # still down
        assert len(calls) == 2 and len(caplog.records) == 1
        assert caplog.records[0].exc_info is None
        assert "leases not given back" in caplog.records[0].getMessage()
        assert "they end with their lease time" in caplog.records[0].getMessage()
        caplog.clear()
        calls.clear()
        release_leases("auditor", flaky(5, RuntimeError("bug")), log)  # not an outage
        assert len(calls) == 1 and caplog.records[0].exc_info is not None
