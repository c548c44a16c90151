"""PostgreSQL: the schema's DDL, ``db migrate`` and ``db copy`` on a real server (tests/pg.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from db_helpers import populated, rows

from certhook.cli import main
from certhook.errors import LocalError, StoreUnavailable
from certhook.server.store import dburl
from certhook.server.store.conn import open_db
from certhook.server.store.copy import table_digest
from certhook.server.store.migrate import current_version, migrate
from certhook.server.store.schema import INDEXES, TABLES, TYPES, VERSION

if TYPE_CHECKING:
    from pg import Cluster

# the fixtures pg_cluster and pg_url come from tests/pg.py, through conftest.py

BIN = str(Path(sys.executable).parent / "certhook")


def _columns(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with open_db(dburl.parse(url)) as db:
        return {t.name: db.execute(
            "SELECT column_name, data_type, is_nullable, column_default, is_identity"
            " FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? ORDER BY ordinal_position", (t.name,)) for t in TABLES}


def test_the_schema_applies_on_postgresql(pg_url: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "migrate", "--db", pg_url]) == 0
    assert main(["db", "migrate", "--db", pg_url]) == 0
    out = capsys.readouterr().out
    shown = dburl.redacted(pg_url)
    assert out == (f"{shown}: schema from 0 to {VERSION}\n"
                   f"{shown}: schema already at {VERSION}\n")
    assert dburl.parse(pg_url).password not in out  # type: ignore[union-attr]
    columns = _columns(pg_url)
    for table in TABLES:
        got = {c[0]: c for c in columns[table.name]}
        assert list(got) == table.names()
        for column in table.columns:
            _, data_type, nullable, default, identity = got[column.name]
            assert data_type == TYPES[column.type][1].split(" GENERATED")[0]
            assert (nullable == "NO") == (column.not_null or column.primary_key
                                          or column.type == "id")
            assert identity == ("YES" if column.type == "id" else "NO")
            if column.default is not None:
                assert default is not None and default.startswith(column.default)
    with open_db(dburl.parse(pg_url)) as db:
        indexes = {r[0] for r in db.execute("SELECT indexname FROM pg_indexes"
                                            " WHERE schemaname = current_schema()")}
        assert {i.name for i in INDEXES} <= indexes
        # the constraints hold: a second key hash, a result for no target
        db.execute("INSERT INTO accounts (name, key_hash, created) VALUES ('a', ?, 1)",
                   (b"\x00\xff",))
        with pytest.raises(LocalError, match="duplicate key"):
            db.execute("INSERT INTO accounts (name, key_hash, created) VALUES ('b', ?, 1)",
                       (b"\x00\xff",))
        with pytest.raises(LocalError, match="foreign key"):
            db.execute("INSERT INTO results (target, time, status, state, reasons)"
                       " VALUES (99, 1, 'ok', 'ok', '')")
        # identity ids, and the placeholders and '%' in literals
        db.execute("INSERT INTO targets (account, domain, port, protocol, created,"
                   " last_submitted, reasons) VALUES (?, ?, 443, 'tls', ?, ?, '100% ?')",
                   ("a", "x.example", 1.5, 2))
        assert db.execute("SELECT id, reasons, created, state, failures FROM targets"
                          " WHERE reasons LIKE '%\\%%' AND account = ?", ("a",)) == [
            (1, "100% ?", 1.5, "unknown", 0)]
        # bytea comes back as bytes; numeric (sum and avg of a bigint) as int or float
        assert db.execute("SELECT key_hash FROM accounts") == [(b"\x00\xff",)]
        sums = db.execute("SELECT sum(port), avg(port), sum(created) FROM targets")[0]
        assert [(type(v), v) for v in sums] == [(int, 443), (float, 443.0), (float, 1.5)]


def test_copy_sqlite_to_postgresql_and_back(tmp_path: Path, pg_url: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    source = populated(tmp_path / "server")
    capsys.readouterr()
    assert main(["db", "copy", "--from", source, "--to", pg_url]) == 0
    there = capsys.readouterr().out.splitlines()
    back = tmp_path / "back.db"
    assert main(["db", "copy", "--from", pg_url, "--to", f"sqlite://{back}"]) == 0
    again = capsys.readouterr().out.splitlines()
    # the same counts and hashes on the way there and back, every table identical
    assert there[:len(TABLES)] == again[:len(TABLES)]
    assert all(line.endswith("identical") for line in there[:len(TABLES)])
    assert rows(source) == rows(pg_url) == rows(str(back))
    assert dburl.parse(pg_url).password not in "".join(there + again)  # type: ignore[union-attr]
    # the sequences were reset: a new row gets the next id, not a copied one's
    with open_db(dburl.parse(pg_url)) as db:
        highest = db.execute("SELECT max(id) FROM targets")[0][0]
        new = db.execute("INSERT INTO targets (account, domain, port, protocol, created,"
                         " last_submitted) VALUES ('alice', 'new.example', 443, 'tls', 1, 1)"
                         " RETURNING id")
        assert new == [(highest + 1,)]
        assert current_version(db) == (VERSION, True)
    # the copy back is a server's database: today's store opens it and a key works
    from certhook.server import store

    opened = store.open_store(str(back), create=False)
    assert {a.name for a in opened.list_accounts()} == {"alice", "bob", "carol"}
    opened.close()


def test_copy_refuses_a_non_empty_postgresql(tmp_path: Path, pg_url: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    source = populated(tmp_path / "server")
    with open_db(dburl.parse(pg_url)) as db:
        migrate(db)
        db.execute("INSERT INTO notifications (account, channel, destination, payload,"
                   " created, next_attempt) VALUES ('x', 'log', '', '{}', 1, 1)")
    capsys.readouterr()
    assert main(["db", "copy", "--from", source, "--to", pg_url]) == 1
    err = capsys.readouterr().err
    assert err == (f"certhook db: {dburl.redacted(pg_url)}: not empty (notifications has"
                   " rows): db copy writes only into an empty database\n")
    assert {name: len(v) for name, v in rows(pg_url).items() if v} == {"notifications": 1}


def test_a_failed_copy_leaves_the_target_untouched(tmp_path: Path, pg_url: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A value PostgreSQL cannot store (a NUL in text) fails the copy in one line,
    naming the table; the target's one transaction is rolled back: not even a schema."""
    source = populated(tmp_path / "server")
    conn = open_db(dburl.parse(source))
    conn.execute("UPDATE results SET reasons = ? WHERE id = (SELECT max(id) FROM results)",
                 ("a\x00b",))
    conn.close()
    capsys.readouterr()
    assert main(["db", "copy", "--from", source, "--to", pg_url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"certhook db: copying results: db = {dburl.redacted(pg_url)}: ")
    assert "NUL" in err and err.count("\n") == 1
    with open_db(dburl.parse(pg_url)) as db:
        assert not db.tables()


def test_digests_agree_across_databases(tmp_path: Path, pg_url: str) -> None:
    source = populated(tmp_path / "server")
    assert main(["db", "copy", "--from", source, "--to", pg_url]) == 0
    with open_db(dburl.parse(source)) as a, open_db(dburl.parse(pg_url)) as b:
        with a.transaction(write=False), b.transaction(write=False):
            for table in TABLES:
                da, db_ = table_digest(a, table, batch=7), table_digest(b, table, batch=1000)
                assert (da.rows, da.hexdigest()) == (db_.rows, db_.hexdigest())


@pytest.mark.parametrize("immediate", [False, True], ids=["fast", "immediate"])
def test_migrate_with_postgresql_stopped(pg_cluster: Cluster, pg_url: str,
                                         immediate: bool) -> None:
    password = pg_cluster.password
    assert main(["db", "migrate", "--db", pg_url]) == 0
    connected = open_db(dburl.parse(pg_url))
    pg_cluster.stop(immediate=immediate)
    try:
        done = subprocess.run([BIN, "db", "migrate", "--db", pg_url], capture_output=True,
                              text=True, timeout=60)
        with pytest.raises(StoreUnavailable) as caught:
            open_db(dburl.parse(pg_url))
        with pytest.raises(StoreUnavailable) as lost:  # a connection the server dropped
            connected.execute("SELECT count(*) FROM targets")
    finally:
        connected.close()
        pg_cluster.start()
    assert str(lost.value).startswith(f"db = {dburl.redacted(pg_url)}: unavailable: ")
    assert password not in str(lost.value)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"certhook db: db = {dburl.redacted(pg_url)}: unavailable: ")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert password not in done.stderr and password not in str(caught.value)
    assert main(["db", "migrate", "--db", pg_url]) == 0  # back, and already migrated


