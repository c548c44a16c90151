"""Delivering: spool first, first server that says ok, each submission settled once."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from client_helpers import KEY, HttpServer, LineServer, closed_port

from certhook.client.config import ClientConfig, parse_servers
from certhook.client.spool import Spool
from certhook.client.submit import (
    Submission,
    build_requests,
    content_key,
    deliver,
    drop_delivered,
    new_id,
)
from certhook.client.transport import Deadline
from certhook.errors import ParseError
from certhook.protocol import MAX_LINE, Request

FP = "ab" * 32


def config(tmp_path: Path, *servers: str, key: str | None = KEY,
           ca_file: str | None = None) -> ClientConfig:
    return ClientConfig(servers=parse_servers(",".join(servers)), api_key=key,
                        spool_dir=str(tmp_path / "spool"), ca_file=ca_file)


def subs(n: int, event: str = "deployed") -> list[Submission]:
    return [Submission(r) for i in range(n) for r in build_requests(
        [f"d{i}.example.org"], event=event, lineage=f"d{i}.example.org", fingerprint=FP)]


@pytest.fixture
def server() -> Iterator[LineServer]:
    with LineServer() as srv:
        yield srv


def test_new_ids_are_random_hex() -> None:
    ids = {new_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_build_requests_normalises_and_leaves_443_out() -> None:
    [request] = build_requests(["WWW.Example.org.", "example.org"], event="deployed",
                               lineage="example.org", fingerprint=FP.upper(),
                               ports=[(443, "tls")])
    assert request.domains == ("www.example.org", "example.org")
    assert request.fingerprint == FP
    assert request.ports == () and request.apikey is None
    assert request.client == "certhook/0.1.0"
    [mapped] = build_requests(["mail.example.org"], event="deployed",
                              ports=[(443, "tls"), (25, "smtp")])
    assert (mapped.ports, mapped.protocols) == ((443, 25), ("tls", "smtp"))


def test_a_hundred_long_names_are_split_into_lines_that_fit() -> None:
    names = [f"host-{n:03d}-{'x' * 40}.example.org" for n in range(100)]
    requests = build_requests(names, event="deployed", lineage="big", fingerprint=FP,
                              key_length=len(KEY))
    assert len(requests) > 1
    assert [d for r in requests for d in r.domains] == names
    assert len({r.id for r in requests}) == len(requests)
    for r in requests:
        line = Request(**{**_fields(r), "apikey": KEY}).encode()
        assert len(line) <= MAX_LINE


def _fields(r: Request) -> dict[str, object]:
    names = ("verb", "domains", "apikey", "ports", "protocols", "fingerprint", "lineage",
             "event", "id", "client")
    return {name: getattr(r, name) for name in names}


@pytest.mark.parametrize("domains", [["bad domain.example"], ["a" * 300], ["ok.example", "é.x"]])
def test_bad_values_fail_here_not_at_the_server(domains: list[str]) -> None:
    with pytest.raises(ParseError):
        build_requests(domains, event="deployed", lineage="x")


def test_spool_goes_first_then_new(tmp_path: Path, server: LineServer) -> None:
    cfg = config(tmp_path, server.url)
    old = subs(2)
    Spool(cfg.spool_dir).add(old[0].request)
    Spool(cfg.spool_dir).add(old[1].request)
    new = subs(1)
    outcome = deliver(cfg, new, Deadline(5))
    assert outcome.ok and outcome.warning() is None
    assert server.ids == [old[0].request.id, old[1].request.id, new[0].request.id]
    assert server.requests[0].apikey == KEY
    assert Spool(cfg.spool_dir).names() == []


def test_down_then_up_delivers_once_with_the_same_ids(tmp_path: Path) -> None:
    port = closed_port()
    cfg = config(tmp_path, f"tcp://127.0.0.1:{port}")
    first = deliver(cfg, subs(2), Deadline(5))
    assert len(first.waiting) == 2
    warning = first.warning()
    assert warning is not None and "connection refused" in warning
    assert cfg.spool_dir in warning
    ids = [s.request.id for s in first.waiting]
    with LineServer(port=port) as server:
        again = deliver(cfg, [], Deadline(5))
        assert again.ok and [s.request.id for s in again.delivered] == ids
        deliver(cfg, [], Deadline(5))  # nothing left: nothing sent twice
    assert server.ids == ids


def test_the_first_server_that_says_ok_wins(tmp_path: Path) -> None:
    with LineServer("unavailable") as busy, HttpServer() as http:
        cfg = config(tmp_path, f"tcp://127.0.0.1:{closed_port()}", busy.url, http.url)
        outcome = deliver(cfg, subs(2), Deadline(5))
        assert outcome.ok
        assert len(busy.lines) == 2 and busy.requests == []
        assert [s.server for s in outcome.delivered] == [http.url, http.url]
        assert len(http.requests) == 2


def test_wrong_ca_falls_back_to_https(tmp_path: Path) -> None:
    ca, other = trustme.CA(), trustme.CA()
    wrong = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(wrong))
    right = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(right))
    # The TLS line server has a certificate from `ca`; the client trusts only `other`,
    # which also signed the HTTPS fallback's certificate.
    with LineServer(ca=ca) as tls, HttpServer(ca=other) as https:
        outcome = deliver(config(tmp_path, tls.url, https.url, ca_file=str(wrong)), subs(1),
                          Deadline(5))
        assert outcome.ok and tls.requests == [] and len(https.requests) == 1
        outcome = deliver(config(tmp_path, tls.url, ca_file=str(wrong)), subs(1), Deadline(5))
        assert not outcome.ok and "not trusted" in (outcome.warning() or "")


def test_syntax_errors_are_kept_in_rejected_not_retried(tmp_path: Path) -> None:
    with LineServer("syntax") as server:
        cfg = config(tmp_path, server.url)
        outcome = deliver(cfg, subs(1), Deadline(5))
    assert [s.state for s in outcome.submissions] == ["rejected"]
    warning = outcome.warning() or ""
    assert "refused submission" in warning and "rejected" in warning
    assert Spool(cfg.spool_dir).names() == []
    [kept] = os.listdir(Path(cfg.spool_dir) / "rejected")
    doc = json.loads((Path(cfg.spool_dir) / "rejected" / kept).read_text())
    assert doc["id"] == outcome.submissions[0].request.id
    assert "error syntax" in doc["last_error"]


@pytest.mark.parametrize("mode", ["auth", "unavailable", "silent", "garbage", "close"])
def test_everything_else_is_spooled(tmp_path: Path, mode: str) -> None:
    with LineServer(mode) as server:
        cfg = config(tmp_path, server.url)
        outcome = deliver(cfg, subs(2), Deadline(0.5))
    assert len(outcome.waiting) == 2
    assert len(Spool(cfg.spool_dir).names()) == 2
    assert KEY not in (outcome.warning() or "")


def test_a_hostile_server_echoing_the_key_is_redacted(tmp_path: Path) -> None:
    with LineServer("echo-key") as server:
        outcome = deliver(config(tmp_path, server.url), subs(1), Deadline(5))
    warning = outcome.warning() or ""
    assert "***" in warning and KEY not in warning
    [entry] = Spool(str(tmp_path / "spool")).pending()[0]
    assert KEY not in (entry.last_error or "")


@pytest.mark.parametrize(("servers", "key", "words"), [
    ((), KEY, "no audit server configured"),
    (("tcp://127.0.0.1:1",), None, "no API key configured"),
])
def test_missing_configuration_spools(tmp_path: Path, servers: tuple[str, ...],
                                      key: str | None, words: str) -> None:
    outcome = deliver(config(tmp_path, *servers, key=key), subs(1), Deadline(5))
    assert words in (outcome.warning() or "")
    assert len(Spool(str(tmp_path / "spool")).names()) == 1


def test_nothing_to_send_connects_nowhere(tmp_path: Path, server: LineServer) -> None:
    outcome = deliver(config(tmp_path, server.url), [], Deadline(5))
    assert outcome.ok and server.connections == 0


def test_a_busy_spool_lock_skips_the_spool_not_the_new(tmp_path: Path,
                                                       server: LineServer) -> None:
    cfg = config(tmp_path, server.url)
    spool = Spool(cfg.spool_dir)
    spool.add(subs(1)[0].request)
    holder = Spool(cfg.spool_dir)
    assert holder.lock()
    new = subs(1)
    outcome = deliver(cfg, new, Deadline(5))
    holder.unlock()
    assert outcome.busy
    assert server.ids == [new[0].request.id]
    assert len(spool.names()) == 1


def test_drop_delivered_skips_what_was_sent_or_spooled(tmp_path: Path,
                                                       server: LineServer) -> None:
    cfg = config(tmp_path, server.url)
    spool = Spool(cfg.spool_dir)
    first = subs(1)
    deliver(cfg, first, Deadline(5))
    again = subs(1)  # the same lineage and fingerprint, a new id: a second hook's view
    assert drop_delivered(spool, again) == []
    waiting = subs(2)[1:]
    spool.add(waiting[0].request)
    assert drop_delivered(spool, subs(2)) == []
    failed = subs(1, event="failed")
    assert drop_delivered(spool, failed) == failed  # failures carry no deployed key


@pytest.mark.parametrize("differs", ["ports", "protocols", "domains", "fingerprint", "lineage"])
def test_drop_delivered_compares_the_whole_content(tmp_path: Path, server: LineServer,
                                                   differs: str) -> None:
    # A spooled or delivered submission suppresses only one that says the
    # same thing: never one with other ports, protocols, domains, fingerprint.
    base: dict[str, Any] = {"domains": ["a.example.org"], "event": "deployed",
                            "lineage": "a.example.org", "fingerprint": FP,
                            "ports": [(20443, "tls")]}
    changed: dict[str, Any] = {
        "ports": {"ports": [(20443, "tls"), (25, "smtp")]},
        "protocols": {"ports": [(20443, "smtp")]},
        "domains": {"domains": ["a.example.org", "b.example.org"]},
        "fingerprint": {"fingerprint": "cd" * 32},
        "lineage": {"lineage": "b.example.org"},
    }[differs]

    def one(fields: dict[str, Any]) -> list[Submission]:
        return [Submission(r) for r in build_requests(**fields)]

    cfg = config(tmp_path, server.url)
    spool = Spool(cfg.spool_dir)
    spool.add(one(base)[0].request)
    assert drop_delivered(spool, one(base)) == []  # identical and waiting
    assert len(drop_delivered(spool, one({**base, **changed}))) == 1
    deliver(cfg, [], Deadline(5))
    assert spool.names() == []
    assert drop_delivered(spool, one(base)) == []  # identical and delivered
    assert len(drop_delivered(spool, one({**base, **changed}))) == 1


def test_two_failed_runs_are_two_submissions_and_order_does_not_matter(
        tmp_path: Path, server: LineServer) -> None:
    cfg = config(tmp_path, server.url)
    spool = Spool(cfg.spool_dir)
    [ab] = build_requests(["a.example.org", "b.example.org"], event="failed", lineage="a")
    [ba] = build_requests(["b.example.org", "a.example.org"], event="failed", lineage="a")
    assert content_key(ab) == content_key(ba)
    deliver(cfg, [Submission(ab, "failed a run-1")], Deadline(5))
    assert drop_delivered(spool, [Submission(ba, "failed a run-1")]) == []
    assert len(drop_delivered(spool, [Submission(ba, "failed a run-2")])) == 1
