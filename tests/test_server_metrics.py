"""GET /metrics: the exposition parsed by prometheus_client, isolation, escaping, loopback."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import (
    FakeProbe,
    config,
    connect_db,
    count,
    fake_result,
    http,
    new_db,
    running,
    wait_until,
)

from certhook.server import metrics, store
from certhook.server.wsgi import make_app

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "contrib" / "prometheus" / "certhook-server.rules.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "certhook.json"
HOSTILE = 'evil"\\\nname}{x="1"} 9'


def parse(text: str) -> dict[str, Any]:
    """Families by name, from prometheus_client's parser (which raises on bad input)."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> dict[tuple[str, str, str, str], float]:
    """``name``'s samples by (account, domain, port, protocol)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                key = (s.labels["account"], s.labels["domain"], s.labels["port"],
                       s.labels["protocol"])
                assert key not in out, f"two samples of {name} for {key}"
                out[key] = s.value
    return out


def scalar(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


Server = tuple[str, dict[str, str], str]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    db, keys = new_db(tmp_path, "alice", "bob")
    probe = FakeProbe({
        "good.example": fake_result("ok", days=42),
        "old.example": fake_result("ok", fingerprint="bb" * 32, days=30),
        "down.example": fake_result("unknown", reasons=("connection refused",),
                                    connected=False),
        "late.example": fake_result("warning", days=20, reasons=(
            "renewal overdue: certbot should have renewed at 2026-11-01 00:00 (1/3)",)),
    })
    cfg = config(db, line_listen=None, metrics_public="loopback", failure_threshold=1,
                 grace=0.0)
    with running(cfg, probe_fn=probe) as srv:
        assert srv.http_address
        yield db, keys, f"http://127.0.0.1:{srv.http_address[1]}"


def _submit(base: str, key: str, *domains: str, fingerprint: str | None = None) -> None:
    body: dict[str, Any] = {"domains": list(domains), "ports": [443]}
    if fingerprint:
        body.update(fingerprint=fingerprint, event="deployed")
    assert http("POST", f"{base}/api/v1/submissions", body, key)[0] == 200


def test_scrape_per_target_and_isolation(server: Server) -> None:
    db, keys, base = server
    _submit(base, keys["alice"], "good.example", "down.example", "old.example",
            fingerprint="aa" * 32)
    _submit(base, keys["alice"], "late.example")
    _submit(base, keys["bob"], "bob-only.example")
    wait_until(lambda: count(db, "targets", last_probe=None) == 0,
               what="every target probed")

    status, text = http("GET", f"{base}/metrics", basic=("alice", keys["alice"]))
    assert status == 200, text
    families = parse(text)  # the real parser accepts it
    good = ("alice", "good.example", "443", "tls")
    down = ("alice", "down.example", "443", "tls")
    late = ("alice", "late.example", "443", "tls")
    old = ("alice", "old.example", "443", "tls")
    assert samples(text, "probe_success") == {good: 1, down: 0, late: 1, old: 1}
    expiry = samples(text, "probe_ssl_earliest_cert_expiry")
    assert set(expiry) == {good, late, old}  # nothing read from down.example
    assert abs(expiry[good] - (time.time() + 42 * 86400)) < 2 * 86400
    # old.example serves another certificate than the one deployed; down.example
    # serves none (not known), late.example had no fingerprint reported
    assert samples(text, "certhook_deployed") == {good: 1, old: 0}
    assert samples(text, "certhook_renewal_overdue") == {good: 0, late: 1, old: 0}
    last = samples(text, "certhook_last_probe_timestamp_seconds")
    assert set(last) == {good, down, late, old}
    assert all(v > time.time() - 600 for v in last.values())
    states: dict[tuple[str, str], float] = {}
    for s in families["certhook_target_state"].samples:
        states[(s.labels["domain"], s.labels["state"])] = s.value
    assert states[("good.example", "ok")] == 1 and states[("good.example", "critical")] == 0
    assert states[("down.example", "unknown")] == 1
    assert states[("late.example", "warning")] == 1
    assert states[("old.example", "critical")] == 1
    assert sum(states.values()) == 4 and len(states) == 4 * len(metrics.STATES)
    # account isolation: none of bob's targets in alice's scrape, and the other way round
    assert "bob" not in text
    status, bob = http("GET", f"{base}/metrics", key=keys["bob"])  # Bearer works too
    assert status == 200
    assert set(samples(bob, "certhook_last_probe_timestamp_seconds")) == {
        ("bob", "bob-only.example", "443", "tls")}
    assert "alice" not in bob and "good.example" not in bob


def test_health_counters_move(server: Server) -> None:
    db, keys, base = server
    _, before = http("GET", f"{base}/metrics", key=keys["alice"])
    _submit(base, keys["alice"], "good.example")
    assert http("POST", f"{base}/api/v1/submissions", {"domains": ["x.example"]}, "wrong")[0] \
        == 401
    wait_until(lambda: count(db, "targets", last_probe=None) == 0,
               what="the probe")
    wait_until(lambda: metrics.PROBES.value("ok") > scalar(before, "certhook_probes_total",
                                                           outcome="ok"), what="the counter")
    _, after = http("GET", f"{base}/metrics", key=keys["alice"])
    parse(after)

    def delta(name: str, **labels: str) -> float:
        return scalar(after, name, **labels) - scalar(before, name, **labels)

    assert delta("certhook_submissions_accepted_total") == 1
    assert delta("certhook_submissions_refused_total", reason="auth") == 1
    assert delta("certhook_probes_total", outcome="ok") >= 1
    assert delta("certhook_probe_duration_seconds_count") >= 1
    assert delta("certhook_probe_duration_seconds_bucket", le="+Inf") >= 1
    for name in ("certhook_submission_queue_depth", "certhook_probes_due",
                 "certhook_notifications_pending", "certhook_notifications_failed_total",
                 "certhook_probes_in_flight", "certhook_key_checks_throttled_total"):
        scalar(after, name)  # present


def test_failed_notifications_are_counted(tmp_path: Path) -> None:
    db, _ = new_db(tmp_path)
    conn = store.open_store(db)
    conn.enqueue([store.Notice("a", "webhook", "x", "{}", 0, 0)] * 3)
    ids = [n.id for n in conn.notifications()]
    conn.mark_failed(ids[1:], 0, "refused", 1, 1.0)  # given up after one attempt
    text = metrics.render(conn, None).read().decode()
    assert scalar(text, "certhook_notifications_failed_total") == 2
    assert scalar(text, "certhook_notifications_pending") == 1


def _update(db: str, sql: str, *args: Any) -> None:
    """Set a state straight in the SQLite file (one the server would reach by probing)."""
    conn = connect_db(db)
    with conn:
        conn.execute(sql, args)
    conn.close()


def _insert_targets(db: str, rows: list[tuple[str, str]]) -> None:
    conn = connect_db(db)
    with conn:
        conn.executemany(
            "INSERT INTO targets (account, domain, port, protocol, created, last_submitted,"
            " state, last_probe, status, not_after) VALUES (?, ?, 443, 'tls', 0, 0, 'ok',"
            " 1000, 'ok', 2000)", rows)
    conn.close()


def test_hostile_names_are_escaped_and_bounded(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    long = "a" * 5000 + ".example"
    _insert_targets(db, [("alice", HOSTILE), ("alice", long)])
    app = make_app(config(db))
    status, _, body = _call(app, "/metrics", "192.0.2.9", f"Bearer {keys['alice']}")
    assert status.startswith("200")
    text = body.decode()
    domains = set(k[1] for k in samples(text, "probe_success"))
    assert HOSTILE in domains  # the parser reads back exactly the name stored
    assert "a" * metrics.MAX_LABEL in domains  # cut to MAX_LABEL characters
    assert all(len(line) < 1000 for line in text.splitlines())
    # every sample line is NAME{...} VALUE: no line forged by the name
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{.*\})? \S+", line), line


@pytest.mark.sqlite_only("counts the queries with SQLite's own statement trace")
def test_pages_keep_families_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read a page at a time, each family's samples still form one group, once each."""
    db, _ = new_db(tmp_path)
    names = [f"n{i:03d}.example" for i in range(25)]
    _insert_targets(db, [("alice", n) for n in names] + [("bob", n) for n in names[:7]])
    monkeypatch.setattr(metrics, "PAGE", 4)
    conn = store.open_store(db)
    traced: list[str] = []
    conn._connection().set_trace_callback(traced.append)  # type: ignore[attr-defined]
    text = metrics.render(conn, None).read().decode()
    assert len(samples(text, "probe_success")) == 32
    assert len([ln for ln in text.splitlines() if ln.startswith("certhook_target_state{")]) \
        == 32 * len(metrics.STATES)
    seen: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            if not seen or seen[-1] != name:
                assert name not in seen, f"{name} in two groups"
                seen.append(name)
    # no read of the targets without a LIMIT: memory bounded whatever their number
    reads = [q for q in traced if "FROM targets" in q and "count(" not in q
             and "DISTINCT" not in q]
    assert reads and all("LIMIT" in q for q in reads)


