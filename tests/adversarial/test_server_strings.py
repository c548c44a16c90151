"""A hostile audit server's error message reaches the hook's terminal escaped (issue 9.7).

The client prints one warning line when a server refuses a submission, and
quotes the server's error message (HTTPS: the JSON ``message``). A server
(or anyone between a plain-HTTP client and it) chooses those characters:
an ESC sequence would rewrite the terminal of whoever runs ``certbot
renew``. Here a real ``certhook hook`` process talks to such a server on
loopback, and its stderr is read.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from client_helpers import client_env, make_lineage

HOSTILE = "refused\x1b[2J\x1b]0;pwned\x07\u202etxet\x9b31m"


class _Hostile(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        data = json.dumps({"ok": False, "error": "syntax", "message": HOSTILE}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def hostile() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hook_warning_is_escaped(tmp_path: Path, hostile: str) -> None:
    live = make_lineage(tmp_path / "config", "a.example.org", "a.example.org")
    env = client_env(tmp_path, hostile, RENEWED_LINEAGE=str(live),
                     RENEWED_DOMAINS="a.example.org")
    exe = Path(sys.executable).parent / "certhook"
    proc = subprocess.run([str(exe), "hook", "--deadline", "10"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("certhook hook: warning: ") and proc.stderr.count("\n") == 1
    assert "refused\\x1b[2J\\x1b]0;pwned\\x07\\u202etxet\\x9b31m" in proc.stderr, proc.stderr
    for raw in ("\x1b", "\x07", "\u202e", "\x9b"):
        assert raw not in proc.stderr
