"""``certhook keys``: rotation with an overlap, key ages and last use, true advice
after a revocation, and no stored key in any output (issue 11.1)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from server_helpers import config, http, new_db, running

from certhook.cli import main
from certhook.errors import UsageError
from certhook.protocol import Request
from certhook.server import store
from certhook.server.committer import BatchWriter, Job, WaitSink
from certhook.server.store.schema import VERSION_TABLE, create_statements

DAY = 86400.0


def _issued(out: str) -> str:
    lines = out.split()
    assert len(lines) == 1, out
    return lines[0]


def test_rotate_keeps_the_old_key_for_the_overlap_then_refuses_it(tmp_path: Path) -> None:
    conn = store.open_store(str(tmp_path / "k.db"))
    t0 = 1_800_000_000.0
    old = conn.add_account("alice", now=t0)
    new, until = conn.rotate_key("alice", 7 * DAY, now=t0 + 10)
    assert until == t0 + 10 + 7 * DAY
    assert new != old
    for at in (t0 + 11, t0 + 7 * DAY):  # both work during the overlap
        assert conn.authenticate(old, now=at) == "alice"
        assert conn.authenticate(new, now=at) == "alice"
    assert conn.authenticate(old, "alice", now=t0 + 7 * DAY + 11) is None
    assert conn.authenticate(old, now=t0 + 7 * DAY + 11) is None
    assert conn.authenticate(new, "alice", now=t0 + 30 * DAY) == "alice"
    assert conn.authenticate(new, "bob", now=t0 + 11) is None


def test_rotate_with_zero_overlap_and_revoke_refuse_the_old_key(tmp_path: Path) -> None:
    conn = store.open_store(str(tmp_path / "k.db"))
    old = conn.add_account("alice")
    new, _ = conn.rotate_key("alice", 0)
    assert conn.authenticate(old) is None
    newer, _ = conn.rotate_key("alice", DAY)
    assert conn.revoke_account("alice")
    assert conn.authenticate(new) is None  # the old key of the overlap too
    assert conn.authenticate(newer) is None
    with pytest.raises(UsageError, match="no account 'nobody'"):
        conn.rotate_key("nobody", DAY)


def test_the_writer_honours_the_overlap(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    conn = store.open_store(db)
    now = [conn.list_accounts()[0].created + 1.0]
    new, _ = conn.rotate_key("alice", DAY, now=now[0])
    writer = BatchWriter(db, clock=lambda: now[0])

    def submit(key: str) -> Job:
        job = Job(Request(domains=("a.example",), apikey=key), "test", "peer", WaitSink())
        writer.write([job])
        assert job.response is not None
        return job

    try:
        assert submit(keys["alice"]).response.ok  # type: ignore[union-attr]
        assert submit(new).response.ok  # type: ignore[union-attr]
        now[0] += DAY + 1
        refused = submit(keys["alice"]).response
        assert refused is not None and refused.code == "auth"
        assert submit(new).response.ok  # type: ignore[union-attr]
    finally:
        writer.close()
    # last uses were written, in the writer's own transactions
    [account] = conn.list_accounts()
    assert account.last_used is not None and account.old_last_used is not None


@pytest.mark.sqlite_only("counts the writes with SQLite's own statement trace")
def test_last_use_is_written_at_most_once_a_minute(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    conn = store.open_store(db)
    t = 1_800_000_000.0
    writes: list[str] = []
    # this thread's SQLite connection, where the store writes: count its UPDATEs
    conn._connection().set_trace_callback(  # type: ignore[attr-defined]
        lambda sql: writes.append(sql) if sql.startswith("UPDATE") else None)
    for i in range(100):  # 100 uses in 50 s: one write
        assert conn.authenticate(keys["alice"], now=t + i / 2) == "alice"
    assert len(writes) == 1
    assert conn.authenticate(keys["alice"], now=t + 61) == "alice"
    assert len(writes) == 2
    cache = store.KeyCache(conn, clock=lambda: t + 200)
    cache.refresh()
    for _ in range(100):
        assert cache.lookup(keys["alice"]) == "alice"
        cache.flush_uses()
    assert len(writes) == 3
    assert conn.list_accounts()[0].last_used == t + 200


def test_migration_adds_the_key_columns_to_an_old_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    # the first release's tables (accounts: name, key_hash, created, revoked), no version
    for statement in create_statements("sqlite", version=1):
        if statement != VERSION_TABLE:
            old.execute(statement)
    key = "an-old-key"
    old.execute("INSERT INTO accounts VALUES ('alice', ?, 1.0, NULL)", (store.hash_key(key),))
    old.commit()
    old.close()
    conn = store.open_store(path)
    assert conn.authenticate(key) == "alice"
    [account] = conn.list_accounts()
    assert account.key_created is None and account.last_used is not None
    new, _ = conn.rotate_key("alice", DAY)
    assert conn.authenticate(key) == "alice" and conn.authenticate(new) == "alice"


def test_keys_commands_never_print_a_stored_key(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "k.db")
    assert main(["keys", "add", "alice", "--db", db]) == 0
    first = _issued(capsys.readouterr().out)
    assert main(["keys", "--db", db, "rotate", "alice"]) == 0
    captured = capsys.readouterr()
    second = _issued(captured.out)
    assert "old key works until" in captured.err and first not in captured.err
    assert main(["keys", "list", "--db", db]) == 0
    listing = capsys.readouterr()
    assert listing.out.startswith("alice\tactive\tkey 0 min old\tnever used\told key until ")
    conn = store.open_store(db)
    assert conn.authenticate(second) == "alice"
    hashes = [bytes(r[0]).hex() for r in sqlite3.connect(db).execute(
        "SELECT key_hash FROM accounts UNION SELECT old_key_hash FROM accounts"
        " WHERE old_key_hash IS NOT NULL")]
    assert main(["keys", "list", "--db", db]) == 0
    assert main(["keys", "revoke", "alice", "--db", db]) == 0
    assert main(["keys", "add", "alice", "--db", db]) == 1
    assert main(["keys", "list", "--db", db]) == 0
    out = capsys.readouterr()
    for secret in (first, second, *hashes):
        assert secret not in out.out + out.err
    assert "used 20" in out.out  # the authenticate above was recorded


def test_add_after_revoke_gives_advice_that_works(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "k.db")
    assert main(["keys", "add", "alice", "--db", db]) == 0
    old = _issued(capsys.readouterr().out)
    assert main(["keys", "add", "alice", "--db", db]) == 1
    assert "'certhook keys rotate alice' issues it a new key" in capsys.readouterr().err
    assert main(["keys", "revoke", "alice", "--db", db]) == 0
    capsys.readouterr()
    assert main(["keys", "add", "alice", "--db", db]) == 1
    err = capsys.readouterr().err
    assert "was revoked; 'certhook keys rotate alice' gives it a new key" in err
    # and the advice is true: rotate reactivates it, the revoked key stays refused
    assert main(["keys", "rotate", "alice", "--db", db]) == 0
    captured = capsys.readouterr()
    new = _issued(captured.out)
    assert "old key is refused" in captured.err
    conn = store.open_store(db)
    assert conn.authenticate(new) == "alice"
    assert conn.authenticate(old) is None


def test_keys_reads_db_from_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "from-config.db"
    cfg = tmp_path / "server.conf"
    cfg.write_text(f"[server]\ndb = {db}\n")
    assert main(["keys", "--config", str(cfg), "add", "alice"]) == 0
    assert db.exists()
    assert main(["keys", "list", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.count("alice\tactive") == 1


@pytest.mark.parametrize("overlap", ["soon", "-1d", ""])
def test_bad_overlap_is_a_usage_error(tmp_path: Path, overlap: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["keys", "rotate", "alice", "--overlap", overlap, "--db", str(tmp_path / "k.db")])
    assert exc.value.code == 2
    assert "--overlap" in capsys.readouterr().err


def test_http_accepts_both_keys_during_the_overlap(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    conn = store.open_store(db)
    new, _ = conn.rotate_key("alice", DAY)
    with running(config(db, line_listen=None), audit=False) as srv:
        assert srv.http_address
        url = f"http://127.0.0.1:{srv.http_address[1]}/api/v1/domains"
        assert http("GET", url, key=keys["alice"])[0] == 200
        assert http("GET", url, key=new)[0] == 200
        conn.rotate_key("alice", 0)
        assert http("GET", url, key=new)[0] == 401