def _call(app: Any, path: str, address: str, authorization: str | None = None
          ) -> tuple[str, list[tuple[str, str]], bytes]:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "REMOTE_ADDR": address,
               "wsgi.input": io.BytesIO(b"")}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.update(status=status, headers=headers)

    body = b"".join(app(environ, start_response))
    length = dict(seen["headers"])["Content-Length"]
    assert int(length) == len(body)
    return seen["status"], seen["headers"], body


@pytest.mark.parametrize(("public", "address", "allowed"), [
    ("loopback", "127.0.0.1", True),
    ("loopback", "127.3.4.5", True),
    ("loopback", "::1", True),
    ("loopback", "::ffff:127.0.0.1", True),
    ("loopback", "192.0.2.9", False),  # another address: a proxy's is its own
    ("loopback", "10.0.0.1", False),
    ("loopback", "::ffff:192.0.2.9", False),
    ("loopback", "", False),
    ("no", "127.0.0.1", False),
])
def test_loopback_switch(tmp_path: Path, public: str, address: str, allowed: bool) -> None:
    db, _ = new_db(tmp_path, "alice", "bob")
    _insert_targets(db, [("alice", "a.example"), ("bob", "b.example")])
    app = make_app(config(db, metrics_public=public))
    status, headers, body = _call(app, "/metrics", address)
    if allowed:  # every account's targets: the operator's scrape
        assert status.startswith("200")
        assert dict(headers)["Content-Type"] == metrics.CONTENT_TYPE
        assert {k[0] for k in samples(body.decode(), "probe_success")} == {"alice", "bob"}
    else:
        assert status.startswith("401") and b"a.example" not in body
        assert ("WWW-Authenticate", 'Basic realm="certhook", charset="UTF-8"') in headers


