"""The path a user takes (issue 8, "Must hold"), end to end on loopback.

certhook is built as a wheel and installed, as README's install section
says, into a fresh venv that is not on PATH. Real certbot (against pebble)
runs with cron's and systemd's PATH; Debian's nginx serves the lineage's
certificate; ``certhook serve`` from that venv receives over one transport
and notifies a webhook (a tiny HTTP server in this test); the drop-in is
installed by that venv's ``certhook install-hook`` with ``[ports]`` naming
the nginx port. certbot renews and nginx is not reloaded: the webhook must
say "renewed but not deployed" for the nginx port, no target on 443 may
appear, and after ``nginx -s reload`` the recovery must arrive.

The transport is a parameter (:data:`TRANSPORTS`): one row holds the
server's listener settings and the client's ``server =`` for it.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from acmeenv import Certbot, Pebble, free_port, wait_for_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HOOK_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # what cron and systemd give certbot
NGINX = "/usr/sbin/nginx"
NAME = "www.example.org"
# A functional deadline for each notice: the shortened timeline below takes
# a few seconds; this bound is far from that and only catches "never".
NOTICE_WITHIN = 45.0


# -- what a transport is: the server's listeners and the client's address -----

class Ports:
    """Free loopback ports and the listener certificate of one server."""

    def __init__(self, tmp: Path) -> None:
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1")
        self.ca_file, self.cert, self.key = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        leaf.cert_chain_pems[0].write_to_path(str(self.cert))
        leaf.private_key_pem.write_to_path(str(self.key))
        self.tls, self.http = free_port(), free_port()


def _line_tls(ports: Ports) -> tuple[str, str]:
    server = (f"line_listen = off\ntls_listen = 127.0.0.1:{ports.tls}\n"
              f"tls_cert = {ports.cert}\ntls_key = {ports.key}\n"
              f"http_listen = 127.0.0.1:{ports.http}\n")
    return server, f"tls://127.0.0.1:{ports.tls}"


def _https_only(ports: Ports) -> tuple[str, str]:
    # The line listeners are down: only the client's https:// fallback can deliver.
    server = (f"line_listen = off\ntls_listen = off\nhttp_listen = off\n"
              f"https_listen = 127.0.0.1:{ports.http}\n"
              f"tls_cert = {ports.cert}\ntls_key = {ports.key}\n")
    return server, f"https://127.0.0.1:{ports.http}"


#: transport -> (its [server] lines, the client's server address)
TRANSPORTS: dict[str, Callable[[Ports], tuple[str, str]]] = {
    "line-tls": _line_tls,
    "https-only": _https_only,
}


# -- the pieces ---------------------------------------------------------------

#: README's install section, line by line (tests/test_user_path.py runs it).
INSTALL = [
    "apt install python3-venv",
    "python3 -m venv /opt/certhook",
    "/opt/certhook/bin/pip install .",
    "ln -s /opt/certhook/bin/certhook /usr/local/bin/certhook",
    "certhook install-hook",
]


def readme_install() -> list[str]:
    """The commands of README's install block, without their comments."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- install:", 1)[1].split("<!-- /install -->", 1)[0]
    body = block.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in body.splitlines() if line.strip()]


class Opt:
    """README's install, done in a temporary directory instead of / (not on PATH)."""

    def __init__(self, base: Path) -> None:
        self.prefix = base / "opt-certhook"
        self.local_bin = base / "usr-local-bin"
        self.launcher = self.prefix / "bin" / "certhook"

    def command(self, line: str, wheel: Path) -> str:
        """A README line as this test runs it: in its directories, ``pip install .``
        of the wheel built from this tree (``pip wheel .``), offline."""
        line = line.replace("/opt/certhook", str(self.prefix))
        line = line.replace("/usr/local/bin", str(self.local_bin))
        return line.replace(" install .", f" install -q --no-index --no-deps {wheel}")


