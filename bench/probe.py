"""Benchmark ``certhook probe`` against an openssl loop and a bare-handshake floor.

    .venv/bin/python bench/probe.py            # 200 endpoints
    .venv/bin/python bench/probe.py --quick    # 40 endpoints, one run each
    .venv/bin/python bench/probe.py --crl      # also certhook probe --crl

A child process serves N TLS endpoints on 127.0.0.1 (asyncio, one port each).
Every connection holds its first reply for 50 ms, standing in for an internet
round trip: the server reads nothing until then, so the ClientHello waits.
Then, side by side, over the same endpoints:

1. ``certhook probe --targets-file F --format json`` (a fresh process);
2. ``openssl s_client -connect 127.0.0.1:PORT -servername NAME </dev/null``
   in a sequential bash loop, the way it is usually scripted;
3. the floor: a bare Python program that only does the same handshakes
   (same CA file, same SNI, same concurrency), once with a thread pool and
   once with asyncio; the faster of the two is the floor.

With ``--crl`` every leaf names a CRL served on loopback (1,000 revoked
serials, none of them the leaves'), and ``certhook probe --crl`` runs too: one
fetch per run, then the cached, verified CRL serves every target.

Targets: certhook at least 10 times faster than the openssl loop, and within
1.5 times the floor, with revocation checking on as well. Nothing leaves
loopback.

Every address (``--addresses K``, default 3): each endpoint also listens on
127.0.0.2 ... 127.0.0.K, same port, and ``certhook probe NAME:PORT`` runs
with ``--resolve NAME:*:`` one address, then all K. Target: every-address
mode costs at most K times the single-address run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NAME = "bench.localhost"
DELAY = 0.05

FLOOR_THREADS = r"""
import socket, ssl, sys
from concurrent.futures import ThreadPoolExecutor
ca, name, concurrency, ports = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
context = ssl.create_default_context(cafile=ca)
context.check_hostname = False
def shake(port):
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname=name) as tls:
            return len(tls.getpeercert(binary_form=True))
with ThreadPoolExecutor(concurrency) as pool:
    sizes = list(pool.map(shake, ports))
print(len(sizes))
"""

FLOOR_ASYNCIO = r"""
import asyncio, ssl, sys
ca, name, concurrency, ports = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
context = ssl.create_default_context(cafile=ca)
context.check_hostname = False
async def main():
    gate = asyncio.Semaphore(concurrency)
    async def shake(port):
        async with gate:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", int(port), ssl=context, server_hostname=name)
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            writer.close()
            return len(der)
    return await asyncio.gather(*(shake(port) for port in ports))
print(len(asyncio.run(main())))
"""


# -- the endpoints (child process) -------------------------------------------------------


class _Delayed(asyncio.Protocol):
    """Reads nothing for DELAY seconds, then answers the waiting ClientHello."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.pause_reading()
        loop = asyncio.get_running_loop()
        loop.call_later(DELAY, lambda: loop.create_task(self._upgrade()))

    async def _upgrade(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.start_tls(self.transport, self, self.context, server_side=True,
                                 ssl_handshake_timeout=10)
        except (OSError, ssl.SSLError, ConnectionError, asyncio.TimeoutError):
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        pass


def _hosts(addresses: int) -> list[str]:
    return [f"127.0.0.{index}" for index in range(1, addresses + 1)]


async def _serve(count: int, certs: str, key: str, addresses: int) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    ports = []
    for index in range(count):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.path.join(certs, f"{index}.pem"), key)
        while True:  # one port on every address: retry when another holds it on one
            first = await loop.create_server(
                lambda context=context: _Delayed(context), "127.0.0.1", 0, backlog=128)
            port = first.sockets[0].getsockname()[1]
            try:
                servers.append(first)
                for host in _hosts(addresses)[1:]:
                    servers.append(await loop.create_server(
                        lambda context=context: _Delayed(context), host, port, backlog=128))
            except OSError:
                continue
            ports.append(port)
            break
    print(json.dumps(ports), flush=True)
    # Serve until the parent closes our stdin.
    await loop.run_in_executor(None, sys.stdin.read)