def test_loopback_over_http(server: Server) -> None:
    _, _, base = server
    status, text = http("GET", f"{base}/metrics")  # from 127.0.0.1, metrics_public=loopback
    assert status == 200 and "certhook_submissions_accepted_total" in text


def test_wrong_keys_are_throttled(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    app = make_app(config(db))
    answers = [_call(app, "/metrics", "192.0.2.9", f"Bearer wrong{i}")[0][:3]
               for i in range(12)]
    assert answers[:10] == ["401"] * 10 and answers[10:] == ["429", "429"]
    # Basic with a wrong key counts the same way, from another address
    answers = [_call(app, "/metrics", "192.0.2.10", "Basic " + _b64(f"alice:no{i}"))[0][:3]
               for i in range(11)]
    assert answers[-1] == "429"
    # a valid key from a third address is not slowed
    assert _call(app, "/metrics", "192.0.2.11", f"Bearer {keys['alice']}")[0][:3] == "200"
    assert app.throttle.refused >= 3
    text = _call(app, "/metrics", "192.0.2.11", f"Bearer {keys['alice']}")[2].decode()
    assert scalar(text, "certhook_key_checks_throttled_total") == app.throttle.refused


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


# -- contrib: the rules and the dashboard use only what is exported --------------------


def exported() -> set[str]:
    """Every metric name /metrics can write (sample names of histograms included)."""
    names = {name for name, *_ in metrics.TARGET_FAMILIES} | {"certhook_target_state"}
    for metric in metrics._PROCESS:
        if metric is not metrics.PROBE_DURATION:
            names.add(metric.name)
    names |= {f"{metrics.PROBE_DURATION.name}_{s}" for s in ("bucket", "sum", "count")}
    names |= {"certhook_submission_queue_depth", "certhook_probes_due",
              "certhook_notifications_pending", "certhook_notifications_failed_total",
              "certhook_key_checks_throttled_total"}
    return names


def test_exported_names_are_what_a_scrape_shows(tmp_path: Path) -> None:
    db, _ = new_db(tmp_path)
    _insert_targets(db, [("alice", "a.example")])
    _update(db, "UPDATE targets SET deployed = 1, failures = 0")
    conn = store.open_store(db)
    text = metrics.render(conn, None, queued=0, throttled=0).read().decode()
    shown = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert shown == exported()


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                 "unless", "bool", "offset", "le", "state", "outcome", "reason", "account",
                 "domain", "port", "protocol", "inf", "nan"}


