"""The HTTP API and report page (wsgiref in-process, and under gunicorn)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from acmeenv import free_port, wait_for_port
from client_helpers import client_env, make_lineage
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

from certhook.server import store
from certhook.server.runner import AuditServer

Server = tuple[AuditServer, str, dict[str, str], str]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    db, keys = new_db(tmp_path, "alice", "bob")
    probe = FakeProbe({"good.example": fake_result("ok", days=42)})
    with running(config(db, line_listen=None), probe_fn=probe) as srv:
        assert srv.http_address
        yield srv, db, keys, f"http://127.0.0.1:{srv.http_address[1]}"


def test_submit_list_history(server: Server) -> None:
    _srv, db, keys, base = server
    body = {"domains": ["good.example", "Other.Example."], "ports": [443], "id": "h1",
            "fingerprint": "aa" * 32, "event": "deployed", "client": "test/1"}
    assert http("POST", f"{base}/api/v1/submissions", body, keys["alice"]) == (
        200, {"ok": True, "id": "h1", "domains": 2})
    # a retry with the same id is acknowledged, not stored twice
    assert http("POST", f"{base}/api/v1/submissions", body, keys["alice"])[0] == 200
    assert count(db, "submissions") == 1
    wait_until(lambda: count(db, "targets", domain="good.example",
                                 last_probe=lambda v: v is not None), what="a probe")
    status, data = http("GET", f"{base}/api/v1/domains", key=keys["alice"])
    assert status == 200 and data["account"] == "alice"
    good = next(d for d in data["domains"] if d["domain"] == "good.example")
    assert good["days_left"] == 42 and good["deployed"] is True and good["port"] == 443
    assert {d["domain"] for d in data["domains"]} == {"good.example", "other.example"}
    status, hist = http("GET", f"{base}/api/v1/domains/good.example", key=keys["alice"])
    assert status == 200 and hist["targets"][0]["history"][0]["days_left"] == 42
    # bob sees none of alice's targets
    status, data = http("GET", f"{base}/api/v1/domains", key=keys["bob"])
    assert status == 200 and data["domains"] == []
    assert http("GET", f"{base}/api/v1/domains/good.example", key=keys["bob"])[0] == 404


def test_keychest_endpoint(server: Server) -> None:
    _, db, keys, base = server
    url = f"{base}/api/v1.0/servers/add"
    assert http("POST", url, {"api_key": keys["alice"], "domain": "kc.example"}) == (
        200, {"status": "success"})
    assert count(db, "targets", domain="kc.example") == 1
    status, data = http("POST", url, {"api_key": "wrong", "domain": "kc.example"})
    assert status == 401 and data["status"] == "error"
    status, data = http("POST", url, {"api_key": keys["alice"], "domain": "bad domain"})
    assert status == 400 and data["status"] == "error"


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), [
    ("POST", "/api/v1/submissions", {"raw": b"{not json"}, 400, "syntax"),
    ("POST", "/api/v1/submissions", {"raw": b"\xff\xfe\x00"}, 400, "syntax"),
    ("POST", "/api/v1/submissions", {"raw": b"[" * 100000 + b"]" * 100000}, 413, "syntax"),
    ("POST", "/api/v1/submissions", {"raw": b"[" * 30000 + b"]" * 30000}, 400, "syntax"),
    ("POST", "/api/v1/submissions", {"body": ["a.example"]}, 400, "syntax"),
    ("POST", "/api/v1/submissions", {"body": {"domains": "a.example"}}, 400, "syntax"),
    ("POST", "/api/v1/submissions", {"body": {"domains": ["a b"]}}, 400, "syntax"),
    ("POST", "/api/v1/submissions", {"body": {"ports": [1]}}, 400, "syntax"),
    ("POST", "/api/v1/submissions", {"body": {"domain": "a.example"}, "key": None}, 401, "auth"),
    ("POST", "/api/v1/submissions", {"body": {"domain": "a.example"}, "key": "x"}, 401, "auth"),
    ("GET", "/api/v1/domains", {"key": "wrong"}, 401, "auth"),
    ("GET", "/api/v1/domains", {"key": None}, 401, "auth"),
    ("GET", "/api/v1/domains?apikey=KEY", {}, 400, "syntax"),
    ("POST", "/api/v1/submissions?api_key=KEY", {"body": {"domain": "a.example"}}, 400, "syntax"),
    ("GET", "/api/v1/submissions", {}, 405, "syntax"),
    ("GET", "/nowhere", {}, 404, "syntax"),
])
def test_bad_requests(server: Server, method: str, path: str, kwargs: dict[str, object],
                      status: int, code: str) -> None:
    _, db, keys, base = server
    args = dict(kwargs)
    key = args.pop("key", keys["alice"])
    got, data = http(method, base + path, key=key, **args)  # type: ignore[arg-type]
    assert got == status and data["ok"] is False and data["error"] == code
    assert count(db, "submissions") == 0
    # and the server still serves everyone else
    assert http("POST", f"{base}/api/v1/submissions", {"domain": "z.example"}, keys["alice"]
                )[0] == 200


def test_truncated_body_does_not_hang_the_server(server: Server) -> None:
    _, _, keys, base = server
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n"
                  b"Authorization: Bearer " + keys["alice"].encode() + b"\r\n\r\n{\"dom")
        # the half request sits there; others are served meanwhile
        assert http("POST", f"{base}/api/v1/submissions", {"domain": "y.example"},
                    keys["alice"])[0] == 200


def test_report_page_requires_login_and_escapes(server: Server) -> None:
    _srv, db, keys, base = server
    status, _ = http("GET", base + "/")
    assert status == 401
    assert http("GET", base + "/", basic=("alice", "wrong"))[0] == 401
    assert http("GET", base + "/", basic=("bob", keys["alice"]))[0] == 401
    http("POST", f"{base}/api/v1/submissions", {"domain": "good.example"}, keys["alice"])
    conn_reason = "<script>alert(1)</script>"  # as if a remote name carried it
    wait_until(lambda: count(db, "results"), what="a result")
    raw = connect_db(db)
    raw.execute("UPDATE targets SET reasons = ?, issuer = ?", (conn_reason, "<b>CA</b>"))
    raw.commit()
    status, page = http("GET", base + "/", basic=("alice", keys["alice"]))
    assert status == 200 and "good.example" in page
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;CA" in page
    assert "<svg" in page and "<circle" in page
    assert http("GET", base + "/", basic=("bob", keys["bob"]))[1].count("good.example") == 0


def test_under_gunicorn(tmp_path: Path) -> None:
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert gunicorn, "gunicorn is missing from the test venv: run ./setup.sh (test extra)"
    db, keys = new_db(tmp_path, "alice")
    port = free_port()
    env = {**os.environ, "CERTHOOK_DB": db}
    proc = subprocess.Popen(
        [gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
         "certhook.server.wsgi:make_app()"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, 30)
        base = f"http://127.0.0.1:{port}"
        for i in range(10):
            assert http("POST", f"{base}/api/v1/submissions",
                        {"domain": f"g{i}.example", "id": f"g{i}"}, keys["alice"]) == (
                200, {"ok": True, "id": f"g{i}", "domains": 1})
        status, data = http("GET", f"{base}/api/v1/domains", key=keys["alice"])
        assert status == 200 and len(data["domains"]) == 10
        assert http("GET", f"{base}/api/v1/domains?apikey=x")[0] == 400
        assert http("GET", base + "/", basic=("alice", keys["alice"]))[0] == 200
    finally:
        proc.terminate()
        proc.wait(15)
    assert count(db, "submissions") == 10


def test_junk_on_the_http_port(server: Server) -> None:
    _, _, keys, base = server
    port = int(base.rsplit(":", 1)[1])
    for junk in (b"\x00\xff" * 600 + b"\r\n\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                 b"POST /api/v1/submissions HTTP/1.1\r\nContent-Length: x\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(junk)
            answer = b""
            while len(answer) < 100000:  # an error page (HTTP/0.9 style for a garbled line)
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
            assert b" 200 " not in answer and (b"400" in answer or b"414" in answer), answer
    assert http("POST", f"{base}/api/v1/submissions", {"domain": "z.example"}, keys["alice"]
                )[0] == 200


def _certhook() -> list[str]:
    exe = Path(sys.executable).parent / "certhook"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "certhook"]


def _tls_files(tmp_path: Path) -> tuple[str, str, str]:
    """A trustme CA file and a server chain and key for 127.0.0.1."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    paths = [tmp_path / "ca.pem", tmp_path / "fullchain.pem", tmp_path / "privkey.pem"]
    ca.cert_pem.write_to_path(str(paths[0]))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(paths[1]))
    leaf.private_key_pem.write_to_path(str(paths[2]))
    return str(paths[0]), str(paths[1]), str(paths[2])


