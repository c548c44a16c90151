"""Notifications: email over SMTP, a JSON webhook, and the log.

The auditor only *queues* a notice (``enqueue``, a row per destination in
the ``notifications`` table, in the same transaction as the result that
caused it); the :class:`Notifier` thread delivers the rows, retrying a
failed delivery with exponential backoff up to ``notify_retries`` times.
A dead mail relay therefore never slows probing, and a notice queued just
before a crash is sent after the restart.
"""

from __future__ import annotations

import json
import logging
import smtplib
import sqlite3
import ssl
import time
import urllib.request
from email.message import EmailMessage
from typing import Any, Callable

from certhook import __version__
from certhook.escape import for_header, for_terminal, visible
from certhook.probe.lifetime import describe_left
from certhook.server import store
from certhook.server.config import ServerConfig, SmtpConfig
from certhook.server.worker import Worker

__all__ = ["Notifier", "enqueue", "send_email", "send_webhook", "summary"]

log = logging.getLogger("certhook.notify")

_POLL = 5.0


def _left(payload: dict[str, Any]) -> str:
    seconds = payload.get("seconds_left")
    if isinstance(seconds, (int, float)):
        return describe_left(seconds)
    return f"{payload.get('days_left')} days"


def _at(payload: dict[str, Any]) -> str:
    """The notice's threshold: ``notice at 23.33% of its lifetime``, ``notice at 7 days``."""
    threshold = str(payload.get("threshold"))
    if threshold.endswith("%"):
        return f"notice at {threshold} of its lifetime"
    return f"notice at {threshold} days" if threshold.isdigit() else f"notice at {threshold}"


def summary(payload: dict[str, Any]) -> str:
    """One line: ``CRITICAL www.example.org:443/tls: renewed but not deployed ...``.

    The reason may quote a served certificate: control characters are escaped.
    """
    where = f"{payload['domain']}:{payload['port']}/{payload['protocol']}"
    kind = payload.get("kind")
    if kind == "expiry":
        return f"EXPIRY {where}: certificate expires in {_left(payload)} ({_at(payload)})"
    if kind == "recovery":
        return f"RECOVERED {where}: ok again (was {payload.get('previous')})"
    first = (payload.get("reasons") or [""])[0]
    return visible(f"{str(payload.get('state', '')).upper()} {where}: {first}".rstrip(": "))


def enqueue(conn: sqlite3.Connection, config: ServerConfig, account: str,
            payload: dict[str, Any], now: float) -> None:
    """Queue ``payload`` for every destination of ``account`` (inside the caller's transaction)."""
    targets = config.notify_for(account)
    if targets.log:
        log.warning("%s: %s", account, summary(payload))
    data = json.dumps(payload, sort_keys=True)
    rows = [(account, "email", to, data, now, now) for to in targets.email]
    rows += [(account, "webhook", url, data, now, now) for url in targets.webhook]
    conn.executemany(
        "INSERT INTO notifications (account, channel, destination, payload, created,"
        " next_attempt) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


def send_email(smtp: SmtpConfig, to: str, payload: dict[str, Any]) -> None:
    """Send one notice by mail; raises OSError or smtplib.SMTPException on failure."""
    if not smtp.host:
        raise smtplib.SMTPException("no [smtp] host configured")
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = to
    # A CR or LF in a header value makes EmailMessage refuse the whole message.
    msg["Subject"] = for_header(f"[certhook] {summary(payload)}", limit=200)
    lines = [summary(payload), ""]
    for key in ("account", "domain", "port", "protocol", "state", "previous", "days_left",
                "seconds_left",
                "issuer", "served_fingerprint", "expected_fingerprint"):
        if payload.get(key) is not None:
            lines.append(f"{key}: {for_terminal(payload[key])}")
    lines += ["", "reasons:"] + [f"  - {for_terminal(r)}" for r in payload.get("reasons") or []]
    msg.set_content("\n".join(lines) + "\n")
    context = ssl.create_default_context(cafile=smtp.ca_file)
    client: smtplib.SMTP
    if smtp.ssl:
        client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=context)
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    with client:
        client.ehlo()
        if smtp.starttls and not smtp.ssl:
            client.starttls(context=context)
            client.ehlo()
        if smtp.username:
            client.login(smtp.username, smtp.password)
        client.send_message(msg)


def send_webhook(url: str, payload: dict[str, Any], timeout: float = 15.0) -> None:
    """POST the notice as JSON; raises OSError (URLError, HTTPError) unless 2xx."""
    if not url.lower().startswith(("https://", "http://")):
        raise OSError(f"webhook URL must be http(s): {url[:60]!r}")
    body = json.dumps({"certhook": __version__, **payload}).encode()
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"certhook/{__version__}"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        if not 200 <= response.status < 300:
            raise OSError(f"webhook answered HTTP {response.status}")


class Notifier(Worker):
    """Delivers queued notifications in its own thread, with retries and backoff."""

    thread_name = "certhook-notify"

    def __init__(self, config: ServerConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self.sent = 0
        super().__init__()

    def _run(self) -> None:
        conn = store.connect(self.config.db)
        while not self._stopping.is_set():
            self._wake.clear()
            wait = _POLL
            try:
                wait = self._deliver_due(conn)
            except Exception:
                log.exception("notifier")
            self._wake.wait(max(0.0, min(wait, _POLL)))
        conn.close()

    def _deliver_due(self, conn: sqlite3.Connection) -> float:
        now = self._clock()
        rows = conn.execute(
            "SELECT id, channel, destination, payload, attempts FROM notifications"
            " WHERE sent IS NULL AND failed IS NULL AND next_attempt <= ?"
            " ORDER BY next_attempt LIMIT 50",
            (now,),
        ).fetchall()
        for row in rows:
            if self._stopping.is_set():
                break
            self._deliver(conn, row)
        nxt = conn.execute(
            "SELECT min(next_attempt) FROM notifications WHERE sent IS NULL AND failed IS NULL"
        ).fetchone()[0]
        return _POLL if nxt is None else float(nxt) - self._clock()

    def _deliver(self, conn: sqlite3.Connection, row: sqlite3.Row) -> None:
        payload = json.loads(row["payload"])
        try:
            if row["channel"] == "email":
                send_email(self.config.smtp, row["destination"], payload)
            else:
                send_webhook(row["destination"], payload)
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            attempts = row["attempts"] + 1
            now = self._clock()
            give_up = attempts >= self.config.notify_retries
            delay = self.config.notify_backoff * 2 ** (attempts - 1)
            error = f"{exc.__class__.__name__}: {exc}"[:300]
            log.warning("%s to %s failed (attempt %d%s): %s", row["channel"],
                        row["destination"], attempts, ", giving up" if give_up else "", error)
            conn.execute(
                "UPDATE notifications SET attempts = ?, next_attempt = ?, last_error = ?,"
                " failed = ? WHERE id = ?",
                (attempts, now + delay, error, now if give_up else None, row["id"]),
            )
            return
        conn.execute("UPDATE notifications SET sent = ?, attempts = attempts + 1 WHERE id = ?",
                     (self._clock(), row["id"]))
        self.sent += 1
        log.info("%s sent to %s", row["channel"], row["destination"])
