"""Real servers that speak STARTTLS, started by the tests on 127.0.0.1 only.

Each helper is a context manager yielding a :class:`Server`: the ports it
listens on (by certhook protocol name) and the certificate it was given,
minted by a throw-away trustme CA. Programs come from Debian packages
(dovecot, slapd, prosody, postgresql, mariadb-server; tests/apt-packages
lists them) or from PyPI (aiosmtpd, pyftpdlib), and run with a config in a
temporary directory, on random free loopback ports. A missing program, or a
server that does not listen in time, raises :class:`ServerError` with the
package to install or the server's log. Every server is stopped on exit.

Daemons that drop privileges (postgres, mariadb, dovecot's login processes)
must reach their files, so the work directory is made with
:func:`tempfile.mkdtemp` under /tmp (pytest's tmp_path sits in a 0700
directory) and opened to other users; :func:`workdir` removes it.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme

HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A server could not be started: missing program, or not listening in time."""


@dataclass(frozen=True)
class Cert:
    """A server certificate minted for one server, as files and as DER."""

    cert: Path
    key: Path
    der: bytes


@dataclass(frozen=True)
class Server:
    ports: Mapping[str, int]
    cert: Cert


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def workdir(prefix: str = "certhook-starttls-") -> Iterator[Path]:
    """A temporary directory other users may traverse; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def mint(ca: trustme.CA, directory: Path, label: str) -> Cert:
    """A certificate for localhost and 127.0.0.1, plus ``label``.test to tell servers apart."""
    leaf = ca.issue_cert("localhost", HOST, f"{label}.test")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{label}-cert.pem", directory / f"{label}-key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    cert.chmod(0o644)
    key.chmod(0o600)
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    return Cert(cert, key, der)


def _own(cert: Cert, directory: Path, user: str) -> Cert:
    """A copy of ``cert`` owned by ``user`` (daemons that check key ownership)."""
    copies = []
    for source in (cert.cert, cert.key):
        target = directory / source.name
        shutil.copyfile(source, target)
        shutil.chown(target, user)
        target.chmod(0o600)
        copies.append(target)
    return Cert(copies[0], copies[1], cert.der)


def need(program: str, package: str) -> str:
    """The path of ``program``, or :class:`ServerError` naming the package."""
    found = shutil.which(program) or next(
        (p for p in (f"/usr/sbin/{program}", f"/usr/bin/{program}") if os.path.exists(p)), None
    )
    if not found:
        raise ServerError(
            f"{program} not found: install the Debian package {package}"
            " (tests/apt-packages lists it; ./test.sh installs it)"
        )
    return found


def _log_tail(paths: Sequence[Path], size: int = 3000) -> str:
    parts = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")[-size:]
        except OSError:
            text = "(no log)"
        parts.append(f"--- {path}\n{text}")
    return "\n".join(parts)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def daemon(
    name: str,
    argv: Sequence[str],
    directory: Path,
    ports: Sequence[int],
    *,
    logs: Sequence[Path] = (),
    timeout: float = 20.0,
) -> Iterator[None]:
    """Run ``argv`` in its own process group until every port listens; stop it after."""
    log = directory / f"{name}.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=directory,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        waiting = list(ports)
        while waiting:
            if proc.poll() is not None:
                raise ServerError(
                    f"{name} exited with {proc.returncode} before listening\n"
                    + _log_tail([log, *logs])
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{name} not listening on {HOST}:{waiting} after {timeout}s\n"
                    + _log_tail([log, *logs])
                )
            if _listening(waiting[0]):
                waiting.pop(0)
            else:
                time.sleep(0.05)
        yield
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group we started, SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def dovecot(root: Path, cert: Cert) -> Iterator[Server]:
    """Dovecot: IMAP, POP3, LMTP and ManageSieve, each with STARTTLS."""
    exe = need("dovecot", "dovecot-imapd")
    for module, package in (("pop3", "dovecot-pop3d"), ("lmtp", "dovecot-lmtpd"),
                            ("managesieve", "dovecot-managesieved")):
        if not os.path.exists(f"/usr/lib/dovecot/{module}"):
            raise ServerError(f"dovecot {module} not found: install the Debian package {package}")
    home = root / "dovecot"
    for sub in ("run", "state", "mail"):
        (home / sub).mkdir(parents=True)
    ports = {name: free_port() for name in ("imap", "pop3", "lmtp", "sieve")}
    log = home / "dovecot.log"

    def listener(service: str, name: str, port: int) -> str:
        return (f"service {service} {{\n  inet_listener {name} {{\n"
                f"    address = {HOST}\n    port = {port}\n  }}\n}}\n")

    # listen: dovecot's default is every address; 0 closes the implicit-TLS ports.
    conf = f"""