def promql_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers not followed by ``(``, not in
    braces, not label names or keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", expr):
        if match.group(2) or match.group(1).lower() in _PROMQL_WORDS:
            continue
        names.add(match.group(1))
    return names


def test_rules_use_exported_metrics_and_pass_promtool(tmp_path: Path) -> None:
    text = RULES.read_text()
    exprs = re.findall(r"^\s*expr:\s*(?:>-?|\|-?)?\s*\n?((?:.*\n)*?)\s*(?:for|labels|"
                       r"annotations):", text, re.M)
    assert len(exprs) == text.count("- alert:") >= 5  # every rule's expression read
    for expr in exprs:
        used = promql_metrics(expr)
        assert used and used <= exported(), (expr, used - exported())
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus); names checked only")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert len(exprs) >= 6
    used: set[str] = set()
    for expr in exprs:
        names = promql_metrics(expr)
        assert names, expr
        used |= names
    assert used <= exported(), used - exported()


def test_rules_fire_on_a_real_scrape(tmp_path: Path) -> None:
    """promtool test rules, fed the series of a real exposition: the alerts fire for the
    targets they should, with the labels the scrape carries, and not for the others."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    db, _ = new_db(tmp_path)
    _insert_targets(db, [("alice", "fine.example"), ("alice", "old.example"),
                         ("bob", "late.example")])
    now = time.time()
    _update(db, "UPDATE targets SET deployed = 1, last_probe = ?, not_after = ?",
            now, now + 60 * 86400)
    _update(db, "UPDATE targets SET state = 'critical', deployed = 0 WHERE domain = ?",
            "old.example")
    _update(db, "UPDATE targets SET state = 'warning', reasons = ? WHERE domain = ?",
            "renewal overdue: certbot should have renewed", "late.example")
    conn = store.open_store(db)
    text = metrics.render(conn, None, queued=0, throttled=0, now=now).read().decode()
    series = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("certhook_probe_duration"):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            # timestamps relative to promtool's clock, which starts at 0
            value = s.value - now if s.name.endswith(("expiry", "timestamp_seconds")) else s.value
            series.append({"series": f"{s.name}{{{labels}}}", "values": f"{value:.0f}x80"})

    def target(domain: str, account: str, **extra: str) -> dict[str, str]:
        return {"account": account, "domain": domain, "port": "443", "protocol": "tls", **extra}

    tests = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series, "alert_rule_test": [
            {"eval_time": "70m", "alertname": "CertificateCritical", "exp_alerts": [{
                "exp_labels": target("old.example", "alice", state="critical",
                                     severity="critical"),
                "exp_annotations": {
                    "summary": "old.example:443/tls is critical",
                    "description": "See the report page of account alice for the findings."},
            }]},
            {"eval_time": "70m", "alertname": "CertificateNotDeployed", "exp_alerts": [{
                "exp_labels": target("old.example", "alice", severity="critical"),
                "exp_annotations": {
                    "summary": "old.example:443 does not serve the renewed certificate"},
            }]},
            {"eval_time": "70m", "alertname": "CertificateRenewalOverdue", "exp_alerts": [{
                "exp_labels": target("late.example", "bob", severity="warning"),
                "exp_annotations": {"summary": "late.example: certbot should have renewed by now"},
            }]},
            {"eval_time": "70m", "alertname": "CertificateUnreachable", "exp_alerts": []},
            {"eval_time": "70m", "alertname": "CertificateExpiresWithin7Days", "exp_alerts": []},
            {"eval_time": "70m", "alertname": "CertificateNotProbedLately", "exp_alerts": []},
        ]}]}
    path = tmp_path / "rules.test.yml"
    path.write_text(json.dumps(tests))  # JSON is YAML
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_overdue_wording_is_the_probes() -> None:
    """certhook_renewal_overdue reads the stored finding: its wording is lifetime.py's."""
    import inspect

    from certhook.probe import lifetime

    assert f'"{metrics._RENEWAL_OVERDUE}: ' in inspect.getsource(lifetime.judge)
