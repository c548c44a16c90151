"""certhook's main job, end to end on loopback, with its embedded defaults.

1. pebble (a real ACME server) starts on 127.0.0.1; real certbot issues a
   certificate for www.example.org into a temporary certbot tree, and a TLS
   "web server" on loopback starts serving it.
2. ``certhook serve`` starts with its defaults (line protocol on
   127.0.0.1:10023, HTTP on 127.0.0.1:8023), a throw-away database, and a
   config that lets it audit loopback and connect to 127.0.0.1 for
   www.example.org (no DNS); an account and key come from ``certhook keys``.
3. The drop-in hook goes into certbot's ``renewal-hooks/deploy/``
   (``certhook install-hook``); ``certhook report`` makes the first sync,
   and the server probes the endpoint: ok.
4. certbot renews; the drop-in reports the new certificate; the web server
   was not reloaded and still serves the old one: the server finds
   "renewed but not deployed".
5. The web server reloads; the server sees the new certificate: ok again.

Nothing listens or connects beyond 127.0.0.1, and everything stops at the end.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from acmeenv import Certbot, Pebble, wait_for_port

BIN = Path(sys.executable).parent
CERTHOOK = str(BIN / "certhook")
NAME = "www.example.org"
LINE, HTTP = ("127.0.0.1", 10023), ("127.0.0.1", 8023)


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


class WebServer:
    """A TLS server on loopback that serves the chain it loaded until reload()."""

    def __init__(self, fullchain: Path, privkey: Path) -> None:
        self.files = (fullchain, privkey)
        self.reload()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def reload(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*map(str, self.files))
        self.context = context

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                conn.close()


def domains(key: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"http://{HTTP[0]}:{HTTP[1]}/api/v1/domains",
                                     headers={"Authorization": f"Bearer {key}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        body = json.load(response)
    return list(body["domains"] if isinstance(body, dict) else body)


def wait_for(key: str, what: str, predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(predicate(t) for t in domains(key)):
            return
        time.sleep(0.5)
    raise SystemExit(f"demo: gave up waiting for {what}")


def certhook(*args: str, env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CERTHOOK, *args], env=env, text=True, **kw)


def main() -> int:
    for host, port in (LINE, HTTP):
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                raise SystemExit(f"demo: {host}:{port} is in use; stop what listens there")
    with tempfile.TemporaryDirectory(prefix="certhook-demo-") as tmp_name:
        tmp = Path(tmp_name)
        with Pebble(tmp / "pebble") as pebble:
            return run_demo(tmp, pebble)


def run_demo(tmp: Path, pebble: Pebble) -> int:
    step(f"pebble on {pebble.directory_url}; certbot issues a certificate for {NAME}")
    certbot = Certbot(pebble, tmp / "certbot")
    certbot.certonly(NAME)
    live = certbot.config_dir / "live" / NAME
    web = WebServer(live / "fullchain.pem", live / "privkey.pem")
    print(f"a TLS web server on 127.0.0.1:{web.port} serves it")

    step("certhook serve, with its default listeners (127.0.0.1:10023 and :8023)")
    roots = tmp / "pebble-roots.pem"
    roots.write_text(pebble.roots_pem())
    db = tmp / "certhook.db"
    server_conf = tmp / "server.conf"
    server_conf.write_text(
        "[audit]\n"
        "# the demo's endpoint is on loopback, which the SSRF guard refuses by default\n"
        "allow_networks = 127.0.0.0/8\n"
        f"resolve = {NAME}=127.0.0.1\n"
        f"ca_file = {roots}\n"
        "interval = 2s\nretry_interval = 1s\ngrace = 0s\nfailure_threshold = 1\n"
    )
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    key = certhook("keys", "add", "demo", "--db", str(db), env=env, check=True,
                   capture_output=True).stdout.split()[0]
    print("account demo created with a fresh API key (shown once; not printed here)")
    server = subprocess.Popen([CERTHOOK, "serve", "--config", str(server_conf), "--db", str(db),
                               "--log-level", "WARNING"], env=env)
    try:
        wait_for_port(LINE[1])
        wait_for_port(HTTP[1])
        return loop(tmp, certbot, web, key, db, env)
    finally:
        server.terminate()
        server.wait(10)


def loop(tmp: Path, certbot: Certbot, web: WebServer, key: str, db: Path,
         env: dict[str, str]) -> int:
    step("the hook's side: /etc/certhook/certhook.conf (here in a temp dir), the drop-in")
    client_conf = tmp / "certhook.conf"
    client_conf.write_text(f"[client]\nserver = tcp://{LINE[0]}:{LINE[1]}\napi_key = {key}\n"
                           f"[ports]\n{NAME} = {web.port}\n")
    client_conf.chmod(0o600)
    env = {**env, "CERTHOOK_CONFIG": str(client_conf), "CERTHOOK_SPOOL_DIR": str(tmp / "spool")}
    certhook("install-hook", "--config-dir", str(certbot.config_dir), env=env, check=True)
    certhook("report", "--config-dir", str(certbot.config_dir), env=env, check=True)
    wait_for(key, "the first probe", lambda t: t.get("status") == "ok")
    certhook("status", "--db", str(db), env=env)

    step("certbot renews; the web server is not reloaded and keeps the old certificate")
    certbot.renew(env={"PATH": env["PATH"], "CERTHOOK_CONFIG": env["CERTHOOK_CONFIG"],
                       "CERTHOOK_SPOOL_DIR": env["CERTHOOK_SPOOL_DIR"]})
    wait_for(key, "'not deployed'", lambda t: t.get("status") == "critical")
    certhook("status", "--db", str(db), env=env)

    step("the web server reloads: the new certificate is live")
    web.reload()
    wait_for(key, "recovery", lambda t: t.get("status") == "ok")
    return certhook("status", "--db", str(db), env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main())
