"""The detail page shows the chain a target served, and its timeline starts at notBefore.

A real server audits a real loopback TLS endpoint that sends a leaf and
an intermediate; the page is read through the WSGI app as a browser would
get it. The chain's strings come from certificates, so a hostile subject
must reach the page escaped.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest
from probe_helpers import CA, NOW, full_chain, serve, write
from server_helpers import LineClient, add_line, config, new_db, running, targets, wait_until

from certhook.server import chain
from certhook.server.store import open_store

LOOPBACK_1 = (ipaddress.ip_network("127.0.0.1/32"),)


@pytest.fixture(scope="module")
def root() -> CA:
    return CA("certhook chain test root")


def _page(db: str, target_id: int) -> str:
    from certhook.server import report_detail

    opened = open_store(db, create=False)
    try:
        row = opened.target(target_id)
        assert row is not None
        return report_detail.render_detail(opened, row)
    finally:
        opened.close()


def test_the_served_chain_and_the_leafs_not_before_reach_the_detail_page(
        tmp_path: Path, root: CA) -> None:
    middle = root.intermediate("certhook chain <b>intermediate</b>")
    not_before = NOW - dt.timedelta(days=3)
    issued = middle.issue("localhost", not_before=not_before, days=45)
    db, keys = new_db(tmp_path, "alice")
    cfg = config(db, ca_file=write(tmp_path / "roots.pem", root.pem), allow_networks=LOOPBACK_1)
    with serve(issued, full_chain(issued)) as endpoint, running(cfg) as srv:
        client = LineClient(srv.line_address)
        assert client.ask(add_line(keys["alice"], "localhost", port=endpoint.port)
                          ).startswith(b"ok")
        client.close()
        wait_until(lambda: all(t["last_probe"] for t in targets(db)), what="a probe")
    row = targets(db)[0]
    assert row["status"] == "ok", row
    stored = json.loads(row["chain"])
    assert stored["certs"][0]["fingerprint"] == issued.fingerprint
    assert len(stored["certs"]) == 2 and stored["more"] == 0
    assert "intermediate" in stored["certs"][1]["subject"]
    assert stored["certs"][0]["issuer"] == stored["certs"][1]["subject"]
    assert stored["certs"][0]["not_before"] == pytest.approx(not_before.timestamp(), abs=1)
    opened = open_store(db, create=False)
    history = opened.recent_results(row["id"])
    opened.close()
    assert history[-1].not_before == pytest.approx(not_before.timestamp(), abs=1)
    page = _page(db, row["id"])
    table = page[page.index("<h2>Chain served</h2>"):page.index("<h2>Timeline</h2>")]
    assert table.count('<tr class="cert">') == 2
    assert "<b>intermediate</b>" not in page  # a subject is text, never markup
    assert "&lt;b\\&gt;intermediate\\&lt;/b\\&gt;" in table  # RFC 4514 escapes <, >
    assert not_before.strftime("%Y-%m-%dT%H:%M") in table
    # the leaf's bar starts at its notBefore, days before the first probe saw it
    bars = re.findall(r'<g class="cert"><title>([^<]*)</title><rect x="([\d.]+)"', page)
    assert len(bars) == 1 and "notBefore " + not_before.strftime("%Y-%m-%dT%H:%M") in bars[0][0]
    assert float(bars[0][1]) == pytest.approx(10.0)  # the earliest time: the left edge


def test_a_stored_chain_is_shown_as_text_whatever_it_holds() -> None:
    evil = {"certs": [{"subject": "CN=<script>x</script>\x1b[2J", "issuer": "CN=\u202eevil",
                       "not_before": 0, "not_after": "nope", "fingerprint": "<i>"},
                      "not a dict"], "more": 3}
    html = "".join(chain.rows(json.dumps(evil)))
    assert "<script>" not in html and "\x1b" not in html and "\u202e" not in html
    assert "<i>" not in html and "and 3 more certificates" in html
    for broken in (None, "", "{", "[]", '{"certs": 5}', '{"certs": []}'):
        assert chain.rows(broken) == ["<p>No chain recorded yet (the last probes reached no"
                                      " certificate).</p>"]


def test_summarize_keeps_a_long_chain_short() -> None:
    class Cert:
        def __init__(self, i: int) -> None:
            self.subject, self.issuer = "CN=" + "s" * 2000, f"CN=i{i}"
            self.not_valid_before_utc = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
            self.not_valid_after_utc = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
            self.fingerprint_sha256 = f"{i:064x}"

    class Result:
        chain: Any = tuple(Cert(i) for i in range(chain.MAX_CERTS + 5))

    stored = json.loads(chain.summarize(Result()) or "")
    assert len(stored["certs"]) == chain.MAX_CERTS and stored["more"] == 5
    assert all(len(c["subject"]) < 600 for c in stored["certs"])
    assert chain.summarize(type("NoChain", (), {"chain": ()})()) is None
