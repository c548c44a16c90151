"""Create or upgrade a database's schema to :data:`~.schema.VERSION`, in one transaction.

An empty database gets the whole schema at once. A database made before
versions were recorded (no ``schema_version`` table: certhook up to issue
11 added columns as it found them missing) is at the highest version
whose columns it all has; the steps after it add what is missing. Two
``migrate`` runs at once queue on a lock (SQLite's write lock, a
PostgreSQL advisory lock) and the second finds nothing to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from certhook.errors import LocalError

from .conn import Db
from .schema import TABLES, VERSION, create_statements, step_statements

__all__ = ["LOCK_KEY", "Migration", "current_version", "migrate", "migrate_in"]

LOCK_KEY = 0x63657274686F6F6B & 0x7FFFFFFFFFFFFFFF  # "certhook": pg_advisory_xact_lock's key


@dataclass(frozen=True)
class Migration:
    before: int  # 0: empty database
    after: int
    recorded: bool  # the version was not recorded before (an unversioned database)

    def describe(self) -> str:
        if self.before == self.after and not self.recorded:
            return f"already at {self.after}"
        note = " (the version was not recorded: now it is)" if self.recorded else ""
        return f"from {self.before} to {self.after}{note}"


def _have(db: Db) -> dict[str, set[str]]:
    tables = db.tables()
    return {t.name: set(db.columns(t.name)) for t in TABLES if t.name in tables}


def current_version(db: Db) -> tuple[int, bool]:
    """The database's schema version (0: empty) and whether it is recorded."""
    tables = db.tables()
    if "schema_version" in tables:
        rows = db.execute("SELECT max(version) FROM schema_version")
        if rows and rows[0][0] is not None:
            return int(rows[0][0]), True
    have = _have(db)
    if not have:
        return 0, False
    version = 0
    for candidate in range(1, VERSION + 1):
        if all(set(t.names(candidate)) <= have.get(t.name, set()) for t in TABLES
               if t.since <= candidate):
            version = candidate
    if version == 0:
        raise LocalError(f"{db.name}: holds some of certhook's tables but not the first"
                         " release's columns: not a certhook database?")
    return version, False


def migrate_in(db: Db) -> Migration:
    """:func:`migrate` inside the caller's write transaction."""
    if db.dialect == "postgresql":
        db.execute("SELECT pg_advisory_xact_lock(?)", (LOCK_KEY,))
    before, recorded = current_version(db)
    if before > VERSION:
        raise LocalError(f"{db.name}: schema version {before} is newer than this certhook's"
                         f" ({VERSION}): upgrade certhook")
    if before == 0:
        statements = create_statements(db.dialect)
    else:
        statements = []
        have = _have(db)
        for version in range(before + 1, VERSION + 1):
            statements += step_statements(db.dialect, version, have)
        statements.append("CREATE TABLE IF NOT EXISTS schema_version"
                          " (version INTEGER NOT NULL)")
    for statement in statements:
        db.execute(statement)
    if before != VERSION or not recorded:
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (VERSION,))
    return Migration(before, VERSION, before != 0 and not recorded)


def migrate(db: Db) -> Migration:
    """Bring ``db`` to :data:`VERSION` in one transaction; what it was and is now."""
    with db.transaction():
        return migrate_in(db)
