"""Notifications: real SMTP (aiosmtpd, STARTTLS + AUTH) and a webhook, on loopback."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from acmeenv import free_port
from server_helpers import (
    FakeProbe,
    LineClient,
    SmtpServer,
    WebhookReceiver,
    add_line,
    config,
    count,
    fake_result,
    new_db,
    notifications,
    running,
    targets,
    wait_until,
)

from certhook.server.config import AccountNotify, ServerConfig, SmtpConfig

DOWN = fake_result("unknown", error="connection refused by 192.0.2.1", connected=False)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path)
    yield server
    server.close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def _smtp_config(smtp: SmtpServer, **changes: object) -> SmtpConfig:
    base = SmtpConfig(host="127.0.0.1", port=smtp.port, starttls=True, username=smtp.USER,
                      password=smtp.PASSWORD, sender="certhook@test.example",
                      ca_file=smtp.ca_file, timeout=5.0)
    return replace(base, **changes)  # type: ignore[arg-type]


def _cfg(db: str, smtp: SmtpConfig, hooks: tuple[str, ...] = (), **changes: object
         ) -> ServerConfig:
    notify = AccountNotify(email=("ops@test.example",), webhook=hooks)
    return replace(config(db, failure_threshold=1, notify_backoff=0.1, interval=0.3,
                          **changes),
                   smtp=smtp, accounts={"alice": notify})


def test_failure_and_recovery_reach_smtp_and_webhook(
    tmp_path: Path, smtp: SmtpServer, webhook: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db, keys = new_db(tmp_path, "alice")
    probe = FakeProbe({"svc.example": fake_result("ok")})
    caplog.set_level(logging.WARNING, "certhook.notify")
    with running(_cfg(db, _smtp_config(smtp), (webhook.url,)), probe_fn=probe) as srv:
        assert srv.line_address
        LineClient(srv.line_address).ask(add_line(keys["alice"], "svc.example"))
        wait_until(lambda: count(db, "targets", state="ok"))
        probe.results["svc.example"] = DOWN
        wait_until(lambda: smtp.messages and webhook.received, what="failure notices")
        probe.results["svc.example"] = fake_result("ok")
        wait_until(lambda: len(smtp.messages) >= 2 and len(webhook.received) >= 2,
                   what="recovery notices")
    problem, recovery = webhook.received[:2]
    assert problem["kind"] == "problem" and problem["domain"] == "svc.example"
    assert problem["state"] == "unknown" and "connection refused" in problem["reasons"][0]
    assert recovery["kind"] == "recovery" and recovery["state"] == "ok"
    mail = smtp.messages[0]
    assert mail.rcpt_tos == ["ops@test.example"] and mail.mail_from == "certhook@test.example"
    text = mail.content.decode()
    assert "UNKNOWN svc.example:443/tls" in text and "connection refused" in text
    assert "RECOVERED svc.example:443/tls" in smtp.messages[1].content.decode()
    assert any("svc.example" in r.getMessage() for r in caplog.records)  # and the log


def test_failed_deliveries_are_retried_with_backoff(tmp_path: Path, smtp: SmtpServer) -> None:
    flaky = WebhookReceiver(fail_first=2)
    db, keys = new_db(tmp_path, "alice")
    probe = FakeProbe({"svc.example": DOWN})
    wrong = _smtp_config(smtp, password="wrong")  # AUTH fails: retried, then given up
    try:
        with running(_cfg(db, wrong, (flaky.url,), notify_retries=3), probe_fn=probe) as srv:
            assert srv.line_address
            LineClient(srv.line_address).ask(add_line(keys["alice"], "svc.example"))
            wait_until(lambda: flaky.received, what="the webhook after two failures")
            wait_until(lambda: count(db, "notifications", channel="email",
                                         failed=lambda v: v is not None),
                       what="email given up")
            probes_then = len(probe.calls)
            wait_until(lambda: len(probe.calls) > probes_then + 2, what="probing goes on")
    finally:
        flaky.close()
    assert next(n.attempts for n in notifications(db) if n.channel == "webhook") == 3
    assert next(n.attempts for n in notifications(db) if n.channel == "email") == 3
    assert smtp.messages == []


def test_dead_mail_relay_never_blocks_probing(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    probe = FakeProbe({"svc.example": DOWN})
    dead = SmtpConfig(host="127.0.0.1", port=free_port(), timeout=2.0)
    with running(_cfg(db, dead, notify_retries=100), probe_fn=probe) as srv:
        assert srv.line_address
        LineClient(srv.line_address).ask(add_line(keys["alice"], "svc.example"))
        wait_until(lambda: len(probe.calls) >= 5, what="probes while mail fails")
        assert count(db, "notifications", sent=None) == 1
        assert notifications(db)[0].attempts >= 1


UNDEPLOYED = fake_result("critical", reasons=("renewed but not deployed: serving aa..",))


def _burst_probe() -> FakeProbe:
    names = [f"u{i}.example" for i in range(200)] + [f"r{i}.example" for i in range(3)]
    return FakeProbe({name: fake_result("ok") for name in names})


def test_a_burst_is_one_grouped_message_per_channel_plus_the_held_summary(
    tmp_path: Path, smtp: SmtpServer, webhook: WebhookReceiver,
) -> None:
    """6 targets left undeployed by one renewal and 200 unreachable, all at once."""
    slack = WebhookReceiver()
    db, keys = new_db(tmp_path, "alice")
    probe = _burst_probe()
    cfg = _cfg(db, _smtp_config(smtp), (webhook.url, "slack+" + slack.url),
               notify_group_window=1.0, notify_rate_limit=(1, 4.0), notify_remind=0.0,
               concurrency=32)
    try:
        with running(cfg, probe_fn=probe) as srv:
            assert srv.line_address
            client = LineClient(srv.line_address)
            for i in range(200):
                assert client.ask(add_line(keys["alice"], f"u{i}.example")).startswith(b"ok")
            for i in range(3):  # three names x two ports of one renewal
                for port in (443, 8443):
                    assert client.ask(add_line(keys["alice"], f"r{i}.example",
                                               port=port)).startswith(b"ok")
            wait_until(lambda: count(db, "targets", state="ok")
                       == 206, what="206 targets ok")
            for i in range(200):
                probe.results[f"u{i}.example"] = DOWN
            for i in range(3):
                probe.results[f"r{i}.example"] = UNDEPLOYED
            wait_until(lambda: count(db, "notifications", sent=lambda v: v is not None) == 3 * 206,
                       timeout=60, what="every notice sent on every channel")
            # nothing more comes: one grouped message, then the rate-limit summary at most
            sent = (len(webhook.received), len(slack.received), len(smtp.messages))
            notifier = srv.notifier
    finally:
        slack.close()
    assert all(1 <= n <= 2 for n in sent), sent
    assert notifier.failures == 0
    every = {f"u{i}.example:443" for i in range(200)}
    every |= {f"r{i}.example:{p}" for i in range(3) for p in (443, 8443)}
    seen = [f"{n['domain']}:{n['port']}" for body in webhook.received for n in body["notices"]]
    assert sorted(seen) == sorted(every)  # each transition once, none lost
    first = webhook.received[0]
    assert first["notices"][0]["state"] == "critical"  # the worst first
    if len(webhook.received) == 2:
        assert webhook.received[1]["held"] == len(webhook.received[1]["notices"])
    mails = "".join(m.content.decode(errors="replace") for m in smtp.messages)
    for where in every:
        assert where.split(":")[0] in mails
    assert sum(sum(b["counts"].values()) for b in webhook.received) == 206
    assert all("blocks" in body and body["text"] for body in slack.received)
    headers = [b["blocks"][0]["text"]["text"] for b in slack.received]
    assert sum(int(n) for h in headers for n in re.findall(r"(\d+) \w+", h)) == 206


def test_two_nodes_remind_each_period_once(
    tmp_path: Path, smtp: SmtpServer, webhook: WebhookReceiver,
) -> None:
    """Two nodes' notifiers on one database: a failure is reminded once a period, not once
    a period per node (the period last reminded is in the database)."""
    db, keys = new_db(tmp_path, "alice")
    probe = FakeProbe({"svc.example": fake_result("ok")})
    cfg = _cfg(db, _smtp_config(smtp), (webhook.url,), notify_remind=1.5,
               notify_rate_limit=(0, 3600.0))
    with running(replace(cfg, node="a"), probe_fn=probe) as first, \
            running(replace(cfg, node="b"), probe_fn=probe, audit=False):
        assert first.line_address
        LineClient(first.line_address).ask(add_line(keys["alice"], "svc.example"))
        wait_until(lambda: count(db, "targets", state="ok"))
        probe.results["svc.example"] = DOWN
        wait_until(lambda: sum(b["kind"] == "reminder" for b in webhook.received) >= 3,
                   timeout=30, what="three reminders")
        row = targets(db)[0]
        queued = [n.created for n in notifications(db) if n.channel == "webhook"
                  and json.loads(n.payload).get("kind") == "reminder"]
    # one reminder a period: a reminder per node would queue two in a period (the digest
    # of a group window would hide them in one message)
    periods = [int((t - row["state_since"]) // 1.5) for t in queued]
    assert len(queued) >= 3 and len(set(periods)) == len(periods), periods
    assert webhook.received[0]["kind"] == "problem"


def test_a_failing_target_is_reminded_not_every_probe(
    tmp_path: Path, smtp: SmtpServer, webhook: WebhookReceiver,
) -> None:
    db, keys = new_db(tmp_path, "alice")
    probe = FakeProbe({"svc.example": fake_result("ok")})
    cfg = _cfg(db, _smtp_config(smtp), (webhook.url,), notify_remind=1.5,
               notify_rate_limit=(0, 3600.0))
    with running(cfg, probe_fn=probe) as srv:
        assert srv.line_address
        LineClient(srv.line_address).ask(add_line(keys["alice"], "svc.example"))
        wait_until(lambda: count(db, "targets", state="ok"))
        probe.results["svc.example"] = DOWN
        wait_until(lambda: webhook.received, what="the failure")
        probes = len(probe.calls)
        wait_until(lambda: len(webhook.received) >= 3, timeout=30, what="two reminders")
        probes = len(probe.calls) - probes
    kinds = [body["kind"] for body in webhook.received]
    assert kinds[:3] == ["problem", "reminder", "reminder"], kinds
    assert probes > len(kinds)  # probed more often than reminded
    assert webhook.received[1]["lines"] == [
        "STILL UNKNOWN svc.example:443/tls: connection refused by 192.0.2.1"]
    assert any("STILL UNKNOWN svc.example" in m.content.decode() for m in smtp.messages)
