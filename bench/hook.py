"""Benchmark: ``certhook hook`` delivering one lineage, against a bare interpreter start.

Makes one real lineage (certbot against pebble on loopback; ``--minted``
lays one out with a trustme certificate instead), starts a recording line
server on 127.0.0.1, and times, interleaved in one run, N times each:

- ``python -c pass`` with the interpreter of the ``certhook`` command;
- ``certhook hook`` (the command as installed) as certbot runs a deploy
  hook: ``RENEWED_LINEAGE`` / ``RENEWED_DOMAINS`` set, certhook's conf
  with a ``[ports]`` line for the lineage (most users have one; the hook
  maps it into the submission, and the server must get the ports),
  delivering over tcp://. Before each run the spool's journal of
  delivered certificates is emptied, else the same certificate would not
  be sent again; it stays in place, as on any host where certhook has
  reported a renewal before;
- the same as the first delivery on a host: no journal yet, and the hook
  creates it (a file creation, ~0.4 ms on some filesystems);
- the same without the ``[ports]`` line, for comparison.

It reports the medians and their ratios to the bare start (target: under
1.5, with the ``[ports]`` line). The headline pair runs in a throw-away
venv where certhook is installed from its wheel, as users install it: the
development venv's editable install puts a finder in site-packages that
costs every interpreter start ~12 ms, which would flatter the ratio (that
pair is printed too, for comparison). Both run with bytecode caches (in a temporary
PYTHONPYCACHEPREFIX), as an installed package has them.

    .venv/bin/python bench/hook.py [--repeat 30] [--minted]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from acmeenv import Certbot, Pebble  # noqa: E402
from client_helpers import KEY, LineServer, make_lineage  # noqa: E402

VENV_BIN = Path(sys.executable).parent
PORTS = "443, 25/smtp, 993, imap"
MAPPED = [(443, "tls"), (25, "smtp"), (993, "tls"), (143, "imap")]


def real_lineage(workdir: Path) -> Path:
    with Pebble(workdir / "pebble") as pebble:
        certbot = Certbot(pebble, workdir / "certbot")
        certbot.certonly("bench.example.org", "www.bench.example.org")
        return certbot.config_dir / "live" / "bench.example.org"


def installed_venv(work: Path) -> Path:
    """A fresh venv with certhook installed from a wheel built from this tree."""
    wheels, venv = work / "wheels", work / "venv"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                    str(ROOT)], **quiet)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], **quiet)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps",
                    *map(str, wheels.glob("certhook-*.whl"))], **quiet)
    return venv / "bin"


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 or proc.stderr:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="runs of each (default 30)")
    parser.add_argument("--minted", action="store_true",
                        help="lay out a lineage with a trustme certificate, no certbot")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="certhook-bench-") as tmp, LineServer() as server:
        work = Path(tmp)
        installed = installed_venv(work)
        if args.minted:
            live = make_lineage(work / "config", "bench.example.org", "bench.example.org",
                                "www.bench.example.org")
        else:
            live = real_lineage(work)
        # With a [ports] line for the lineage, as most users have: the hook maps it.
        (work / "certhook.conf").write_text(f"[client]\nserver = {server.url}\n"
                                            f"[ports]\nbench.example.org = {PORTS}\n")
        # For comparison: the same without the line (the lineage goes as 443).
        (work / "no-ports.conf").write_text(f"[client]\nserver = {server.url}\n")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CERTHOOK_", "RENEWED_", "FAILED_", "PYTHON"))}
        env.update({
            "PYTHONPYCACHEPREFIX": str(work / "pycache"),
            "CERTHOOK_CONFIG": str(work / "certhook.conf"),
            "CERTHOOK_API_KEY": KEY,
            "CERTHOOK_SPOOL_DIR": str(work / "spool"),
            "RENEWED_LINEAGE": str(live),
            "RENEWED_DOMAINS": "bench.example.org www.bench.example.org",
        })
        journal = work / "spool" / ".delivered"

        def empty_journal() -> None:
            if journal.exists():
                journal.write_bytes(b"")

        def no_journal() -> None:
            journal.unlink(missing_ok=True)

        hook = [str(installed / "certhook"), "hook"]
        no_ports = {**env, "CERTHOOK_CONFIG": str(work / "no-ports.conf")}
        # name -> (argv, what to do to the spool before each run, environment)
        variants = {
            "python -c pass": ([str(installed / "python"), "-c", "pass"], empty_journal, env),
            "certhook hook": (hook, empty_journal, env),
            "certhook hook, first delivery": (hook, no_journal, env),
            "certhook hook, no [ports] line": (hook, empty_journal, no_ports),
            "dev venv: python -c pass": ([str(VENV_BIN / "python"), "-c", "pass"], empty_journal,
                                         env),
            "dev venv: certhook hook": ([str(VENV_BIN / "certhook"), "hook"], empty_journal, env),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for warm_up in (True, *([False] * args.repeat)):
            for name, (argv, reset, environ) in variants.items():
                reset()
                elapsed = timed(argv, environ)
                if not warm_up:
                    times[name].append(elapsed)
        delivered = len(server.requests)
        unmapped = [r for r in server.requests
                    if list(zip(r.ports, r.protocols)) not in (MAPPED, [])]
        mapped = sum(bool(r.ports) for r in server.requests)
    hooks = [environ for argv, _, environ in variants.values() if argv[-1] == "hook"]
    expected = len(hooks) * (args.repeat + 1)
    if delivered != expected:
        raise SystemExit(f"the server got {delivered} submissions, expected {expected}")
    if unmapped or mapped != sum(e is env for e in hooks) * (args.repeat + 1):
        raise SystemExit("submissions without the [ports] of the lineage")

    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"{args.repeat} runs each, medians; {delivered} submissions delivered to {server.url}")
    for name, median in medians.items():
        print(f"  {name:30s} {median:7.1f} ms")
    bare = medians["python -c pass"]
    ratio = medians["certhook hook"] / bare
    first = medians["certhook hook, first delivery"] / bare
    unported = medians["certhook hook, no [ports] line"] / bare
    dev = medians["dev venv: certhook hook"] / medians["dev venv: python -c pass"]
    print(f"ratio certhook hook / python -c pass, installed from the wheel: {ratio:.2f} "
          "(target < 1.5)")
    print(f"the same, first delivery on the host (creates the journal):     {first:.2f}")
    print(f"the same without a [ports] line:                                {unported:.2f}")
    print(f"the same in the editable development venv:                      {dev:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
