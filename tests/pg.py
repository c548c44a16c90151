"""A real PostgreSQL for the tests: Debian's, started on 127.0.0.1, a free port.

Fixtures, for every test module (conftest.py imports them):

- ``pg_cluster`` (session): a :class:`Cluster` with password (SCRAM)
  authentication only, a superuser ``postgres`` and the role ``certhook``
  (LOGIN, CREATEDB), both with random passwords;
- ``pg_url`` (each test): the URL of a fresh empty database owned by
  ``certhook``, password included (``CREATE DATABASE`` from template0:
  tens of milliseconds).

``Cluster.stop()`` and ``Cluster.start()`` stop and restart the same
cluster on the same port, for outage tests. Without PostgreSQL (or
psycopg) the fixtures skip, except under CI (``CI`` set), where that is a
failure: CI installs tests/apt-packages.

The server runs as the ``postgres`` user (it refuses root), from a work
directory other users may traverse, with the helpers of realservers.py.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from realservers import (
    HOST,
    ServerError,
    _listening,
    _postgres_bin,
    _stop,
    free_port,
    need,
    workdir,
)

_databases = itertools.count(1)


def _missing(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is needed under CI: {why}")
    pytest.skip(f"PostgreSQL not available: {why}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Cluster:
    """One initdb'd cluster on ``HOST:port``; ``start``/``stop`` keep its data and port."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.host = HOST
        self.admin_password = secrets.token_urlsafe(16)
        self.user = "certhook"
        self.password = "pw-" + secrets.token_urlsafe(12)  # tests look for it in messages
        self._proc: subprocess.Popen[bytes] | None = None
        self.fsync = False  # the tests need no durability across a machine crash; a bench does
        self._runuser = need("runuser", "util-linux")
        self._exe = _postgres_bin("postgres")
        initdb = _postgres_bin("initdb")
        shutil.chown(home, "postgres")
        pwfile = home / "pwfile"
        pwfile.write_text(self.admin_password + "\n")
        shutil.chown(pwfile, "postgres")
        pwfile.chmod(0o600)
        subprocess.run(
            [self._runuser, "-u", "postgres", "--", initdb, "-D", str(home / "data"),
             "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync",
             "-E", "UTF8", "--locale=C.UTF-8"],
            check=True, capture_output=True, timeout=120,
        )
        pwfile.unlink()

    def url(self, dbname: str, user: str | None = None, password: str | None = None) -> str:
        user = user or self.user
        password = password if password is not None else (
            self.admin_password if user == "postgres" else self.password)
        return (f"postgresql://{quote(user)}:{quote(password, safe='')}@{self.host}:{self.port}"
                f"/{dbname}")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start the cluster (again) on its port; returns when it accepts connections."""
        import time

        assert not self.running
        with open(self.home / "postgres.log", "ab") as log:
            self._proc = subprocess.Popen(
                [self._runuser, "-u", "postgres", "--", self._exe, "-D", str(self.home / "data"),
                 "-k", str(self.home), "-h", self.host, "-p", str(self.port),
                 "-c", f"fsync={'on' if self.fsync else 'off'}", "-c", "max_connections=200"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.home, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not _listening(self.port) or not self._accepts():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.home / "postgres.log").read_text(errors="replace")[-2000:]
                raise ServerError(f"postgres did not start on {self.host}:{self.port}\n{tail}")
            time.sleep(0.1)

    def _accepts(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url("postgres", "postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self, immediate: bool = False) -> None:
        """Stop the cluster, connected clients or not; returns when the postmaster is gone.

        Fast shutdown (SIGINT: clients are disconnected, a clean checkpoint), or
        with ``immediate`` SIGQUIT: no checkpoint, recovery at the next start, as
        after a crash. (SIGTERM would be a smart shutdown, waiting for every
        client to leave.)
        """
        import signal
        import time

        if self._proc is None:
            return
        try:
            pid = int((self.home / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        if pid is not None:
            for sig, grace in ((signal.SIGQUIT if immediate else signal.SIGINT, 30.0),
                               (signal.SIGKILL, 10.0)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.05)
                if not _alive(pid):
                    break
        _stop(self._proc)  # runuser, and anything left in the group
        self._proc = None

    def admin(self, sql: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run ``sql`` as the superuser (autocommit)."""
        import psycopg

        with psycopg.connect(self.url(dbname, "postgres"), autocommit=True) as conn:
            cur = conn.execute(sql)  # type: ignore[call-overload]
            return list(cur.fetchall()) if cur.description else []

    def create_database(self) -> str:
        """A fresh, empty database owned by ``certhook``; its URL (with the password)."""
        name = f"test_{os.getpid()}_{next(_databases)}"
        self.admin(f"CREATE DATABASE {name} OWNER {self.user} TEMPLATE template0")
        return self.url(name)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install -e '.[test]')")
    try:
        _postgres_bin("postgres")
    except ServerError as exc:
        _missing(str(exc))
    with workdir("certhook-pg-") as root:
        home = root / "cluster"
        home.mkdir()
        cluster = Cluster(home)
        try:
            cluster.start()
            cluster.admin(f"CREATE ROLE {cluster.user} LOGIN CREATEDB"
                          f" PASSWORD '{cluster.password}'")
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    if not pg_cluster.running:  # a test that stopped it and failed before starting it
        pg_cluster.start()
    return pg_cluster.create_database()
