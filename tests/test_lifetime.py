"""Verdicts by each certificate's own lifetime: one table, judged by the pure
function, by a real probe over loopback at a given clock, and by the server.

Lifetimes: Let's Encrypt's 160-hour ``shortlived``, 45-day ``tlsserver``, the
64-day ``classic`` of 2027, today's 90 days and the CA/B Forum's old 397.
Each is checked just before, at and just after its renewal point, the end of
certbot's slack (renewal overdue), the warning and critical thresholds and
notAfter: the status and the reasons a user sees.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from probe_helpers import CA, NOW, serve, write

from certhook.errors import ParseError
from certhook.probe import ProbeOptions, Target, probe
from certhook.probe.lifetime import (
    DEFAULT_CRIT,
    DEFAULT_WARN,
    Threshold,
    judge,
    parse_threshold,
    parse_thresholds,
    probe_interval,
    renewal_point,
)
from certhook.x509 import Certificate, load_der

HOUR = 3600
DAY = 86400
T0 = NOW.replace(microsecond=0)
LIFETIMES = {"160h": 160 * HOUR, "45d": 45 * DAY, "64d": 64 * DAY, "90d": 90 * DAY,
             "397d": 397 * DAY}


@dataclass(frozen=True)
class Point:
    """A moment, as seconds left before notAfter, and what must be reported then."""

    name: str
    left: int
    status: str
    reasons: tuple[str, ...]  # substrings; each must be in some reason
    absent: tuple[str, ...] = ()  # substrings no reason may hold
    overdue: bool = False  # renewal_overdue in JSON


def _points(lifetime: int) -> list[Point]:
    # The figures, worked out by hand from the documented rules (not by the code):
    # certbot renews at 2/3 of the lifetime, at 1/2 under 10 days; overdue a day
    # later, or a quarter of the renewal window when that is less; warning at
    # 7/30 and critical at 7/90 of the lifetime left.
    short = lifetime < 10 * DAY
    renew_left = lifetime // 2 if short else lifetime // 3
    overdue_left = renew_left - min(DAY, renew_left // 4)
    warn_left = lifetime * 7 // 30
    crit_left = lifetime * 7 // 90
    rule = "(1/2 of lifetime left)" if short else "(1/3 of lifetime left)"
    overdue = "renewal overdue: certbot should have renewed at"
    points = [
        Point("fresh", lifetime - HOUR, "ok", (), ("overdue",)),
        Point("just before renewal point", renew_left + 1, "ok", ()),
        Point("at renewal point", renew_left, "ok", (), ("overdue",)),
        Point("within certbot's slack", overdue_left + 1, "ok", (), ("overdue",)),
        Point("at overdue", overdue_left, "warning", (overdue, rule), ("--warn",)),
        Point("just above warn", warn_left + 1, "warning", (overdue,), ("--warn",)),
        Point("at warn", warn_left, "warning", ("at or below --warn 23.33%", overdue)),
        Point("just above crit", crit_left + 1, "warning", ("--warn",), ("--crit",)),
        Point("at crit", crit_left, "critical", ("at or below --crit 7.78%", overdue)),
        Point("last second", 1, "critical", ("--crit",)),
        Point("at notAfter", 0, "critical", ("certificate expired just now",), ("overdue",)),
        Point("an hour after", -HOUR, "critical", ("certificate expired 1 hour ago",)),
        Point("before notBefore", lifetime + HOUR, "critical", ("not yet valid",)),
    ]
    return [Point(p.name, p.left, p.status, p.reasons, p.absent, 0 < p.left <= overdue_left)
            for p in points]


ROWS = [(label, lifetime, point) for label, lifetime in LIFETIMES.items()
        for point in _points(lifetime)]
IDS = [f"{label} {point.name}" for label, _, point in ROWS]


def _check(status: str, reasons: tuple[str, ...] | list[str], point: Point) -> None:
    assert status == point.status, reasons
    for wanted in point.reasons:
        assert any(wanted in reason for reason in reasons), (wanted, reasons)
    for unwanted in point.absent:
        assert not any(unwanted in reason for reason in reasons), (unwanted, reasons)
    if point.status == "ok":
        assert not reasons


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA("lifetime test root")


@pytest.fixture(scope="module")
def issued(ca: CA) -> dict[str, Certificate]:
    return {label: load_der(ca.issue("a.example.org", not_before=T0,
                                     not_after=T0 + dt.timedelta(seconds=lifetime)).cert
                            .public_bytes(_DER()))
            for label, lifetime in LIFETIMES.items()}


def _DER() -> object:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


@pytest.mark.parametrize(("label", "lifetime", "point"), ROWS, ids=IDS)
def test_judge(issued: dict[str, Certificate], label: str, lifetime: int, point: Point) -> None:
    leaf = issued[label]
    now = T0 + dt.timedelta(seconds=lifetime - point.left)
    validity = judge(leaf, (), now)
    severities = {finding.severity for finding in validity.findings}
    status = "critical" if "critical" in severities else "warning" if severities else "ok"
    _check(status, [finding.text for finding in validity.findings], point)
    assert validity.lifetime_seconds == lifetime
    assert validity.seconds_left == point.left
    assert validity.renewal_overdue == point.overdue


@pytest.fixture(scope="module")
def served(ca: CA, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One loopback server per lifetime; the probe's clock picks the moment."""
    ca_file = write(tmp_path_factory.mktemp("lifetime") / "root.pem", ca.pem)
    servers = {}
    for label, lifetime in LIFETIMES.items():
        servers[label] = serve(ca.issue("a.example.org", not_before=T0,
                                        not_after=T0 + dt.timedelta(seconds=lifetime)))
        servers[label].__enter__()
    yield {label: server.port for label, server in servers.items()}, ca_file
    for server in servers.values():
        server.__exit__()


