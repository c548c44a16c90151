"""The report: the SVG history, the terminal table, ``certhook status``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from server_helpers import (
    FakeProbe,
    LineClient,
    add_line,
    config,
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
    conn = sqlite3.connect(db)
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

    conn = store.connect(db, create=False)
    page = report.render_page(conn, "alice")
    conn.close()
    for raw in ("\x1b", "\x07", "\u202e", "\x9b"):
        assert raw not in page
    assert "SAN evil.example\\x1b[2J\\x1b]0;pwned\\x07\\u202eabc\\x9bX" in page