# -- the parent -------------------------------------------------------------------------


def _mint(directory: Path, count: int, web: object = None) -> tuple[str, str, str]:
    """A CA file, a directory of ``count`` distinct leaf certificates, their key.

    With ``web`` (a tests/ca_helpers.CaWeb) the leaves name its ``/ca.crl``,
    which it then serves."""
    sys.path.insert(0, str(ROOT / "tests"))
    from probe_helpers import CA

    ca = CA("certhook bench root")
    certs = directory / "certs"
    certs.mkdir()
    for index in range(count):  # one certificate per endpoint, as in real life
        if web is None:
            leaf = ca.issue(NAME, "127.0.0.1", days=90)
        else:
            from ca_helpers import issue_with_crl

            leaf = issue_with_crl(ca, NAME, (web.url("/ca.crl"),))  # type: ignore[attr-defined]
        (certs / f"{index}.pem").write_bytes(leaf.pem)
    if web is not None:
        from ca_helpers import make_crl

        crl = make_crl(ca, {serial: None for serial in range(10**6, 10**6 + 1000)})
        web.routes["/ca.crl"] = (200, {}, crl)  # type: ignore[attr-defined]
    (directory / "ca.pem").write_bytes(ca.pem)
    (directory / "key.pem").write_bytes(leaf.key_pem)
    return str(directory / "ca.pem"), str(certs), str(directory / "key.pem")


def _timed(argv: list[str], check: object = None, **kwargs: object) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore
    took = time.perf_counter() - start
    if proc.returncode != 0 and check is None:
        raise SystemExit(f"{shlex.join(argv[:4])}... failed ({proc.returncode}):\n{proc.stderr}")
    if callable(check):
        check(proc)
    return took


CRL_LABEL = "certhook probe --crl (CRL cached)"