@pytest.fixture(scope="module")
def opt(tmp_path_factory: pytest.TempPathFactory) -> Opt:
    """certhook built as a wheel from a copy of this tree (pip writes build/ into
    its source) and installed by README's lines, but for install-hook."""
    assert readme_install() == INSTALL
    base = tmp_path_factory.mktemp("install")
    source = base / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("bin", "certhook", "docs"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "--disable-pip-version-check", "-w", str(base / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    [wheel] = (base / "dist").glob("certhook-*.whl")
    installed = Opt(base)
    installed.local_bin.mkdir()
    # "apt install python3-venv" is setup.sh's; Debian's python3 (stock Debian 12)
    # makes the venv. The PATH puts it first, as on a server.
    env = {"PATH": HOOK_PATH, "HOME": str(base), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(["python3", "-c", "import ensurepip, venv"], env=env, check=True)
    for line in INSTALL[1:-1]:
        subprocess.run(["/bin/sh", "-ec", installed.command(line, wheel)], env=env,
                       check=True, capture_output=True, timeout=300)
    assert installed.launcher.exists()
    return installed


class Nginx:
    """Debian's nginx in a prefix of its own, serving one lineage over TLS on loopback."""

    def __init__(self, prefix: Path, live: Path) -> None:
        self.prefix = prefix
        self.port = free_port()
        prefix.mkdir()
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(f"""\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{self.port} ssl;
        server_name {NAME};
        ssl_certificate {live}/fullchain.pem;
        ssl_certificate_key {live}/privkey.pem;
        return 200 "ok\\n";
    }}
}}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def _argv(self, *extra: str) -> list[str]:
        return [NGINX, "-p", f"{self.prefix}/", "-c", str(self.conf),
                "-e", f"{self.prefix}/error.log", *extra]

    def start(self) -> Nginx:
        self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def reload(self) -> None:
        subprocess.run(self._argv("-s", "reload"), check=True, capture_output=True, timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class Webhook:
    """A loopback HTTP server that keeps every JSON notice POSTed to it."""

    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(204)
                self.end_headers()
                with hook.arrived:
                    hook.notices.append(json.loads(body))
                    hook.arrived.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/notice"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, kind: str, timeout: float) -> dict[str, Any]:
        end = time.monotonic() + timeout
        with self.arrived:
            while True:
                for notice in self.notices:
                    if notice.get("kind") == kind:
                        return notice
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind!r} notice within {timeout:.0f} s;"
                                         f" got {self.notices}")
                self.arrived.wait(left)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def pebble(tmp_path: Path) -> Iterator[Pebble]:
    with Pebble(tmp_path / "pebble") as running:
        yield running


# -- the test -----------------------------------------------------------------

@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_renewed_but_not_deployed_reaches_the_user(tmp_path: Path, opt: Opt, pebble: Pebble,
                                                   transport: str) -> None:
    certhook = opt.launcher
    assert shutil.which("certhook", path=HOOK_PATH) is None  # the venv is not on PATH
    clean = {"PATH": HOOK_PATH, "HOME": str(tmp_path), "LANG": "C.UTF-8"}

    certbot = Certbot(pebble, tmp_path / "certbot")
    certbot.certonly(NAME)
    live = certbot.config_dir / "live" / NAME
    stops: list[Callable[[], None]] = []
    try:
        nginx = Nginx(tmp_path / "nginx", live).start()
        stops.append(nginx.stop)
        webhook = Webhook()
        stops.append(webhook.stop)

        # The audit server, from the installed venv, its timeline shortened by config.
        ports = Ports(tmp_path)
        server_lines, client_server = TRANSPORTS[transport](ports)
        roots = tmp_path / "pebble-roots.pem"
        roots.write_text(pebble.roots_pem())
        server_conf = tmp_path / "server.conf"
        server_conf.write_text(
            f"[server]\n{server_lines}"
            "[audit]\n"
            "allow_networks = 127.0.0.0/8\n"
            f"resolve = {NAME}=127.0.0.1\n"
            f"ca_file = {roots}\n"
            "interval = 1s\nretry_interval = 1s\ngrace = 3s\nfailure_threshold = 1\n"
            f"[notify]\nlog = no\nwebhook = {webhook.url}\nbackoff = 1s\ngroup_window = 1s\n"
        )
        db = tmp_path / "certhook.db"
        key = subprocess.run([str(certhook), "keys", "add", "alice", "--db", str(db)],
                             env=clean, check=True, capture_output=True, text=True,
                             timeout=60).stdout.split()[0]
        with open(tmp_path / "serve.log", "wb") as log:  # Popen keeps its own descriptor
            serve = subprocess.Popen(
                [str(certhook), "serve", "--config", str(server_conf), "--db", str(db),
                 "--log-level", "WARNING"],
                env=clean, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

        def stop_serve() -> None:
            serve.terminate()
            serve.wait(15)

        stops.append(stop_serve)
        wait_for_port(ports.tls if transport == "line-tls" else ports.http)

        # The client: certhook.conf with [ports], the drop-in from install-hook.
        client_conf = tmp_path / "certhook.conf"
        client_conf.write_text(
            f"[client]\nserver = {client_server}\napi_key = {key}\nca_file = {ports.ca_file}\n"
            f"spool_dir = {tmp_path / 'spool'}\n[ports]\n{NAME} = {nginx.port}\n")
        client_conf.chmod(0o600)
        client_env = {**clean, "CERTHOOK_CONFIG": str(client_conf)}
        # README's last line, as root runs it: certhook found through the link.
        installed = subprocess.run(
            [*INSTALL[-1].split(), "--config-dir", str(certbot.config_dir)],
            env={**client_env, "PATH": f"{opt.local_bin}:{HOOK_PATH}"},
            check=True, capture_output=True, text=True, timeout=60)
        assert f"it runs {certhook}" in installed.stdout
        subprocess.run([str(certhook), "report", "--config-dir", str(certbot.config_dir)],
                       env=client_env, check=True, capture_output=True, timeout=60)

        # certbot renews as cron or systemd run it; nginx is not reloaded.
        renew = subprocess.run(
            certbot.argv("renew", "--no-random-sleep-on-renew", "--force-renewal"),
            env={**client_env, "REQUESTS_CA_BUNDLE": str(pebble.ca_bundle)},
            capture_output=True, text=True, timeout=180)
        assert renew.returncode == 0, renew.stderr
        assert "certhook deploy hook: warning" not in renew.stderr  # not the bash fallback
        spool = tmp_path / "spool"
        assert [*spool.glob("*.json"), *spool.glob("*.line")] == []  # nothing waits
        assert "deployed www.example.org" in (spool / ".delivered").read_text()  # certhook's

        notice = webhook.wait_for("not-deployed", NOTICE_WITHIN)
        assert (notice["domain"], notice["port"]) == (NAME, nginx.port)
        assert any("renewed but not deployed" in reason for reason in notice["reasons"])

        nginx.reload()
        recovery = webhook.wait_for("recovery", NOTICE_WITHIN)
        assert (recovery["domain"], recovery["port"]) == (NAME, nginx.port)

        # Only the port [ports] asked for: no target on 443 was ever made.
        assert {(n["domain"], n["port"]) for n in webhook.notices} == {(NAME, nginx.port)}
        status = subprocess.run([str(certhook), "status", "--db", str(db), "--json"],
                                env=clean, capture_output=True, text=True, timeout=60)
        assert [(t["domain"], t["port"], t["state"]) for t in json.loads(status.stdout)] == [
            (NAME, nginx.port, "ok")]
        assert status.returncode == 0
    finally:
        for stop in reversed(stops):
            stop()



def test_the_systemd_units_name_what_the_install_made(opt: Opt) -> None:
    # Every absolute path a unit runs or points its Documentation= at exists
    # after README's install (here under its temporary /opt).
    named: list[str] = []
    for unit in sorted((ROOT / "contrib" / "systemd").glob("*.service")):
        for line in unit.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "ExecStart":
                named.append(value.split()[0])
            elif key == "Documentation":
                named += [uri[len("file://"):] for uri in value.split()]
                assert all(uri.startswith("file:///") for uri in value.split()), line
    assert len(named) == 4
    for path in named:
        assert path.startswith("/opt/certhook/"), path
        assert (opt.prefix / path[len("/opt/certhook/"):]).is_file(), path
    version = subprocess.run([str(opt.local_bin / "certhook"), "--version"],
                             capture_output=True, text=True, check=True, timeout=60)
    assert version.stdout.split()[0] == "certhook"
