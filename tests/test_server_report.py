"""The report: the SVG history, the terminal table, ``certhook status``."""

from __future__ import annotations

import json
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