@pytest.mark.parametrize(("label", "lifetime", "point"), ROWS, ids=IDS)
def test_probe(served, label: str, lifetime: int, point: Point) -> None:  # type: ignore[no-untyped-def]
    ports, ca_file = served
    now = T0 + dt.timedelta(seconds=lifetime - point.left)
    result = probe(Target("127.0.0.1", ports[label], servername="a.example.org"),
                   ProbeOptions(ca_file=ca_file, timeout=5, clock=lambda at=now: at))
    _check(result.status, result.reasons, point)
    report = result.to_json()
    assert report["seconds_left"] == point.left
    assert report["lifetime_seconds"] == lifetime
    assert report["renewal_overdue"] == point.overdue
    assert report["not_before"] == T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    renew_left = lifetime // 2 if lifetime < 10 * DAY else lifetime // 3
    due = T0 + dt.timedelta(seconds=lifetime - renew_left)
    assert report["renewal_due"] == due.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_renew_before_expiry_of_the_lineage(issued: dict[str, Certificate]) -> None:
    """A lineage's renew_before_expiry replaces certbot's default rule."""
    leaf = issued["90d"]
    due, rule = renewal_point(leaf.not_valid_before_utc, leaf.not_valid_after_utc, 40 * DAY)
    assert due == leaf.not_valid_after_utc - dt.timedelta(days=40)
    assert rule == "renew_before_expiry 40 days"
    now = leaf.not_valid_after_utc - dt.timedelta(days=38, seconds=1)
    texts = [f.text for f in judge(leaf, (), now, renew_before=40 * DAY).findings]
    assert texts == [f"renewal overdue: certbot should have renewed at"
                     f" {due.strftime('%Y-%m-%d %H:%M')} (renew_before_expiry 40 days)"]
    assert not judge(leaf, (), now).findings  # by the default rule, 38 days of 90 is fine


def test_absolute_and_bare_day_thresholds(issued: dict[str, Certificate]) -> None:
    leaf = issued["90d"]
    after = leaf.not_valid_after_utc
    # "21d" is exact: 21 days and a second left is not yet 21 days.
    assert not [f for f in judge(leaf, (), after - dt.timedelta(days=21, seconds=1),
                                 parse_threshold("21d"), parse_threshold("1h")).findings
                if "--warn" in f.text]
    # A bare 21 is whole days, as certhook always did: 21 days 23 hours is 21.
    texts = [f.text for f in judge(leaf, (), after - dt.timedelta(days=21, hours=23),
                                   parse_threshold("21"), parse_threshold("7")).findings]
    assert any("at or below --warn 21" in text for text in texts), texts
    texts = [f.text for f in judge(leaf, (), after - dt.timedelta(hours=36),
                                   parse_threshold("3d"), parse_threshold("36h")).findings]
    assert "certificate expires in 36 hours" in texts[0] and "--crit 36h" in texts[0]


