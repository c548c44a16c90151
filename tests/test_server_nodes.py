"""Several ``certhook serve`` processes on one database (issue 12): leases and the outbox.

Three real server processes share one database (SQLite in WAL mode, or
PostgreSQL: the ``db_url`` fixture gives each in turn). Clients submit to all
three; the targets are real TLS endpoints on loopback (one server, one name
per target, told apart by SNI), so a probe counted is a handshake that
happened. Each test is bounded (about 15 to 30 s on two cores).
"""

from __future__ import annotations

import re
import signal
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trustme
from server_helpers import (
    LineClient,
    ServeProcess,
    ThreadedTlsServer,
    WebhookReceiver,
    add_line,
    count,
    http,
    new_db,
    wait_until,
)

from certhook.server import store

pytestmark = pytest.mark.slow

NODES = 3
TARGETS = 300
SUBMISSIONS = 3000
LEASE = 6.0  # seconds: the tests' lease, short so that a takeover happens within the test


class SniTlsServer(ThreadedTlsServer):
    """A TLS server on loopback counting handshakes per SNI name, optionally slow to answer."""

    def __init__(self, context: ssl.SSLContext, delay: float = 0.0) -> None:
        self.names: Counter[str] = Counter()
        self.delay = delay
        context.sni_callback = self._sni
        super().__init__(context)

    def _sni(self, sock: Any, name: str | None, context: ssl.SSLContext) -> None:
        with self._lock:
            self.names[name or ""] += 1

    def _serve(self, conn: Any) -> None:
        if self.delay:
            time.sleep(self.delay)  # a probe in flight for a while: a kill lands mid-probe
        super()._serve(conn)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> str:
    """The shared database on each store (conftest's backend): a SQLite file (WAL lets
    processes share it), or a PostgreSQL database."""
    db, _ = new_db(tmp_path)
    return db


@pytest.fixture
def ca(tmp_path: Path) -> Iterator[tuple[trustme.CA, Path]]:
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    yield authority, path


def _names(n: int) -> list[str]:
    return [f"t{i}.nodes.test" for i in range(n)]


def _audit(ca_file: Path, names: list[str], **keys: Any) -> str:
    base = {"allow_networks": "127.0.0.0/8", "interval": "6h", "jitter": "0",
            "retry_interval": "1h", "first_probe_delay": "1h", "concurrency": "2",
            "lease": f"{LEASE:g}s", "resolve": ", ".join(f"{n}=127.0.0.1" for n in names),
            "ca_file": str(ca_file)}
    base.update({k: str(v) for k, v in keys.items()})
    return "".join(f"{k} = {v}\n" for k, v in base.items())


def _start(tmp_path: Path, db: str, audit: str, extra: str = "") -> list[ServeProcess]:
    nodes: list[ServeProcess] = []
    try:
        for i in range(NODES):
            home = tmp_path / f"node{i}"
            home.mkdir()
            nodes.append(ServeProcess(home, db, audit, extra))
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def _metric(node: ServeProcess, key: str, name: str) -> tuple[float, str]:
    """The sum of ``name``'s samples in a node's /metrics, and its node name."""
    status, text = http("GET", f"{node.base}/metrics", key=key)
    assert status == 200, text
    total = sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$",
                                                         text, re.M))
    found = re.search(r'^certhook_node_info\{node="([^"]*)"\} 1$', text, re.M)
    assert found, "no certhook_node_info"
    return total, found.group(1)


def _submit(node: ServeProcess, key: str, lines: list[tuple[str, str]], port: int,
            window: int = 32) -> list[str]:
    """Submit (id, domain) pairs over one connection, ``window`` at a time in flight;
    the ids answered ok."""
    client = LineClient(node.line_address, timeout=60)
    acked: list[str] = []
    try:
        for start in range(0, len(lines), window):
            chunk = lines[start:start + window]
            client.send(b"".join(add_line(key, domain, port=port, id=cid)
                                 for cid, domain in chunk))
            for cid, _ in chunk:
                answer = client.line()
                assert answer.startswith(b"ok"), answer
                acked.append(cid)
    finally:
        client.close()
    return acked


def _alice(db: str) -> str:
    opened = store.open_store(db)
    try:
        return opened.add_account("alice")
    finally:
        opened.close()