base_dir = {home}/run
state_dir = {home}/state
listen = {HOST}
protocols = imap pop3 lmtp sieve
log_path = {log}
ssl = yes
ssl_cert = <{cert.cert}
ssl_key = <{cert.key}
mail_location = maildir:{home}/mail/%u
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={home}/mail/%u
}}
service imap-login {{
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3s {{
    port = 0
  }}
}}
""" + "".join(listener(*args) for args in (
        ("imap-login", "imap", ports["imap"]),
        ("pop3-login", "pop3", ports["pop3"]),
        ("lmtp", "lmtp", ports["lmtp"]),
        ("managesieve-login", "sieve", ports["sieve"]),
    ))
    (home / "dovecot.conf").write_text(conf)
    argv = [exe, "-F", "-c", str(home / "dovecot.conf")]
    with daemon("dovecot", argv, home, list(ports.values()), logs=[log]):
        yield Server(ports, cert)


@contextmanager
def slapd(root: Path, cert: Cert | None) -> Iterator[Server]:
    """OpenLDAP's slapd, with StartTLS unless ``cert`` is None (then it refuses)."""
    exe = need("slapd", "slapd")
    home = root / ("slapd" if cert else "slapd-plain")
    home.mkdir()
    port = free_port()
    lines = [f"pidfile {home}/slapd.pid", f"argsfile {home}/slapd.args"]
    if cert is not None:
        lines += [f"TLSCertificateFile {cert.cert}", f"TLSCertificateKeyFile {cert.key}"]
    (home / "slapd.conf").write_text("\n".join(lines) + "\n")
    # -h: the one URL slapd listens on; -d: stay in the foreground.
    argv = [exe, "-d", "0", "-h", f"ldap://{HOST}:{port}/", "-f", str(home / "slapd.conf")]
    with daemon("slapd", argv, home, [port]):
        yield Server({"ldap": port}, cert or Cert(Path(), Path(), b""))


@contextmanager
def prosody(root: Path, cert: Cert) -> Iterator[Server]:
    """Prosody: client (c2s) and server (s2s) streams with STARTTLS, host "localhost"."""
    exe = need("prosody", "prosody")
    home = root / "prosody"
    (home / "data").mkdir(parents=True)
    (home / "certs").mkdir()
    ports = {"xmpp": free_port(), "xmpp-server": free_port()}
    log = home / "prosody.log"
    # Every listener on loopback; the ones we do not test closed.
    conf = f"""
run_as_root = true
pidfile = "{home}/prosody.pid"
data_path = "{home}/data"
certificates = "{home}/certs"
interfaces = {{ "{HOST}" }}
local_interfaces = {{ "{HOST}" }}
c2s_interfaces = {{ "{HOST}" }}
s2s_interfaces = {{ "{HOST}" }}
c2s_ports = {{ {ports["xmpp"]} }}
s2s_ports = {{ {ports["xmpp-server"]} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "tls" }}
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{log}" }} }}
VirtualHost "localhost"
  ssl = {{ certificate = "{cert.cert}", key = "{cert.key}" }}
"""
    (home / "prosody.cfg.lua").write_text(conf)
    argv = [exe, "-F", "--config", str(home / "prosody.cfg.lua")]
    with daemon("prosody", argv, home, list(ports.values()), logs=[log]):
        yield Server(ports, cert)


