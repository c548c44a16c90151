"""The database, the keys, group commit and the configuration file."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest
from server_helpers import count, new_db, targets

from certhook.cli import main
from certhook.errors import ParseError, UsageError
from certhook.probe.lifetime import Threshold, parse_threshold
from certhook.protocol import Request, parse_request
from certhook.server import store
from certhook.server.committer import GroupCommitter, Job, WaitSink
from certhook.server.config import load_config, parse_duration, parse_hostport


def test_keys_cli_add_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "sub" / "c.db")
    assert main(["keys", "add", "alice", "--db", db]) == 0
    key = capsys.readouterr().out.strip()
    assert len(key) >= 43  # 32 random bytes, URL-safe base64
    raw = sqlite3.connect(db).execute("SELECT key_hash FROM accounts").fetchone()[0]
    assert raw == hashlib.sha256(key.encode()).digest()
    assert key.encode() not in Path(db).read_bytes()  # only the hash is stored
    conn = store.open_store(db)
    assert conn.authenticate(key) == "alice"
    assert conn.authenticate(key, "alice") == "alice"
    assert conn.authenticate(key, "bob") is None
    assert conn.authenticate(key + "x") is None
    assert main(["keys", "list", "--db", db]) == 0
    assert "alice" in capsys.readouterr().out
    assert main(["keys", "revoke", "alice", "--db", db]) == 0
    assert conn.authenticate(key) is None
    assert main(["keys", "revoke", "alice", "--db", db]) == 1
    assert main(["keys", "add", "alice", "--db", db]) == 1  # the name stays taken
    capsys.readouterr()
    assert main(["keys", "list", "--db", db]) == 0
    assert "revoked" in capsys.readouterr().out


def test_keys_list_missing_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list", "--db", str(tmp_path / "none.db")]) == 1
    assert "no such database" in capsys.readouterr().err


def test_bad_account_name(tmp_path: Path) -> None:
    conn = store.open_store(str(tmp_path / "c.db"))
    with pytest.raises(UsageError):
        conn.add_account("a b")


def _submit(committer: GroupCommitter, request: Request) -> Job:
    sink = WaitSink()
    job = Job(request, "test", "peer", sink)
    committer.submit(job)
    assert sink.wait(10)
    return job


def test_group_commit_dedupes_retries_and_checks_keys(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice", "bob")
    committer = GroupCommitter(db)
    committer.start()
    try:
        line = f"command add domain a.example port 443 port 25 id r1 apikey {keys['alice']}"
        first = _submit(committer, parse_request(line.encode()))
        again = _submit(committer, parse_request(line.encode()))
        assert first.response and first.response.encode() == b"ok id r1 domains 1\r\n"
        assert again.response == first.response
        # the same id from another account is another submission
        bob = _submit(committer, parse_request(line.replace(keys["alice"], keys["bob"]).encode()))
        assert bob.response and bob.response.ok
        bad = _submit(committer, Request(domains=("a.example",), apikey="nope"))
        assert bad.response and bad.response.code == "auth"
    finally:
        committer.stop()
    assert count(db, "submissions") == 2
    assert count(db, "targets", account="alice") == 2
    assert count(db, "targets", protocol="smtp", port=25) == 2


def test_group_commit_batches_concurrent_submissions(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    committer = GroupCommitter(db)
    committer.start()
    jobs: list[Job] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(50):
            job = _submit(committer, Request(domains=(f"h{n}.example",), id=f"{n}-{i}",
                                             apikey=keys["alice"]))
            with lock:
                jobs.append(job)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    committer.stop()
    assert all(j.response and j.response.ok for j in jobs)
    assert count(db, "submissions") == 1000 == committer.committed
    assert count(db, "targets") == 20


def test_fingerprint_change_restarts_grace(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    committer = GroupCommitter(db)
    committer.start()
    try:
        _submit(committer, Request(domains=("a.example",), fingerprint="ab" * 32,
                                   apikey=keys["alice"]))
        since = targets(db)[0]["expected_since"]
        _submit(committer, Request(domains=("a.example",), apikey=keys["alice"]))  # no fp
        assert targets(db)[0]["expected_since"] == since
        _submit(committer, Request(domains=("a.example",), fingerprint="cd" * 32,
                                   apikey=keys["alice"]))
        assert targets(db)[0]["expected_since"] >= since
        conn = store.open_store(db)
        [row] = conn.list_targets("alice")
        assert row.expected_fingerprint == "cd" * 32 and row.next_probe is not None
        _submit(committer, Request(domains=("*.example",), apikey=keys["alice"]))
        [wild] = conn.find_targets("alice", "*.example")
        assert wild.next_probe is None and "wildcard" in wild.reasons
        conn.close()
    finally:
        committer.stop()


@pytest.mark.sqlite_only("holds SQLite's file lock")
def test_locked_database_delays_the_ack_until_written(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    committer = GroupCommitter(db)
    committer.start()
    blocker = sqlite3.connect(db, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        # The writer waits (busy timeout 30 s) rather than acknowledging.
        result: list[Job] = []
        t = threading.Thread(target=lambda: result.append(
            _submit(committer, Request(domains=("a.example",), apikey=keys["alice"]))))
        t.start()
        t.join(0.5)
        assert not result  # not acknowledged while it cannot be written
    finally:
        blocker.rollback()
        blocker.close()
    t.join(10)
    committer.stop()
    assert result and result[0].response and result[0].response.ok
    assert count(db, "submissions") == 1


@pytest.mark.sqlite_only("fills the SQLite file's filesystem")
def test_full_disk_answers_unavailable_and_nothing_is_acked(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    committer = GroupCommitter(db)
    committer.start()
    try:
        assert _submit(committer, Request(domains=("a.example",), apikey=keys["alice"])
                       ).response.ok  # type: ignore[union-attr]
        writer = committer._writer
        assert writer is not None
        # the SQLite connections of the writer's store (the writer thread's among them)
        raws = list(writer._store._all_connections)  # type: ignore[attr-defined]
        pages = raws[0].execute("PRAGMA page_count").fetchone()[0]
        for raw in raws:
            raw.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
        big = Request(domains=tuple(f"d{i}.example" for i in range(100)), id="big",
                      apikey=keys["alice"])
        answers = [_submit(committer, big).response for _ in range(3)]
        assert all(a is not None and a.code == "unavailable" for a in answers)
        assert not committer.healthy
        for raw in raws:
            raw.execute("PRAGMA max_page_count = 1073741823")  # space again
        again = _submit(committer, big).response
        assert again is not None and again.ok and committer.healthy
    finally:
        committer.stop()
    assert count(db, "submissions", client_id="big") == 1


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("15m", 900), ("6h", 21600),
                                               ("1d", 86400), ("0.5s", 0.5)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "pair"), [("127.0.0.1:10023", ("127.0.0.1", 10023)),
                                            ("[::1]:8023", ("::1", 8023)),
                                            (":9", ("127.0.0.1", 9))])
def test_parse_hostport(text: str, pair: tuple[str, int]) -> None:
    assert parse_hostport(text) == pair


def test_config_file(tmp_path: Path) -> None:
    path = tmp_path / "server.conf"
    path.write_text(
        "[server]\ndb = /tmp/x.db\nline_listen = 0.0.0.0:10023\nhttp_listen = off\n"
        "[audit]\ninterval = 2h\ngrace = 30m\nallow_networks = 127.0.0.0/8, ::1/128\n"
        "expiry_notices = 7, 30\nwarn = 25%\ncrit_days = 5\n"
        "[smtp]\nhost = mail.example\nport = 587\nusername = u\npassword = p\nfrom = a@b\n"
        "[notify]\nemail = ops@example.org\n"
        "[account alice]\nwebhook = https://hooks.example/x\n"
    )
    cfg = load_config(path)
    assert cfg.db == "/tmp/x.db" and cfg.line_listen == ("0.0.0.0", 10023)
    assert cfg.http_listen is None and cfg.interval == 7200 and cfg.grace == 1800
    assert [str(n) for n in cfg.allow_networks] == ["127.0.0.0/8", "::1/128"]
    assert [str(t) for t in cfg.expiry_notices] == ["30", "7"]  # bare numbers are days
    assert cfg.warn == parse_threshold("25%") and cfg.crit == Threshold.days(5)
    assert cfg.smtp.port == 587 and cfg.smtp.sender == "a@b"
    assert cfg.notify_for("bob").email == ("ops@example.org",)
    assert cfg.notify_for("alice").webhook == ("https://hooks.example/x",)
    assert cfg.notify_for("alice").email == ("ops@example.org",)
    assert "password" not in repr(cfg.smtp)
    path.write_text("[audit]\ngrace = soon\n")
    with pytest.raises(ParseError):  # tests/test_config_errors.py: the message
        load_config(path)


def _add(key: str, *domains: str, ports: range | tuple[int, ...] = (), ident: str = "",
         protocols: tuple[str, ...] = ()) -> Request:
    return Request(domains=domains, ports=tuple(ports), protocols=protocols, apikey=key,
                   id=ident or None)


def test_ports_per_submission_and_targets_per_account_are_bounded(tmp_path: Path) -> None:
    """Issue 9.4: one submission of 100 names x 5,000 ports made 500,066 targets."""
    db, keys = new_db(tmp_path, "alice", "bob")
    committer = GroupCommitter(db, max_ports=4, max_targets=10)
    committer.start()
    try:
        alice = keys["alice"]
        over = _submit(committer, _add(alice, "a.example", ports=range(1, 6)))
        assert over.response is not None and over.response.encode() == (
            b"error limit more than 4 ports in one submission (max_ports_per_submission)\r\n")
        assert count(db, "targets") == 0
        assert count(db, "submissions") == 0
        # 2 names x 4 ports = 8 targets: taken; 3 more would be 11: refused whole
        first = _submit(committer, _add(alice, "a.example", "b.example", ports=range(1, 5)))
        assert first.response is not None and first.response.ok
        more = _submit(committer, _add(alice, "c.example", ports=(1, 2, 3)))
        assert more.response is not None and more.response.code == "limit"
        assert "more than 10 targets" in more.response.text
        # renewing existing targets is always taken, and 2 new ones fit exactly
        again = _submit(committer, _add(alice, "b.example", "a.example", ports=range(1, 5)))
        assert again.response is not None and again.response.ok
        fits = _submit(committer, _add(alice, "a.example", "c.example", ports=(1, 2)))
        assert fits.response is not None and fits.response.ok
        full = _submit(committer, _add(alice, "d.example"))
        assert full.response is not None and full.response.code == "limit"
        # the limit is per account
        bob = _submit(committer, _add(keys["bob"], "d.example", ports=(1, 2, 3, 4)))
        assert bob.response is not None and bob.response.ok
    finally:
        committer.stop()
    assert count(db, "targets", account="alice") == 10
    assert count(db, "targets", account="bob") == 4
    assert count(db, "targets", domain="d.example") == 4


def test_target_limit_holds_within_one_batch(tmp_path: Path) -> None:
    """Jobs that arrive together are counted together: the limit is not per job."""
    db, keys = new_db(tmp_path, "alice")
    committer = GroupCommitter(db, max_ports=64, max_targets=5)
    sinks = []
    for i in range(8):  # queued before the writer starts: one batch
        sink = WaitSink()
        job = Job(_add(keys["alice"], f"n{i}.example", ident=f"n{i}"), "test", "peer", sink)
        committer.submit(job)
        sinks.append((sink, job))
    committer.start()
    try:
        for sink, _ in sinks:
            assert sink.wait(10)
    finally:
        committer.stop()
    codes = [job.response.code if job.response else "none" for _, job in sinks]
    assert codes == [None] * 5 + ["limit"] * 3
    assert count(db, "targets") == 5


@pytest.mark.parametrize("name", ["foo", "https", "smtps", "tls1"])
def test_unknown_protocol_is_a_syntax_error(tmp_path: Path, name: str) -> None:
    """Issue 8.6: ``protocol foo`` was answered ok, then failed every audit."""
    db, keys = new_db(tmp_path, "alice")
    committer = GroupCommitter(db)
    committer.start()
    try:
        job = _submit(committer, _add(keys["alice"], "a.example", ports=(25, 443),
                                      protocols=("smtp", name)))
        good = _submit(committer, _add(keys["alice"], "a.example", ports=(25, 443, 5222),
                                       protocols=("smtp", "tls", "xmpp")))
    finally:
        committer.stop()
    assert job.response is not None
    assert job.response.encode().startswith(f"error syntax unknown protocol '{name}'".encode())
    assert "smtp" in job.response.text and "xmpp" in job.response.text
    assert good.response is not None and good.response.ok
    assert count(db, "targets") == 3


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    """A connection per thread, but none kept open for a thread that has ended."""
    opened = store.open_store(str(tmp_path / "t.db"))

    def use() -> None:
        t = threading.Thread(target=lambda: opened.count_targets("alice"))
        t.start()
        t.join()

    try:
        mine = set(map(id, opened._all_connections))  # type: ignore[attr-defined]
        use()
        [ended] = [c for c in opened._all_connections if id(c) not in mine]  # type: ignore[attr-defined]
        use()  # the next open closes the ended thread's connection
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            ended.execute("SELECT 1")
        assert len(opened._all_connections) == 2  # type: ignore[attr-defined]
    finally:
        opened.close()
