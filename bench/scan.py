"""Benchmark: ``certhook scan --json`` against ``certbot certificates`` on one tree.

Makes a few real lineages with certbot against pebble on loopback, clones
them into a tree of N lineages (default 1,000: archive files copied, live
symlinks and renewal confs rewritten, as certbot lays them out), then runs
both commands on it, side by side in one run, and reports wall time, peak
memory (the child's max RSS from wait4) and the ratio.

    .venv/bin/python bench/scan.py [--lineages 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from acmeenv import Certbot, Pebble

VENV_BIN = Path(sys.executable).parent


def make_seeds(certbot: Certbot) -> list[str]:
    certbot.certonly("seed-rsa.example.org", "www.seed-rsa.example.org", key_type="rsa")
    certbot.certonly("seed-ec.example.org", "a.seed-ec.example.org", "b.seed-ec.example.org")
    certbot.certonly("seed-p384.example.org", key_type="ecdsa", size=384)
    certbot.renew("--cert-name", "seed-ec.example.org")
    return ["seed-rsa.example.org", "seed-ec.example.org", "seed-p384.example.org"]


def clone_tree(config: Path, seeds: list[str], count: int) -> None:
    """Copy each seed lineage under new names until there are ``count`` lineages."""
    for i in range(count - len(seeds)):
        seed = seeds[i % len(seeds)]
        name = f"clone{i:05d}.example.org"
        shutil.copytree(config / "archive" / seed, config / "archive" / name)
        live = config / "live" / name
        live.mkdir()
        for link in (config / "live" / seed).iterdir():
            if link.is_symlink():
                target = os.readlink(link).replace(f"/{seed}/", f"/{name}/")
                os.symlink(target, live / link.name)
        conf = (config / "renewal" / f"{seed}.conf").read_text()
        conf = conf.replace(f"/archive/{seed}", f"/archive/{name}")
        conf = conf.replace(f"/live/{seed}/", f"/live/{name}/")
        (config / "renewal" / f"{name}.conf").write_text(conf)


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one run of argv."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err[-500:]}")
    return wall, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lineages", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="certhook-bench-") as tmp, \
            Pebble(Path(tmp) / "pebble") as pebble:
        certbot = Certbot(pebble, Path(tmp) / "certbot")
        seeds = make_seeds(certbot)
        clone_tree(certbot.config_dir, seeds, args.lineages)
        env = certbot.env()
        dirs = ["--config-dir", str(certbot.config_dir), "--logs-dir", str(certbot.logs_dir)]
        ours = [str(VENV_BIN / "certhook"), "scan", "--json", *dirs]
        theirs = [*certbot.argv("certificates")]
        results: dict[str, list[tuple[float, float]]] = {"certhook scan --json": [],
                                                         "certbot certificates": []}
        for _ in range(args.repeat):  # interleaved, so drift hits both alike
            results["certhook scan --json"].append(measure(ours, env))
            results["certbot certificates"].append(measure(theirs, env))

    print(f"{args.lineages} lineages, {args.repeat} runs each, median wall time, max peak RSS")
    summary = {}
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        rss = max(r[1] for r in runs)
        summary[name] = (wall, rss)
        print(f"  {name:24} {wall * 1000:9.0f} ms  {rss:7.1f} MiB")
    ratio = summary["certbot certificates"][0] / summary["certhook scan --json"][0]
    print(f"  certhook is {ratio:.1f}x faster than certbot (target >= 20x); "
          f"peak memory {summary['certhook scan --json'][1]:.1f} MiB (target < 50 MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