def test_a_wrong_password_is_one_line_without_it(pg_cluster: Cluster,
                                                 pg_url: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    wrong = pg_url.replace(pg_cluster.password, "Wr0ng-pa55word")
    assert main(["db", "migrate", "--db", wrong]) == 1
    err = capsys.readouterr().err
    assert "password authentication failed" in err and err.count("\n") == 1
    assert "Wr0ng-pa55word" not in err and pg_cluster.password not in err


def test_missing_postgresql_skips_except_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from pg import _missing

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _missing("not installed")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="needed under CI"):
        _missing("not installed")


def test_a_deadlock_is_a_conflict_to_run_again_not_an_outage(pg_url: str) -> None:
    """Two transactions that lock two rows in opposite orders: PostgreSQL rolls one back
    (40P01). That is StoreConflict (run it again), not StoreUnavailable (pause)."""
    import threading

    from certhook.errors import StoreConflict
    from certhook.server.store import pg

    url = dburl.parse(pg_url)
    first, second = pg.connect(url), pg.connect(url)  # type: ignore[arg-type]
    try:
        first.execute("CREATE TABLE crossing (id int PRIMARY KEY, n int)")
        first.execute("INSERT INTO crossing VALUES (1, 0), (2, 0)")
        first.execute("BEGIN")
        second.execute("BEGIN")
        first.execute("UPDATE crossing SET n = 1 WHERE id = 1")
        second.execute("UPDATE crossing SET n = 2 WHERE id = 2")
        caught: list[BaseException] = []

        def cross(conn: Any, row: int) -> None:
            try:
                conn.execute("UPDATE crossing SET n = 3 WHERE id = %s", (row,))
            except Exception as exc:  # the one PostgreSQL chose to roll back
                caught.append(exc)
                conn.execute("ROLLBACK")
            else:
                conn.execute("COMMIT")

        waiter = threading.Thread(target=cross, args=(first, 2))
        waiter.start()
        cross(second, 1)
        waiter.join(30)
        [exc] = caught
        assert not pg.is_unavailable(exc)
        error = pg.translate(exc, url)  # type: ignore[arg-type]
        assert isinstance(error, StoreConflict) and not isinstance(error, StoreUnavailable)
        assert str(error).startswith(f"db = {url.redacted()}: deadlock detected")
    finally:
        first.close()
        second.close()