def _postgres_bin(program: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise ServerError(f"{program} not found: install the Debian package postgresql")
    return found[-1]


@contextmanager
def postgres(root: Path, cert: Cert) -> Iterator[Server]:
    """PostgreSQL with ssl=on, run as the postgres user (it refuses root)."""
    initdb, exe = _postgres_bin("initdb"), _postgres_bin("postgres")
    runuser = need("runuser", "util-linux")
    home = root / "postgres"
    home.mkdir()
    shutil.chown(home, "postgres")
    own = _own(cert, home, "postgres")
    subprocess.run(
        [runuser, "-u", "postgres", "--", initdb, "-D", str(home / "data"), "-A", "trust",
         "-U", "postgres", "--no-sync"],
        check=True, capture_output=True, timeout=60,
    )
    port = free_port()
    argv = [runuser, "-u", "postgres", "--", exe, "-D", str(home / "data"), "-k", str(home),
            "-h", HOST, "-p", str(port), "-c", "ssl=on", "-c", f"ssl_cert_file={own.cert}",
            "-c", f"ssl_key_file={own.key}", "-c", "fsync=off"]
    with daemon("postgres", argv, home, [port]):
        yield Server({"postgres": port}, cert)


@contextmanager
def mariadb(root: Path, cert: Cert) -> Iterator[Server]:
    """MariaDB with a server certificate (CLIENT_SSL), run as the mysql user."""
    exe = need("mariadbd", "mariadb-server")
    install = need("mariadb-install-db", "mariadb-server")
    home = root / "mariadb"
    home.mkdir()
    shutil.chown(home, "mysql")
    own = _own(cert, home, "mysql")
    subprocess.run(
        [install, "--no-defaults", "--user=mysql", f"--datadir={home}/data",
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        check=True, capture_output=True, timeout=60,
    )
    port = free_port()
    log = home / "error.log"
    argv = [exe, "--no-defaults", "--user=mysql", f"--datadir={home}/data",
            f"--bind-address={HOST}", f"--port={port}", f"--socket={home}/mysqld.sock",
            f"--pid-file={home}/mysqld.pid", f"--ssl-cert={own.cert}", f"--ssl-key={own.key}",
            f"--log-error={log}", "--skip-log-bin", "--innodb-buffer-pool-size=8M"]
    with daemon("mariadb", argv, home, [port], logs=[log]):
        yield Server({"mysql": port}, cert)


@contextmanager
def aiosmtpd_server(cert: Cert | None) -> Iterator[Server]:
    """aiosmtpd in a thread: SMTP with STARTTLS, or without it when ``cert`` is None."""
    from aiosmtpd.controller import Controller

    context = None
    if cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert.cert), str(cert.key))
    port = free_port()  # aiosmtpd's Controller cannot bind port 0
    controller = Controller(object(), hostname=HOST, port=port, tls_context=context)
    controller.start()
    try:
        yield Server({"smtp": port, "submission": port}, cert or Cert(Path(), Path(), b""))
    finally:
        controller.stop()


@contextmanager
def ftp_server(cert: Cert) -> Iterator[Server]:
    """pyftpdlib's TLS_FTPHandler (AUTH TLS, RFC 4217) in a thread."""
    try:
        from pyftpdlib.authorizers import DummyAuthorizer  # type: ignore[import-untyped]
        from pyftpdlib.handlers import TLS_FTPHandler  # type: ignore[import-untyped]
        from pyftpdlib.servers import FTPServer  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ServerError(
            f"pyftpdlib with TLS not importable ({exc}): pip install pyftpdlib pyOpenSSL"
        ) from exc

    class Handler(TLS_FTPHandler):  # type: ignore[misc]
        certfile = str(cert.cert)
        keyfile = str(cert.key)
        authorizer = DummyAuthorizer()

    server = FTPServer((HOST, 0), Handler)
    port = int(server.socket.getsockname()[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.1}, daemon=True)
    thread.start()
    try:
        yield Server({"ftp": port}, cert)
    finally:
        server.close_all()
        thread.join(5)
