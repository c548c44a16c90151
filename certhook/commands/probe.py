"""``certhook probe``: connect to TLS endpoints and check their certificates.

Exit code: that of the worst status, in every format (0 ok, 1 warning,
2 critical, 3 unknown), worst by severity: critical > warning > unknown > ok
(:data:`certhook.probe.result.SEVERITY`). A mistake on the command line exits 2 through argparse, as
monitoring plugins do; a file that cannot be read (targets file, CA file,
certbot's directory) prints one line and exits 3, "could not check".
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from certhook.client.changes import DEFAULT_CONFIG_DIR

if TYPE_CHECKING:
    from certhook.probe import ProbeResult, Target
    from certhook.probe.lifetime import Threshold

_UNKNOWN = 3
_A_LIFETIME = 90 * 86400.0  # any lifetime: thresholds of one kind order the same on all


def _threshold(text: str) -> Threshold:
    from certhook.errors import ParseError
    from certhook.probe.lifetime import parse_threshold

    try:
        return parse_threshold(text)
    except ParseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _pct(threshold: Threshold) -> str:
    return str(threshold).replace("%", "%%")  # argparse expands % in help


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from certhook.client.config import DEFAULT_CONFIG
    from certhook.probe.lifetime import DEFAULT_CRIT, DEFAULT_WARN
    from certhook.probe.output import FORMATS

    parser.add_argument(
        "targets", nargs="*", metavar="TARGET",
        help="host, host:port, [IPv6]:port, optionally /PROTOCOL (a bare host means 443)",
    )
    parser.add_argument("--starttls", metavar="PROTO",
                        help="STARTTLS dialogue for targets without /PROTOCOL (smtp, imap, ...)")
    parser.add_argument("--servername", metavar="NAME",
                        help="SNI to send (default: the host; none for an IP address)")
    parser.add_argument("--expect-name", metavar="NAME",
                        help="name the certificate must hold (default: servername, else host)")
    parser.add_argument("--name-check", choices=("cn_san", "cn", "none"), default="cn_san",
                        help="how to check the name: SAN per RFC 6125 (default), CN only, or not")
    parser.add_argument("--warn", type=_threshold, default=DEFAULT_WARN, metavar="LEFT",
                        help="warning at or below this much left: a fraction of the"
                             " certificate's lifetime (25%%), a time (21d, 36h, 90m) or a"
                             f" number of days (21); default {_pct(DEFAULT_WARN)}, 21 days of 90")
    parser.add_argument("--crit", type=_threshold, default=DEFAULT_CRIT, metavar="LEFT",
                        help="critical at or below this much left, as --warn;"
                             f" default {_pct(DEFAULT_CRIT)}, 7 days of 90")
    parser.add_argument("--resolve", action="append", default=[],
                        metavar="NAME:PORT:ADDRESS[,ADDRESS...]",
                        help="connect to these addresses for NAME on PORT ('*': any port)"
                             " instead of resolving it, as curl --resolve; repeatable")
    parser.add_argument("--one-address", action="store_true",
                        help="probe only the first address of a name that answers (default:"
                             " every address, up to 16, the worst verdict counts)")
    parser.add_argument("--ca-file", metavar="FILE",
                        help="trust these PEM roots instead of the system's")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="deadline per target, all steps included (default 10)")
    parser.add_argument("--concurrency", type=int, default=None, metavar="N",
                        help="probes at once (default 32)")
    parser.add_argument("--ari", metavar="DIRECTORY_URL",
                        help="ask this ACME directory's renewalInfo (ARI, RFC 9773) when the CA"
                             " wants the certificate renewed (off by default: contacts the CA)")
    parser.add_argument("--crl", action=argparse.BooleanOptionalAction, default=False,
                        help="check revocation in the leaf's CRL (off by default: contacts the"
                             " CA, at a URL the probed server's certificate names)")
    parser.add_argument("--targets-file", metavar="FILE",
                        help="one TARGET [PROTOCOL] [servername=NAME] [expect-name=NAME] per"
                             " line (a line's own names beat the flags); # comments")
    parser.add_argument("--from-certbot", action="store_true",
                        help="probe every name of every certbot lineage (on its [ports])")
    parser.add_argument("--config-dir", metavar="DIR",
                        help="certbot's config dir: check served certificates against its"
                             f" lineages (default with --from-certbot: {DEFAULT_CONFIG_DIR})")
    parser.add_argument("--conf", metavar="FILE",
                        help="certhook conf with the [ports] section (default $CERTHOOK_CONFIG"
                             f" or {DEFAULT_CONFIG})")
    parser.add_argument("--format", choices=tuple(FORMATS), default="text",
                        help="output format: " + "; ".join(
                            f"{row.name}, {row.summary}" for row in FORMATS.values()))


def _check_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if not (args.targets or args.targets_file or args.from_certbot):
        parser.error("no targets: give TARGET, --targets-file or --from-certbot")
    # Thresholds of one kind compare; a fraction and a time compare only per certificate.
    warn, crit = args.warn, args.crit
    if (warn.fraction is None) == (crit.fraction is None) and (
            crit.seconds_for(_A_LIFETIME) > warn.seconds_for(_A_LIFETIME)):
        parser.error(f"--crit {crit} is above --warn {warn}")
    if args.ari is not None and not args.ari.lower().startswith(("https://", "http://")):
        parser.error(f"--ari: {args.ari[:60]!r} is not an http(s) URL of an ACME directory")
    if not args.timeout > 0:
        parser.error("--timeout must be positive")
    if args.concurrency is not None and args.concurrency < 1:
        parser.error("--concurrency must be at least 1")


def _command_line_targets(args: argparse.Namespace, parser: argparse.ArgumentParser
                          ) -> list[Target]:
    from certhook.errors import ParseError
    from certhook.probe.targets import known_protocols, parse_name, parse_target

    if args.starttls is not None and args.starttls not in known_protocols():
        parser.error(f"--starttls: unknown protocol {args.starttls!r}"
                     f" (known: {', '.join(sorted(known_protocols()))})")
    for flag, value in (("--servername", args.servername), ("--expect-name", args.expect_name)):
        try:
            parse_name(value, flag[2:])
        except ParseError as exc:
            parser.error(f"{flag}: {exc}")
    targets = []
    for text in args.targets:
        try:
            targets.append(parse_target(text, args.starttls, args.servername, args.expect_name))
        except ParseError as exc:
            parser.error(f"bad target: {exc}")
    return targets


def _resolve_map(args: argparse.Namespace, parser: argparse.ArgumentParser
                 ) -> dict[tuple[str, int], tuple[str, ...]]:
    from certhook.errors import ParseError
    from certhook.probe.targets import parse_resolve

    pinned: dict[tuple[str, int], tuple[str, ...]] = {}
    for text in args.resolve:
        try:
            key, addresses = parse_resolve(text)
        except ParseError as exc:
            parser.error(f"--resolve: {exc}")
        # several --resolve for one name and port add up (curl keeps the first)
        pinned[key] = tuple(dict.fromkeys(pinned.get(key, ()) + addresses))
    return pinned


def _progress(done: int, total: int, result: ProbeResult) -> None:
    end = "\n" if done == total else ""
    sys.stderr.write(f"\rprobed {done}/{total}{end}")
    sys.stderr.flush()


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from certhook.errors import CerthookError

    _check_arguments(args, parser)
    targets = _command_line_targets(args, parser)
    pinned = _resolve_map(args, parser)
    try:
        return _run(args, targets, pinned)
    except CerthookError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"certhook probe: {exc}", file=sys.stderr)
        return _UNKNOWN


def _run(args: argparse.Namespace, targets: list[Target],
         pinned: dict[tuple[str, int], tuple[str, ...]]) -> int:
    from certhook.probe import (
        DEFAULT_CONCURRENCY,
        ProbeOptions,
        exit_code,
        probe_many,
        read_targets_file,
    )
    from certhook.probe.output import render

    if args.targets_file:
        targets += read_targets_file(args.targets_file, args.starttls, args.servername,
                                     args.expect_name)
    fingerprints = None
    config_dir = args.config_dir or (DEFAULT_CONFIG_DIR if args.from_certbot else None)
    if config_dir is not None:
        from certhook.certbot.lineage import read_state
        from certhook.client.ini import read_ini
        from certhook.probe.targets import certbot_fingerprints, certbot_targets

        state = read_state(config_dir)
        fingerprints = certbot_fingerprints(state)
        if args.from_certbot:
            # The file the reporting client reads (--conf, else $CERTHOOK_CONFIG,
            # else the default, which may be missing), read the same way.
            from certhook.client.config import DEFAULT_CONFIG

            explicit = args.conf or os.environ.get("CERTHOOK_CONFIG") or None
            conf = read_ini(explicit or DEFAULT_CONFIG, required=explicit is not None)
            if conf is not None:  # typos in it, as the client commands warn of them
                from certhook.client.config import SECTIONS, ports_warnings
                from certhook.client.ini import unknown_names

                for warning in [*unknown_names(conf, SECTIONS), *ports_warnings(conf, config_dir)]:
                    print(f"certhook probe: warning: {warning}", file=sys.stderr)
            found, skipped = certbot_targets(state, conf)
            for note in skipped:
                print(f"certhook probe: skipped {note}", file=sys.stderr)
            # The flags hold for every target, as for those of a targets file.
            targets += [replace(target, servername=target.servername or args.servername or None,
                                expect_name=target.expect_name or args.expect_name or None)
                        for target in found]
    targets = list(dict.fromkeys(targets))  # each once, in the order first given
    if not targets:
        print("certhook probe: no targets to probe", file=sys.stderr)
        return _UNKNOWN
    options = ProbeOptions(
        timeout=args.timeout,
        warn=args.warn,
        crit=args.crit,
        name_check=args.name_check,
        ca_file=args.ca_file,
        local_fingerprints=fingerprints,
        ari_directory=args.ari,
        check_crl=args.crl,
        all_addresses=not args.one_address,
        resolve=pinned or None,
    )
    progress = _progress if sys.stderr.isatty() and len(targets) > 1 else None
    results = probe_many(targets, options, args.concurrency or DEFAULT_CONCURRENCY, progress)
    sys.stdout.write(render(results, args.format, options))
    sys.stdout.flush()
    return exit_code(results)
