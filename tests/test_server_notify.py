"""Notifications: real SMTP (aiosmtpd, STARTTLS + AUTH) and a webhook, on loopback."""

from __future__ import annotations

import logging
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
    running,
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
        wait_until(lambda: count(db, "SELECT count(*) FROM targets WHERE state = 'ok'"))
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
            wait_until(lambda: count(db, "SELECT count(*) FROM notifications WHERE"
                                         " channel = 'email' AND failed IS NOT NULL"),
                       what="email given up")
            probes_then = len(probe.calls)
            wait_until(lambda: len(probe.calls) > probes_then + 2, what="probing goes on")
    finally:
        flaky.close()
    assert count(db, "SELECT attempts FROM notifications WHERE channel = 'webhook'") == 3
    assert count(db, "SELECT attempts FROM notifications WHERE channel = 'email'") == 3
    assert smtp.messages == []


def test_dead_mail_relay_never_blocks_probing(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    probe = FakeProbe({"svc.example": DOWN})
    dead = SmtpConfig(host="127.0.0.1", port=free_port(), timeout=2.0)
    with running(_cfg(db, dead, notify_retries=100), probe_fn=probe) as srv:
        assert srv.line_address
        LineClient(srv.line_address).ask(add_line(keys["alice"], "svc.example"))
        wait_until(lambda: len(probe.calls) >= 5, what="probes while mail fails")
        assert count(db, "SELECT count(*) FROM notifications WHERE sent IS NULL") == 1
        assert count(db, "SELECT attempts FROM notifications") >= 1
