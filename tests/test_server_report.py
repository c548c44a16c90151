"""The report: the SVG history, the terminal table, ``certhook status``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from server_helpers import (
    FakeProbe,
    LineClient,
    add_line,
    config,
    connect_db,
    fake_result,
    new_db,
    running,
    wait_until,
)
from server_helpers import targets as target_rows

from certhook.cli import main
from certhook.server import report


@pytest.mark.parametrize("points", [
    [],
    [(1.0, None, "unknown")],
    [(1.0, 30, "ok")],
    [(1.0, 30, "ok"), (2.0, 30, "ok")],
    [(1.0, 30, "ok"), (2.0, None, "unknown"), (3.0, 5, "critical")],
])
def test_sparkline_any_history(points: list[tuple[float, int | None, str]]) -> None:
    svg = report.sparkline(points)
    if not points:
        assert svg == ""
    else:
        assert svg.startswith("<svg") and svg.endswith("</svg>")
        assert svg.count("<circle") == len(points) and "nan" not in svg
        if any(status == "critical" for _, _, status in points):
            assert report.COLOURS["critical"] in svg


def test_status_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, keys = new_db(tmp_path, "alice", "bob")
    probe = FakeProbe({"good.example": fake_result("ok", days=40),
                       "bad.example": fake_result("critical", days=3,
                                                  reasons=("expires in 3 days",))})
    with running(config(db, failure_threshold=1), probe_fn=probe) as srv:
        assert srv.line_address
        LineClient(srv.line_address).ask(add_line(keys["alice"], "good.example"))
        LineClient(srv.line_address).ask(add_line(keys["bob"], "bad.example"))
        wait_until(lambda: all(t["last_probe"] for t in target_rows(db))
                   and len(target_rows(db)) == 2, what="both probed")
    assert main(["status", "--db", db, "--account", "alice"]) == 0
    out = capsys.readouterr().out
    assert "good.example:443/tls" in out and "bad.example" not in out and " 40 " in out
    assert main(["status", "--db", db]) == 2
    out = capsys.readouterr().out
    assert "bob" in out and "critical" in out and "expires in 3 days" in out
    assert main(["status", "--db", db, "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert {(d["account"], d["domain"], d["days_left"]) for d in data} == {
        ("alice", "good.example", 40), ("bob", "bad.example", 3)}
    assert main(["status", "--db", str(tmp_path / "missing.db")]) == 1


RAW = "evil.example\x1b[2J\x1b]0;pwned\x07\u202eabc\x9bX"


def test_raw_certificate_words_in_the_database(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Rows written before reasons were escaped on the way in (or by hand) still
    # hold raw control characters: every reader escapes them for its sink.
    db, keys = new_db(tmp_path, "alice")
    probe = FakeProbe({"bad.example": fake_result("critical", reasons=("x",))})
    with running(config(db, failure_threshold=1), probe_fn=probe) as srv:
        assert srv.line_address
        LineClient(srv.line_address).ask(add_line(keys["alice"], "bad.example"))
        wait_until(lambda: all(t["last_probe"] for t in target_rows(db)), what="probed")
    conn = connect_db(db)
    conn.execute("UPDATE targets SET reasons = ?, issuer = ?",
                 (f"name mismatch: SAN {RAW}\nsecond", f"CA {RAW}"))
    conn.commit()
    conn.close()
    assert main(["status", "--db", db]) == 2
    out = capsys.readouterr().out
    for raw in ("\x1b", "\x07", "\u202e", "\x9b"):
        assert raw not in out
    assert "SAN evil.example\\x1b[2J\\x1b]0;pwned\\x07\\u202eabc\\x9bX" in out
    assert out.count("bad.example:443: ") == 2  # the two stored reasons, one line each
    assert main(["status", "--db", db, "--json"]) == 2
    out = capsys.readouterr().out
    assert "\x1b" not in out and json.loads(out)[0]["reasons"][0].endswith(RAW)
    from certhook.server import store

    conn = store.open_store(db, create=False)
    page = report.render_page(conn, "alice")
    conn.close()
    for raw in ("\x1b", "\x07", "\u202e", "\x9b"):
        assert raw not in page
    assert "SAN evil.example\\x1b[2J\\x1b]0;pwned\\x07\\u202eabc\\x9bX" in page


# -- the page and the detail page, through the WSGI app -----------------------------------

NOW = float(int(time.time()))  # the app renders at the real time


def _add_target(db: str, account: str, domain: str, state: str = "ok", days: float | None = 60,
                lineage: str | None = None, served: str | None = "aa" * 32,
                expected: str | None = None, reasons: str = "", results: int = 2,
                event: str | None = None, port: int = 443) -> int:
    conn = connect_db(db)
    not_after = None if days is None else NOW + days * 86400
    conn.execute(
        "INSERT INTO targets (account, domain, port, protocol, created, last_submitted,"
        " lineage, last_event, expected_fingerprint, expected_since, state, last_probe,"
        " status, reasons, days_left, not_after, issuer, served_fingerprint, deployed)"
        " VALUES (?, ?, ?, 'tls', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'Test CA', ?, ?)",
        (account, domain, port, NOW - 9000, NOW - 9000, lineage, event, expected,
         NOW - 100 if expected else None, state, NOW - 60, state, reasons,
         None if days is None else int(days), not_after, served,
         None if expected is None else int(expected == served)))
    target = int(conn.execute("SELECT id FROM targets WHERE account = ? AND domain = ?"
                              " AND port = ?", (account, domain, port)).fetchone()[0])
    for i in range(results):
        conn.execute(
            "INSERT INTO results (target, time, status, state, reasons, days_left, not_after,"
            " issuer, fingerprint, deployed, address, elapsed) VALUES (?, ?, ?, ?, ?, ?, ?,"
            " 'Test CA', ?, NULL, '127.0.0.1', 0.01)",
            (target, NOW - 3600 * (results - i), state, state, reasons,
             None if days is None else int(days), not_after, served))
    conn.commit()
    conn.close()
    return target


def _get(app: object, path: str, query: str = "", auth: tuple[str, str] | None = None
         ) -> tuple[int, dict[str, str], str]:
    import base64
    import io

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query,
               "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO()}
    if auth:
        environ["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode()
    seen: list[object] = []
    body = b"".join(app(environ, lambda status, headers: seen.extend([status, headers])))  # type: ignore[operator]
    return int(str(seen[0]).split()[0]), dict(seen[1]), body.decode()  # type: ignore[call-overload]


@pytest.fixture
def page_app(tmp_path: Path) -> tuple[object, str, dict[str, str]]:
    from certhook.server.wsgi import make_app

    db, keys = new_db(tmp_path, "alice", "bob")
    app = make_app(config(db))
    yield app, db, keys
    app.close()


def test_pages_carry_security_headers(page_app: tuple[object, str, dict[str, str]]) -> None:
    app, db, keys = page_app
    target = _add_target(db, "alice", "a.example")
    for path, query in (("/", ""), ("/target", f"id={target}")):
        status, headers, body = _get(app, path, query, ("alice", keys["alice"]))
        assert status == 200, body
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "img-src 'self' data:" in csp and "script" not in csp
        assert "unsafe-inline" not in csp and f"'sha256-{report._STYLE_HASH}'" in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "<script" not in body and f"<style>{report.STYLE}</style>" in body
    # the login prompt and errors too: never framed, never cached
    status, headers, _ = _get(app, "/")
    assert status == 401 and headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"


def test_style_hash_matches_the_style() -> None:
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(report.STYLE.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in report.CSP


def test_page_summary_sort_group_filter_search(
        page_app: tuple[object, str, dict[str, str]]) -> None:
    app, db, keys = page_app
    _add_target(db, "alice", "ok-late.example", days=80, lineage="late")
    _add_target(db, "alice", "ok-soon.example", days=20, lineage="soon")
    _add_target(db, "alice", "www.soon.example", "critical", days=20, lineage="soon",
                expected="bb" * 32, reasons="renewed but not deployed: serving aa")
    _add_target(db, "alice", "short.example", "warning", days=1.52, lineage="short")
    _add_target(db, "alice", "down.example", "unknown", days=None, served=None,
                reasons="connection refused")
    _add_target(db, "bob", "bob-only.example", "critical")
    status, _, page = _get(app, "/", "", ("alice", keys["alice"]))
    assert status == 200
    assert 'data-state="critical"><b>1</b>' in page and 'data-state="ok"><b>2</b>' in page
    assert "<b>5</b>all" in page and "bob-only" not in page
    order = [d for d in ("www.soon.example", "ok-soon.example", "short.example",
                         "down.example", "ok-late.example")]
    assert sorted(order, key=page.index) == order  # group "soon" is worst (critical) first
    assert 'lineage soon: <span class="state critical">critical</span> (2 targets)' in page
    assert 'lineage short: <span class="state warning">warning</span> (1 target)' in page
    assert "36 h" in page  # hours when short
    assert "&ne; deployed" in page and "<code>bbbbbbbbbbbb</code>" in page
    assert "= deployed" not in page.split("www.soon.example")[1].split("</tr>")[0]
    # filter by state, search by name (a % is a character, not a wildcard)
    _, _, page = _get(app, "/", "state=warning", ("alice", keys["alice"]))
    assert "short.example" in page and "ok-late" not in page
    assert "targets 1-1 of 1 matching" in page
    _, _, page = _get(app, "/", "q=SOON", ("alice", keys["alice"]))
    assert "ok-soon.example" in page and "short.example" not in page
    _, _, page = _get(app, "/", "q=%25", ("alice", keys["alice"]))
    assert "0 of 0 targets" in page.replace("targets 0 of 0", "0 of 0 targets")
    _, _, page = _get(app, "/", "group=host&state=bogus&page=x", ("alice", keys["alice"]))
    assert "host ok-late.example" in page and "targets 1-5 of 5" in page


def test_page_is_paginated(page_app: tuple[object, str, dict[str, str]]) -> None:
    app, db, keys = page_app
    conn = connect_db(db)
    conn.executemany(
        "INSERT INTO targets (account, domain, port, protocol, created, last_submitted, state,"
        " not_after) VALUES ('alice', ?, 443, 'tls', 0, 0, 'ok', ?)",
        [(f"t{i:04d}.example", NOW + i * 60) for i in range(250)])
    conn.commit()
    conn.close()
    seen = []
    for number in (1, 2, 3):
        _, _, page = _get(app, "/", f"page={number}&group=none", ("alice", keys["alice"]))
        rows = page.count('<tr class="target"')
        assert rows == (100 if number < 3 else 50)
        seen += [line for line in page.split("\n") if line.startswith('<tr class="target"')]
        assert ('rel="next"' in page) == (number < 3) and ('rel="prev"' in page) == (number > 1)
    assert len(set(seen)) == 250
    for query, shown in (("page=999999999999", "targets 0 of 250"), ("page=-1", "1-100 of 250"),
                         ("page=0", "1-100 of 250"), ("page=%C2%B2", "1-100 of 250")):
        status, _, page = _get(app, "/", query, ("alice", keys["alice"]))
        assert status == 200 and shown in page, query
    assert seen[0].count("t0000.example") and seen[-1].count("t0249.example")


def test_detail_page_and_account_isolation(page_app: tuple[object, str, dict[str, str]]) -> None:
    app, db, keys = page_app
    evil = "<img src=x onerror=alert(1)>\x1b[2J"
    target = _add_target(db, "alice", "a.example", "critical", expected="bb" * 32,
                         reasons=f"renewed but not deployed: {evil}", results=5,
                         event="renewed")
    bob = _add_target(db, "bob", "b.example")
    status, _, page = _get(app, "/target", f"id={target}", ("alice", keys["alice"]))
    assert status == 200
    assert "systemctl reload nginx" in page and "&lt;img src=x" in page
    assert "<img" not in page and "\x1b" not in page
    assert page.count('<tr class="probe"') == 5 and page.count('<circle class="probe"') == 5
    assert '<svg class="timeline"' in page and '<g class="cert">' in page
    assert "certbot deployed a renewed certificate" in page
    for query in (f"id={bob}", "id=999", "id=x", "id=", "id=" + "9" * 40):
        status, _, page = _get(app, "/target", query, ("alice", keys["alice"]))
        assert status == 404 and "b.example" not in page, query
    assert _get(app, "/target", f"id={bob}", ("bob", keys["bob"]))[0] == 200
    assert _get(app, "/target", f"id={target}")[0] == 401


@pytest.mark.parametrize(("finding", "action"), [
    ("renewed but not deployed: serving aa..., certbot deployed bb...", "systemctl reload"),
    ("waiting for deployment until 10:00 UTC", "nothing yet"),
    ("certbot reported a failed renewal", "certbot renew --cert-name"),
    ("name mismatch: a.example is not in b.example", "--expand"),
    ("certificate expired 2d ago (2026-01-01)", "renew now"),
    ("connection refused", "the service runs"),
    ("something new", "check the service"),
])
def test_advice_for_findings(finding: str, action: str) -> None:
    from certhook.server import report_detail

    assert action in report_detail.advice(finding)[1]


def test_status_summary_first_and_pages(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    db, _ = new_db(tmp_path, "alice")
    for i in range(7):
        _add_target(db, "alice", f"ok{i}.example", days=30 + i, results=3)
    bad = _add_target(db, "alice", "bad.example", "critical", days=2, reasons="expires in 2 days")
    reads: list[int] = []
    real = report.queries.recent_results

    def counting(conn: Any, target: int, limit: int = 60) -> Any:
        reads.append(target)
        return real(conn, target, limit)

    monkeypatch.setattr(report.queries, "recent_results", counting)
    assert main(["status", "--db", db, "--limit", "3"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "8 targets: 1 critical, 0 warning, 0 unknown, 0 waiting, 7 ok; 0 muted"
    assert out[1] == "targets 1-3 of 8, worst first"
    assert out[3].startswith("alice") and "bad.example:443/tls  critical  47 h " in out[3]
    assert len(reads) == 3 and reads[0] == bad  # history of the rows shown, once each
    assert "  bad.example:443: expires in 2 days" in out
    reads.clear()
    assert main(["status", "--db", db, "--limit", "3", "--page", "3"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "targets 7-8 of 8, worst first" and "ok6.example" in out[-1]
    assert len(reads) == 2
    assert main(["status", "--db", db, "--limit", "3", "--page", "9"]) == 2
    assert "no targets on page 9 of 8" in capsys.readouterr().out
    assert main(["status", "--db", db, "--json", "--limit", "2"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert [d["domain"] for d in data] == ["bad.example", "ok0.example"]
    for bad_arg in (["--limit", "0"], ["--limit", "1001"], ["--page", "x"]):
        with pytest.raises(SystemExit):
            main(["status", "--db", db, *bad_arg])
    capsys.readouterr()


def test_every_stored_string_is_escaped_on_both_pages(
        page_app: tuple[object, str, dict[str, str]]) -> None:
    app, db, keys = page_app
    evil = '"><script>alert(1)</script>\x1b[2J\u202e'
    target = _add_target(db, "alice", "x.example", "waiting", lineage=evil,
                         served="<i>" + "a" * 60, expected=evil + "b" * 40, reasons=evil,
                         event=evil, results=3)
    conn = connect_db(db)
    conn.execute("UPDATE targets SET issuer = ?, address = ?, protocol = ?", (evil, evil, evil))
    conn.execute("UPDATE results SET issuer = ?, address = ?, reasons = ?, fingerprint = ?,"
                 " status = ?", (evil, evil, evil, evil, evil))
    conn.commit()
    conn.close()
    for path, query in (("/", ""), ("/", "group=host"), ("/", "q=" + evil),
                        ("/target", f"id={target}")):
        status, _, page = _get(app, path, query, ("alice", keys["alice"]))
        assert status == 200, page
        assert "<script" not in page and "<i>" not in page and "&lt;script&gt;" in page
        for raw in ("\x1b", "\u202e"):
            assert raw not in page, (path, query)


def _mute(db: str, target: int, until: float) -> None:
    conn = connect_db(db)
    conn.execute("UPDATE targets SET muted_until = ? WHERE id = ?", (until, target))
    conn.commit()
    conn.close()


def test_page_marks_waiting_and_muted_per_account(
        page_app: tuple[object, str, dict[str, str]]) -> None:
    from certhook.server import queries

    app, db, keys = page_app
    _add_target(db, "alice", "wait.example", "waiting", expected="bb" * 32, event="deployed")
    muted = _add_target(db, "alice", "muted.example", "critical", reasons="expired")
    _mute(db, muted, NOW + 2 * 86400)
    _mute(db, _add_target(db, "alice", "was-muted.example"), NOW - 60)  # a mute that ended
    for name in ("b1.example", "b2.example"):  # bob's mutes are not alice's
        _mute(db, _add_target(db, "bob", name, "waiting"), NOW + 3600)
    _, _, page = _get(app, "/", "", ("alice", keys["alice"]))
    bar = page.split('<nav class="summary"')[1].split("</nav>")[0]
    assert 'class="waiting"' in bar and "<b>1</b>waiting for deployment" in bar
    assert 'data-muted="1"' in bar and "<b>1</b>muted</span>" in bar
    assert ".summary a.waiting{" in page and ".state.waiting{" in page
    assert report.COLOURS["waiting"] not in ("#1565c0", "#0000ee")  # not a link's blue
    wait_row = page.split("wait.example:443")[0].rsplit("<tr", 1)[1]
    assert 'data-state="waiting"' in wait_row
    row = page.split("muted.example:443")[0].rsplit("<tr", 1)[1] + page.split(
        "muted.example:443")[1].split("</tr>")[0]
    until = queries.iso(NOW + 2 * 86400)
    assert 'class="target muted"' in row and f'data-muted-until="{until}"' in row
    assert f"muted until {until}" in row
    _, _, detail = _get(app, "/target", f"id={muted}", ("alice", keys["alice"]))
    assert f'<span class="muted-until">muted until {until}</span>' in detail
    ended = page.split("was-muted.example:443")[1].split("</tr>")[0]
    assert "muted until" not in ended
    assert "b1.example" not in page
    _, _, page = _get(app, "/", "", ("bob", keys["bob"]))
    assert 'data-muted="2"' in page and "<b>2</b>waiting for deployment" in page


def _submission(db: str, account: str, when: float, domains: str, event: str | None,
                lineage: str | None) -> None:
    conn = connect_db(db)
    conn.execute(
        "INSERT INTO submissions (account, client_id, time, transport, peer, domains, ports,"
        " protocols, fingerprint, lineage, event, client) VALUES (?, ?, ?, 'line', '127.0.0.1',"
        " ?, '443', 'tls', NULL, ?, ?, 'test')",
        (account, f"s{when}{domains}", when, domains, lineage, event))
    conn.commit()
    conn.close()


def test_last_renewal_event_shows_the_submissions_time(
        page_app: tuple[object, str, dict[str, str]]) -> None:
    from certhook.server import queries

    app, db, keys = page_app
    # A failed renewal two hours ago, then the daily report without an event: the page
    # showed the last submission's time (and to the minute) as the failure's.
    failed = _add_target(db, "alice", "f.example", "critical", lineage="f", event="failed")
    _submission(db, "alice", NOW - 7200 - 7, "f.example www.f.example", "failed", "f")
    _submission(db, "alice", NOW - 9000, "f.example", None, "f")
    # A renewal delivered again later (same certificate): the later one is the event.
    renewed = _add_target(db, "alice", "r.example", lineage="r", event="deployed",
                          expected="aa" * 32)
    _submission(db, "alice", NOW - 100, "r.example", "deployed", "r")
    _submission(db, "alice", NOW - 50, "r.example", "deployed", "r")
    # bob's later events of the same lineage and name are not alice's
    _submission(db, "bob", NOW - 10, "f.example", "failed", "f")
    _submission(db, "bob", NOW - 10, "r.example", "deployed", "r")
    _, _, page = _get(app, "/", "", ("alice", keys["alice"]))
    f_row = page.split(f'href="/target?id={failed}"')[1].split("</tr>")[0]
    stamp = queries.iso(NOW - 7207)
    assert f'failed <small><time class="event" datetime="{stamp}">{stamp}</time>' in f_row
    r_row = page.split(f'href="/target?id={renewed}"')[1].split("</tr>")[0]
    assert f'datetime="{queries.iso(NOW - 50)}"' in r_row
    _, _, detail = _get(app, "/target", f"id={failed}", ("alice", keys["alice"]))
    assert f"failed {stamp}" in detail
    # no submission on record (a database from before): the event, without a made-up time
    _add_target(db, "alice", "old.example", lineage="old", event="deployed")
    _, _, page = _get(app, "/", "", ("alice", keys["alice"]))
    assert "<td>deployed</td>" in page.split("old.example:443")[1].split("</tr>")[0]


def test_status_shows_muted_targets_with_their_end(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from certhook.server import queries

    db, _ = new_db(tmp_path, "alice", "bob")
    _add_target(db, "alice", "plain.example")
    muted = _add_target(db, "alice", "quiet.example", "critical", reasons="expired")
    _mute(db, muted, NOW + 86400)
    _mute(db, _add_target(db, "bob", "bob.example"), NOW + 86400)
    assert main(["status", "--db", db, "--account", "alice"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "2 targets: 1 critical, 0 warning, 0 unknown, 0 waiting, 1 ok; 1 muted"
    assert out[2].split()[-3:] == ["history", "muted", "until"]
    quiet = next(line for line in out if line.startswith("quiet.example"))
    assert quiet.endswith(queries.iso(NOW + 86400) or "")
    assert not next(line for line in out if line.startswith("plain.example")).endswith("Z")
    assert main(["status", "--db", db, "--account", "bob"]) == 0
    assert capsys.readouterr().out.startswith("1 targets: 0 critical, 0 warning, 0 unknown,"
                                              " 0 waiting, 1 ok; 1 muted")
    _mute(db, muted, NOW - 1)
    assert main(["status", "--db", db, "--account", "alice"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("; 0 muted") and "until" not in out[2]
