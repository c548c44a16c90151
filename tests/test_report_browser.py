"""The report page in a real browser: Debian's chromium, headless, against ``certhook serve``.

The server probes three targets on loopback (a TLS endpoint with a
trustme certificate, the same endpoint under a name its certificate does
not hold, and a closed port); chromium loads the page and a detail page
with the account's credentials in the URL (HTTP Basic), and the test reads
the DOM chromium built (``--dump-dom``): the summary counts, the rows, the
SVG. Screenshots are left under the test's tmp dir. Missing chromium is a
failure, not a skip: ``tests/apt-packages`` installs it.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from server_helpers import LineClient, ServeProcess, TlsEndpoint, add_line, http, new_db, wait_until

pytestmark = pytest.mark.slow

NAMES = {"www.example.org": "ok", "alt.example.org": "critical"}


def _chromium() -> str:
    found = shutil.which("chromium")
    assert found, "chromium is missing: apt-get install chromium (tests/apt-packages)"
    return found


def _browser(tmp_path: Path, url: str, *action: str) -> str:
    """Run headless chromium on ``url`` (fresh profile, nothing but loopback): its stdout."""
    profile = tmp_path / "chromium-profile"
    done = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-proxy-server", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--window-size=1400,1000", *action, url],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[tuple[TlsEndpoint, Path]]:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert("www.example.org")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    server = TlsEndpoint()
    server.load(chain, key)
    yield server, ca_file
    server.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_report_and_detail_page_in_chromium(tmp_path: Path,
                                            endpoint: tuple[TlsEndpoint, Path]) -> None:
    tls, ca_file = endpoint
    db, keys = new_db(tmp_path, "alice", "bob")
    audit = (f"allow_networks = 127.0.0.0/8\nca_file = {ca_file}\ninterval = 1h\njitter = 0\n"
             "resolve = www.example.org=127.0.0.1, alt.example.org=127.0.0.1,"
             " down.example.org=127.0.0.1\nfailure_threshold = 1\nretry_interval = 1s\n")
    with ServeProcess(tmp_path, db, audit) as srv:
        client = LineClient(srv.line_address)
        for name in NAMES:
            assert client.ask(add_line(keys["alice"], name, port=tls.port)).startswith(b"ok")
        assert client.ask(add_line(keys["alice"], "down.example.org", port=_closed_port())
                          ).startswith(b"ok")
        assert client.ask(add_line(keys["bob"], "bob.example.org", port=tls.port)
                          ).startswith(b"ok")

        def probed() -> list[dict[str, object]] | None:
            _, data = http("GET", f"{srv.base}/api/v1/domains", key=keys["alice"])
            rows = data["domains"]
            return rows if len(rows) == 3 and all(r["last_probe"] for r in rows) else None

        rows = wait_until(probed, timeout=60, what="three probed targets")
        states = {r["domain"]: r["state"] for r in rows}
        assert states["www.example.org"] == "ok" and states["alt.example.org"] == "critical"
        port = srv.http_port
        page_url = f"http://alice:{keys['alice']}@127.0.0.1:{port}/"
        dom = _browser(tmp_path, page_url, "--dump-dom")
        assert "certhook report: alice" in dom, dom[:2000]
        assert re.search(r'data-state="ok"><b>1</b>', dom)
        assert re.search(r"<b>3</b>all", dom)
        assert "bob.example.org" not in dom
        assert 'class="target" data-state="critical"' in dom and "alt.example.org" in dom
        assert dom.count("<svg") >= 3 and "<circle" in dom
        # the first row is the worst
        first = dom.index('<tr class="target"')
        assert dom.index("www.example.org", first) > dom.index('data-state="critical"', first)
        ids = re.findall(r'href="/target\?id=(\d+)">alt\.example\.org', dom)
        assert ids, dom[:3000]
        detail_url = f"http://alice:{keys['alice']}@127.0.0.1:{port}/target?id={ids[0]}"
        detail = _browser(tmp_path, detail_url, "--dump-dom")
        assert "<h1>alt.example.org:" in detail and "name mismatch" in detail
        assert '<svg class="timeline"' in detail and '<circle class="probe"' in detail
        assert '<tr class="probe">' in detail
        for url, png in ((page_url, "report.png"), (detail_url, "detail.png")):
            _browser(tmp_path, url, f"--screenshot={tmp_path / png}")
            assert (tmp_path / png).stat().st_size > 10_000
        # certbot renews www (a new certificate, not served yet): waiting for deployment;
        # alt is muted for a day. Both as the browser shows them, bob's page unchanged.
        assert client.ask(add_line(keys["alice"], "www.example.org", port=tls.port,
                                   fingerprint="bb" * 32, event="deployed")).startswith(b"ok")
        status, mute = http("POST", f"{srv.base}/api/v1/targets/mute",
                            {"target": "alt.example.org", "until": "1d"}, keys["alice"])
        assert status == 200

        def waiting() -> bool:
            _, data = http("GET", f"{srv.base}/api/v1/domains", key=keys["alice"])
            return any(r["domain"] == "www.example.org" and r["state"] == "waiting"
                       for r in data["domains"])

        wait_until(waiting, timeout=60, what="www waiting for deployment")
        dom = _browser(tmp_path, page_url, "--dump-dom")
        bar = dom.split('<nav class="summary"')[1].split("</nav>")[0]
        assert re.search(r'class="waiting"[^>]*data-state="waiting"><b>1</b>waiting for'
                         r" deployment", bar), bar
        assert re.search(r'data-muted="1"[^>]*><b>1</b>muted', bar), bar
        www = dom.split(f"www.example.org:{tls.port}</a>")[0].rsplit("<tr", 1)[1]
        assert 'data-state="waiting"' in www
        alt = dom.split(f"alt.example.org:{tls.port}</a>")[1].split("</tr>")[0]
        assert f'data-muted-until="{mute["muted_until"]}"' in alt
        assert f"muted until {mute['muted_until']}" in alt
        assert re.search(r'class="target muted" data-state="critical"><td><a href="/target\?id='
                         f"{ids[0]}", dom)
        _browser(tmp_path, page_url, f"--screenshot={tmp_path / 'waiting-muted.png'}")
        bob_url = f"http://bob:{keys['bob']}@127.0.0.1:{port}/"
        bob = _browser(tmp_path, bob_url, "--dump-dom")
        assert 'data-muted="0"' in bob and "www.example.org" not in bob
        assert re.search(r'data-state="waiting"><b>0</b>', bob)
        # without credentials: the login prompt, never the page
        bare = _browser(tmp_path, f"http://127.0.0.1:{port}/", "--dump-dom")
        assert "certhook report" not in bare and "alt.example.org" not in bare