def test_https_fallback_reaches_certhook_serve(tmp_path: Path) -> None:
    """The real client's https:// fallback against a real ``certhook serve --https-listen``,
    no proxy in between (issue 8.2: it used to fail with WRONG_VERSION_NUMBER)."""
    db, keys = new_db(tmp_path, "alice")
    ca_file, cert, key = _tls_files(tmp_path)
    port = free_port()
    serve = subprocess.Popen(
        [*_certhook(), "serve", "--db", db, "--line-listen", "off", "--http-listen", "off",
         "--https-listen", f"127.0.0.1:{port}", "--tls-cert", cert, "--tls-key", key,
         "--no-audit", "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, 30)
        config_dir = tmp_path / "letsencrypt"
        make_lineage(config_dir, "a", "a.example", "www.a.example")
        env = client_env(tmp_path, f"https://127.0.0.1:{port}", keys["alice"])
        for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            env.pop(name, None)  # straight to certhook serve
        report = subprocess.run(
            [*_certhook(), "report", "--config-dir", str(config_dir), "--ca-file", ca_file],
            env=env, capture_output=True, text=True, timeout=60)
        assert report.returncode == 0, report.stderr
        assert count(db, "submissions", transport="http",
                         domains="a.example www.a.example") == 1
        # plain HTTP on the HTTPS port is refused, not served
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = s.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert b"ok" not in answer
    finally:
        serve.terminate()
        _, err = serve.communicate(timeout=15)
    assert b"Traceback" not in err, err


def test_https_listen_from_the_config_file(tmp_path: Path) -> None:
    from certhook.client.config import ClientConfig, parse_server
    from certhook.client.transport import Deadline, open_session
    from certhook.protocol import Request
    from certhook.server.config import load_config

    db, keys = new_db(tmp_path, "alice")
    ca_file, cert, key = _tls_files(tmp_path)
    conf = tmp_path / "server.conf"
    conf.write_text(f"[server]\ndb = {db}\nline_listen = off\nhttp_listen = off\n"
                    f"https_listen = 127.0.0.1:0\ntls_cert = {cert}\ntls_key = {key}\n")
    cfg = load_config(conf)
    assert cfg.https_listen == ("127.0.0.1", 0)
    with running(cfg, audit=False) as srv:
        assert srv.https_address and not srv.http_address
        url = parse_server(f"https://127.0.0.1:{srv.https_address[1]}")
        client = ClientConfig(servers=(url,), api_key=keys["alice"], ca_file=ca_file)
        with open_session(url, client, Deadline(10)) as session:
            request = Request(domains=("c.example",), apikey=keys["alice"], id="c1")
            response = session.submit(request)
        assert response.ok and response.get("id") == "c1"


def test_https_listen_needs_a_certificate(tmp_path: Path) -> None:
    db, _ = new_db(tmp_path, "alice")
    done = subprocess.run([*_certhook(), "serve", "--db", db, "--line-listen", "off",
                           "--https-listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--https-listen needs --tls-cert and --tls-key" in done.stderr
    assert "Traceback" not in done.stderr


def _from(source: str, method: str, url: str, headers: dict[str, str] | None = None,
          body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request from a chosen loopback source address (127.0.0.2, ...)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=15,
                                      source_address=(source, 0))
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                     body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 1_000_000:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _basic(name: str, key: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{key}".encode()).decode()}


def test_failed_key_checks_are_throttled_per_address(server: Server) -> None:
    from certhook.server.throttle import FAILURES

    _, db, keys, base = server
    bearer = {"Authorization": "Bearer wrong-key"}
    for _ in range(FAILURES):
        assert _from("127.0.0.3", "GET", f"{base}/api/v1/domains", bearer)[0] == 401
    status, headers, body = _from("127.0.0.3", "GET", f"{base}/api/v1/domains", bearer)
    assert status == 429 and 55 <= int(headers["Retry-After"]) <= 60
    assert json.loads(body)["error"] == "limit" and b"throttled" in body
    # every key check from that address waits, the right key's too, on every route
    good = {"Authorization": f"Bearer {keys['alice']}"}
    assert _from("127.0.0.3", "GET", f"{base}/api/v1/domains", good)[0] == 429
    assert _from("127.0.0.3", "POST", f"{base}/api/v1/submissions",
                 {**good, "Content-Type": "application/json"}, b'{"domain": "t.example"}'
                 )[0] == 429
    assert _from("127.0.0.3", "GET", f"{base}/", _basic("alice", keys["alice"]))[0] == 429
    # another address is served as before
    assert _from("127.0.0.4", "GET", f"{base}/api/v1/domains", good)[0] == 200
    assert count(db, "submissions") == 0


def test_wrong_submission_keys_count_too(server: Server) -> None:
    from certhook.server.throttle import FAILURES

    _, _, keys, base = server
    for i in range(FAILURES):
        status = _from("127.0.0.5", "POST", f"{base}/api/v1.0/servers/add",
                       {"Content-Type": "application/json"},
                       json.dumps({"api_key": f"guess{i}", "domain": "k.example"}).encode())[0]
        assert status == 401
    status, headers, body = _from("127.0.0.5", "POST", f"{base}/api/v1.0/servers/add",
                                  {"Content-Type": "application/json"},
                                  json.dumps({"api_key": keys["alice"], "domain": "k.example"}
                                             ).encode())
    assert status == 429 and json.loads(body)["status"] == "error" and "Retry-After" in headers


def test_basic_logins_are_throttled_per_account(server: Server) -> None:
    from certhook.server.throttle import ACCOUNT_FAILURES, FAILURES

    _, _, keys, base = server
    sources = [f"127.0.1.{i}" for i in range(ACCOUNT_FAILURES // FAILURES + 1)]
    statuses = [_from(src, "GET", f"{base}/", _basic("alice", f"guess{i}"))[0]
                for src in sources for i in range(FAILURES)]
    assert statuses.count(401) == ACCOUNT_FAILURES and statuses[-1] == 429
    assert _from("127.0.2.1", "GET", f"{base}/", _basic("alice", keys["alice"]))[0] == 429
    assert _from("127.0.2.1", "GET", f"{base}/", _basic("bob", keys["bob"]))[0] == 200
    # bearer keys name no account: alice's API and submissions work from anywhere
    good = {"Authorization": f"Bearer {keys['alice']}"}
    assert _from("127.0.2.1", "GET", f"{base}/api/v1/domains", good)[0] == 200


@pytest.mark.parametrize("credentials", [
    "Basic \u00e9\u00e9\u00e9\u00e9",  # not ASCII: was a 500
    "Basic " + "w6k6w6k=",  # base64 of latin-1 bytes that are not UTF-8 ("\xc3\xa9:\xc3\xa9")
    "Basic //79",  # bytes that are not UTF-8
    "Basic not base64!",
    "Bearer \u00e9\u00e9",
])
def test_strange_credentials_are_refused_not_errors(server: Server, credentials: str) -> None:
    _, _, _, base = server
    port = int(base.rsplit(":", 1)[1])
    path = "/" if credentials.startswith("Basic") else "/api/v1/domains"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {credentials}\r\n\r\n"
                  .encode("latin-1"))
        answer = _read_all(s)
    assert answer.split(b"\r\n", 1)[0].endswith(b" 401 Unauthorized"), answer


def test_an_unexpected_error_is_logged_with_a_request_id(
        server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from certhook.server import queries

    _, _, keys, base = server

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError(f"oops {keys['alice']}")  # a message holding a secret

    monkeypatch.setattr(queries, "target_page", broken)
    with caplog.at_level("ERROR", logger="certhook.http"):
        status, data = http("GET", f"{base}/api/v1/domains?limit=5", key=keys["alice"])
    assert status == 500 and data["error"] == "internal"
    request_id = data["message"].rsplit(" ", 1)[1]
    assert len(request_id) == 16
    lines = [r.getMessage() for r in caplog.records if r.name == "certhook.http"]
    assert len(lines) == 1, lines
    assert f"request {request_id}: GET /api/v1/domains failed: ValueError at" in lines[0]
    assert "wsgi.py" in lines[0] and keys["alice"] not in caplog.text and "oops" not in caplog.text


def test_debug_log_escapes_and_redacts_the_request_line(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    _, _, _, base = server
    port = int(base.rsplit(":", 1)[1])
    secret = "ck_SECRET-in-a-url"
    with caplog.at_level("DEBUG", logger="certhook.http"):
        for target in (f"/x\x1b[2J\x07\x85?apikey={secret}", f"/y?a=1&Api%5FKey={secret}",
                       f"/z?TOKEN={secret}&b=2"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode("latin-1"))
                assert b" 400 " in _read_all(s)
        wait_until(lambda: all(any(f"GET /{c}" in r.getMessage() for r in caplog.records)
                               for c in "xyz"), what="three request lines logged")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert secret not in text and text.count("=[redacted]") >= 3
    assert not any(c in text for c in "\x1b\x07\x85")
    assert "/x\\x1b[2J\\x07\\x85?apikey=[redacted]" in text
    assert "a=1&Api%5FKey=[redacted]" in text and "&b=2" in text


def test_listings_are_paginated(server: Server) -> None:
    from certhook.server import queries

    _, _, keys, base = server
    names = [f"p{i:03d}.example" for i in range(130)]
    for start in range(0, 130, 50):
        assert http("POST", f"{base}/api/v1/submissions",
                    {"domains": names[start:start + 50], "ports": [443, 465]}, keys["alice"]
                    )[0] == 200
    status, first = http("GET", f"{base}/api/v1/domains", key=keys["alice"])
    assert status == 200 and len(first["domains"]) == queries.PAGE_DEFAULT and first["next"]
    seen, cursor, pages = [], None, 0
    while True:
        url = f"{base}/api/v1/domains?limit=37" + (f"&cursor={cursor}" if cursor else "")
        status, page = http("GET", url, key=keys["alice"])
        assert status == 200 and len(page["domains"]) <= 37
        seen += [(d["domain"], d["port"]) for d in page["domains"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [(n, p) for n in names for p in (443, 465)] and pages == 8
    status, one = http("GET", f"{base}/api/v1/domains/p000.example?limit=1&history=1",
                       key=keys["alice"])
    assert status == 200 and [t["port"] for t in one["targets"]] == [443] and one["next"]
    status, two = http("GET", f"{base}/api/v1/domains/p000.example?limit=1&cursor={one['next']}",
                       key=keys["alice"])
    assert [t["port"] for t in two["targets"]] == [465] and two["next"] is None
    for query in (f"limit={queries.PAGE_MAX + 1}", "limit=0", "limit=x", "limit=%C2%B2",
                  "cursor=nonsense", "cursor=WzEsMiwzXQ", f"history={queries.HISTORY_MAX + 1}"):
        status, data = http("GET", f"{base}/api/v1/domains/p000.example?{query}",
                            key=keys["alice"])
        assert status == 400 and data["error"] == "syntax", query


def test_listings_carry_the_summary_first_per_account(server: Server) -> None:
    _srv, db, keys, base = server
    for key, names in ((keys["alice"], ["good.example", "m1.example", "m2.example"]),
                       (keys["bob"], ["good.example", "bob.example"])):
        assert http("POST", f"{base}/api/v1/submissions", {"domains": names}, key)[0] == 200
    wait_until(lambda: count(db, "targets", last_probe=None) == 0
               and count(db, "targets") == 5, what="five probed targets")
    status, mute = http("POST", f"{base}/api/v1/targets/mute",
                        {"target": "m1.example", "until": "2d"}, keys["alice"])
    assert status == 200 and mute["muted_until"]
    for name in ("good.example", "bob.example"):  # bob's mutes: none of alice's business
        assert http("POST", f"{base}/api/v1/targets/mute", {"target": name, "until": "1h"},
                    keys["bob"])[0] == 200
    opened = store.open_store(db, create=False)
    states = opened.state_counts("alice")
    opened.close()
    for path, listing in (("/api/v1/domains", "domains"), ("/api/v1/targets", "targets"),
                          ("/api/v1/domains?limit=1", "domains")):
        status, data = http("GET", base + path, key=keys["alice"])
        assert status == 200 and list(data).index("summary") < list(data).index(listing)
        summary = data["summary"]
        assert summary["total"] == 3 and summary["muted"] == 1, (path, summary)
        assert {s: n for s, n in summary["states"].items() if n} == states
        assert set(summary["states"]) >= {"ok", "warning", "critical", "unknown", "waiting"}
        muted = {d["domain"]: d["muted_until"] for d in data[listing]}
        assert muted.get("m1.example", mute["muted_until"]) == mute["muted_until"]
        assert muted.get("good.example") is None and "bob.example" not in muted
    # the summary heads the listing, not every page of it (it reads the whole account)
    for path, listing in (("/api/v1/domains", "domains"), ("/api/v1/targets", "targets")):
        _, first = http("GET", f"{base}{path}?limit=2", key=keys["alice"])
        _, second = http("GET", f"{base}{path}?limit=2&cursor={first['next']}", key=keys["alice"])
        assert first["summary"]["total"] == 3 and "summary" not in second
        assert len(first[listing]) + len(second[listing]) == 3
    status, one = http("GET", f"{base}/api/v1/domains/good.example", key=keys["alice"])
    assert one["summary"]["total"] == 1 and one["summary"]["muted"] == 0
    assert one["targets"][0]["muted_until"] is None
    status, data = http("GET", f"{base}/api/v1/domains", key=keys["bob"])
    assert data["summary"]["total"] == 2 and data["summary"]["muted"] == 2
    assert all(d["muted_until"] for d in data["domains"])
    status, one = http("GET", f"{base}/api/v1/domains/good.example", key=keys["bob"])
    assert one["summary"] == {"total": 1, "muted": 1, "states": one["summary"]["states"]}
