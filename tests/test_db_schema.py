"""The declared schema, ``db migrate`` and ``db copy`` on SQLite; placeholders for PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from db_helpers import populated, rows
from hypothesis import given
from hypothesis import strategies as st

from certhook.cli import main
from certhook.errors import LocalError
from certhook.server import store
from certhook.server.store import dburl
from certhook.server.store.conn import open_db
from certhook.server.store.copy import encode_row
from certhook.server.store.migrate import current_version, migrate
from certhook.server.store.pg import to_pyformat
from certhook.server.store.schema import (
    BACKFILL,
    TABLES,
    VERSION,
    create_statements,
    step_statements,
)


def shape(path: str | Path) -> dict[str, Any]:
    """Tables, columns, indexes and foreign keys as SQLite reports them."""
    conn = sqlite3.connect(str(path))
    try:
        names = sorted(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT IN ('schema_version') AND name NOT LIKE 'sqlite_%'"))
        out: dict[str, Any] = {}
        for name in names:
            indexes = conn.execute(f"PRAGMA index_list({name})").fetchall()
            out[name] = {
                "columns": conn.execute(f"PRAGMA table_info({name})").fetchall(),
                "indexes": sorted((i[1], i[2], i[3], i[4], conn.execute(
                    f"PRAGMA index_info({i[1]})").fetchall()) for i in indexes),
                "foreign_keys": conn.execute(f"PRAGMA foreign_key_list({name})").fetchall(),
            }
        return out
    finally:
        conn.close()


def test_generated_ddl_is_todays_schema(tmp_path: Path) -> None:
    store.open_store(str(tmp_path / "today.db")).close()
    assert main(["db", "migrate", "--db", str(tmp_path / "new.db")]) == 0
    today, new = shape(tmp_path / "today.db"), shape(tmp_path / "new.db")
    assert sorted(today) == [t.name for t in sorted(TABLES, key=lambda t: t.name)]
    assert new == today


def test_added_columns_can_be_added_to_a_table() -> None:
    # SQLite's ALTER TABLE ADD COLUMN takes no PRIMARY KEY, UNIQUE, nor NOT NULL
    # without a default; a later version's column must be addable on both.
    for table in TABLES:
        for column in table.columns:
            if column.since > 1:
                assert not (column.primary_key or column.unique or column.type == "id")
                assert not column.not_null or column.default is not None
    for table, column in BACKFILL:
        assert any(c.name == column and c.since > 1 for t in TABLES if t.name == table
                   for c in t.columns)


def _first_release(path: Path) -> None:
    """A database as certhook's first release made it (version 1, nothing recorded)."""
    conn = sqlite3.connect(str(path))
    for statement in create_statements("sqlite", version=1)[:-1]:  # no schema_version
        conn.execute(statement)
    conn.execute("INSERT INTO accounts (name, key_hash, created) VALUES ('a', x'01', 1)")
    conn.execute("INSERT INTO targets (id, account, domain, port, protocol, created,"
                 " last_submitted) VALUES (7, 'a', 'x.example', 443, 'tls', 1, 1)")
    conn.executemany("INSERT INTO results (target, time, status, state, reasons)"
                     " VALUES (7, ?, ?, 'ok', '')", [(10.5, "ok"), (20.5, "warning"),
                                                     (30.5, "critical")])
    conn.commit()
    conn.close()


def test_migrate_a_first_release_database(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.db"
    _first_release(old)
    assert main(["db", "migrate", "--db", f"sqlite://{old}"]) == 0
    assert capsys.readouterr().out == (f"{old}: schema from 1 to {VERSION} (the version was"
                                       " not recorded: now it is)\n")
    store.open_store(str(tmp_path / "today.db")).close()
    assert shape(old) == shape(tmp_path / "today.db")
    conn = sqlite3.connect(str(old))
    # the backfill ran: the last ok-or-warning probe
    assert conn.execute("SELECT last_good FROM targets").fetchall() == [(20.5,)]
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(VERSION,)]
    conn.close()
    assert main(["db", "migrate", "--db", str(old)]) == 0
    assert capsys.readouterr().out == f"{old}: schema already at {VERSION}\n"


