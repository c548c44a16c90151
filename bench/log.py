"""Benchmark: reading certbot's log, on the sizes issue 9.11 reported.

Writes, in a temporary directory, what the issue's adversarial run used:

- three logs of 100 MB of ordinary lines (``letsencrypt.log``, ``.1``, ``.2``);
- one log holding a single 60 MB line;

and times, for each: :func:`certhook.certbot.log.read_log_file` (one file,
within its caps), ``runs_since`` as the hook calls it (the newest run), and
``certhook hook --post --deadline 5`` without certbot's variables as a
process (the server is a closed port: the submission is spooled). Before
the fix: 14.4 s for the three logs, 39.8 s for the one line.

    .venv/bin/python bench/log.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from certhook.certbot.log import read_log_file
from certhook.client.changes import runs_since

VENV_BIN = Path(sys.executable).parent
_LINE = b"2026-11-21 07:21:54,825:DEBUG:acme.client:Sending GET request to https://acme/x\n"
_HEAD = (b"2026-11-21 07:21:50,000:DEBUG:certbot._internal.main:certbot version: 5.8.0\n"
         b"2026-11-21 07:21:50,001:DEBUG:certbot._internal.main:Arguments: ['-q']\n")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _timed(what: str, call: object) -> None:
    started = time.perf_counter()
    call()  # type: ignore[operator]
    print(f"  {what:48s} {time.perf_counter() - started:6.2f} s")


def _hook(logs: Path, work: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTHOOK_", "RENEWED_",
                                                                      "FAILED_"))}
    (work / "empty.conf").touch()
    env.update({"CERTHOOK_CONFIG": str(work / "empty.conf"), "CERTHOOK_API_KEY": "k" * 64,
                "CERTHOOK_SERVER": f"tcp://127.0.0.1:{_closed_port()}",
                "CERTHOOK_SPOOL_DIR": str(work / "spool")})
    subprocess.run([str(VENV_BIN / "certhook"), "hook", "--post", "--deadline", "5",
                    "--config-dir", str(work / "config"), "--logs-dir", str(logs)],
                   env=env, capture_output=True, check=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="certhook-bench-log-") as tmp:
        work = Path(tmp)
        big, line = work / "big", work / "line"
        big.mkdir()
        line.mkdir()
        body = _HEAD + _LINE * ((100 << 20) // len(_LINE))
        for name in ("letsencrypt.log", "letsencrypt.log.1", "letsencrypt.log.2"):
            (big / name).write_bytes(body)
        (line / "letsencrypt.log").write_bytes(_HEAD + b"x" * (60 << 20))
        print("3 logs of 100 MB of ordinary lines:")
        _timed("read_log_file(letsencrypt.log)",
               lambda: read_log_file(str(big / "letsencrypt.log")))
        _timed("runs_since(logs, None), the hook's read", lambda: runs_since(str(big), None))
        _timed("certhook hook --post --deadline 5 (process)", lambda: _hook(big, work))
        print("1 log of one 60 MB line:")
        _timed("read_log_file(letsencrypt.log)",
               lambda: read_log_file(str(line / "letsencrypt.log")))
        _timed("certhook hook --post --deadline 5 (process)", lambda: _hook(line, work))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