def _endpoint(authority: trustme.CA, delay: float = 0.0, **validity: Any) -> SniTlsServer:
    """One TLS server for every target name (``*.nodes.test``), told apart by SNI."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("*.nodes.test", **validity).configure_cert(context)
    return SniTlsServer(context, delay)


def _probed(db: str) -> list[store.Target]:
    opened = store.open_store(db, create=False)
    try:
        return [t for t in opened.list_targets(None) if t.last_probe is not None]
    finally:
        opened.close()


def test_three_nodes_store_each_submission_once_and_audit_each_target_once(
    tmp_path: Path, db_url: str, ca: tuple[trustme.CA, Path]
) -> None:
    authority, ca_file = ca
    key = _alice(db_url)
    tls = _endpoint(authority)
    names = _names(TARGETS)
    nodes = _start(tmp_path, db_url, _audit(ca_file, names))
    try:
        # 3,000 submissions (ten per name), spread over the three nodes, two clients each
        work = [(f"sub-{i}", names[i % TARGETS]) for i in range(SUBMISSIONS)]
        shares = [(nodes[i % NODES], work[i::2 * NODES]) for i in range(2 * NODES)]
        # and a tenth sent again to another node (a client retrying elsewhere): same ids
        again = [(nodes[(i + 1) % NODES], work[i::2 * NODES][:50]) for i in range(2 * NODES)]
        with ThreadPoolExecutor(4 * NODES) as pool:
            acked = [cid for done in pool.map(lambda s: _submit(s[0], key, s[1], tls.port),
                                              shares + again) for cid in done]
        assert len(acked) == SUBMISSIONS + 300
        assert count(db_url, "submissions") == SUBMISSIONS
        assert sorted(s.client_id for s in store.open_store(db_url).submissions()) == sorted(
            cid for cid, _ in work)
        assert count(db_url, "targets") == TARGETS
        assert tls.names == Counter()  # first_probe_delay: nothing probed yet

        # all 300 due at once: the three nodes audit them, each exactly once
        code, out, err = nodes[0].cli("recheck", "--all")
        assert code == 0, (out, err)
        wait_until(lambda: len(_probed(db_url)) == TARGETS, timeout=120,
                   what="every target probed")
        time.sleep(3.0)  # a second probe of any target would show by now (POLL is 2 s)
        assert tls.names == Counter({name: 1 for name in names})
        assert count(db_url, "results") == TARGETS
        assert {t.state for t in _probed(db_url)} == {"ok"}
        probes = [_metric(node, key, "certhook_probes_total") for node in nodes]
        assert sum(n for n, _ in probes) == TARGETS, probes
        assert len({name for _, name in probes}) == NODES  # three distinct node names
        assert sum(1 for n, _ in probes if n > 0) >= 2, probes  # the work was shared
    finally:
        for node in nodes:
            node.stop()
        tls.close()


def test_a_node_killed_mid_audit_loses_its_targets_to_the_others(
    tmp_path: Path, db_url: str, ca: tuple[trustme.CA, Path]
) -> None:
    authority, ca_file = ca
    key = _alice(db_url)
    # A 90-day certificate with a day left: every probe finds it critical at once and
    # queues one notice per target for the webhook. Probes take 0.4 s each (the server
    # waits before its handshake): several are in flight when the node dies.
    now = datetime.now(timezone.utc)
    tls = _endpoint(authority, 0.4, not_before=now - timedelta(days=89),
                    not_after=now + timedelta(days=1))
    webhook = WebhookReceiver()
    names = _names(TARGETS)
    # The group window outlasts the time from the first probe to the kill: no delivery
    # can be under way when the node dies (a death between a POST and its "sent" is the
    # one resend the outbox allows; tests/test_store_interface.py shows it).
    notify = (f"[notify]\ngroup_window = 4s\nbackoff = 1s\nrate_limit = off\n"
              f"[account alice]\nwebhook = {webhook.url}\n")
    nodes = _start(tmp_path, db_url, _audit(ca_file, names, concurrency=8), notify)
    stop_submitting = threading.Event()
    acked: list[str] = []
    try:
        _submit(nodes[1], key, [(f"t-{n}", n) for n in names], tls.port)

        def keep_submitting() -> None:  # to the node about to die, until it dies
            i = 0
            try:
                client = LineClient(nodes[0].line_address, timeout=10)
                while not stop_submitting.is_set():
                    cid = f"late-{i}"
                    if client.ask(add_line(key, f"x{i}.late.test", port=tls.port,
                                           id=cid)).startswith(b"ok"):
                        acked.append(cid)
                    i += 1
            except OSError:
                pass  # killed: whatever was answered ok must be stored

        code, out, err = nodes[2].cli("recheck", "--all")
        assert code == 0, (out, err)
        started = time.time()
        # after the recheck: the late names (not on loopback) are never due in the test
        submitter = threading.Thread(target=keep_submitting)
        submitter.start()
        # kill -9 node 0 while it holds probes in flight
        wait_until(lambda: _metric(nodes[0], key, "certhook_probes_in_flight")[0] >= 5,
                   timeout=30, what="node 0 probing")
        nodes[0].proc.send_signal(signal.SIGKILL)
        nodes[0].proc.wait(10)
        killed = time.time()
        stop_submitting.set()
        submitter.join(15)
        assert acked, "no submission reached node 0 before the kill"

        # every target is still audited: the dead node's leases pass to the others
        wait_until(lambda: len(_probed(db_url)) == TARGETS, timeout=120,
                   what="every target probed after the kill")
        done = time.time()
        last = max(t.last_probe or 0.0 for t in _probed(db_url))
        # within the lease plus a poll and a probe or two of the kill; the failure this
        # catches is "never" (or the next interval, 6 h later)
        assert last - killed < LEASE + 30, (last - killed, done - started)
        retaken = [n for n, c in tls.names.items() if c > 1]
        assert retaken, "node 0 held no probe in flight: the kill proved nothing"
        assert all(c <= 2 for c in tls.names.values()), Counter(tls.names.values())

        # no acknowledged submission lost
        stored = {s.client_id for s in store.open_store(db_url).submissions()}
        assert set(acked) <= stored

        # one notice per target, each delivered exactly once (across digests)
        def delivered() -> Counter[str]:
            seen: Counter[str] = Counter()
            for body in list(webhook.received):
                for notice in body.get("notices", body.get("events", [])):
                    seen[notice["domain"]] += 1
            return seen

        wait_until(lambda: len(delivered()) == TARGETS, timeout=60,
                   what="every notice delivered")
        time.sleep(3.0)  # a second delivery of any would show by now
        twice = {d: c for d, c in delivered().items() if c != 1}
        assert twice == {}, twice
        assert count(db_url, "notifications", sent=lambda v: v is None) == 0
    finally:
        stop_submitting.set()
        for node in nodes:
            node.stop()
        tls.close()
        webhook.close()
