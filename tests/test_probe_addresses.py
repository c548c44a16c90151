"""Every address behind a name (issue 10 item 5): three loopback addresses, three servers.

www.example.org is pinned (``--resolve``, ``ProbeOptions.resolve``) to
127.0.0.1, 127.0.0.2 and ::1, each a real TLS server on the same port with
its own certificate: no /etc/hosts, no resolver, no packet off loopback.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from probe_helpers import CA, NOW, Issued, Server, serve, write

from certhook.cli import main
from certhook.errors import ParseError
from certhook.probe import ProbeOptions, Target, probe
from certhook.probe.targets import parse_resolve

NAME = "www.example.org"
ADDRESSES = ("127.0.0.1", "127.0.0.2", "::1")


def _servers(stack: ExitStack, certs: list[Issued]) -> tuple[list[Server], int]:
    """One server per address, all on one port (retried if another test holds it)."""
    for _ in range(20):
        first = stack.enter_context(serve(certs[0], host=ADDRESSES[0]))
        try:
            rest = [stack.enter_context(serve(cert, host=host, port=first.port))
                    for cert, host in zip(certs[1:], ADDRESSES[1:])]
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return [first, *rest], first.port
    raise AssertionError("no port free on all three addresses")


@pytest.fixture(scope="module")
def root() -> CA:
    return CA("addresses test root")


@pytest.fixture
def ca_file(root: CA, tmp_path: Path) -> str:
    return write(tmp_path / "root.pem", root.pem)


@pytest.fixture
def three(root: CA) -> Iterator[tuple[list[Issued], list[Server], int]]:
    certs = [
        root.issue(NAME, days=80, fresh_key=True),  # renewed
        root.issue(NAME, days=80, fresh_key=True),  # renewed too, another key
        # the old one, 90 days long and about to expire
        root.issue(NAME, days=3, not_before=NOW - dt.timedelta(days=87)),
    ]
    with ExitStack() as stack:
        servers, port = _servers(stack, certs)
        yield certs, servers, port


def test_every_address_is_probed_and_the_worst_counts(
        three: tuple[list[Issued], list[Server], int], ca_file: str) -> None:
    certs, servers, port = three
    result = probe(Target(NAME, port), ProbeOptions(
        ca_file=ca_file, timeout=5, resolve={(NAME, port): ADDRESSES}))
    rows = [(row.address, row.status, row.fingerprint) for row in result.addresses]
    assert rows == [("127.0.0.1", "ok", certs[0].fingerprint),
                    ("127.0.0.2", "ok", certs[1].fingerprint),
                    ("::1", "critical", certs[2].fingerprint)]
    assert result.status == "critical"
    assert result.address == "::1" and result.days_left == 3
    # the expiry (and, 87 days into 90, renewal overdue), each saying where
    reason = next(r for r in result.reasons if r.startswith("certificate expires in 3 days"))
    assert all(r.endswith("(on ::1: 1 of 3 addresses)") for r in result.reasons)
    assert reason.endswith("(on ::1: 1 of 3 addresses)")
    assert "the 3 addresses serve 3 different certificates" in result.notes
    # each server saw the name as SNI, once
    assert [server.snis for server in servers] == [[NAME], [NAME], [NAME]]


def test_resolve_flag_json_rows(three: tuple[list[Issued], list[Server], int], ca_file: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    certs, _, port = three
    # two --resolve for one name and port add up
    code = main(["probe", f"{NAME}:{port}", "--resolve", f"{NAME}:{port}:127.0.0.1,127.0.0.2",
                 "--resolve", f"{NAME}:{port}:[::1]", "--ca-file", ca_file, "--format", "json"])
    (report,) = json.loads(capsys.readouterr().out)
    assert (code, report["status"], report["address"]) == (2, "critical", "::1")
    assert report["addresses"] == [
        {"address": "127.0.0.1", "status": "ok", "fingerprint": certs[0].fingerprint,
         "reasons": [], "error": None},
        {"address": "127.0.0.2", "status": "ok", "fingerprint": certs[1].fingerprint,
         "reasons": [], "error": None},
        {"address": "::1", "status": "critical", "fingerprint": certs[2].fingerprint,
         "reasons": report["addresses"][2]["reasons"], "error": None},
    ]
    assert report["addresses"][2]["reasons"][0].startswith("certificate expires in 3 days")


def test_resolve_any_port(three: tuple[list[Issued], list[Server], int], ca_file: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    certs, _, port = three
    code = main(["probe", f"{NAME}:{port}", "--resolve", f"{NAME}:*:127.0.0.2",
                 "--ca-file", ca_file, "--format", "json"])
    (report,) = json.loads(capsys.readouterr().out)
    assert (code, report["address"], report["fingerprint_sha256"]) == (
        0, "127.0.0.2", certs[1].fingerprint)


def test_one_address_flag_probes_the_first_only(
        three: tuple[list[Issued], list[Server], int], ca_file: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    certs, servers, port = three
    code = main(["probe", f"{NAME}:{port}", "--resolve", f"{NAME}:{port}:127.0.0.1,::1",
                 "--one-address", "--ca-file", ca_file, "--format", "json"])
    (report,) = json.loads(capsys.readouterr().out)
    assert (code, report["status"], report["address"]) == (0, "ok", "127.0.0.1")
    assert [row["fingerprint"] for row in report["addresses"]] == [certs[0].fingerprint]
    assert servers[2].connections == 0


def test_a_target_of_one_address_has_one_row(root: CA, ca_file: str) -> None:
    issued = root.issue("127.0.0.1")
    with serve(issued) as server:
        result = probe(Target("127.0.0.1", server.port), ProbeOptions(ca_file=ca_file))
    assert result.status == "ok", result.reasons
    assert [(row.address, row.status) for row in result.addresses] == [("127.0.0.1", "ok")]
    assert result.to_json()["addresses"][0]["fingerprint"] == issued.fingerprint


@pytest.mark.parametrize(("text", "expected"), [
    (f"{NAME}:443:127.0.0.1", ((NAME, 443), ("127.0.0.1",))),
    ("WWW.Example.ORG:*:[::1],127.0.0.2,0:0:0:0:0:0:0:1",
     ((NAME, 0), ("::1", "127.0.0.2"))),
])
def test_parse_resolve(text: str, expected: object) -> None:
    assert parse_resolve(text) == expected


@pytest.mark.parametrize("text", [NAME, f"{NAME}:443", f"{NAME}:443:", f"{NAME}:x:127.0.0.1",
                                  f"{NAME}:443:not-an-ip", ":443:127.0.0.1",
                                  f"{NAME}:443:127.0.0.1,"])
def test_parse_resolve_refuses(text: str) -> None:
    with pytest.raises(ParseError):
        parse_resolve(text)


def test_resolve_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["probe", NAME, "--resolve", f"{NAME}:443:nowhere"])
    assert info.value.code == 2
    assert "--resolve" in capsys.readouterr().err
