"""Notifications: grouped, rate-limited and reminded, by email, webhook and the log.

The auditor only *queues* a notice (``enqueue``, a row per destination in
the ``notifications`` table, in the same transaction as the result that
caused it); the :class:`Notifier` thread delivers the rows, retrying a
failed delivery with exponential backoff up to ``notify_retries`` times.
A dead mail relay therefore never slows probing, and a notice queued just
before a crash is sent after the restart.

Grouping: a row is due ``notify_group_window`` after it was queued; when
one row of an (account, channel, destination) is due, every pending row of
that destination goes out as one message (:class:`~certhook.server.channels.Digest`,
worst first, with counts). Rate limit: at most ``notify_rate_limit[0]``
messages per destination in any ``notify_rate_limit[1]`` seconds; a digest
over the limit is held until the window ends, then sent as one summary
naming how many were held, with every held notice in it. Reminders: a
target whose failure was notified and that still fails is reminded every
``notify_remind`` seconds after it entered the state.

Several nodes on one database: the ``notifications`` table is an outbox
that nodes *claim* one destination at a time (``Store.claim_notifications``,
a lease of ``lease`` seconds), so no two nodes send the same row; a node
dying between a delivery and marking it sent causes one resend after the
lease (at-least-once across a crash, exactly-once otherwise).
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import time
import urllib.request
from collections import deque
from email.message import EmailMessage
from typing import Any, Callable

from certhook import __version__
from certhook.errors import StoreUnavailable
from certhook.server import store
from certhook.server.channels import FORMATS, Digest, parse_webhook, redact, render_email, summary
from certhook.server.config import ServerConfig, SmtpConfig
from certhook.server.outage import Outage, release_leases
from certhook.server.worker import Worker

__all__ = ["Notifier", "notices", "send_email", "send_webhook", "summary"]

log = logging.getLogger("certhook.notify")

_POLL = 5.0
_ROUND = 50  # destinations delivered in one round, at most
_FAILING = ("critical", "unknown", "warning")


def notices(config: ServerConfig, account: str, payload: dict[str, Any],
            now: float) -> list[store.Notice]:
    """``payload`` for every destination of ``account``, to queue (the log one is written now).

    It is due after the group window, so that what happens within it goes out together.
    """
    targets = config.notify_for(account)
    if targets.log:
        log.warning("%s: %s", account, summary(payload))
    data = json.dumps(payload, sort_keys=True)
    due = now + config.notify_group_window
    rows = [store.Notice(account, "email", to, data, now, due) for to in targets.email]
    rows += [store.Notice(account, "webhook", url, data, now, due) for url in targets.webhook]
    return rows


def send_email(smtp: SmtpConfig, to: str, digest: Digest) -> None:
    """Send one digest by mail (text and HTML); raises OSError or smtplib.SMTPException."""
    if not smtp.host:
        raise smtplib.SMTPException("no [smtp] host configured")
    subject, plain, page = render_email(digest)
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = to
    msg["Subject"] = subject  # escaped: a CR or LF would make EmailMessage refuse it
    msg.set_content(plain)
    msg.add_alternative(page, subtype="html")
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


def send_webhook(destination: str, digest: Digest, timeout: float = 15.0) -> None:
    """POST the digest in the destination's format; raises OSError (URLError, HTTPError)."""
    try:
        name, url = parse_webhook(destination)
    except ValueError as exc:
        raise OSError(str(exc)) from None
    request = FORMATS[name].render(digest)
    call = urllib.request.Request(  # noqa: S310 - scheme checked by parse_webhook
        url, data=request.body, method="POST",
        headers={**request.headers, "User-Agent": f"certhook/{__version__}"},
    )
    with urllib.request.urlopen(call, timeout=timeout) as response:  # noqa: S310
        if not 200 <= response.status < 300:
            raise OSError(f"webhook answered HTTP {response.status}")


