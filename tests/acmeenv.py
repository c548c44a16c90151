"""Real certbot against a real ACME server (Debian's pebble), on loopback.

Shared by the tests, the benchmarks and the demo. Nothing here talks to
anything but 127.0.0.1: pebble listens on loopback with a listener
certificate signed by a throw-away CA, its DNS resolver points at a closed
loopback port, and every certbot call carries ``--server`` (without it,
``certbot renew --dry-run`` reaches for Let's Encrypt's staging host).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PEBBLE_ENV = {
    "PEBBLE_VA_ALWAYS_VALID": "1",
    "PEBBLE_WFE_NONCEREJECT": "0",
    "PEBBLE_VA_NOSLEEP": "1",
    "PEBBLE_AUTHZREUSE": "0",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def find_certbot() -> str:
    """certbot next to this interpreter (the test venv), else on PATH."""
    here = Path(sys.executable).parent / "certbot"
    if here.exists():
        return str(here)
    found = shutil.which("certbot")
    if not found:
        raise RuntimeError("certbot not found: run ./test.sh, which installs it into .venv")
    return found


def _listener_ca(workdir: Path) -> tuple[Path, Path, Path]:
    """A CA and a 127.0.0.1/localhost certificate it signed, via trustme."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = workdir / "listener-ca.pem"
    cert_path = workdir / "listener-cert.pem"
    key_path = workdir / "listener-key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    leaf.cert_chain_pems[0].write_to_path(str(cert_path))
    leaf.private_key_pem.write_to_path(str(key_path))
    return ca_path, cert_path, key_path


@dataclass
class Pebble:
    """A pebble ACME server on loopback; use as a context manager."""

    workdir: Path
    validity_seconds: int | None = None
    port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    ca_bundle: Path = field(init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self) -> Pebble:
        exe = shutil.which("pebble") or "/usr/bin/pebble"
        if not os.path.exists(exe):
            raise RuntimeError("pebble not found: run ./test.sh, which installs Debian's pebble")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ca_bundle, cert, key = _listener_ca(self.workdir)
        conf: dict[str, Any] = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            # The VA never connects (PEBBLE_VA_ALWAYS_VALID); these ports stay closed.
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if self.validity_seconds is not None:
            conf["certificateValidityPeriod"] = self.validity_seconds
        config = self.workdir / "pebble.json"
        config.write_text(json.dumps({"pebble": conf}))
        log = open(self.workdir / "pebble.log", "wb")  # closed below; Popen keeps its own fd
        self._proc = subprocess.Popen(
            # -dnsserver: any lookup pebble might make stays on a closed loopback port.
            [exe, "-config", str(config), "-dnsserver", "127.0.0.1:1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **PEBBLE_ENV},
        )
        log.close()
        try:
            wait_for_port(self.port)
            wait_for_port(self.management_port)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def roots_pem(self) -> str:
        """PEM of pebble's issuing root (the trust anchor of what it issues)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_bundle))
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:  # loopback only
            return str(resp.read().decode())

    def __enter__(self) -> Pebble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Certbot:
    """certbot with its own config/work/logs dirs, pointed at a pebble."""

    pebble: Pebble
    base: Path
    exe: str = field(default_factory=find_certbot)
    # Set to a closed loopback port (https://127.0.0.1:1/dir) to make ACME calls fail.
    server_url: str | None = None

    @property
    def config_dir(self) -> Path:
        return self.base / "config"

    @property
    def logs_dir(self) -> Path:
        return self.base / "logs"

    @property
    def work_dir(self) -> Path:
        return self.base / "work"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, "REQUESTS_CA_BUNDLE": str(self.pebble.ca_bundle)}
        env.update(extra or {})
        return env

    def argv(self, *args: str) -> list[str]:
        return [
            self.exe,
            *args,
            "--config-dir", str(self.config_dir),
            "--work-dir", str(self.work_dir),
            "--logs-dir", str(self.logs_dir),
            "--server", self.server_url or self.pebble.directory_url,
            "--non-interactive",
        ]

    def run(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*prefix, *self.argv(*args)],
            capture_output=True,
            text=True,
            env=self.env(env),
            timeout=180,
        )
        if check and proc.returncode != 0:
            output = f"{proc.stdout}\n{proc.stderr}"
            raise RuntimeError(f"certbot {' '.join(args)} failed ({proc.returncode}):\n{output}")
        return proc

    def certonly(
        self,
        *domains: str,
        key_type: str = "ecdsa",
        size: int | None = None,
        cert_name: str | None = None,
        extra: tuple[str, ...] = (),
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        args = [
            "certonly", "--manual", "--manual-auth-hook", "/bin/true",
            "--preferred-challenges", "http",
            "--register-unsafely-without-email", "--agree-tos",
            "--key-type", key_type,
        ]
        if size is not None:
            args += ["--rsa-key-size" if key_type == "rsa" else "--elliptic-curve",
                     str(size) if key_type == "rsa" else f"secp{size}r1"]
        if cert_name:
            args += ["--cert-name", cert_name]
        for d in domains:
            args += ["-d", d]
        return self.run(*args, *extra, check=check)

    def renew(
        self, *extra: str, force: bool = True, check: bool = True,
        env: dict[str, str] | None = None, prefix: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        args = ["renew", "--no-random-sleep-on-renew"]
        if force:
            args.append("--force-renewal")
        return self.run(*args, *extra, check=check, env=env, prefix=prefix)

    def certificates(self) -> str:
        return self.run("certificates").stdout
