"""Databases for the ``db migrate`` / ``db copy`` tests: a populated one, and its rows.

:func:`populated` fills a SQLite database through the server's own code
paths: accounts made and rotated by ``certhook keys``, submissions over the
HTTP API and the line protocol, probes (fake results) that the auditor
records, and notifications the notifier queues and delivers to a webhook
on loopback. A few rows of awkward values (NULL beside '', non-ASCII
text, floats that do not round-trip through a short decimal) are written
directly, where no code path makes them on demand.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from server_helpers import (
    FakeProbe,
    LineClient,
    WebhookReceiver,
    add_line,
    config,
    count,
    fake_result,
    http,
    new_db,
    running,
    wait_until,
)

from certhook.cli import main
from certhook.server.config import AccountNotify
from certhook.server.store import dburl
from certhook.server.store.conn import open_db
from certhook.server.store.schema import TABLES

DOWN = fake_result("unknown", error="connection refused by 192.0.2.1", connected=False)


def populated(tmp_path: Path) -> str:
    """The path of a SQLite database with rows in every table, made by the server."""
    db, keys = new_db(tmp_path, "alice", "bob", "carol")
    assert main(["keys", "--db", db, "rotate", "bob", "--overlap", "1d"]) == 0
    assert main(["keys", "--db", db, "revoke", "carol"]) == 0
    hook = WebhookReceiver()
    probe = FakeProbe({"down.example": DOWN, "soon.example": fake_result("warning", days=5)})
    notify = AccountNotify(webhook=(hook.url,))
    # bob's targets are probed from a vantage (this node's): rows in ``vantages`` too
    cfg = replace(config(db, failure_threshold=1, notify_backoff=0.1, interval=0.3),
                  accounts={"alice": notify}, account_vantages={"bob": ("here",)},
                  vantage="here")
    try:
        with running(cfg, probe_fn=probe) as srv:
            assert srv.line_address and srv.http_address
            base = f"http://127.0.0.1:{srv.http_address[1]}"
            client = LineClient(srv.line_address)
            for i in range(30):
                assert client.ask(add_line(keys["alice"], f"site{i}.example", port=443,
                                           id=f"a{i}")).startswith(b"ok")
            client.ask(add_line(keys["alice"], "down.example", "soon.example", id="a-x"))
            body = {"domains": ["b.example", "b2.example"], "ports": [443, 8443],
                    "id": "b1", "fingerprint": "bb" * 32, "event": "deployed",
                    "client": "test/1"}
            answer = http("POST", f"{base}/api/v1/submissions", body, keys["bob"])
            assert answer[0] == 200, answer
            wait_until(lambda: count(db, "targets", last_probe=None) == 0,
                       what="every target probed")
            wait_until(lambda: count(db, "notifications", sent=lambda t: t is not None) >= 1,
                       what="a notification sent")
            wait_until(lambda: hook.received, what="the webhook")
    finally:
        hook.close()
    conn = open_db(dburl.parse(db))
    with conn.transaction():
        conn.execute("INSERT INTO submissions (account, client_id, time, transport, peer,"
                     " domains, ports, protocols, fingerprint, lineage, event, client)"
                     " VALUES ('alice', 'odd', 0.1, 'http', NULL, '', '', '', '', NULL,"
                     " 'é✓\U0001f512', ?)", ("x" * 5000,))
        conn.execute("UPDATE targets SET not_after = 1.0000000000000002, issuer = '' WHERE"
                     " id = (SELECT min(id) FROM targets)")
    for table in TABLES:  # the copy's own reader: every table has rows
        assert conn.execute(f"SELECT count(*) FROM {table.name}")[0][0] > 0, table.name
    conn.close()
    return db


def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in key order (bytes as bytes, text in byte order)."""
    out = {}
    with open_db(dburl.parse(url), create=False) as db, db.transaction(write=False):
        for table in TABLES:
            key = table.key + (' COLLATE "C"' if db.dialect == "postgresql"
                               and table.key != "id" else "")
            out[table.name] = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                               for r in db.execute(f"SELECT {', '.join(table.names())}"
                                                   f" FROM {table.name} ORDER BY {key}")]
    return out