@pytest.mark.parametrize(("text", "fraction", "seconds", "whole_days"), [
    ("25%", Fraction(1, 4), None, False),
    (" 7.5 % ", Fraction(3, 40), None, False),
    ("100%", Fraction(1), None, False),
    ("0%", Fraction(0), None, False),
    ("21d", None, 21 * DAY, False),
    ("36H", None, 36 * HOUR, False),
    ("90m", None, 90 * 60, False),
    ("1.5d", None, 36 * HOUR, False),
    ("600s", None, 600, False),
    ("21", None, 21 * DAY, True),
    ("0", None, 0, True),
])
def test_threshold_grammar(text: str, fraction: Fraction | None, seconds: int | None,
                           whole_days: bool) -> None:
    threshold = parse_threshold(text)
    assert (threshold.fraction, threshold.seconds, threshold.whole_days) == (
        fraction, seconds, whole_days)
    assert parse_threshold(str(threshold)) == threshold  # the canonical text reads back


@pytest.mark.parametrize(("text", "message"), [
    ("", "is not a threshold"),
    ("-1", "must not be negative"),
    ("-5%", "must not be negative"),
    ("101%", "at most 100%"),
    ("21days", "is not a threshold"),
    ("21w", "is not a threshold"),
    ("2.5", "is not a threshold"),
    ("1e3", "is not a threshold"),
    ("\u0662\u0661", "is not a threshold"),  # Arabic-Indic digits
    ("100001", "more than 100000 days"),
    ("999999999d", "more than 100000 days"),
    ("25%%", "is not a threshold"),
])
def test_threshold_grammar_refuses(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_threshold(text)


@given(st.text(max_size=30))
@example("٢١")
@example("1" * 40 + "d")
@example("nan%")
@example("inf")
def test_any_string_gives_a_threshold_or_parse_error(text: str) -> None:
    try:
        threshold = parse_threshold(text)
    except ParseError as exc:
        assert "\n" not in str(exc)
        return
    assert threshold.seconds_for(90 * DAY) >= 0
    assert parse_threshold(str(threshold)) == threshold


def test_defaults_are_21_and_7_days_of_90() -> None:
    assert DEFAULT_WARN.seconds_for(90 * DAY) == 21 * DAY
    assert DEFAULT_CRIT.seconds_for(90 * DAY) == 7 * DAY
    assert (str(DEFAULT_WARN), str(DEFAULT_CRIT)) == ("23.33%", "7.78%")
    assert parse_thresholds("21d, 25%,7, 21d") == (
        parse_threshold("25%"), parse_threshold("21d"), parse_threshold("7"))
    assert Threshold.days(21) == parse_threshold("21")


@pytest.mark.parametrize(("lifetime", "configured", "interval"), [
    (160 * HOUR, 6 * HOUR, HOUR),  # a 6-day certificate: at least hourly
    (45 * DAY, 6 * HOUR, 6 * HOUR),  # 6.75 h by lifetime: the configured 6 h is shorter
    (90 * DAY, 6 * HOUR, 6 * HOUR),
    (90 * DAY, 24 * HOUR, 90 * DAY / 160),  # 13.5 h
    (HOUR, 6 * HOUR, 300),  # never below five minutes
    (None, 6 * HOUR, 6 * HOUR),
])
def test_probe_interval(lifetime: float | None, configured: float, interval: float) -> None:
    assert math.isclose(probe_interval(configured, lifetime), interval)


@pytest.mark.parametrize(("label", "lifetime", "point"), ROWS, ids=IDS)
def test_server(served, label: str, lifetime: int, point: Point) -> None:  # type: ignore[no-untyped-def]
    """The server's auditor: the same table, probed through Auditor at its own clock."""
    from certhook.server.audit import Auditor
    from certhook.server.config import ServerConfig
    from certhook.server.evaluate import TargetState, evaluate

    ports, ca_file = served
    now = (T0 + dt.timedelta(seconds=lifetime - point.left)).timestamp()
    cfg = ServerConfig(ca_file=ca_file, resolve=(("a.example.org", "127.0.0.1"),),
                       allow_networks=_loopback())
    auditor = Auditor(cfg, clock=lambda: now)
    try:
        result = auditor._run_probe("a.example.org", ports[label], "tls")
    finally:
        auditor._pool.shutdown()
    ev = evaluate(TargetState(), result, now, threshold=1)
    _check(ev.status, ev.reasons, point)
    assert (ev.seconds_left, ev.lifetime_seconds) == (point.left, lifetime)


def _loopback():  # type: ignore[no-untyped-def]
    import ipaddress

    return (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.mark.parametrize(("lifetime", "interval"), [
    (160 * HOUR, HOUR), (45 * DAY, 6 * HOUR), (90 * DAY, 6 * HOUR), (None, 6 * HOUR)])
def test_server_probe_interval(lifetime: int | None, interval: float) -> None:
    from certhook.server.audit import Auditor
    from certhook.server.config import ServerConfig
    from certhook.server.evaluate import Evaluation

    auditor = Auditor(ServerConfig(interval=6 * HOUR, jitter=0.0))
    try:
        ev = Evaluation(status="ok", reasons=[], state="ok", failures=0, deployed=None,
                        served_fingerprint=None, days_left=None, not_after=None, issuer=None,
                        notified_state="ok", notified_days=frozenset(), notified_for=None,
                        lifetime_seconds=lifetime)
        assert auditor.recorder.next_probe(ev, 1000.0) == 1000.0 + interval
    finally:
        auditor._pool.shutdown()


def test_expiry_notices_by_lifetime(served) -> None:  # type: ignore[no-untyped-def]
    """A 160-hour certificate gets its three notices at 37 h, 12 h and 1 h 47 m left, once each."""
    from certhook.server.evaluate import TargetState, evaluate

    ports, ca_file = served
    lifetime = LIFETIMES["160h"]
    state, sent = TargetState(), []
    for left in (100 * HOUR, 38 * HOUR, 37 * HOUR, 20 * HOUR, 12 * HOUR, 2 * HOUR, HOUR):
        now = T0 + dt.timedelta(seconds=lifetime - left)
        result = probe(Target("127.0.0.1", ports["160h"], servername="a.example.org"),
                       ProbeOptions(ca_file=ca_file, timeout=5, clock=lambda at=now: at))
        ev = evaluate(state, result, now.timestamp(), threshold=1)
        sent.append([n["threshold"] for n in ev.notices if n["kind"] == "expiry"])
        state = TargetState(ev.state, ev.failures, ev.notified_state, ev.notified_days,
                            ev.notified_for)
    assert sent == [[], [], ["23.33%"], [], ["7.78%"], [], ["1.11%"]]


def test_a_lineages_renew_before_reaches_the_servers_verdict(served) -> None:  # type: ignore[no-untyped-def]
    """renew_before_expiry = 60 days on a 90-day certificate: overdue at 50 days left."""
    from certhook.server.audit import Auditor
    from certhook.server.config import ServerConfig
    from certhook.server.evaluate import TargetState, evaluate

    ports, ca_file = served
    now = (T0 + dt.timedelta(days=40)).timestamp()  # 50 days left of 90
    cfg = ServerConfig(ca_file=ca_file, resolve=(("a.example.org", "127.0.0.1"),),
                       allow_networks=_loopback())
    auditor = Auditor(cfg, clock=lambda: now)
    try:
        verdicts = {
            before: evaluate(TargetState(), auditor._run_probe(
                "a.example.org", ports["90d"], "tls", renew_before=before), now, threshold=1)
            for before in (None, 60 * DAY)}
    finally:
        auditor._pool.shutdown()
    assert (verdicts[None].status, verdicts[None].reasons) == ("ok", [])
    assert verdicts[60 * DAY].status == "warning"
    assert any(r.startswith("renewal overdue") for r in verdicts[60 * DAY].reasons)


def test_a_submitted_renew_before_is_what_the_auditor_probes_with(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """From the line protocol through the store to the probe's options."""
    import threading

    from server_helpers import (
        LineClient,
        add_line,
        config,
        fake_result,
        new_db,
        running,
        wait_until,
    )

    db, keys = new_db(tmp_path, "alice")
    seen: dict[str, object] = {}
    lock = threading.Lock()

    def probe_fn(target, options):  # type: ignore[no-untyped-def]
        with lock:
            seen[target.host] = options.renew_before
        return fake_result("ok")

    with running(config(db), probe_fn=probe_fn) as srv:
        assert srv.line_address
        client = LineClient(srv.line_address)
        assert client.ask(add_line(keys["alice"], "a.example.org", renew_before=60 * DAY)
                          ).startswith(b"ok")
        assert client.ask(add_line(keys["alice"], "b.example.org")).startswith(b"ok")
        wait_until(lambda: len(seen) == 2, what="both probed")
    assert seen == {"a.example.org": 60 * DAY, "b.example.org": None}
