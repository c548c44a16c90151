"""``certhook serve``: run the audit server until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file (INI, see docs)")
    parser.add_argument("--db", metavar="PATH",
                        help="SQLite database (default /var/lib/certhook/certhook.db)")
    parser.add_argument("--line-listen", metavar="HOST:PORT",
                        help="line protocol listener (default 127.0.0.1:10023; 'off' for none)")
    parser.add_argument("--tls-listen", metavar="HOST:PORT",
                        help="line protocol over TLS (needs --tls-cert and --tls-key)")
    parser.add_argument("--tls-cert", metavar="FILE",
                        help="certificate chain (PEM) of the TLS and HTTPS listeners")
    parser.add_argument("--tls-key", metavar="FILE",
                        help="private key (PEM) of the TLS and HTTPS listeners")
    parser.add_argument("--http-listen", metavar="HOST:PORT",
                        help="HTTP API and report page (default 127.0.0.1:8023; 'off' for none)")
    parser.add_argument("--https-listen", metavar="HOST:PORT",
                        help="the same over HTTPS, for the client's https:// fallback"
                             " (needs --tls-cert and --tls-key)")
    parser.add_argument("--no-audit", action="store_true",
                        help="receive only; let another 'certhook serve' probe")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO")


def _address(text: str | None) -> object:
    from certhook.server.config import parse_hostport

    if text is None:
        return None
    if text.strip().lower() in ("off", "no", "none", ""):
        return False
    return parse_hostport(text)


def _raise_nofile_limit(connections: int) -> None:
    """Lift the soft limit on open files toward the hard one: each connection is one."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + 256  # the database, the HTTP server, probes, notifications
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import dataclasses
    import logging
    import signal
    import threading

    from certhook.errors import UsageError
    from certhook.server.config import load_config
    from certhook.server.logsafe import FORMAT, EscapingFormatter
    from certhook.server.runner import AuditServer

    # Records quote peers (certificate names, client input): escaped, one line each.
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(FORMAT))
    logging.basicConfig(level=args.log_level, handlers=[handler])
    try:
        config = load_config(args.config)
        changes: dict[str, object] = {}
        for key in ("db", "tls_cert", "tls_key"):
            if getattr(args, key) is not None:
                changes[key] = getattr(args, key)
        for key in ("line_listen", "tls_listen", "http_listen", "https_listen"):
            value = _address(getattr(args, key))
            if value is not None:
                changes[key] = value or None  # False ('off') turns the listener off
        config = dataclasses.replace(config, **changes)  # type: ignore[arg-type]
    except UsageError as exc:
        parser.error(str(exc))
    for key in ("tls_listen", "https_listen"):
        if getattr(config, key) and not (config.tls_cert and config.tls_key):
            parser.error(f"--{key.replace('_', '-')} needs --tls-cert and --tls-key")
    listeners = sum(1 for key in ("line_listen", "tls_listen", "http_listen", "https_listen")
                    if getattr(config, key))
    # each connection one file, and each probe in the fast or slow lane one socket
    from certhook.server.audit import SLOW_PER_FAST

    probes = 0 if args.no_audit else config.concurrency * (1 + SLOW_PER_FAST)
    _raise_nofile_limit(config.max_connections * max(1, listeners) + probes)
    server = AuditServer(config, audit=not args.no_audit).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log = logging.getLogger("certhook.server")
    log.info("certhook serve: database %s", config.db)
    try:
        while not stop.wait(3600):
            pass
    finally:
        log.info("stopping")
        server.stop()
    return 0
