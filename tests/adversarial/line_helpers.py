"""A real ``certhook serve`` in a subprocess, and the measures the line attacks assert.

The attack tests run the server as users run it (its own process, its own
event loop and writer thread), so that its memory can be read from
``/proc/PID/status`` and an attacker in the test process competes with a
valid client exactly as two remote peers would. Everything is on loopback.

``CERTHOOK_ATTACK_LONG=1`` makes every attack run longer and harder
(tests/adversarial/README.md); the bounds asserted stay the same.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import trustme

LONG = os.environ.get("CERTHOOK_ATTACK_LONG", "") not in ("", "0")

_LISTEN = re.compile(r"listening for (line|tls) submissions on ([0-9.:]+):([0-9]+)")


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, wanted), hard))


class Serve:
    """``certhook serve --no-audit`` on ephemeral loopback ports, one account ``alice``."""

    def __init__(self, tmp_path: Path, tls: bool = False, **server_keys: Any) -> None:
        self.db = str(tmp_path / "certhook.db")
        subprocess.run([sys.executable, "-m", "certhook", "keys", "add", "bob", "--db",
                        self.db], check=True, capture_output=True, timeout=60)
        out = subprocess.run([sys.executable, "-m", "certhook", "keys", "add", "alice", "--db",
                              self.db], check=True, capture_output=True, text=True, timeout=60)
        self.key = out.stdout.strip().split()[-1]
        keys: dict[str, Any] = {"db": self.db, "line_listen": "127.0.0.1:0",
                                "http_listen": "off", **server_keys}
        lines = ["[server]"]
        self.client_context: ssl.SSLContext | None = None
        if tls:
            ca = trustme.CA()
            leaf = ca.issue_cert("127.0.0.1")
            leaf.private_key_pem.write_to_path(str(tmp_path / "srv.key"))
            leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "srv.pem"))
            self.client_context = ssl.create_default_context()
            ca.configure_trust(self.client_context)
            lines += ["tls_listen = 127.0.0.1:0", f"tls_cert = {tmp_path / 'srv.pem'}",
                      f"tls_key = {tmp_path / 'srv.key'}"]
        lines += [f"{k} = {v}" for k, v in keys.items()]
        conf = tmp_path / "server.conf"
        conf.write_text("\n".join(lines) + "\n")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # Children inherit the raised descriptor limit of the test process.
        raise_fd_limit(16384)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "certhook", "serve", "--no-audit", "--config", str(conf)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env,
        )
        self.log: list[str] = []
        self.addresses: dict[str, tuple[str, int]] = {}
        self._ready = threading.Event()
        self._wanted = 2 if tls else 1
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._ready.wait(30) or len(self.addresses) < self._wanted:
            self.stop()
            raise AssertionError("certhook serve did not start:\n" + "".join(self.log))

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.log.append(line)
            match = _LISTEN.search(line)
            if match:
                self.addresses[match.group(1)] = (match.group(2), int(match.group(3)))
                if len(self.addresses) == self._wanted:
                    self._ready.set()
        self._ready.set()  # exited: no need to wait any longer

    @property
    def line(self) -> tuple[str, int]:
        return self.addresses["line"]

    @property
    def tls(self) -> tuple[str, int]:
        return self.addresses["tls"]

    def rss_mb(self) -> float:
        """The server's resident memory now, from ``/proc/PID/status`` (VmRSS)."""
        return self._status("VmRSS")

    def peak_mb(self) -> float:
        """The server's peak resident memory so far (VmHWM)."""
        return self._status("VmHWM")

    def _status(self, field: str) -> float:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(rf"^{field}:\s+([0-9]+) kB", text, re.M)
        assert match, text
        return int(match.group(1)) / 1024

    def stored(self, sql: str = "SELECT count(*) FROM submissions") -> int:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            return int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return "".join(self.log)

    def __enter__(self) -> Serve:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ask(address: tuple[str, int], line: bytes, source: str = "127.0.0.1",
        context: ssl.SSLContext | None = None, timeout: float = 30.0) -> tuple[bytes, float]:
    """One request on a fresh connection from ``source``: (the answer line, seconds taken)."""
    started = time.monotonic()
    sock = socket.create_connection(address, timeout=timeout, source_address=(source, 0))
    try:
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        sock.sendall(line if line.endswith(b"\n") else line + b"\r\n")
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return data.split(b"\n", 1)[0].rstrip(b"\r"), time.monotonic() - started


def read_until_closed(sock: socket.socket, limit: int = 1 << 20, timeout: float = 10.0
                      ) -> bytes:
    """Everything the server sends until it closes (or ``limit`` bytes, or ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while len(data) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data
