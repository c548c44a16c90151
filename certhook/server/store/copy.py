"""``db copy``: every row of one database into another, empty one, then checked.

The source is read in one snapshot (a read transaction: a server still
writing to it does not tear the copy) and never written. The target is
written in one transaction: it is checked empty, given the schema (at
:data:`~.schema.VERSION`), filled table by table in dependency order with
ids preserved, in batches of :data:`~.conn.BATCH` rows, and its identity
sequences set past the highest id (PostgreSQL). A failure leaves it as it
was. Rows are streamed: memory holds one batch, whatever the size.

Then each table is checked: its row count and a SHA-256 over its rows in
key order, in a canonical encoding that both sides compute the same way
(:func:`encode_row`: NULL, integers, floats by ``repr``, text with its
length, bytes in hex, each tagged with its type, so NULL differs from
``''`` and ``1`` from ``1.0``). The source's digest is taken from the very
rows that were copied, the target's by reading the target back.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from certhook.errors import LocalError

from .conn import BATCH, Db
from .dburl import PostgresUrl, SqliteUrl
from .migrate import current_version, migrate_in
from .schema import TABLES, VERSION, Table

__all__ = ["Check", "Digest", "copy", "encode_row", "table_digest"]


def _encode(value: Any) -> bytes:
    if value is None:
        return b"N"
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return b"i%d" % value
    if isinstance(value, float):
        return b"f" + repr(value).encode()
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        return b"s%d:" % len(data) + data
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b"b" + bytes(value).hex().encode()
    raise LocalError(f"a value of type {type(value).__name__} in the database")


def encode_row(row: Sequence[Any]) -> bytes:
    """The canonical bytes of one row, as both sides of a copy hash them."""
    return b"|".join(_encode(value) for value in row) + b"\n"


class Digest:
    """A running count and SHA-256 of rows, fed in key order."""

    def __init__(self) -> None:
        self.rows = 0
        self._hash = hashlib.sha256()

    def update(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self._hash.update(encode_row(row))
            self.rows += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


@dataclass(frozen=True)
class Check:
    """One table's verification: the source's and the target's count and digest."""

    table: str
    rows: int
    digest: str
    target_rows: int
    target_digest: str

    @property
    def ok(self) -> bool:
        return self.rows == self.target_rows and self.digest == self.target_digest

    def line(self) -> str:
        if self.ok:
            return f"{self.table}: {self.rows} rows, sha256 {self.digest[:16]}, identical"
        return (f"{self.table}: MISMATCH: source {self.rows} rows, sha256 {self.digest[:16]};"
                f" target {self.target_rows} rows, sha256 {self.target_digest[:16]}")


def _select(db: Db, t: Table) -> str:
    key = t.key
    if db.dialect == "postgresql" and key != "id":
        key += ' COLLATE "C"'  # byte order, as SQLite's BINARY collation sorts
    return f"SELECT {', '.join(t.names())} FROM {t.name} ORDER BY {key}"  # noqa: S608


def table_digest(db: Db, t: Table, batch: int = BATCH) -> Digest:
    """The count and digest of table ``t`` of ``db`` (inside a transaction on PostgreSQL)."""
    digest = Digest()
    for rows in db.stream(_select(db, t), size=batch):
        digest.update(rows)
    return digest


def _same(source: Db, target: Db) -> bool:
    a, b = source.target, target.target
    if isinstance(a, SqliteUrl) and isinstance(b, SqliteUrl):
        try:
            return os.path.samefile(a.path, b.path)
        except OSError:
            return False
    if isinstance(a, PostgresUrl) and isinstance(b, PostgresUrl):
        return (a.hosts, a.dbname, a.param("host"), a.param("port")) == (
            b.hosts, b.dbname, b.param("host"), b.param("port"))
    return False


def _refuse_non_empty(target: Db) -> None:
    present = target.tables()
    for t in TABLES:
        if t.name in present and target.execute(f"SELECT 1 FROM {t.name} LIMIT 1"):  # noqa: S608
            raise LocalError(f"{target.name}: not empty ({t.name} has rows): db copy writes"
                             " only into an empty database")


def _fill(source: Db, target: Db, t: Table, batch: int) -> Digest:
    names = t.names()
    insert = (f"INSERT INTO {t.name} ({', '.join(names)})"  # noqa: S608
              f" VALUES ({', '.join('?' * len(names))})")
    digest = Digest()
    try:
        for rows in source.stream(_select(source, t), size=batch):
            digest.update(rows)
            target.executemany(insert, rows)
    except LocalError as exc:
        raise LocalError(f"copying {t.name}: {exc}") from None
    if target.dialect == "postgresql" and t.key == "id":
        target.execute(f"SELECT setval(pg_get_serial_sequence('{t.name}', 'id'),"  # noqa: S608
                       f" coalesce(max(id), 0) + 1, false) FROM {t.name}")
    return digest


def copy(source: Db, target: Db, batch: int = BATCH,
         progress: Callable[[str], None] = lambda line: None) -> list[Check]:
    """Copy ``source`` into the empty ``target`` and check every table; the checks."""
    if _same(source, target):
        raise LocalError(f"{target.name}: the source and the target are the same database")
    with source.transaction(write=False, snapshot=True):
        version, _ = current_version(source)
        if version != VERSION:
            what = "empty" if version == 0 else f"at schema version {version}"
            raise LocalError(f"{source.name}: {what}, not {VERSION}: run 'certhook db migrate"
                             " --db SOURCE' first")
        digests = {}
        with target.transaction():
            _refuse_non_empty(target)
            migrate_in(target)
            for t in TABLES:
                digests[t.name] = _fill(source, target, t, batch)
                progress(f"{t.name}: {digests[t.name].rows} rows copied")
    checks = []
    with target.transaction(write=False, snapshot=True):
        for t in TABLES:
            got = table_digest(target, t, batch)
            want = digests[t.name]
            checks.append(Check(t.name, want.rows, want.hexdigest(), got.rows,
                                got.hexdigest()))
    return checks