def _certhook_ok(count: int, crl: bool = False):  # type: ignore[no-untyped-def]
    def check(proc: subprocess.CompletedProcess[str]) -> None:
        report = json.loads(proc.stdout)
        statuses = {item["status"] for item in report}
        if crl and {item["revoked"] for item in report} != {False}:
            raise SystemExit(f"certhook --crl did not check every CRL: {report[0]}")
        if len(report) != count or statuses != {"ok"}:
            raise SystemExit(f"certhook did not see {count} ok endpoints: {statuses}\n"
                             f"{proc.stderr}")
    return check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="40 endpoints, one run each")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="for certhook and the floor (default: certhook's default)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of certhook and the floor; the median counts (default 3)")
    parser.add_argument("--crl", action="store_true",
                        help="leaves name a loopback CRL; also time certhook probe --crl")
    parser.add_argument("--addresses", type=int, default=3,
                        help="addresses per endpoint in the every-address run (default 3)")
    parser.add_argument("--serve", nargs=4, metavar=("N", "CERTS", "KEY", "ADDRESSES"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(int(args.serve[0]), args.serve[1], args.serve[2],
                           int(args.serve[3])))
        return 0
    sys.path.insert(0, str(ROOT))
    from certhook.probe import DEFAULT_CONCURRENCY

    count = 40 if args.quick else args.endpoints
    repeat = 1 if args.quick else args.repeat
    concurrency = args.concurrency or DEFAULT_CONCURRENCY
    web = None
    if args.crl:
        sys.path.insert(0, str(ROOT / "tests"))
        from ca_helpers import CaWeb

        web = CaWeb()
    with tempfile.TemporaryDirectory() as tmp:
        ca, certs, key = _mint(Path(tmp), count, web)
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(count), certs, key,
                                   str(args.addresses)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            ports = [str(port) for port in json.loads(server.stdout.readline())]
            targets = Path(tmp) / "targets"
            targets.write_text("".join(f"127.0.0.1:{p} servername={NAME}\n" for p in ports))
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            certhook = [sys.executable, "-m", "certhook", "probe", "--targets-file",
                        str(targets), "--format", "json", "--ca-file", ca,
                        "--concurrency", str(concurrency)]
            floors = {
                "floor: bare Python, threads": [sys.executable, "-c", FLOOR_THREADS, ca, NAME,
                                                str(concurrency), *ports],
                "floor: bare Python, asyncio": [sys.executable, "-c", FLOOR_ASYNCIO, ca, NAME,
                                                str(concurrency), *ports],
            }
            loop = ("for p in " + " ".join(ports) + "; do openssl s_client -connect"
                    f" 127.0.0.1:$p -servername {NAME} </dev/null >/dev/null 2>&1; done")
            times: dict[str, float] = {}
            runs: dict[str, list[float]] = {"certhook probe --format json": []}
            if web is not None:
                runs[CRL_LABEL] = []
            runs.update({label: [] for label in floors})
            for _ in range(repeat):  # interleaved, so that drift hits all alike
                runs["certhook probe --format json"].append(
                    _timed(certhook, _certhook_ok(count), env=env, cwd=tmp))
                if web is not None:
                    runs[CRL_LABEL].append(_timed([*certhook, "--crl"], _certhook_ok(count, True),
                                                  env=env, cwd=tmp))
                for label, argv in floors.items():
                    runs[label].append(_timed(argv))
            # Every address: the same endpoints by name, pinned to one address, then all.
            named = Path(tmp) / "named"
            named.write_text("".join(f"{NAME}:{p}\n" for p in ports))
            by_name = [*certhook[:5], str(named), *certhook[6:], "--resolve"]
            hosts = _hosts(args.addresses)
            every = {"certhook, 1 address": [*by_name, f"{NAME}:*:{hosts[0]}"],
                     f"certhook, every address ({len(hosts)})":
                         [*by_name, f"{NAME}:*:{','.join(hosts)}"]}
            runs.update({label: [] for label in every})
            for _ in range(repeat):
                for label, argv in every.items():
                    runs[label].append(_timed(argv, _certhook_ok(count), env=env, cwd=tmp))
            times.update({label: statistics.median(values) for label, values in runs.items()})
            times["openssl s_client loop (sequential)"] = _timed(["bash", "-c", loop])
        finally:
            if server.stdin:
                server.stdin.close()
            server.wait(10)
            if web is not None:
                web.close()
    _report(times, count, concurrency, repeat)
    return 0


def _report(times: dict[str, float], count: int, concurrency: int, repeat: int) -> None:
    print(f"{count} TLS endpoints on loopback, first reply held {DELAY * 1000:.0f} ms,"
          f" concurrency {concurrency}, median of {repeat}")
    print(f"{'contender':<40} {'wall s':>8} {'ms/endpoint':>12}")
    for label, seconds in times.items():
        print(f"{label:<40} {seconds:>8.3f} {seconds * 1000 / count:>12.1f}")
    ours = times["certhook probe --format json"]
    floor = min(v for k, v in times.items() if k.startswith("floor"))
    speedup = times["openssl s_client loop (sequential)"] / ours
    overhead = ours / floor
    print(f"certhook vs openssl loop: {speedup:.1f}x faster (target >= 10x)"
          f" {'PASS' if speedup >= 10 else 'FAIL'}")
    print(f"certhook vs floor: {overhead:.2f}x the floor (target <= 1.5x)"
          f" {'PASS' if overhead <= 1.5 else 'FAIL'}")
    if CRL_LABEL in times:
        with_crl = times[CRL_LABEL] / floor
        print(f"certhook --crl vs floor: {with_crl:.2f}x the floor (target <= 1.5x)"
              f" {'PASS' if with_crl <= 1.5 else 'FAIL'}")
    single = times["certhook, 1 address"]
    label = next(key for key in times if key.startswith("certhook, every address"))
    addresses = int(label.rsplit("(", 1)[1].rstrip(")"))
    ratio = times[label] / single
    print(f"every address vs one: {ratio:.2f}x for {addresses} addresses (target <="
          f" {addresses}x) {'PASS' if ratio <= addresses else 'FAIL'}")


if __name__ == "__main__":
    sys.exit(main())
