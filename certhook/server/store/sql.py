"""``SqlStore``: the whole :class:`~certhook.server.store.base.Store` in portable SQL.

An engine subclasses it with its connections (``sqlite.py``); the accounts'
and the auditor's statements are in ``sql_accounts.py`` and ``sql_audit.py``,
the lifecycle commands' and the read views' here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from certhook.server.store.records import SEVERITY, Cursor, ReportRow, Result, Target
from certhook.server.store.sql_accounts import AccountsMixin
from certhook.server.store.sql_base import RESULT_COLUMNS, TARGET_COLUMNS, columns
from certhook.server.store.sql_vantages import VantagesMixin

__all__ = ["SqlStore"]

_ORDER = "account{c}, domain{c}, port, protocol{c}"  # {c}: SqlBase._COLLATE
_NEVER = 1e18  # sorts a target without a notAfter after every dated one
_SEVERITY_SQL = ("CASE state " + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(SEVERITY))
                 + f" ELSE {len(SEVERITY)} END")
_GROUP_SQL = {"lineage": "coalesce(nullif(lineage, ''), domain)", "host": "domain",
              "none": "id"}


def _select(account: str | None, domain: str | None, port: int | None,
            protocol: str | None) -> tuple[str, list[Any]]:
    clauses, args = ["1 = 1"], []  # type: list[str], list[Any]
    for column, value in (("domain", domain), ("account", account), ("port", port),
                          ("protocol", protocol)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    return " AND ".join(clauses), args


class SqlStore(AccountsMixin, VantagesMixin):
    """Every statement of the store, written once for every engine."""

    #: ``column contains ?`` as a literal substring (not LIKE: % and _ are characters);
    #: replace() is in SQLite and PostgreSQL alike (instr and strpos are not); ? is not ''
    _CONTAINS = "replace({0}, ?, '') <> {0}"

    # -- targets: the lifecycle commands -------------------------------------------

    def target(self, target_id: int, account: str | None = None) -> Target | None:
        where, args = "id = ?", [target_id]  # type: str, list[Any]
        if account is not None:
            where += " AND account = ?"
            args.append(account)
        found = self._targets_where(where, args)
        return found[0] if found else None

    def find_targets(self, account: str | None, domain: str | None,
                     port: int | None = None, protocol: str | None = None) -> list[Target]:
        where, args = _select(account, domain, port, protocol)
        return self._targets_where(where, args, _ORDER.format(c=self._COLLATE))

    def list_targets(self, account: str | None, limit: int = 10**9,
                     after: Cursor | None = None, domain: str | None = None
                     ) -> list[Target]:
        where, args = _select(account, domain, None, None)
        if account is not None and after is not None:
            c = self._COLLATE
            where += f" AND (domain{c}, port, protocol{c}) > (?, ?, ?)"
            args.extend(after)
        args.append(limit)
        return self._targets_where(where, args, _ORDER.format(c=self._COLLATE) + " LIMIT ?")

    def remove_targets(self, ids: Sequence[int]) -> None:
        with self._transaction() as conn:
            self._delete_targets(conn, ids)

    def mute_targets(self, ids: Sequence[int], until: float | None) -> None:
        with self._transaction() as conn:
            self._executemany(conn, "UPDATE targets SET muted_until = ? WHERE id = ?",
                              [(until, i) for i in ids])

    def mark_due(self, account: str | None, domain: str | None, port: int | None,
                 protocol: str | None, now: float) -> list[Target]:
        where, args = _select(account, domain, port, protocol)
        where += " AND next_probe IS NOT NULL"  # wildcards are never probed
        with self._transaction() as conn:  # one transaction, one fsync, for --all too
            found = self._targets_where(where, args, _ORDER.format(c=self._COLLATE), conn=conn)
            self._executemany(conn, "UPDATE targets SET next_probe = ? WHERE id = ?",
                              [(now, t.id) for t in found])
            self._executemany(conn, "UPDATE vantages SET next_probe = ? WHERE target = ?",
                              [(now, t.id) for t in found if t.vantages])
        return found

    def targets_by_id(self, ids: Sequence[int]) -> list[Target]:
        out = []
        for target_id in ids:
            found = self.target(target_id)
            if found is not None:
                out.append(found)
        return out

    # -- read views ------------------------------------------------------------------

    def state_counts(self, account: str | None) -> dict[str, int]:
        if account is None:
            rows = self._all("SELECT state, count(*) FROM targets GROUP BY state")
        else:
            rows = self._all("SELECT state, count(*) FROM targets WHERE account = ?"
                             " GROUP BY state", (account,))
        return {str(state): int(n) for state, n in rows}

    def state_mute_counts(self, account: str | None, now: float, domain: str | None = None
                          ) -> list[tuple[str, int, int]]:
        where, args = _select(account, domain, None, None)
        rows = self._all("SELECT state, count(*), sum(CASE WHEN muted_until > ? THEN 1"  # noqa: S608
                         f" ELSE 0 END) FROM targets WHERE {where} GROUP BY state",
                         [now, *args])
        return [(str(state), int(n), int(m or 0)) for state, n, m in rows]

    def event_time(self, account: str, lineage: str | None, event: str, domain: str
                   ) -> float | None:
        # a name is a whole word of the space-separated domains
        contains = self._CONTAINS.format("(' ' || domains || ' ')")
        same_lineage = "lineage IS NULL" if lineage is None else "lineage = ?"
        args: list[Any] = [account] + ([] if lineage is None else [lineage])
        row = self._one("SELECT time FROM submissions WHERE account = ?"  # noqa: S608
                        f" AND {same_lineage} AND event IS NOT NULL AND event = ?"
                        f" AND {contains} ORDER BY time DESC LIMIT 1",
                        [*args, event, f" {domain} "])
        return None if row is None else float(row[0])

    def recent_results(self, target_id: int, limit: int = 60) -> list[Result]:
        rows = self._all(f"SELECT {columns(RESULT_COLUMNS)} FROM results"  # noqa: S608
                         " WHERE target = ? ORDER BY time DESC, id DESC LIMIT ?",
                         (target_id, limit))
        return [Result(*r) for r in reversed(rows)]

    def _filter(self, account: str | None, states: tuple[str, ...], search: str
                ) -> tuple[str, list[Any]]:
        where, args = ["1 = 1"], []  # type: list[str], list[Any]
        if account is not None:
            where.append("account = ?")
            args.append(account)
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        if search:
            lineage = "lower(coalesce(lineage, ''))"
            where.append(f"({self._CONTAINS.format('domain')} OR"
                         f" {self._CONTAINS.format(lineage)})")
            args.extend([search.lower(), search.lower()])
        return " AND ".join(where), args

    def report_page(self, account: str | None, *, states: tuple[str, ...] = (),
                    search: str = "", group: str = "lineage", offset: int = 0,
                    limit: int = 100) -> tuple[list[ReportRow], int]:
        """Groups (by ``group``) worst first, then by earliest notAfter; in a group, by
        severity then time left. Only the page's rows leave the database: the sort and
        the window over the groups run in it, so memory is bounded by ``limit``."""
        where, args = self._filter(account, states, search)
        row = self._one(f"SELECT count(*) FROM targets WHERE {where}", args)  # noqa: S608
        total = int(row[0]) if row else 0
        key = _GROUP_SQL.get(group, _GROUP_SQL["lineage"])
        # The sort runs over narrow rows (id and sort keys) and keeps only the top rows
        # (LIMIT); only the page's rows are then read whole. Each group's worst state is a
        # GROUP BY joined back: a window over the groups took twice as long at 100,000.
        if group == "none":  # no groups: nothing to join
            source = ("keyed", "severity AS group_severity, 1 AS group_size,"
                      " left_key AS group_left")
        else:
            source = ("keyed JOIN groups ON keyed.group_key = groups.group_key",
                      "group_severity, group_size, group_left")
        c = self._COLLATE
        if group != "none":  # a text key: its collation goes with it through the CTEs
            key += c
        sql = f"""
            WITH keyed AS (
                SELECT id, {_SEVERITY_SQL} AS severity, {key} AS group_key,
                       coalesce(not_after, {_NEVER}) AS left_key, domain, port, protocol
                FROM targets WHERE {where}),
            groups AS (
                SELECT group_key, min(severity) AS group_severity, count(*) AS group_size,
                       min(left_key) AS group_left
                FROM keyed GROUP BY group_key),
            page AS (
                SELECT keyed.id, severity, keyed.group_key, {source[1]}, left_key, domain,
                       port, protocol
                FROM {source[0]}
                ORDER BY group_severity, group_left, keyed.group_key, severity, left_key,
                         domain{c}, port, protocol{c}
                LIMIT ? OFFSET ?)
            SELECT {columns(TARGET_COLUMNS, "t.")}, page.severity, page.group_key,
                   page.group_severity, page.group_size
            FROM page JOIN targets AS t ON t.id = page.id
            ORDER BY group_severity, group_left, page.group_key, page.severity,
                     page.left_key, page.domain{c}, page.port, page.protocol{c}"""  # noqa: S608
        rows = self._all(sql, (*args, max(1, limit), max(0, offset)))
        return [self._report_row(r) for r in rows], total

    # -- metrics -----------------------------------------------------------------------

    def target_accounts(self) -> list[str]:
        # DISTINCT orders by what it selects: the collated value
        sql = f"SELECT DISTINCT account{self._COLLATE} FROM targets ORDER BY 1"  # noqa: S608
        return [str(r[0]) for r in self._all(sql)]

    def count_due(self, now: float) -> int:
        row = self._one("SELECT count(*) FROM targets WHERE next_probe <= ?", (now,))
        return int(row[0]) if row else 0
