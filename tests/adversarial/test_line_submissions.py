"""Oversized submissions (issue 9.4): bounded work per submission and per account.

What the run that found it saw: one 30 KB POST of 100 names x 5,000 ports
created 500,066 targets (+138 MB of database, a 7.9 s stall); with
auditing on, the server would have connected to 5,000 ports on each of 100
hosts. Now a submission names at most ``max_ports_per_submission`` (64)
ports and an account holds at most ``max_targets_per_account`` (10,000)
targets; past either, the answer is ``error limit ...`` (HTTP 429).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from line_helpers import LONG, Serve, ask

LATENCY_BOUND = 5.0  # s; the 500,066-target POST stalled the writer 7.9 s
MEMORY_BOUND = 150.0  # MB of server RSS
NAMES = [f"host{i}.example" for i in range(100)]


def post(address: tuple[str, int], body: Any, key: str) -> tuple[int, dict[str, Any], float]:
    request = urllib.request.Request(
        "http://{}:{}/api/v1/submissions".format(*address), data=json.dumps(body).encode(),
        method="POST", headers={"Authorization": f"Bearer {key}",
                                "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    started = time.monotonic()
    try:
        with opener.open(request, timeout=60) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read()
    return status, json.loads(text), time.monotonic() - started


def http_address(serve: Serve) -> tuple[str, int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in list(serve.log):
            if "listening for HTTP on " in line:
                host, _, port = line.rsplit(" ", 1)[1].strip().rpartition(":")
                return host, int(port)
        time.sleep(0.05)
    raise AssertionError("no HTTP listener in the log")


def test_oversized_submissions_are_refused_and_accounts_bounded(tmp_path: Path) -> None:
    with Serve(tmp_path, http_listen="127.0.0.1:0") as serve:
        web = http_address(serve)
        # the attack as found: 100 names x 5,000 ports in one ~30 KB body
        body = {"domains": NAMES, "ports": list(range(1, 5001))}
        assert len(json.dumps(body)) < 64 * 1024
        status, data, attack_seconds = post(web, body, serve.key)
        assert (status, data["error"]) == (429, "limit"), data
        assert data["message"].startswith("more than 64 ports in one submission")
        # the same on the line: as many ports as fit a line
        line = "command add " + " ".join(f"domain {n}" for n in NAMES[:2]) + " " + " ".join(
            f"port {p}" for p in range(1, 100)) + f" apikey {serve.key}"
        answer, _ = ask(serve.line, line.encode())
        assert answer.startswith(b"error limit more than 64 ports in one submission"), answer
        assert serve.stored("SELECT count(*) FROM targets") == 0
        # within the limits, an account fills up to 10,000 targets and no further
        rounds = 0
        refused = None
        for rounds in range(1, 8 if LONG else 4):
            names = [f"r{rounds}-{n}" for n in NAMES]
            status, data, _ = post(web, {"domains": names, "ports": list(range(1, 65))},
                                   serve.key)
            if status != 200:
                refused = (status, data)
                break
        assert refused is not None and refused[0] == 429, refused
        assert "more than 10000 targets" in refused[1]["message"]
        assert serve.stored("SELECT count(*) FROM targets") == 6400
        # what fits is still taken at once: a new target, and a renewal
        started = time.monotonic()
        answer, latency = ask(serve.line, f"command add domain ok.example id ok-1 apikey "
                                          f"{serve.key}".encode())
        assert answer == b"ok id ok-1 domains 1", answer
        answer, renewal = ask(serve.line, b"command add domain r1-host0.example port 1"
                              b" id renew-1 apikey " + serve.key.encode())
        assert answer == b"ok id renew-1 domains 1", answer
        latency = max(latency, renewal)
        assert serve.stored("SELECT count(*) FROM targets") == 6401
        peak = serve.peak_mb()
        print(f"\noversized submissions: the 100 x 5,000 POST refused in {attack_seconds:.3f} s;"
              f" {rounds} rounds of 6,400 targets, refused past 10,000;"
              f" renewal answered in {latency:.3f} s (bound {LATENCY_BOUND}), "
              f"server peak {peak:.0f} MB (bound {MEMORY_BOUND}), "
              f"{time.monotonic() - started:.2f} s for the last checks")
        assert max(latency, attack_seconds) < LATENCY_BOUND
        assert peak < MEMORY_BOUND
        assert "Traceback" not in serve.stop()
