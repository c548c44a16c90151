"""Nothing acknowledged is lost: ``kill -9`` the server in the middle of a stream of acks."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from acmeenv import free_port, wait_for_port
from server_helpers import LineClient, add_line, connect_db, count, new_db


def _serve(db: str, port: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "certhook"
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "certhook"]
    proc = subprocess.Popen(
        [*argv, "serve", "--db", db, "--line-listen", f"127.0.0.1:{port}",
         "--http-listen", "off", "--no-audit", "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    wait_for_port(port, 30)
    return proc


@pytest.mark.slow
def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    port = free_port()
    proc = _serve(db, port)
    acked: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def client(n: int) -> None:
        c = LineClient(("127.0.0.1", port))
        try:
            for i in range(100000):
                ident = f"c{n}-{i}"
                c.send(add_line(keys["alice"], f"h{n}.example", id=ident))
                answer = c.line()
                assert answer == f"ok id {ident} domains 1".encode(), answer
                with lock:
                    acked.append(ident)
                    if len(acked) >= 3000:
                        enough.set()
        except (ConnectionError, OSError):
            return  # the server died under us: expected

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    assert enough.wait(60), "the server did not acknowledge 3000 submissions"
    proc.send_signal(signal.SIGKILL)  # while the clients are still sending
    proc.wait(10)
    for t in threads:
        t.join(10)
    with lock:
        done = list(acked)
    raw = connect_db(db)
    stored_ids = {r[0] for r in raw.execute("SELECT client_id FROM submissions")}
    raw.close()
    missing = [i for i in done if i not in stored_ids]
    assert not missing, f"{len(missing)} acknowledged submissions lost, e.g. {missing[:5]}"

    # Restarted, it answers a retry of an acknowledged submission without a second row.
    proc = _serve(db, port)
    try:
        stored = count(db, "submissions")
        c = LineClient(("127.0.0.1", port))
        assert c.ask(add_line(keys["alice"], "h0.example", id=done[0])) == (
            f"ok id {done[0]} domains 1".encode())
        assert count(db, "submissions") == stored
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
