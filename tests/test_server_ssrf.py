"""The SSRF guard: what the server refuses to connect to, checked where it connects.

Loopback is tested end to end (a listener on 127.0.0.1 / ::1 must see no
connection). Private, link-local and metadata ranges are tested at the
decision point with ``connect`` replaced: any attempt beyond loopback is
recorded and fails, so no test sends a packet off this machine.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ssrf_helpers
from server_helpers import (
    CountingListener,
    LineClient,
    add_line,
    config,
    new_db,
    resolve_names,
    running,
    targets,
    wait_until,
)

from certhook.probe import ProbeOptions, Target, probe
from certhook.server.ssrf import forbidden_reason, make_guard

no_packets = ssrf_helpers.no_packets  # the fixture: connect replaced, loopback only

REFUSED = [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("172.31.255.255", "private"),
    ("192.168.1.1", "private"), ("fc00::1", "private"), ("fd12:3456::1", "private"),
    ("100.64.0.1", "CGNAT"), ("100.127.255.254", "CGNAT"),
    ("169.254.169.254", "link-local"), ("169.254.0.1", "link-local"), ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"), ("fd00:ec2::254", "metadata"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("192.0.2.1", "reserved"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"), ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("not-an-ip", "not an IP"),
]
ALLOWED = ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_guard_refuses(address: str, why: str) -> None:
    reason = forbidden_reason(address)
    assert reason is not None and why in reason
    assert make_guard()(address) is False


@pytest.mark.parametrize("address", ALLOWED)
def test_guard_allows_global(address: str) -> None:
    assert forbidden_reason(address) is None and make_guard()(address)


def test_allow_networks() -> None:
    allow = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    guard = make_guard(allow)
    assert guard("127.0.0.1") and guard("::1") and guard("::ffff:127.0.0.1")
    assert not guard("10.0.0.1") and not guard("169.254.169.254")


@pytest.fixture
def listeners() -> Iterator[tuple[CountingListener, CountingListener]]:
    v4, v6 = CountingListener("127.0.0.1"), CountingListener("::1")
    yield v4, v6
    v4.close()
    v6.close()


def _submit_loopback(srv: Any, key: str, v4: CountingListener, v6: CountingListener) -> None:
    client = LineClient(srv.line_address)
    assert client.ask(add_line(key, "127.0.0.1", "loop.test", port=v4.port)).startswith(b"ok")
    assert client.ask(add_line(key, "::1", "loop6.test", port=v6.port)).startswith(b"ok")


def test_loopback_is_stored_but_never_probed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    listeners: tuple[CountingListener, CountingListener],
) -> None:
    v4, v6 = listeners
    looked = resolve_names(monkeypatch, {"loop.test": "127.0.0.1", "loop6.test": "::1"})
    db, keys = new_db(tmp_path, "alice")
    with running(config(db, probe_timeout=2.0)) as srv:  # the real probe
        _submit_loopback(srv, keys["alice"], v4, v6)
        wait_until(lambda: len(targets(db)) == 4 and all(t["last_probe"] for t in targets(db)),
                   what="every target audited")
        time.sleep(0.3)
    assert v4.accepted == 0 and v6.accepted == 0
    assert "loop.test" in looked and "loop6.test" in looked  # resolved, then refused
    for t in targets(db):
        assert t["status"] == "unknown"
        assert "loopback" in t["reasons"] or "not allowed" in t["reasons"], t


def test_loopback_is_probed_when_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    listeners: tuple[CountingListener, CountingListener],
) -> None:
    v4, v6 = listeners
    resolve_names(monkeypatch, {"loop.test": "127.0.0.1", "loop6.test": "::1"})
    db, keys = new_db(tmp_path, "alice")
    allow = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    with running(config(db, allow_networks=allow, probe_timeout=2.0)) as srv:
        _submit_loopback(srv, keys["alice"], v4, v6)
        wait_until(lambda: v4.accepted >= 2 and v6.accepted >= 2, what="probes of loopback")


PRIVATE_NAMES = {
    "intranet.test": "10.1.2.3", "router.test": "192.168.0.1", "docker.test": "172.17.0.1",
    "metadata.test": "169.254.169.254", "metadata6.test": "fd00:ec2::254",
    "cgnat.test": "100.64.1.1", "mapped.test": "::ffff:10.0.0.1", "ll6.test": "fe80::1",
    "ula.test": "fd00::1", "mcast.test": "224.0.0.251",
}


@pytest.mark.parametrize("name", sorted(PRIVATE_NAMES))
def test_probe_refuses_private_addresses_before_connecting(
    name: str, monkeypatch: pytest.MonkeyPatch, no_packets: list[Any]
) -> None:
    resolve_names(monkeypatch, PRIVATE_NAMES)
    result = probe(Target(name, 443), ProbeOptions(timeout=2.0, allow_address=make_guard()))
    assert result.status == "unknown" and "not allowed" in (result.error or "")
    assert no_packets == []


def test_connect_replacement_is_effective(monkeypatch: pytest.MonkeyPatch,
                                          no_packets: list[Any]) -> None:
    # The control: with 10/8 allowed the probe does try to connect, and the
    # replaced connect records the attempt (and refuses it).
    resolve_names(monkeypatch, PRIVATE_NAMES)
    guard = make_guard([ipaddress.ip_network("10.0.0.0/8")])
    result = probe(Target("intranet.test", 443), ProbeOptions(timeout=2.0, allow_address=guard))
    assert result.status == "unknown" and [a[0] for a in no_packets] == ["10.1.2.3"]


def test_server_never_connects_to_private_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_packets: list[Any]
) -> None:
    resolve_names(monkeypatch, PRIVATE_NAMES)
    db, keys = new_db(tmp_path, "alice")
    domains = [*sorted(PRIVATE_NAMES), "10.0.0.1", "169.254.169.254", "fd00:ec2::254",
               "100.100.100.200"]
    with running(config(db, probe_timeout=2.0)) as srv:
        assert srv.line_address
        client = LineClient(srv.line_address)
        assert client.ask(add_line(keys["alice"], *domains, port=[443, 25])).startswith(b"ok")
        wait_until(lambda: len(targets(db)) == 2 * len(domains)
                   and all(t["last_probe"] for t in targets(db)), what="all audited")
    assert no_packets == []
    assert all(t["status"] == "unknown" for t in targets(db))
