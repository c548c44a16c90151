"""Connecting: deadlines against hostile peers, addresses, IPv6, the SSRF hook, many targets."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from probe_helpers import CA, DAY, NOW, Server, serve, write

from certhook.probe import ProbeOptions, ProbeResult, Target, probe, probe_many


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[CA, str]:
    root = CA()
    return root, write(tmp_path_factory.mktemp("ca") / "root.pem", root.pem)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("mode", "timeout", "error"), [
    ("silent", 1.0, "timed out in the TLS handshake with 127.0.0.1"),
    ("trickle", 1.0, "timed out in the TLS handshake with 127.0.0.1"),
    ("garbage", 5.0, "not TLS: does this port need --starttls?"),
    ("close", 5.0, "127.0.0.1 closed the connection during the TLS handshake"),
])
def test_hostile_peer_is_unknown_within_the_deadline(mode: str, timeout: float,
                                                     error: str) -> None:
    with Server(mode=mode, delay=0.2) as server:
        start = time.monotonic()
        result = probe(Target("127.0.0.1", server.port), ProbeOptions(timeout=timeout))
        took = time.monotonic() - start
    assert result.status == "unknown"
    assert result.error is not None and error in result.error
    assert took < timeout + 5  # a silent peer holds 30 s, a trickling one 40 s
    assert result.to_json()["days_left"] is None and result.leaf is None


def test_refused_connection_is_unknown() -> None:
    result = probe(Target("127.0.0.1", _closed_port()))
    assert (result.status, result.error) == ("unknown", "connection refused by 127.0.0.1")


def test_ipv6_literal(ca: tuple[CA, str]) -> None:
    root, ca_file = ca
    issued = root.issue("::1")
    with serve(issued, host="::1") as server:
        result = probe(Target("::1", server.port), ProbeOptions(ca_file=ca_file))
    assert result.status == "ok", result.reasons
    assert result.address == "::1" and result.name_ok is True
    assert result.target.label == f"[::1]:{server.port}"
    assert server.snis == [None]  # RFC 6066: no SNI for an address


def _fake_resolver(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]],
                   delay: float = 0.0) -> list[str]:
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append(host)
        if kwargs.get("flags", 0) & socket.AI_NUMERICHOST:
            return real(host, port, *args, **kwargs)  # an address: no lookup
        time.sleep(delay)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
             (ip, int(port), 0, 0) if ":" in ip else (ip, int(port)))
            for ip in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_name_is_resolved_and_sent_as_sni(monkeypatch: pytest.MonkeyPatch,
                                           ca: tuple[CA, str]) -> None:
    root, ca_file = ca
    issued = root.issue("www.example.localhost")
    with serve(issued) as server:
        _fake_resolver(monkeypatch, {"www.example.localhost": ["127.0.0.1"]})
        result = probe(Target("www.example.localhost", server.port),
                       ProbeOptions(ca_file=ca_file))
    assert result.status == "ok", result.reasons
    assert server.snis == ["www.example.localhost"]


def test_next_address_after_a_dead_one(monkeypatch: pytest.MonkeyPatch,
                                       ca: tuple[CA, str]) -> None:
    root, ca_file = ca
    issued = root.issue("www.example.localhost")
    with serve(issued) as server:
        # ::1 has nothing on that port: refused, then 127.0.0.1 answers.
        _fake_resolver(monkeypatch, {"www.example.localhost": ["::1", "127.0.0.1"]})
        result = probe(Target("www.example.localhost", server.port),
                       ProbeOptions(ca_file=ca_file, all_addresses=False))
    assert (result.status, result.address) == ("ok", "127.0.0.1")


def test_every_address_a_dead_one_makes_the_target_unknown(
        monkeypatch: pytest.MonkeyPatch, ca: tuple[CA, str]) -> None:
    root, ca_file = ca
    issued = root.issue("www.example.localhost")
    with serve(issued) as server:
        _fake_resolver(monkeypatch, {"www.example.localhost": ["::1", "127.0.0.1"]})
        result = probe(Target("www.example.localhost", server.port),
                       ProbeOptions(ca_file=ca_file))
    assert result.status == "unknown" and result.error is None
    assert result.reasons == ("connection refused by ::1 (on ::1: 1 of 2 addresses)",)
    assert [(row.address, row.status, row.fingerprint) for row in result.addresses] == [
        ("::1", "unknown", None), ("127.0.0.1", "ok", issued.fingerprint)]
    assert result.leaf is not None  # what 127.0.0.1 served is still reported


def test_unresolvable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_resolver(monkeypatch, {})
    result = probe(Target("nowhere.localhost", 443))
    assert result.status == "unknown"
    assert result.error == "cannot resolve nowhere.localhost: name or service not known"


def test_stuck_resolver_is_abandoned_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_resolver(monkeypatch, {"slow.localhost": ["127.0.0.1"]}, delay=15)
    start = time.monotonic()
    result = probe(Target("slow.localhost", 443), ProbeOptions(timeout=0.5))
    assert time.monotonic() - start < 5  # the resolver takes 15 s
    assert (result.status, result.error) == ("unknown", "timed out resolving slow.localhost")


def test_allow_address_is_asked_before_connecting(monkeypatch: pytest.MonkeyPatch,
                                                  ca: tuple[CA, str]) -> None:
    root, ca_file = ca
    issued = root.issue("www.example.localhost")
    asked: list[str] = []

    def allow(ip: str) -> bool:
        asked.append(ip)
        return ip != "::1"

    with serve(issued) as server:
        _fake_resolver(monkeypatch, {"www.example.localhost": ["::1", "127.0.0.1"]})
        result = probe(Target("www.example.localhost", server.port),
                       ProbeOptions(ca_file=ca_file, allow_address=allow))
    assert asked[:2] == ["::1", "127.0.0.1"] and set(asked) == {"::1", "127.0.0.1"}
    assert (result.status, result.address) == ("ok", "127.0.0.1")
    assert result.notes == ("not probed: ::1 (address not allowed)",)
    assert [row.address for row in result.addresses] == ["127.0.0.1"]


def test_all_addresses_refused_means_no_connection() -> None:
    with Server(mode="silent") as server:
        result = probe(Target("127.0.0.1", server.port),
                       ProbeOptions(allow_address=lambda ip: False))
        time.sleep(0.1)
    assert (result.status, result.error) == ("unknown", "address not allowed: 127.0.0.1")
    assert server.connections == 0


def test_second_handshake_goes_to_the_same_address(ca: tuple[CA, str]) -> None:
    root, _ = ca
    issued = root.issue("127.0.0.1")
    asked: list[str] = []

    def allow(ip: str) -> bool:
        asked.append(ip)
        return True

    with serve(issued) as server:  # not trusted by the system roots: two handshakes
        result = probe(Target("127.0.0.1", server.port), ProbeOptions(allow_address=allow))
    assert result.trusted is False and asked == ["127.0.0.1", "127.0.0.1"]


def test_many_targets_in_input_order_and_in_parallel(ca: tuple[CA, str]) -> None:
    root, ca_file = ca
    # 90-day certificates (the thresholds are by lifetime): 3, 15, 40 and 90 days left
    servers = [serve(root.issue("127.0.0.1", days=days, not_before=NOW - (90 - days) * DAY))
               for days in (3, 15, 40, 90)]
    silent = Server(mode="silent")
    for server in [*servers, silent]:
        server.__enter__()
    try:
        targets = [Target("127.0.0.1", s.port) for s in servers]
        targets.insert(2, Target("127.0.0.1", silent.port))
        seen: list[int] = []
        finished: list[Target] = []

        def progress(done: int, total: int, result: ProbeResult) -> None:
            seen.append(done)
            finished.append(result.target)

        results = probe_many(targets, ProbeOptions(ca_file=ca_file, timeout=2.0), concurrency=8,
                             progress=progress)
    finally:
        for server in [*servers, silent]:
            server.__exit__()
    assert [r.target for r in results] == targets
    assert [r.status for r in results] == ["critical", "warning", "unknown", "ok", "ok"]
    assert [r.days_left for r in results] == [3, 15, None, 40, 90]
    assert seen == [1, 2, 3, 4, 5]
    # In parallel: the targets after the silent one (3rd) were done while it
    # waited out its 2 s, far longer than a handshake on loopback takes.
    assert finished[-1] == targets[2]


def test_bad_ca_file_raises_before_probing(tmp_path: Path) -> None:
    from certhook.errors import LocalError

    with pytest.raises(LocalError, match="cannot load CA certificates"):
        probe_many([Target("127.0.0.1", 1)], ProbeOptions(ca_file=str(tmp_path / "none.pem")))


def test_threads_do_not_leak() -> None:
    before = threading.active_count()
    probe_many([Target("127.0.0.1", _closed_port()) for _ in range(5)], concurrency=5)
    assert threading.active_count() <= before


def test_starttls_smtp_against_a_real_smtp_server(ca: tuple[CA, str], tmp_path: Path) -> None:
    import ssl

    from acmeenv import free_port
    from aiosmtpd.controller import Controller
    from probe_helpers import full_chain

    root, ca_file = ca
    issued = root.issue("mail.example.localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(write(tmp_path / "chain.pem", *full_chain(issued)),
                            write(tmp_path / "key.pem", issued.key_pem))
    port = free_port()
    controller = Controller(object(), hostname="127.0.0.1", port=port, tls_context=context)
    controller.start()
    try:
        target = Target("127.0.0.1", port, "smtp", "mail.example.localhost")
        trusted = probe(target, ProbeOptions(ca_file=ca_file, timeout=5))
        # Untrusted: the second, unverified handshake replays the dialogue.
        untrusted = probe(target, ProbeOptions(timeout=5))
        wrong = probe(Target("127.0.0.1", port, "imap"), ProbeOptions(timeout=2))
    finally:
        controller.stop()
    assert (trusted.status, trusted.name_ok, trusted.error) == ("ok", True, None)
    assert trusted.leaf is not None and trusted.leaf.subject_cn == "mail.example.localhost"
    assert untrusted.status == "critical" and untrusted.leaf == trusted.leaf
    assert wrong.status == "unknown" and wrong.error is not None and "imap" in wrong.error


def test_untrusted_name_is_resolved_once(monkeypatch: pytest.MonkeyPatch,
                                         ca: tuple[CA, str]) -> None:
    root, _ = ca
    issued = root.issue("www.example.localhost")
    allowed: list[str] = []

    def allow(ip: str) -> bool:
        allowed.append(ip)
        return True

    with serve(issued) as server:
        asked = _fake_resolver(monkeypatch, {"www.example.localhost": ["::1", "127.0.0.1"]})
        result = probe(Target("www.example.localhost", server.port),
                       ProbeOptions(allow_address=allow))  # system roots: untrusted
    assert (result.status, result.trusted, result.address) == ("critical", False, "127.0.0.1")
    # One lookup of the name, none of its addresses; each address once, the
    # second handshake to the address that answered (::1 refuses: nothing there).
    assert asked == ["www.example.localhost"]
    assert sorted(allowed) == ["127.0.0.1", "127.0.0.1", "::1"]
    assert server.connections == 2
