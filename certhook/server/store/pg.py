"""The PostgreSQL side: connecting with psycopg 3, errors, and the dialect's small differences.

psycopg is imported here and only here, lazily: the hook, client and probe
never load this module, and a ``postgresql://`` database without the
``postgres`` extra installed is one line saying what to install.

Connections are in autocommit mode and every transaction is explicit
(:data:`BEGIN` ... ``COMMIT``), as the SQLite side does with
``isolation_level=None``: portable code issues the same statements on both,
a batch of submissions is exactly one transaction, and a read outside a
transaction does not leave the session "idle in transaction" (which would
hold locks and a snapshot, and stop VACUUM, until the next write).

Errors are translated once, here: losing the server (refused, reset,
restarted, timed out) is :class:`~certhook.errors.StoreUnavailable`; any
other database error a :class:`~certhook.errors.LocalError`. Both are one
line naming the database by its redacted URL; libpq's own text is scrubbed
of the password too, should it ever quote it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from certhook.errors import LocalError, StoreConflict, StoreUnavailable

from .dburl import PostgresUrl

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "BEGIN",
    "CONNECT_TIMEOUT",
    "EXTRA",
    "connect",
    "is_unavailable",
    "to_pyformat",
    "translate",
]

CONNECT_TIMEOUT = 10  # seconds, unless the URL sets connect_timeout
BEGIN = "BEGIN"  # READ COMMITTED; the SQLite side's writers say BEGIN IMMEDIATE
EXTRA = "needs the postgres extra: pip install 'certhook[postgres]'"


def _psycopg(url: PostgresUrl) -> Any:
    try:
        import psycopg
    except ImportError:
        raise LocalError(f"db = {url.redacted()}: {EXTRA}") from None
    return psycopg


def connect(url: PostgresUrl, timeout: int = CONNECT_TIMEOUT) -> psycopg.Connection[Any]:
    """An autocommit connection to ``url``; StoreUnavailable if it cannot be reached."""
    driver = _psycopg(url)
    options: dict[str, Any] = {"autocommit": True}
    if url.param("connect_timeout") is None:
        options["connect_timeout"] = timeout
    try:
        conn: psycopg.Connection[Any] = driver.connect(url.url, **options)
    except driver.Error as exc:
        raise translate(exc, url) from None
    _adapt(conn)
    return conn


def _adapt(conn: psycopg.Connection[Any]) -> None:
    """Values come back as the SQLite side's do: ``numeric`` (what sum() of a
    bigint gives) as int or float, not Decimal. bytea is bytes, double
    precision float, bigint int, as psycopg loads them anyway."""
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        def load(self, data: Any) -> Any:
            text = bytes(data).decode()
            try:
                return int(text)
            except ValueError:
                return float(text)

    conn.adapters.register_loader("numeric", NumericLoader)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the server is gone (as opposed to a bad statement)."""
    try:
        import psycopg
    except ImportError:
        return False
    if _conflict(exc):  # an OperationalError too, but the server is there
        return False
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return True
    # 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now: class 57,
    # "operator intervention", and 08 "connection exception" (SQLSTATE, appendix A)
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith(("08", "57P"))


def _conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is a transaction rolled back for crossing another (SQLSTATE class
    40: 40P01 deadlock_detected, 40001 serialization_failure; appendix A)."""
    return (getattr(exc, "sqlstate", None) or "").startswith("40")


def translate(exc: BaseException, url: PostgresUrl) -> LocalError:
    """``exc`` from psycopg as one line naming the database (redacted)."""
    lines = str(exc).strip().splitlines()
    why = lines[0] if lines else type(exc).__name__
    for secret in (url.password, url.param("password"), url.param("sslpassword")):
        if secret:
            why = why.replace(secret, "***")
    if _conflict(exc):
        return StoreConflict(f"db = {url.redacted()}: {why}")
    if is_unavailable(exc):
        return StoreUnavailable(f"db = {url.redacted()}: unavailable: {why}")
    return LocalError(f"db = {url.redacted()}: {why}")


@functools.lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """A portable statement (``?`` placeholders) in psycopg's format (``%s``).

    ``?`` becomes ``%s`` outside string literals, quoted identifiers and
    comments; every ``%`` becomes ``%%`` (psycopg reads ``%`` everywhere in
    a statement that has parameters, literals included).
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):  # a literal or identifier; a doubled quote stays inside
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i:end + 1].replace("%", "%%"))
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif ch == "?":
            out.append("%s")
            i += 1
        elif ch == "%":
            out.append("%%")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)