class Notifier(Worker):
    """Delivers queued notifications in its own thread: grouped, rate-limited, retried.

    ``sent`` counts messages delivered, ``failures`` failed attempts (for /metrics).
    """

    thread_name = "certhook-notify"

    def __init__(self, config: ServerConfig, clock: Callable[[], float] = time.time,
                 node: str = "") -> None:
        from certhook.server.audit import default_node

        self.config = config
        self.node = node or config.node or default_node()
        self._clock = clock
        self.sent = 0
        self.failures = 0
        self.held = 0  # notices held back by the rate limit, all told
        # per (account, channel, destination): when its recent messages went out
        self._recent: dict[tuple[str, str, str], deque[float]] = {}
        self._held: dict[tuple[str, str, str], set[int]] = {}
        self._next_remind = 0.0
        self.outage = Outage("notifier", log)
        super().__init__()

    def _run(self) -> None:
        db: store.Store | None = None
        lost = False  # after an outage: a claim may have committed with its answer lost
        while not self._stopping.is_set():
            self._wake.clear()
            wait = _POLL
            try:
                if db is None:
                    db = store.open_store(self.config.db)
                if lost:  # nothing is in flight here: every lease of ours is given back
                    db.release_notifications(self.node)
                    lost = False
                self._remind(db)
                wait = self._deliver_due(db)
                self.outage.ok()
            except StoreUnavailable as exc:  # PostgreSQL gone: pause, no traceback per try
                wait = self.outage.failed(exc)
                lost = True
            except Exception:
                log.exception("notifier")
            self._wake.wait(max(0.0, min(wait, _POLL)))
        if db is not None:
            # claimed and not delivered: the other nodes need not wait for the lease
            release_leases(f"notifier of node {self.node}",
                           lambda: db.release_notifications(self.node), log)
            db.close()

    # -- reminders --------------------------------------------------------------

    def _remind(self, db: store.Store) -> None:
        """Queue a reminder for each target still failing ``remind`` after its last notice.

        Reminder k of a state is due ``k * remind`` after the target entered it; the
        database records the period last reminded, so that with several nodes (or after a
        restart) each period is reminded once, and periods missed while no node ran are
        not sent in a burst: only the current one is.
        """
        every = self.config.notify_remind
        now = self._clock()
        if every <= 0 or now < self._next_remind:
            return
        self._next_remind = now + min(every / 4, 60.0)
        for row in db.failing_targets(_FAILING, now - every):
            since = row.state_since or 0.0
            period = since + every * ((now - since) // every)  # the current period's start
            if row.reminded is not None and row.reminded >= period:
                continue  # this period's reminder went out (from this node or another)
            payload = {
                "kind": "reminder", "state": row.state, "account": row.account,
                "domain": row.domain, "port": row.port, "protocol": row.protocol,
                "since": row.state_since, "reasons": row.reasons.split("\n"),
                "days_left": row.days_left, "issuer": row.issuer,
                "served_fingerprint": row.served_fingerprint,
                "expected_fingerprint": row.expected_fingerprint, "time": now,
            }
            db.claim_reminder(row.id, row.state_since, period,
                              notices(self.config, row.account, payload, now))

    # -- delivery ---------------------------------------------------------------

    def _deliver_due(self, db: store.Store) -> float:
        # One destination claimed at a time: its lease covers one delivery (an SMTP
        # timeout at most), not a queue of them.
        for _ in range(_ROUND):
            now = self._clock()
            claimed = db.claim_notifications(now, 1, self.node, now + self.config.lease)
            if not claimed or self._stopping.is_set():
                break
            self._deliver(db, claimed[0])
        nxt = db.next_notification()
        return _POLL if nxt is None else nxt - self._clock()

    def _limited_until(self, key: tuple[str, str, str], now: float) -> float | None:
        """When ``key`` may send again, if its rate limit is reached now."""
        count, period = self.config.notify_rate_limit
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= now - period:
            recent.popleft()
        if count <= 0 or len(recent) < count:
            return None
        return recent[0] + period

    def _deliver(self, db: store.Store, rows: list[store.Notification]) -> None:
        """Deliver the claimed pending rows of one destination as one digest."""
        account, channel, destination = rows[0].account, rows[0].channel, rows[0].destination
        key = (account, channel, destination)
        ids = [row.id for row in rows]
        now = self._clock()
        until = self._limited_until(key, now)
        if until is not None:
            held = self._held.setdefault(key, set())
            self.held += len(set(ids) - held)
            held.update(ids)
            db.hold_notifications(ids, until)
            log.info("%s to %s: %d notices held by the rate limit until %s", channel,
                     redact(destination), len(ids), time.strftime("%H:%M:%S",
                                                                  time.localtime(until)))
            return
        held_ids = self._held.get(key, set())
        digest = Digest(account, tuple(json.loads(row.payload) for row in rows),
                        held=len(held_ids & set(ids)))
        try:
            if channel == "email":
                send_email(self.config.smtp, destination, digest)
            else:
                send_webhook(destination, digest)
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            self._failed(db, key, rows, exc)
            return
        db.mark_sent(ids, self._clock())
        self._recent[key].append(self._clock())
        self._held.pop(key, None)
        self.sent += 1
        log.info("%s sent to %s (%d notices)", channel, redact(destination), len(ids))

    def _failed(self, db: store.Store, key: tuple[str, str, str],
                rows: list[store.Notification], exc: BaseException) -> None:
        self.failures += 1
        now = self._clock()
        attempts = max(row.attempts for row in rows) + 1
        give_up = attempts >= self.config.notify_retries
        delay = self.config.notify_backoff * 2 ** (attempts - 1)
        error = f"{exc.__class__.__name__}: {exc}"[:300]
        log.warning("%s to %s failed (attempt %d%s): %s", key[1], redact(key[2]), attempts,
                    ", giving up" if give_up else "", error)
        db.mark_failed([row.id for row in rows], now + delay, error,
                       self.config.notify_retries, now)