def test_the_store_upgrades_a_first_release_database(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    _first_release(old)
    opened = store.open_store(str(old))
    assert [(t.id, t.domain, t.last_good) for t in opened.list_targets(None)] == [
        (7, "x.example", 20.5)]
    opened.close()
    store.open_store(str(tmp_path / "today.db")).close()
    assert shape(old) == shape(tmp_path / "today.db")
    conn = sqlite3.connect(str(old))
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(VERSION,)]
    conn.close()


def test_migrate_todays_database_then_again(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "today.db"
    opened = store.open_store(str(db))
    key = opened.add_account("alice")
    opened.close()
    before = rows(str(db))
    for _ in range(2):  # the store made it through the declared schema: version recorded
        assert main(["db", "migrate", "--db", str(db)]) == 0
        assert capsys.readouterr().out == f"{db}: schema already at {VERSION}\n"
    assert rows(str(db)) == before
    opened = store.open_store(str(db))  # today's code still opens it, the key still works
    assert opened.authenticate(key) == "alice"
    opened.close()


def test_migrate_an_empty_database_twice_and_from_a_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "sub" / "new.db"
    conf = tmp_path / "server.conf"
    conf.write_text(f"[server]\ndb = sqlite:///{db}\n")
    assert main(["db", "migrate", "--config", str(conf)]) == 0
    assert main(["db", "migrate", "--config", str(conf)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{db}: schema from 0 to {VERSION}", f"{db}: schema already at {VERSION}"]
    assert db.stat().st_mode & 0o777 == 0o600  # it will hold key hashes


def test_a_newer_schema_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "c.db"
    assert main(["db", "migrate", "--db", str(db)]) == 0
    sqlite3.connect(str(db), isolation_level=None).execute(
        "UPDATE schema_version SET version = 99")
    assert main(["db", "migrate", "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert err == (f"certhook db: {db}: schema version 99 is newer than this certhook's"
                   f" ({VERSION}): upgrade certhook\n")


def test_not_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all, " * 100)
    assert main(["db", "migrate", "--db", str(junk)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"certhook db: {junk}: ") and err.count("\n") == 1


def test_step_statements_skip_columns_already_there() -> None:
    have = {"targets": {"acme_server"}}
    assert step_statements("sqlite", 2, have) == [
        "ALTER TABLE targets ADD COLUMN renew_before INTEGER"]
    assert step_statements("postgresql", 2, {}) == [
        "ALTER TABLE targets ADD COLUMN acme_server text",
        "ALTER TABLE targets ADD COLUMN renew_before bigint"]


def test_copy_sqlite_to_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = populated(tmp_path / "server")
    capsys.readouterr()
    copy = tmp_path / "copy.db"
    assert main(["db", "copy", "--from", source, "--to", str(copy)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[:len(TABLES)]] == [t.name for t in TABLES]
    assert all(line.endswith("identical") for line in out[:len(TABLES)])
    assert rows(str(copy)) == rows(source)
    with open_db(dburl.parse(str(copy))) as db:
        assert current_version(db) == (VERSION, True)
    # into a database with rows: refused, and nothing written
    assert main(["db", "copy", "--from", source, "--to", str(copy)]) == 1
    err = capsys.readouterr().err
    assert err == (f"certhook db: {copy}: not empty (accounts has rows): db copy writes only"
                   " into an empty database\n")
    assert rows(str(copy)) == rows(source)
    assert main(["db", "copy", "--from", source, "--to", f"sqlite://{source}"]) == 1
    assert "the source and the target are the same database" in capsys.readouterr().err


def test_copy_refuses_an_old_or_missing_source(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.db"
    _first_release(old)
    assert main(["db", "copy", "--from", str(old), "--to", str(tmp_path / "t.db")]) == 1
    err = capsys.readouterr().err
    assert f"at schema version 1, not {VERSION}: run 'certhook db migrate" in err
    assert main(["db", "copy", "--from", str(tmp_path / "none.db"), "--to",
                 str(tmp_path / "t.db")]) == 1
    assert capsys.readouterr().err == (f"certhook db: {tmp_path / 'none.db'}: no such"
                                       " database\n")
    assert not (tmp_path / "none.db").exists()


def test_a_copy_with_a_changed_row_is_a_mismatch(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The check is not a formality: a target that lost a row's value fails it."""
    from certhook.server.store import copy as copy_module

    fill = copy_module._fill

    def lossy(source: Any, target: Any, table: Any, batch: int) -> Any:
        digest = fill(source, target, table, batch)
        if table.name == "targets":
            target.execute("UPDATE targets SET issuer = NULL WHERE issuer = ''")
        return digest

    monkeypatch.setattr(copy_module, "_fill", lossy)
    source = populated(tmp_path / "server")
    capsys.readouterr()
    assert main(["db", "copy", "--from", source, "--to", str(tmp_path / "t.db")]) == 1
    captured = capsys.readouterr()
    assert "targets: MISMATCH" in captured.out and "accounts: " in captured.out
    assert "differs from" in captured.err and "targets" in captured.err


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s"),
    ("SELECT '?', \"?\", ? -- what?\n", "SELECT '?', \"?\", %s -- what?\n"),
    ("SELECT 'it''s ?' || ?", "SELECT 'it''s ?' || %s"),
    ("SELECT 5 % 3, '100%', ?", "SELECT 5 %% 3, '100%%', %s"),
    ("SELECT 'unterminated ?", "SELECT 'unterminated ?"),
    ("", ""),
])
def test_placeholders_for_postgresql(sql: str, expected: str) -> None:
    assert to_pyformat(sql) == expected


VALUES = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
                   st.text(max_size=8), st.binary(max_size=8))


@given(st.lists(VALUES, min_size=1, max_size=4), st.lists(VALUES, min_size=1, max_size=4))
def test_row_encoding_is_injective(a: list[Any], b: list[Any]) -> None:
    def typed(row: list[Any]) -> list[tuple[type, Any]]:
        return [(type(v), v) for v in row]

    assert (encode_row(a) == encode_row(b)) == (typed(a) == typed(b))


def test_a_migration_holds_the_write_lock(tmp_path: Path) -> None:
    """Two migrations at once: the second waits on the write lock (here: gives up after
    its busy timeout, one line), and run after the first, finds nothing to do."""
    db = tmp_path / "c.db"
    first = open_db(dburl.parse(str(db)))
    second = open_db(dburl.parse(str(db)))
    second.raw.execute("PRAGMA busy_timeout = 100")
    with first.transaction():
        with pytest.raises(LocalError, match="locked"):
            migrate(second)
    assert migrate(first).describe() == f"from 0 to {VERSION}"
    assert migrate(second).describe() == f"already at {VERSION}"
    first.close()
    second.close()


def test_a_later_version_may_add_a_table_and_columns(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The next version as a later change would declare it: a new table, a new column."""
    from dataclasses import replace

    from certhook.server.store import migrate as migrate_module
    from certhook.server.store import schema
    from certhook.server.store.schema import Column, Table

    db = tmp_path / "c.db"
    now, nxt = schema.VERSION, schema.VERSION + 1
    assert main(["db", "migrate", "--db", str(db)]) == 0
    leases = Table("leases", (Column("target", "int", primary_key=True),
                              Column("node", "text", not_null=True),
                              Column("until", "real", not_null=True)), since=nxt)
    targets = schema.table("targets")
    widened = [replace(t, columns=(*t.columns, Column("vantage", "text", since=nxt)))
               if t is targets else t for t in schema.TABLES]
    later = (*widened, leases)
    for module in (schema, migrate_module):
        monkeypatch.setattr(module, "TABLES", later)
        monkeypatch.setattr(module, "VERSION", nxt)
    with open_db(dburl.parse(str(db))) as conn:
        assert migrate(conn).describe() == f"from {now} to {nxt}"
        assert conn.columns("leases") == ["target", "node", "until"]
        assert conn.columns("targets")[-1] == "vantage"
        assert migrate(conn).describe() == f"already at {nxt}"
