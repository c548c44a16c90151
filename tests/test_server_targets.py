"""``certhook targets`` and ``/api/v1/targets``: list, remove, mute, unmute; muted
targets are probed but not notified; stale failing targets are retired (issue 11.1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from server_helpers import FakeProbe, config, connect_db, fake_result, http, new_db, running

from certhook.cli import main
from certhook.errors import ParseError
from certhook.protocol import Request
from certhook.server.audit import Auditor
from certhook.server.committer import BatchWriter, Job, WaitSink
from certhook.server.config import AccountNotify
from certhook.server.targets import parse_until

DAY = 86400.0
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def _submit(db: str, key: str, *domains: str, ports: tuple[int, ...] = (443,)) -> None:
    writer = BatchWriter(db)
    try:
        job = Job(Request(domains=domains, ports=ports, apikey=key), "test", "peer", WaitSink())
        writer.write([job])
        assert job.response is not None and job.response.ok
    finally:
        writer.close()


def _raw_count(db: str, sql: str) -> int:
    """A look into the SQLite file itself: history the store no longer shows."""
    conn = connect_db(db)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def _rows(db: str) -> list[tuple[str, str, int, float | None]]:
    conn = connect_db(db)
    try:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            "SELECT account, domain, port, muted_until FROM targets ORDER BY account, domain,"
            " port")]
    finally:
        conn.close()


@pytest.fixture
def two(tmp_path: Path) -> tuple[str, dict[str, str]]:
    db, keys = new_db(tmp_path, "alice", "bob")
    _submit(db, keys["alice"], "shared.example", "a.example", ports=(443, 25))
    _submit(db, keys["bob"], "shared.example", "b.example")
    return db, keys


@pytest.mark.parametrize(("text", "until"), [
    ("2d", NOW + 2 * DAY), ("30m", NOW + 1800), ("1w", NOW + 7 * DAY), ("12H", NOW + 12 * 3600),
    ("2027-01-16T00:00Z", 1_800_057_600.0), ("2027-01-16", 1_800_057_600.0),
    ("2027-01-16T01:00+01:00", 1_800_057_600.0), ("2027-01-16 00:00:30", 1_800_057_630.0),
])
def test_parse_until(text: str, until: float) -> None:
    assert parse_until(text, NOW) == until


@pytest.mark.parametrize("text", ["", "soon", "0d", "2027-01-01T00:00Z", "2027-02-30",
                                  "2029-01-01", "400d", "-2d", "2d 3h"])
def test_parse_until_refuses(text: str) -> None:
    with pytest.raises(ParseError):
        parse_until(text, NOW)


def test_cli_list_rm_mute_unmute_and_account_scope(
        two: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = two
    assert main(["targets", "list", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 6 and "bob shared.example:443/tls\tunknown\tsubmitted 20" in out
    # mute with --account touches only that account's target of a shared name
    assert main(["targets", "mute", "shared.example", "--until", "2d", "--account", "bob",
                 "--db", db]) == 0
    assert capsys.readouterr().out.startswith("bob shared.example:443/tls: muted until 20")
    muted = [r for r in _rows(db) if r[3] is not None]
    assert [(r[0], r[1]) for r in muted] == [("bob", "shared.example")]
    assert main(["targets", "list", "--muted", "--db", db]) == 0
    assert capsys.readouterr().out.count("muted until") == 1
    assert main(["targets", "list", "--json", "--account", "bob", "--db", db]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["muted_until"] is not None for t in listed] == [False, True]
    assert main(["targets", "unmute", "shared.example:443/tls", "--account", "bob",
                 "--db", db]) == 0
    assert all(r[3] is None for r in _rows(db))
    # rm by name removes every port of it, only in the account named
    assert main(["targets", "rm", "a.example", "--account", "bob", "--db", db]) == 1
    assert "no target a.example of account bob" in capsys.readouterr().err
    assert main(["targets", "rm", "a.example", "--account", "alice", "--db", db]) == 0
    assert capsys.readouterr().out.count("removed") == 2
    assert [r[:2] for r in _rows(db)] == [("alice", "shared.example")] * 2 + [
        ("bob", "b.example"), ("bob", "shared.example")]
    assert main(["targets", "rm", "shared.example:25/smtp", "--db", db]) == 0
    assert len(_rows(db)) == 3


def test_cli_usage_errors(two: tuple[str, dict[str, str]],
                          capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = two
    for argv in (["targets", "mute", "a.example", "--until", "yesterday", "--db", db],
                 ["targets", "rm", "a.example:99999", "--db", db],
                 ["targets", "mute", "a.example", "--db", db]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    capsys.readouterr()
    assert len(_rows(db)) == 6


def test_rm_removes_history_and_a_submission_adds_it_back(two: tuple[str, dict[str, str]]) -> None:
    db, keys = two
    conn = connect_db(db)  # straight into the database
    target = conn.execute("SELECT id FROM targets WHERE domain = 'b.example'").fetchone()[0]
    conn.execute("INSERT INTO results (target, time, status, state, reasons) VALUES"
                 " (?, 1, 'ok', 'ok', '')", (target,))
    assert main(["targets", "rm", "b.example:443", "--db", db]) == 0
    assert _raw_count(db, "SELECT count(*) FROM results") == 0  # none left in the file
    _submit(db, keys["bob"], "b.example")
    assert ("bob", "b.example", 443, None) in _rows(db)


def test_targets_reads_db_from_config(two: tuple[str, dict[str, str]], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = two
    cfg = tmp_path / "server.conf"
    cfg.write_text(f"[server]\ndb = {db}\n")
    for command in (["targets", "list"], ["status"], ["keys", "list"]):
        assert main([*command, "--config", str(cfg)]) in (0, 2)
        assert "alice" in capsys.readouterr().out


def test_api_is_account_isolated(two: tuple[str, dict[str, str]]) -> None:
    db, keys = two
    with running(config(db, line_listen=None), audit=False) as srv:
        assert srv.http_address
        base = f"http://127.0.0.1:{srv.http_address[1]}/api/v1/targets"
        status, data = http("GET", base, key=keys["bob"])
        assert status == 200 and data["account"] == "bob"
        assert [t["domain"] for t in data["targets"]] == ["b.example", "shared.example"]
        # alice cannot act on bob's b.example: 404, and it is untouched
        for action, extra in (("remove", {}), ("mute", {"until": "2d"}), ("unmute", {})):
            status, data = http("POST", f"{base}/{action}",
                                {"target": "b.example:443/tls", **extra}, key=keys["alice"])
            assert (status, data["error"]) == (404, "syntax")
        assert ("bob", "b.example", 443, None) in _rows(db)
        # a shared name: only the caller's own target is muted, then removed
        status, data = http("POST", f"{base}/mute", {"target": "shared.example", "until": "1d"},
                            key=keys["bob"])
        assert status == 200 and [t["port"] for t in data["targets"]] == [443]
        assert data["muted_until"].endswith("Z")
        assert [r[0] for r in _rows(db) if r[3] is not None] == ["bob"]
        status, data = http("GET", f"{base}?limit=1", key=keys["bob"])
        assert len(data["targets"]) == 1 and data["next"]
        status, page2 = http("GET", f"{base}?limit=1&cursor={data['next']}", key=keys["bob"])
        assert page2["targets"][0]["muted_until"] is not None and page2["next"] is None
        assert http("POST", f"{base}/unmute", {"target": "shared.example"},
                    key=keys["bob"])[0] == 200
        assert http("POST", f"{base}/remove", {"target": "shared.example:443"},
                    key=keys["bob"])[0] == 200
        assert [r[:2] for r in _rows(db) if r[1] == "shared.example"] == [
            ("alice", "shared.example")] * 2
        # bad requests and no key
        assert http("POST", f"{base}/mute", {"target": "a.example"}, key=keys["alice"])[0] == 400
        assert http("POST", f"{base}/mute", {"target": "a.example", "until": "x"},
                    key=keys["alice"])[0] == 400
        assert http("POST", f"{base}/remove", {"target": "a.example"})[0] == 401
        assert http("GET", base, key="wrong")[0] == 401
        assert http("DELETE", base, key=keys["alice"])[0] == 405


def _auditor(db: str, probe: FakeProbe, now: list[float], **changes: object) -> Auditor:
    cfg = config(db, notify_default=AccountNotify(webhook=("http://127.0.0.1:9/hook",)),
                 failure_threshold=1, **changes)
    return Auditor(cfg, probe_fn=probe, clock=lambda: now[0])


def _audit(auditor: Auditor, db: str, domain: str) -> None:
    conn = connect_db(db)
    row = conn.execute("SELECT id, domain, port, protocol FROM targets WHERE domain = ?",
                       (domain,)).fetchone()
    conn.close()
    auditor._audit(*row)


def test_muted_targets_are_probed_and_shown_but_not_notified(
        two: tuple[str, dict[str, str]]) -> None:
    db, _ = two
    conn = connect_db(db)  # straight into the database
    now = [conn.execute("SELECT max(created) FROM targets").fetchone()[0] + 60]
    down = fake_result("unknown", connected=False, reasons=("connection refused",))
    probe = FakeProbe({"a.example": down, "b.example": down})
    auditor = _auditor(db, probe, now)
    assert main(["targets", "mute", "b.example", "--until", "3d", "--db", db]) == 0
    _audit(auditor, db, "a.example")
    _audit(auditor, db, "b.example")
    assert [c[0] for c in probe.calls] == ["a.example", "b.example"]
    payloads = [json.loads(r[0]) for r in conn.execute("SELECT payload FROM notifications")]
    assert [p["domain"] for p in payloads] == ["a.example"]
    assert conn.execute("SELECT last_probe FROM targets WHERE domain = 'b.example'"
                        ).fetchone()[0] == now[0]


def test_stale_failing_targets_are_retired_with_one_notice(
        two: tuple[str, dict[str, str]]) -> None:
    db, keys = two
    conn = connect_db(db)  # straight into the database
    created = conn.execute("SELECT max(created) FROM targets").fetchone()[0]
    now = [created + 29 * DAY]
    down = fake_result("unknown", connected=False, reasons=("connection refused",))
    probe = FakeProbe({"b.example": down, "shared.example": fake_result("ok")})
    auditor = _auditor(db, probe, now)
    _audit(auditor, db, "b.example")  # 29 days: kept, notified as down
    assert ("bob", "b.example", 443, None) in _rows(db)
    conn.execute("DELETE FROM notifications")
    now[0] = created + 30 * DAY + 1
    _audit(auditor, db, "b.example")
    assert ("bob", "b.example", 443, None) not in _rows(db)
    [notice] = [json.loads(r[0]) for r in conn.execute("SELECT payload FROM notifications")]
    assert notice["kind"] == "retired" and notice["account"] == "bob"
    assert "no submission has named it for 30 days" in notice["reasons"][0]
    assert "a submission naming it adds it back" in notice["reasons"][0]
    assert _raw_count(db, "SELECT count(*) FROM results WHERE target NOT IN"
                     " (SELECT id FROM targets)") == 0
    # a submission resets the clock: failing since long before it, it is kept
    _submit(db, keys["bob"], "b.example")
    conn.execute("UPDATE targets SET created = created - 100 * 86400")
    submitted = conn.execute("SELECT last_submitted FROM targets WHERE domain = 'b.example'"
                             ).fetchone()[0]
    now[0] = submitted + 29 * DAY
    _audit(auditor, db, "b.example")
    assert ("bob", "b.example", 443, None) in _rows(db)
    # so does a good probe: shared.example was ok on day 29, and is kept when it fails on day 31
    conn.execute("UPDATE targets SET last_submitted = ? WHERE domain = 'shared.example'",
                 (created,))
    now[0] = created + 29 * DAY
    _audit(auditor, db, "shared.example")
    probe.results["shared.example"] = down
    now[0] = created + 31 * DAY
    _audit(auditor, db, "shared.example")
    assert ("bob", "shared.example", 443, None) in _rows(db)
    # retire_after = 0: never
    never = _auditor(db, probe, now, retire_after=0.0)
    now[0] = created + 400 * DAY
    _audit(never, db, "shared.example")
    assert ("bob", "shared.example", 443, None) in _rows(db)
