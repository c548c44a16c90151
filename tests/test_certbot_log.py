"""certhook.certbot.log on real certbot 5.8 logs and on each older wording."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certhook.certbot.log import (
    MAX_LINE,
    MAX_RECORD_LINES,
    LogEvent,
    LogParser,
    Run,
    last_events,
    last_events_for,
    parse_log,
    read_log_file,
    read_logs,
)
from certhook.errors import LocalError

LOGS = Path(__file__).parent / "data" / "certbot-logs"
FIXTURES = sorted(LOGS.glob("*.log"))


def events(runs: list[Run]) -> list[tuple[str, str]]:
    return [(event.lineage, event.outcome) for run in runs for event in run.events]


def log(*records: str, start: str = "2026-11-21 07:21:00") -> str:
    """A log from "LEVEL:logger:message" records, a second apart."""
    time = datetime.fromisoformat(start)
    lines = []
    for number, record in enumerate(records):
        stamp = (time + timedelta(seconds=number)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{stamp},{number % 1000:03}:{record}")
    return "\n".join(lines) + "\n"


HEAD = ("DEBUG:certbot._internal.main:certbot version: 5.8.0",
        "DEBUG:certbot._internal.main:Arguments: ['-q']")
OLD_HEAD = ("DEBUG:certbot.main:certbot version: 0.31.0", "DEBUG:certbot.main:Arguments: []")


def notify(message: str) -> str:
    return f"DEBUG:certbot._internal.display.obj:Notifying user: {message}"


def processing(name: str) -> str:
    return notify(f"Processing /etc/letsencrypt/renewal/{name}.conf")


LIVE = "/etc/letsencrypt/live"
DUE = "INFO:certbot._internal.renewal:Certificate is due for renewal, auto-renewing..."
OLD_DUE = "INFO:certbot.renewal:Cert is due for renewal, auto-renewing..."

# (id, records, [(lineage, outcome, message or None)])
WORDINGS: list[tuple[str, tuple[str, ...], list[tuple[str, str, str | None]]]] = [
    # renewed
    ("5.x-success-summary", (*HEAD, processing("a"), DUE,
                             notify("Congratulations, all renewals succeeded: "),
                             notify(f"  {LIVE}/a/fullchain.pem (success)")),
     [("a", "renewed", None)]),
    ("5.x-summary-only", (*HEAD, notify("Congratulations, all renewals succeeded: "),
                          notify(f"  {LIVE}/a/fullchain.pem (success)")),
     [("a", "renewed", None)]),
    ("1.10-success-summary", (*OLD_HEAD, "DEBUG:certbot.display.util:Notifying user: \n"
                              "Congratulations, all renewals succeeded. The following certs "
                              f"have been renewed:\n  {LIVE}/a/fullchain.pem (success)"),
     [("a", "renewed", None)]),
    ("1.x-mixed-summary", (*HEAD, notify("The following renewals succeeded:"),
                           notify(f"  {LIVE}/a/fullchain.pem (success)\n"),
                           "ERROR:certbot._internal.renewal:The following renewals failed:",
                           f"ERROR:certbot._internal.renewal:  {LIVE}/b/fullchain.pem (failure)"),
     [("a", "renewed", None), ("b", "failed", None)]),
    ("0.x-mixed-summary", (*OLD_HEAD, "ERROR:certbot.renewal:The following certs could not be "
                           "renewed:", f"ERROR:certbot.renewal:  {LIVE}/b/fullchain.pem (failure)"),
     [("b", "failed", None)]),
    ("renewing-for", (*HEAD, processing("a"), notify("Renewing an existing certificate for a and "
                                                     "www.a")),
     [("a", "renewed", None)]),
    ("0.x-writing-certificate", (*OLD_HEAD, OLD_DUE,
                                 "INFO:certbot.main:Renewing an existing certificate",
                                 "DEBUG:certbot.storage:Writing certificate to "
                                 "/etc/letsencrypt/archive/a/cert2.pem."),
     [("a", "renewed", None)]),
    ("deployed-without-reload", (*OLD_HEAD, OLD_DUE, "DEBUG:certbot.display.util:Notifying user: "
                                 f"new certificate deployed without reload, fullchain is "
                                 f"{LIVE}/a/fullchain.pem"),
     [("a", "renewed", None)]),
    ("deployed-with-reload", (*OLD_HEAD, OLD_DUE, "DEBUG:certbot.display.util:Notifying user: new "
                              "certificate deployed with reload of nginx server; fullchain is "
                              f"{LIVE}/a/fullchain.pem"),
     [("a", "renewed", None)]),
    ("forced", (*HEAD, processing("a"),
                "DEBUG:certbot._internal.renewal:Auto-renewal forced with --force-renewal..."),
     [("a", "renewed", None)]),
    ("0001-lineage", (*HEAD, processing("a.org-0001"), DUE), [("a.org-0001", "renewed", None)]),
    ("windows-paths", (*HEAD, notify(r"Processing C:\Certbot\renewal\a.conf"), DUE,
                       notify(r"  C:\Certbot\live\a\fullchain.pem (success)")),
     [("a", "renewed", None)]),
    # failed
    ("1.11+-failed", (*HEAD, processing("a"), DUE, "ERROR:certbot._internal.renewal:Failed to "
                      "renew certificate a with error: Some challenges have failed."),
     [("a", "failed", "Some challenges have failed.")]),
    ("1.11+-failed-odd-name", (*HEAD, processing("a with error: b"), DUE,
                               "ERROR:certbot._internal.renewal:Failed to renew certificate a "
                               "with error: b with error: boom"),
     [("a with error: b", "failed", "boom")]),
    ("0.17-1.10-failed", (*OLD_HEAD, OLD_DUE, "WARNING:certbot.renewal:Attempting to renew cert "
                          "(a) from /etc/letsencrypt/renewal/a.conf produced an unexpected "
                          "error: Some challenges have failed.. Skipping."),
     [("a", "failed", "Some challenges have failed.")]),
    ("0.x-failed-multiline", (*OLD_HEAD, OLD_DUE, "WARNING:certbot.renewal:Attempting to renew "
                              "cert (a) from /etc/letsencrypt/renewal/a.conf produced an "
                              "unexpected error: Failed authorization procedure.\nDomain: a\n"
                              "Detail: timeout. Skipping."),
     [("a", "failed", "Failed authorization procedure.\nDomain: a\nDetail: timeout")]),
    ("0.16-failed", (*OLD_HEAD, OLD_DUE, "WARNING:certbot.renewal:Attempting to renew cert from "
                     "/etc/letsencrypt/renewal/a.conf produced an unexpected error: boom. "
                     "Skipping."),
     [("a", "failed", "boom")]),
    ("5.x-all-failed", (*HEAD, "ERROR:certbot._internal.renewal:All renewals failed. The "
                        "following certificates could not be renewed:",
                        f"ERROR:certbot._internal.renewal:  {LIVE}/a/fullchain.pem (failure)"),
     [("a", "failed", None)]),
    ("0.x-all-failed", (*OLD_HEAD, "ERROR:certbot.renewal:All renewal attempts failed. The "
                        "following certs could not be renewed:",
                        f"ERROR:certbot.renewal:  {LIVE}/a/fullchain.pem (failure)\n"
                        f"  {LIVE}/b/fullchain.pem (failure)"),
     [("a", "failed", None), ("b", "failed", None)]),
    ("conf-unexpected-error", (*HEAD, processing("a"), "ERROR:certbot._internal.renewal:Renewal "
                               "configuration file /etc/letsencrypt/renewal/a.conf (cert: a) "
                               "produced an unexpected error: bad conf. Skipping."),
     [("a", "failed", "bad conf")]),
    # renew's wording before 0.17; the lineage listing's in every version
    ("0.16-conf-error", ("DEBUG:certbot.main:certbot version: 0.16.0",
                         "DEBUG:certbot.main:Arguments: []",
                         "WARNING:certbot.renewal:Renewal configuration file "
                         "/etc/letsencrypt/renewal/a.conf produced an unexpected error: x. "
                         "Skipping."),
     [("a", "failed", "x")]),
    ("listing-conf-error", (*HEAD, "WARNING:certbot._internal.cert_manager:Renewal "
                            "configuration file /etc/letsencrypt/renewal/a.conf produced an "
                            "unexpected error: [Errno 13] Permission denied: "
                            "'/etc/letsencrypt/live/a/privkey.pem'. Skipping."),
     [("a", "conf_error", "[Errno 13] Permission denied: '/etc/letsencrypt/live/a/privkey.pem'")]),
    ("0.31-listing-conf-error", (*OLD_HEAD, "WARNING:certbot.cert_manager:Renewal configuration"
                                 " file /etc/letsencrypt/renewal/a.conf produced an unexpected"
                                 " error: x. Skipping."),
     [("a", "conf_error", "x")]),
    ("conf-broken", (*HEAD, processing("a"), "ERROR:certbot._internal.renewal:Renewal "
                     "configuration file /etc/letsencrypt/renewal/a.conf is broken."),
     [("a", "failed", "is broken.")]),
    ("parsefail-summary", (*HEAD, notify("\nAdditionally, the following renewal configurations "
                                         "were invalid: "),
                           notify("  /etc/letsencrypt/renewal/a.conf (parsefail)")),
     [("a", "failed", None)]),
    ("0.10-renew-failures-exit", (*OLD_HEAD, OLD_DUE, "WARNING:certbot.renewal:Attempting to "
                                  "renew cert from /etc/letsencrypt/renewal/a.conf produced an "
                                  "unexpected error: boom. Skipping.", OLD_DUE,
                                  "DEBUG:certbot.storage:Writing certificate to "
                                  "/etc/letsencrypt/archive/b/cert2.pem.",
                                  "DEBUG:certbot.main:Exiting abnormally:\nTraceback (most "
                                  "recent call last):\nError: 1 renew failure(s), 0 parse "
                                  "failure(s)"),
     [("a", "failed", "boom"), ("b", "renewed", None)]),
    ("crash-mid-renewal", (*HEAD, processing("a"), DUE, "DEBUG:certbot._internal.log:Exiting "
                           "abnormally:\nTraceback (most recent call last):\nKeyboardInterrupt"),
     [("a", "failed", "KeyboardInterrupt")]),
    ("abnormal-exit", (*HEAD, notify("Renewing an existing certificate for a"),
                       "DEBUG:certbot._internal.log:Exiting abnormally:\nTraceback",
                       "ERROR:certbot._internal.log:Some challenges have failed."),
     []),  # certonly with neither --cert-name nor a saved certificate: no lineage to name
    # not due
    ("1.16+-not-due", (*HEAD, processing("a"), notify("Certificate not yet due for renewal")),
     [("a", "not_due", None)]),
    ("1.15-not-due", (*OLD_HEAD, processing("a"), "INFO:certbot._internal.renewal:Cert not yet "
                      "due for renewal"),
     [("a", "not_due", None)]),
    ("0.x-not-due-unnamed", (*OLD_HEAD, "INFO:certbot.renewal:Cert not yet due for renewal"), []),
    ("5.x-skipped-summary", (*HEAD, notify("The following certificates are not due for renewal "
                                           "yet:"),
                             notify(f"  {LIVE}/a/fullchain.pem expires on 2031-11-21 (skipped)")),
     [("a", "not_due", None)]),
    ("0.x-skipped-summary", (*OLD_HEAD, "DEBUG:certbot.display.util:Notifying user: \nThe "
                             f"following certs are not due for renewal yet:\n  {LIVE}/a/"
                             "fullchain.pem (skipped)\nNo renewals were attempted."),
     [("a", "not_due", None)]),
    # simulated
    ("dry-run-argument", (HEAD[0], "DEBUG:certbot._internal.main:Arguments: ['--dry-run']",
                          processing("a"), DUE), [("a", "simulated", None)]),
    ("1.16+-simulating", (*HEAD, processing("a"), "INFO:certbot._internal.renewal:Certificate "
                          "not due for renewal, but simulating renewal for dry run"),
     [("a", "simulated", None)]),
    ("0.x-simulating", (*OLD_HEAD, "INFO:certbot.renewal:Cert not due for renewal, but "
                        "simulating renewal for dry run",
                        "DEBUG:certbot.renewal:Dry run: skipping updating lineage at "
                        f"{LIVE}/a"),
     [("a", "simulated", None)]),
    ("simulating-renewal-of", (*HEAD, processing("a"), notify("Simulating renewal of an "
                                                              "existing certificate for a")),
     [("a", "simulated", None)]),
    ("simulated-succeeded", (*HEAD, notify("Congratulations, all simulated renewals succeeded: "),
                             notify(f"  {LIVE}/a/fullchain.pem (success)")),
     [("a", "simulated", None)]),
    ("simulated-failed", (*HEAD, processing("a"), DUE, "ERROR:certbot._internal.renewal:Failed "
                          "to renew certificate a with error: boom",
                          "ERROR:certbot._internal.renewal:All simulated renewals failed. The "
                          "following certificates could not be renewed:"),
     [("a", "simulated", "boom")]),
    ("1.10-dry-run-banner", (*OLD_HEAD, "DEBUG:certbot.display.util:Notifying user: ** DRY RUN: "
                             "simulating 'certbot renew' close to cert expiry\n**          (The "
                             "test certificates below have not been saved.)\n\nCongratulations, "
                             "all renewals succeeded. The following certs have been renewed:\n"
                             f"  {LIVE}/a/fullchain.pem (success)"),
     [("a", "simulated", None)]),
    # hook errors
    ("1.18+-hook", (*HEAD, processing("a"), DUE, "WARNING:certbot.display.ops:Hook 'deploy-hook' "
                    "reported error code 3"),
     [("a", "renewed", None), ("a", "hook_error", "Hook 'deploy-hook' reported error code 3")]),
    ("1.18+-hook-stderr", (*HEAD, processing("a"), DUE, "WARNING:certbot.display.ops:Hook "
                           "'deploy-hook' reported error code 3", "WARNING:certbot.display.ops:"
                           "Hook 'deploy-hook' ran with error output:\n nginx: failed"),
     [("a", "renewed", None), ("a", "hook_error", "Hook 'deploy-hook' reported error code 3\n"
                               "Hook 'deploy-hook' ran with error output:\n nginx: failed")]),
    ("manual-auth-hook", (*HEAD, processing("a"), DUE, "WARNING:certbot.display.ops:Hook "
                          "'--manual-auth-hook' for a reported error code 1"),
     [("a", "renewed", None), ("a", "hook_error", "Hook '--manual-auth-hook' for a reported "
                               "error code 1")]),
    ("0.33-1.17-hook", (*HEAD, processing("a"), DUE, "ERROR:certbot.compat.misc:deploy-hook "
                        "command \"systemctl reload nginx\" returned error code 1"),
     [("a", "renewed", None), ("a", "hook_error", "deploy-hook command \"systemctl reload "
                               "nginx\" returned error code 1")]),
    ("0.x-hook", (*OLD_HEAD, OLD_DUE, "ERROR:certbot.hooks:Hook command \"reload.sh\" returned "
                  "error code 2", "DEBUG:certbot.storage:Writing certificate to "
                  "/etc/letsencrypt/archive/a/cert3.pem."),
     [("a", "renewed", None), ("a", "hook_error", "Hook command \"reload.sh\" returned error "
                               "code 2")]),
    ("error-output-only", (*HEAD, processing("a"), DUE, "ERROR:certbot.compat.misc:Error output "
                           "from deploy-hook command reload.sh:\nwarning: x"),
     [("a", "renewed", None), ("a", "hook_error", "Error output from deploy-hook command "
                               "reload.sh:\nwarning: x")]),
    ("post-hook-after-summary", (*HEAD, processing("a"), DUE, processing("b"),
                                 notify("Certificate not yet due for renewal"),
                                 notify("Congratulations, all renewals succeeded: "),
                                 "WARNING:certbot.display.ops:Hook 'post-hook' reported error "
                                 "code 1"),
     [("a", "renewed", None), ("b", "not_due", None),
      ("a", "hook_error", "Hook 'post-hook' reported error code 1")]),
    # versions of certbot, arguments
    ("letsencrypt-0.4", ("DEBUG:letsencrypt.cli:letsencrypt version: 0.4.0",
                         "DEBUG:letsencrypt.cli:Arguments: ['renew']"), []),
]


@pytest.mark.parametrize(("records", "expected"), [(w[1], w[2]) for w in WORDINGS],
                         ids=[w[0] for w in WORDINGS])
def test_wordings(records: tuple[str, ...], expected: list[tuple[str, str, str | None]]) -> None:
    runs = parse_log(log(*records), "letsencrypt.log")
    assert len(runs) == 1
    found = [(e.lineage, e.outcome, e.message) for e in runs[0].events]
    assert found == expected
    assert all(e.log_file == "letsencrypt.log" for e in runs[0].events)


# (fixture, version, dry run, events)
FIXTURE_EVENTS = [
    ("certbot-0.10-renew.log", "0.10.2", False, [
        ("b.example.org", "renewed"), ("b.example.org", "hook_error"),
        ("c.example.org", "failed"), ("d.example.org", "failed")]),
    ("certbot-0.31-renew.log", "0.31.0", False, [
        ("a.example.org", "renewed"), ("a.example.org", "hook_error"),
        ("c.example.org", "failed"), ("a.example.org", "hook_error"),
        ("c.example.org", "hook_error")]),
    ("certbot-0.31-dryrun.log", "0.31.0", True, [
        ("a.example.org", "simulated"), ("b.example.org", "simulated")]),
    # before 1.10 a not-due lineage is never named; the post-hook after it is
    # not lost with it: it concerns every lineage renewed
    ("certbot-1.9-renew.log", "1.9.0", False, [
        ("a.example.org", "renewed"), ("a.example.org", "hook_error")]),
    ("certbot-5.8-certificates-denied.log", "5.8.0", False, [
        ("a.example.org", "conf_error"), ("b.example.org", "conf_error"),
        ("c.example.org", "conf_error"), ("d.example.org", "conf_error")]),
    ("certbot-1.10-renew.log", "1.10.1", False, [
        ("a.example.org", "not_due"), ("b.example.org", "renewed"),
        ("b.example.org", "hook_error"), ("c.example.org", "failed"),
        ("d.example.org", "failed")]),
    ("certbot-1.15-renew.log", "1.15.0", False, [
        ("a.example.org", "not_due"), ("b.example.org", "renewed"), ("c.example.org", "failed")]),
    ("certbot-2.11-renew.log", "2.11.0", False, [
        ("a.example.org", "renewed"), ("a.example.org", "hook_error"),
        ("b.example.org", "not_due"), ("a.example.org", "hook_error")]),
    ("certbot-2.11-dryrun.log", "2.11.0", True, [("a.example.org", "simulated")]),
    ("certbot-5.8-notdue.log", "5.8.0", False, [("a.example.org", "not_due")]),
    ("certbot-5.8-dryrun.log", "5.8.0", True, [("a.example.org", "simulated")]),
    ("certbot-5.8-fail-noserver.log", "5.8.0", False, [("a.example.org", "failed")]),
    ("certbot-5.8-forced-hookfail.log", "5.8.0", False, [
        ("a.example.org", "renewed"), ("a.example.org", "hook_error")]),
    ("certbot-5.8-fail-authhook.log", "5.8.0", False, [
        ("a.example.org", "renewed"), ("a.example.org", "hook_error"),
        ("a.example.org", "hook_error")]),
]


@pytest.mark.parametrize(("name", "version", "dry_run", "expected"), FIXTURE_EVENTS,
                         ids=[f[0] for f in FIXTURE_EVENTS])
def test_fixture_logs(name: str, version: str, dry_run: bool,
                      expected: list[tuple[str, str]]) -> None:
    runs = parse_log((LOGS / name).read_text(), name)
    assert len(runs) == 1
    (run,) = runs
    assert (run.certbot_version, run.dry_run) == (version, dry_run)
    assert events(runs) == expected
    assert run.started is not None and all(event.time >= run.started for event in run.events)


def test_a_listing_error_is_not_a_failed_renewal(tmp_path: Path) -> None:
    """``certbot certificates`` as a user who may not read the keys: the four
    lineages stay renewed, and nothing would report them failed."""
    renew = (LOGS / "certbot-1.10-renew.log").read_text()
    listing = (LOGS / "certbot-5.8-certificates-denied.log").read_text()
    (tmp_path / "letsencrypt.log.1").write_text(renew)
    (tmp_path / "letsencrypt.log").write_text(listing)
    runs = read_logs(str(tmp_path))
    assert [event.outcome for event in runs[-1].events] == ["conf_error"] * 4
    assert not any(event.outcome == "failed" for event in runs[-1].events)
    # the renew run's outcomes stay the lineages' last events
    assert last_events(runs)["a.example.org"].outcome == "not_due"
    found = last_events_for(str(tmp_path), {"a.example.org", "b.example.org", "c.example.org"})
    assert {name: event.outcome for name, event in found.items()} == {
        "a.example.org": "not_due", "b.example.org": "hook_error", "c.example.org": "failed"}
    only = last_events_for(str(tmp_path / "x"), {"a.example.org"})
    assert only == {}
    (tmp_path / "letsencrypt.log.1").unlink()
    lone = last_events_for(str(tmp_path), {"d.example.org"})
    assert lone["d.example.org"].outcome == "conf_error"  # nothing better known
    assert lone["d.example.org"].message == (
        "[Errno 13] Permission denied: '/etc/letsencrypt/live/d.example.org/privkey.pem'")


def test_real_5_8_details() -> None:
    (run,) = parse_log((LOGS / "certbot-5.8-fail-noserver.log").read_text(), "x")
    assert run.started == datetime(2026, 11, 21, 7, 21, 54, 772000)
    assert run.arguments == ("--config-dir", "/tmp/pt/c", "--work-dir", "/tmp/pt/w",
                             "--logs-dir", "/tmp/pt/l", "--no-random-sleep-on-renew",
                             "--force-renewal")
    (failed,) = run.events
    assert failed.time == datetime(2026, 11, 21, 7, 21, 54, 825000)
    assert failed.message is not None
    assert failed.message.startswith("HTTPSConnectionPool(host='127.0.0.1', port=14000)")
    assert failed.message.endswith("[Errno 111] Connection refused\"))")
    (run,) = parse_log((LOGS / "certbot-5.8-forced-hookfail.log").read_text(), "x")
    renewed, hook = run.events
    # renewed when certbot wrote cert2.pem, and the deploy hook failed after that
    assert renewed.time == datetime(2026, 11, 21, 7, 21, 47, 264000)
    assert hook.time == datetime(2026, 11, 21, 7, 21, 47, 270000)
    assert last_events([run])["a.example.org"] is hook


def test_certonly_runs() -> None:
    runs = parse_log((LOGS / "certbot-2.11-certonly.log").read_text(), "x")
    assert [(r.started, events([r])) for r in runs] == [
        (datetime(2024, 6, 5, 10, 0, 0, 1000), [("x.example.org", "renewed")]),
        (datetime(2024, 6, 5, 11, 0, 0, 1000), [("y.example.org", "failed")]),
    ]
    assert runs[1].events[0].message == "Some challenges have failed."


def test_messages_of_old_versions() -> None:
    (run,) = parse_log((LOGS / "certbot-0.10-renew.log").read_text(), "x")
    by_outcome = {(e.lineage, e.outcome): e.message for e in run.events}
    assert by_outcome["b.example.org", "hook_error"] == (
        'Hook command "systemctl stop nginx" returned error code 5\nError output from '
        "systemctl:\nFailed to stop nginx.service: Unit nginx.service not loaded.")
    assert by_outcome["c.example.org", "failed"] == (
        "Failed authorization procedure. c.example.org (http-01): urn:acme:error:unauthorized"
        " :: The client lacks sufficient authorization")
    (run,) = parse_log((LOGS / "certbot-1.10-renew.log").read_text(), "x")
    by_outcome = {(e.lineage, e.outcome): e.message for e in run.events}
    assert by_outcome["d.example.org", "failed"] == (
        "expected /etc/letsencrypt/live/d.example.org/cert.pem to be a symlink")


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fed_one_char_and_one_line_at_a_time(path: Path) -> None:
    text = path.read_text()
    whole = parse_log(text, "x")
    parser = LogParser("x")
    for char in text:
        parser.feed(char)
    assert parser.close() == whole
    parser = LogParser("x")
    for line in text.splitlines(keepends=True):
        parser.feed(line)
    assert parser.close() == whole


@pytest.mark.parametrize("name", ["certbot-1.15-renew.log", "certbot-5.8-dryrun.log"])
def test_split_at_every_position(name: str) -> None:
    text = (LOGS / name).read_text()
    whole = parse_log(text, "x")
    for cut in range(len(text) + 1):
        parser = LogParser("x")
        parser.feed(text[:cut])
        parser.feed(text[cut:])
        assert parser.close() == whole


@pytest.mark.parametrize("name", ["certbot-1.10-renew.log", "certbot-2.11-renew.log"])
def test_truncated_at_every_byte(name: str) -> None:
    text = (LOGS / name).read_text()
    full = set(events(parse_log(text, "x")))
    for cut in range(len(text) + 1):
        runs = parse_log(text[:cut], "x")
        assert len(runs) <= 1
        # a truncated run may miss a lineage, but names no lineage the full one does not
        assert {name for name, _ in events(runs)} <= {name for name, _ in full}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_trailing_data(path: Path) -> None:
    text = path.read_text()
    whole = parse_log(text, "x")
    assert parse_log(text.replace("\n", "\r\n"), "x") == whole
    # a line without a timestamp continues the last record, whatever it holds
    assert events(parse_log(text + "stray text without a timestamp\n\x00\x00", "x")) == events(
        whole)
    assert parse_log("garbage before the first record\n" + text, "x") == whole
    assert parse_log(text + text, "x") == whole + whole


def test_arguments_are_read_safely() -> None:
    for arguments in ["[", "['a', __import__('os').system('false')]", "[1, 2]", "{'a': 1}",
                      "[" * 5000 + "]" * 5000, "['x'" + ", 'y'" * 20000 + "]"]:
        (run,) = parse_log(log(HEAD[0], f"DEBUG:certbot._internal.main:Arguments: {arguments}"),
                           "x")
        assert run.arguments == ()
    (run,) = parse_log(log(HEAD[0], "DEBUG:certbot.main:Arguments: [u'-q', u'--dry-run']"), "x")
    assert run.arguments == ("-q", "--dry-run") and run.dry_run


LINES = [line for path in FIXTURES for line in path.read_text().splitlines()]


@settings(max_examples=300)
@given(st.lists(st.sampled_from(LINES), max_size=40))
def test_shuffled_real_lines_never_crash(lines: list[str]) -> None:
    runs = parse_log("\n".join(lines), "x")
    outcomes = {"renewed", "failed", "not_due", "simulated", "hook_error", "conf_error"}
    assert all(e.outcome in outcomes and e.lineage is not None for e in
               (event for run in runs for event in run.events))


TOKENS = [*"0123456789-: ,\n\r'()[]/.", "2026-11-21 07:21:54,825:", "ERROR:", "x:",
          "Notifying user: ", "Processing /a/b.conf", "Hook 'x' reported error code 1",
          " (success)", "  /a/live/n/fullchain.pem", "Exiting abnormally:", "Arguments: ",
          "certbot version: 1", "Cert is due for renewal, auto-renewing...",
          "Failed to renew certificate ", " with error: ", "Error output from x:\n"]


@settings(max_examples=500)
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map("".join))
def test_log_shaped_noise_gives_runs(text: str) -> None:
    for run in parse_log(text, "x"):
        assert all(isinstance(event.lineage, str) for event in run.events)


@given(st.text())
def test_any_text_gives_runs(text: str) -> None:
    assert isinstance(parse_log(text, "x"), list)


def _write_logs(directory: Path, numbers: list[int]) -> None:
    for index, number in enumerate(numbers):
        name = "letsencrypt.log" if number == 0 else f"letsencrypt.log.{number}"
        day = 28 - number
        (directory / name).write_text(log(*HEAD, processing("a"), DUE,
                                          start=f"2026-11-{day:02} 03:00:0{index}"))


def test_read_logs_orders_oldest_first(tmp_path: Path) -> None:
    _write_logs(tmp_path, [0, 1, 2, 10])
    (tmp_path / "letsencrypt.log.3.gz").write_bytes(b"\x1f\x8b")
    (tmp_path / "other.log").write_text(log(*HEAD))
    runs = read_logs(str(tmp_path))
    assert [os.path.basename(run.log_file) for run in runs] == [
        "letsencrypt.log.10", "letsencrypt.log.2", "letsencrypt.log.1", "letsencrypt.log"]
    assert [run.started for run in runs] == sorted(run.started for run in runs)
    assert [os.path.basename(r.log_file) for r in read_logs(str(tmp_path), limit=2)] == [
        "letsencrypt.log.1", "letsencrypt.log"]
    assert read_logs(str(tmp_path), limit=0) == []
    newest = last_events(runs)["a"]
    assert newest.log_file == str(tmp_path / "letsencrypt.log")


def test_read_logs_missing_and_unreadable(tmp_path: Path) -> None:
    assert read_logs(str(tmp_path / "nope")) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(LocalError, match="file: cannot list"):
        read_logs(str(tmp_path / "file"))
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "letsencrypt.log").mkdir()
    with pytest.raises(LocalError, match=r"letsencrypt\.log: Is a directory"):
        read_logs(str(tmp_path / "dir"))


def test_read_logs_survives_bad_bytes(tmp_path: Path) -> None:
    text = (LOGS / "certbot-5.8-notdue.log").read_bytes()
    (tmp_path / "letsencrypt.log").write_bytes(text.replace(b"Content-Length", b"\xff\xfe\x00"))
    assert events(read_logs(str(tmp_path))) == [("a.example.org", "not_due")]


def _event(lineage: str, outcome: str, second: int) -> LogEvent:
    return LogEvent(lineage, outcome, datetime(2026, 1, 1, 0, 0, second), None, "x")


def test_last_events_prefers_real_runs() -> None:
    old = Run("x", None, None, (), False, (_event("a", "renewed", 1), _event("b", "failed", 2)))
    dry = Run("x", None, None, ("--dry-run",), True,
              (_event("a", "simulated", 3), _event("c", "simulated", 4)))
    new = Run("x", None, None, (), False, (_event("b", "renewed", 5), _event("b", "hook_error", 6)))
    last = last_events([old, dry, new])
    assert {name: (e.outcome, e.time.second) for name, e in last.items()} == {
        "a": ("renewed", 1), "b": ("hook_error", 6), "c": ("simulated", 4)}
    assert last_events([]) == {}


def _renewed(*between: str) -> str:
    """A run renewing lineage ``a``, with ``between`` (raw lines) after its head."""
    head, rest = log(*HEAD), log(processing("a"), DUE,
                                 notify("Congratulations, all renewals succeeded: "),
                                 notify(f"  {LIVE}/a/fullchain.pem (success)"),
                                 start="2026-11-21 07:22:00")
    return head + "".join(line + "\n" for line in between) + rest


def test_a_huge_line_is_cut_and_what_follows_is_read() -> None:
    text = _renewed("y" * (3 * MAX_LINE), "z" * (MAX_LINE + 1))
    whole = parse_log(text, "x")
    assert events(whole) == [("a", "renewed")] and whole[0].certbot_version == "5.8.0"
    for size in (997, MAX_LINE - 1, MAX_LINE + 7):  # fed in pieces: the same
        parser = LogParser("x")
        for start in range(0, len(text), size):
            parser.feed(text[start:start + size])
        assert parser.close() == whole


def test_a_record_keeps_its_first_lines() -> None:
    output = [f" line {n}" for n in range(3 * MAX_RECORD_LINES)]
    text = log(*HEAD, processing("a"), DUE,
               "ERROR:certbot._internal.hooks:Hook 'deploy-hook' reported error code 1",
               "ERROR:certbot._internal.hooks:Hook 'deploy-hook' ran with error output:\n"
               + "\n".join(output))
    [run] = parse_log(text, "x")
    [hook] = [event for event in run.events if event.outcome == "hook_error"]
    assert hook.message is not None
    assert hook.message.splitlines()[-1] == output[MAX_RECORD_LINES - 2]


def test_a_big_log_is_read_head_and_tail(tmp_path: Path) -> None:
    filler = [f"DEBUG:acme.client:Received response {n}: {'é' * (n % 7)}" for n in range(8000)]
    path = tmp_path / "letsencrypt.log"
    path.write_text(_renewed(*filler), encoding="utf-8")
    assert path.stat().st_size > 4 * 65536
    for max_bytes in (4096, 65536, 65537, 100_003):
        [run] = read_log_file(str(path), max_bytes=max_bytes)
        assert run.certbot_version == "5.8.0" and run.arguments == ("-q",)
        assert events([run]) == [("a", "renewed")]
    assert read_log_file(str(path)) == parse_log(path.read_text(encoding="utf-8"), str(path))


def test_reading_stops_at_the_deadline(tmp_path: Path) -> None:
    path = tmp_path / "letsencrypt.log"
    path.write_text(_renewed())
    with pytest.raises(LocalError, match=rf"^{path}: reading stopped at the deadline"):
        read_log_file(str(path), deadline=time.monotonic() - 1)
    assert events(read_log_file(str(path), deadline=time.monotonic() + 60)) == [
        ("a", "renewed")]


# Lines that made a wording's pattern backtrack quadratically: seconds each
# (0.5 to 4 s on a 2-core machine), minutes for a log of them.
_BACKTRACKING = [
    # "saved at:\s*.*[/\\]...": a run of white space (spanning lines)
    "INFO:certbot.main:Your certificate and chain have been saved at:"
    + ("\n" + " " * (MAX_LINE - 1)) * 4 + "x",
    # "deployed .*fullchain is .*[/\\]...": many "fullchain is "
    "INFO:certbot.main:new certificate deployed " + "fullchain is " * 5000,
    # "Hook '.+?'(?: for .+)? ...": many quotes
    "WARNING:certbot.display.ops:Hook '" + "' for " * 10000,
]


def test_no_wording_backtracks_over_a_long_line() -> None:
    # In a child, with a bound far from both: 8 of each took minutes before
    # the fix, and take well under a second now.
    text = log(*OLD_HEAD, OLD_DUE,  # before 1.10: the lineage is not named yet
               *[line for line in _BACKTRACKING for _ in range(8)])
    code = ("import sys; from certhook.certbot.log import parse_log;"
            " print(len(parse_log(sys.stdin.read(), 'x')))")
    proc = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True,
                          text=True, timeout=20)
    assert (proc.returncode, proc.stdout) == (0, "1\n")
