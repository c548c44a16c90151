"""What changed: the lineages to report as ``deployed`` or ``failed``.

Three sources, best first:

- **certbot's environment.** A deploy hook gets ``RENEWED_LINEAGE`` (the
  live directory) and ``RENEWED_DOMAINS`` (space-separated), once per
  renewed lineage. Post hooks of ``certbot renew`` get ``RENEWED_DOMAINS``
  and ``FAILED_DOMAINS`` once per run since certbot 2.7.0; before 4.2.0
  both were empty whenever any renewal failed (certbot #10259), so two
  empty lists send us to the log. Older versions give post hooks no
  variables of their own. certbot sets the deploy variables in its own
  ``os.environ``, so a post hook also sees the ``RENEWED_LINEAGE`` of the
  last deploy: ``FAILED_DOMAINS`` (set, even empty) is what tells a post
  hook apart.
- **The state before and after** (``certhook run``): a lineage whose live
  certificate changed was deployed; the log of that run names the failures.
- **The log alone** (a hook without environment: old certbot, pre hooks):
  the latest run's outcomes.

Nothing here touches the network or writes anything.
"""

from __future__ import annotations

import os

from certhook.errors import LocalError, ParseError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

    from certhook.certbot.lineage import CertbotState, Lineage
    from certhook.certbot.log import Run

__all__ = [
    "DEFAULT_CONFIG_DIR",
    "DEFAULT_LOGS_DIR",
    "Change",
    "certbot_dirs",
    "deploy_change",
    "environment_kind",
    "fingerprint_pem",
    "from_log",
    "from_post_environment",
    "from_states",
    "runs_since",
]

DEFAULT_CONFIG_DIR = "/etc/letsencrypt"
DEFAULT_LOGS_DIR = "/var/log/letsencrypt"
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"


class Change:
    """One lineage (or, unmatched, a set of domains) to report."""

    __slots__ = ("acme_server", "domains", "event", "fingerprint", "journal_key", "lineage",
                 "renew_before")

    def __init__(self, event: str, lineage: str | None, domains: Sequence[str],
                 fingerprint: str | None = None, journal_key: str | None = None,
                 acme_server: str | None = None, renew_before: int | None = None) -> None:
        self.event = event  # "deployed" or "failed"
        self.lineage = lineage
        self.domains = tuple(domains)
        self.fingerprint = fingerprint
        self.journal_key = journal_key
        # the renewal conf's ``server``: where the audit server asks for ARI
        self.acme_server = acme_server
        # the renewal conf's ``renew_before_expiry`` in seconds: when the audit
        # server expects certbot to have renewed
        self.renew_before = renew_before

    def __repr__(self) -> str:
        return f"Change({self.event!r}, {self.lineage!r}, {self.domains!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Change) and (
            self.event, self.lineage, self.domains, self.fingerprint
        ) == (other.event, other.lineage, other.domains, other.fingerprint)

    __hash__ = None  # type: ignore[assignment]


def _sha256_hex(data: bytes) -> str:
    # The interpreter's own SHA-256 (``_sha2`` from 3.12, ``_sha256`` before)
    # spares the hook loading OpenSSL through hashlib, about 3 ms. Found with
    # __import__ (a top-level module): importlib would bring ``warnings``
    # along, another 0.4 ms.
    import sys

    try:
        module = __import__("_sha2" if sys.version_info >= (3, 12) else "_sha256")
        return str(module.sha256(data).hexdigest())
    except (ImportError, AttributeError):  # a Python built without them
        pass
    import hashlib

    return hashlib.sha256(data).hexdigest()


def fingerprint_pem(path: str) -> str:
    """SHA-256 of the DER of the first certificate in a PEM file, as hex.

    The same value as ``certhook.x509``'s ``fingerprint_sha256``, without
    parsing the certificate (the hook's fast path). LocalError if the file
    cannot be read, ParseError if it holds no PEM certificate.
    """
    try:
        with open(path, "rb") as stream:
            data = stream.read(1 << 20)
    except OSError as exc:
        raise LocalError(f"{path}: {exc.strerror or exc}") from None
    begin = data.find(_PEM_BEGIN)
    end = data.find(_PEM_END, begin)
    if begin < 0 or end < 0:
        raise ParseError("no PEM certificate", path)
    import binascii

    try:
        der = binascii.a2b_base64(data[begin + len(_PEM_BEGIN):end])
    except binascii.Error:
        raise ParseError("bad base64 in PEM certificate", path) from None
    if not der:
        raise ParseError("empty PEM certificate", path)
    return _sha256_hex(der)


def environment_kind(environ: Mapping[str, str]) -> str:
    """``post`` if certbot gave post-hook variables, ``deploy`` if deploy-hook
    ones, else ``none``."""
    if "FAILED_DOMAINS" in environ:
        return "post"
    if environ.get("RENEWED_LINEAGE"):
        return "deploy"
    return "none"


def deploy_change(environ: Mapping[str, str]) -> Change:
    """The lineage a deploy hook was called for, from ``RENEWED_LINEAGE``.

    Reads only ``cert.pem``; the domains are certbot's ``RENEWED_DOMAINS``
    (or, if that is empty, the certificate's). A ``cert.pem`` that cannot
    be read leaves the fingerprint out, rather than the report.
    """
    live = environ.get("RENEWED_LINEAGE", "").rstrip("/")
    if not live:
        raise LocalError("RENEWED_LINEAGE is not set: not called as a certbot deploy hook")
    domains = environ.get("RENEWED_DOMAINS", "").lower().split()
    try:
        fingerprint: str | None = fingerprint_pem(os.path.join(live, "cert.pem"))
    except (LocalError, ParseError):
        if not domains:
            raise
        fingerprint = None
    if not domains:
        from certhook.x509 import load_pem_file

        certs = load_pem_file(os.path.join(live, "cert.pem"))
        domains = list(certs[0].identifiers) if certs else []
    name = os.path.basename(live)
    conf = os.path.join(os.path.dirname(os.path.dirname(live)), "renewal", f"{name}.conf")
    server, renew_before = conf_facts(conf)
    return Change("deployed", name, domains, fingerprint, acme_server=server,
                  renew_before=renew_before)


def conf_server(path: str) -> str | None:
    """``server`` of a renewal conf's ``[renewalparams]``, read without configobj."""
    return conf_facts(path)[0]


def conf_facts(path: str) -> tuple[str | None, int | None]:
    """A renewal conf's ``server`` (of ``[renewalparams]``) and top-level
    ``renew_before_expiry`` in seconds, read without configobj.

    The deploy hook's fast path: one small file, no parser imported. None for
    what the file does not give (unreadable, absent, or a value certbot
    cannot read: ``certhook scan`` names that problem; the report goes on).
    """
    try:
        with open(path, "rb") as stream:
            data = stream.read(1 << 16)
    except OSError:
        return None, None
    section = ""
    server: str | None = None
    renew_before: int | None = None
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip().strip("'\"")
        if not sep:
            continue
        if section == "[renewalparams]" and key == "server" and server is None:
            server = value or None
        elif section == "" and key == "renew_before_expiry" and renew_before is None:
            from certhook.certbot.interval import parse_interval

            try:  # configobj drops an inline comment
                renew_before = parse_interval(value.partition("#")[0])
            except ParseError:
                pass
    return server, renew_before


def _fingerprint(lineage: Lineage) -> str | None:
    return lineage.certificate.fingerprint_sha256 if lineage.certificate is not None else None


def _match(names: Sequence[str], lineages: Iterable[Lineage],
           prefer: set[str] | None) -> tuple[list[Lineage], list[str]]:
    """The lineages whose names together make up ``names``; and names left over.

    Lineages named in ``prefer`` (the log's word for this run) go first, so
    that of two lineages with the same names, the one certbot touched wins.
    """
    wanted = {name.lower() for name in names}
    covered: set[str] = set()
    chosen: list[Lineage] = []
    ordered = sorted(lineages, key=lambda lin: (prefer is None or lin.name not in prefer,
                                                lin.name))
    for lineage in ordered:
        domains = {d.lower() for d in lineage.domains}
        if domains and domains <= wanted and not domains <= covered:
            chosen.append(lineage)
            covered |= domains
    leftover = [name for name in dict.fromkeys(n.lower() for n in names) if name not in covered]
    return chosen, leftover


def from_post_environment(environ: Mapping[str, str], state: CertbotState | None,
                          run: Run | None) -> list[Change]:
    """Changes from a post hook's ``RENEWED_DOMAINS`` / ``FAILED_DOMAINS``.

    certbot flattens each list over lineages; the state maps names back to
    lineages (the latest log run decides between lineages with the same
    names). Names no lineage accounts for are reported without one. A dry
    run (per the log) reports nothing: certbot fills both lists then too.
    """
    if run is not None and run.dry_run:
        return []
    lineages = state.lineages if state is not None else ()
    changes: list[Change] = []
    for event, variable, outcome in (("deployed", "RENEWED_DOMAINS", "renewed"),
                                     ("failed", "FAILED_DOMAINS", "failed")):
        names = environ.get(variable, "").split()
        if not names:
            continue
        prefer = None
        if run is not None:
            prefer = {e.lineage for e in run.events if e.outcome == outcome}
        chosen, leftover = _match(names, lineages, prefer)
        for lineage in chosen:
            changes.append(Change(event, lineage.name, lineage.domains, _fingerprint(lineage),
                                  acme_server=lineage.server,
                                  renew_before=lineage.renew_before))
        if leftover:
            changes.append(Change(event, None, leftover))
    return changes


def from_states(before: CertbotState | None, after: CertbotState,
                runs: Sequence[Run]) -> list[Change]:
    """What a certbot command did: lineages whose live certificate changed
    (or appeared), and the failures the log of that command names."""
    old = {lin.name: lin for lin in before.lineages} if before is not None else {}
    now = {lin.name: lin for lin in after.lineages}
    changes: list[Change] = []
    for lineage in after.lineages:
        fingerprint = _fingerprint(lineage)
        if fingerprint is None or not lineage.domains:
            continue
        previous = old.get(lineage.name)
        if before is None or previous is None or _fingerprint(previous) != fingerprint:
            changes.append(Change("deployed", lineage.name, lineage.domains, fingerprint,
                                  acme_server=lineage.server,
                                  renew_before=lineage.renew_before))
    deployed = {c.lineage for c in changes}
    failed: dict[str, None] = {}
    for run in runs:
        for event in run.events:
            if event.outcome == "failed" and event.lineage not in deployed:
                failed[event.lineage] = None
    for name in failed:
        source = now.get(name) or old.get(name)
        if source is not None and source.domains:
            changes.append(Change("failed", name, source.domains, _fingerprint(source),
                                  acme_server=source.server,
                                  renew_before=source.renew_before))
    return changes


def from_log(state: CertbotState, run: Run | None) -> list[Change]:
    """The outcomes of one logged run (a hook that got no environment)."""
    if run is None or run.dry_run:
        return []
    now = {lin.name: lin for lin in state.lineages}
    started = run.started.isoformat() if run.started is not None else run.log_file
    changes: list[Change] = []
    for event in run.events:
        lineage = now.get(event.lineage)
        if lineage is None or not lineage.domains:
            continue
        if event.outcome == "renewed":
            changes.append(Change("deployed", lineage.name, lineage.domains,
                                  _fingerprint(lineage), acme_server=lineage.server,
                                  renew_before=lineage.renew_before))
        elif event.outcome == "failed":
            changes.append(Change("failed", lineage.name, lineage.domains, _fingerprint(lineage),
                                  journal_key=f"failed {lineage.name} {started}",
                                  acme_server=lineage.server,
                                  renew_before=lineage.renew_before))
    return changes


def runs_since(logs_dir: str, since: datetime | None, files: int = 3,
               deadline: float | None = None) -> list[Run]:
    """The runs in the newest log files that started at or after ``since``
    (naive local time, as certbot logs), or the newest run if ``since`` is None.

    Files are read newest first, and no further than needed: ``since`` None
    stops at the first file holding a run, else at the first run older than
    ``since`` (certbot rotates its log at every start, so the newest run is
    in ``letsencrypt.log``). At most ``files`` files, each read within the
    caps of :func:`certhook.certbot.log.read_log_file`; ``deadline`` (a
    :func:`time.monotonic` value) as there.
    """
    from certhook.certbot.log import log_files, read_log_file

    found: list[Run] = []
    for path in reversed(log_files(logs_dir)[-files:] if files > 0 else []):
        runs = read_log_file(path, deadline=deadline)
        if since is None:
            if runs:
                return runs[-1:]
            continue
        newer = [run for run in runs if run.started is not None and run.started >= since]
        found[:0] = newer
        if len(newer) < len(runs):
            break  # this file holds a run from before: older files hold none after
    return found


def _dirs_from_argv(argv: Sequence[str]) -> tuple[str | None, str | None]:
    found: dict[str, str] = {}
    for index, arg in enumerate(argv):
        for option in ("--config-dir", "--logs-dir"):
            if arg == option and index + 1 < len(argv):
                found[option] = argv[index + 1]
            elif arg.startswith(option + "="):
                found[option] = arg[len(option) + 1:]
    return found.get("--config-dir"), found.get("--logs-dir")


def _parent_argv(pid: int) -> tuple[int, list[str]] | None:
    """(parent pid, argv) of a process, from Linux's /proc; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            stat = stream.read()
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            cmdline = stream.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    parent = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    argv = [part.decode("utf-8", "replace") for part in cmdline.split(b"\0") if part]
    return parent, argv


def certbot_dirs(environ: Mapping[str, str], argv: Sequence[str] | None = None,
                 config_dir: str | None = None, logs_dir: str | None = None) -> tuple[str, str]:
    """certbot's config and logs directories, for reading state and log.

    In order: the flags given; ``--config-dir`` / ``--logs-dir`` in
    ``argv`` (the command ``certhook run`` wraps), or else in the command
    line of the certbot process this hook runs under (Linux ``/proc``); the
    config directory from ``RENEWED_LINEAGE`` (``CONFIG/live/NAME``); then
    certbot's defaults.
    """
    found_config, found_logs = _dirs_from_argv(argv) if argv is not None else (None, None)
    if argv is None:
        pid = os.getppid()
        for _ in range(6):  # hook <- sh -c <- certbot (<- sudo, timeout, certhook run ...)
            if pid <= 1:
                break
            parent = _parent_argv(pid)
            if parent is None:
                break
            pid, parent_argv = parent
            if any("certbot" in os.path.basename(arg) or "letsencrypt" in arg
                   for arg in parent_argv[:3]):
                found_config, found_logs = _dirs_from_argv(parent_argv)
                break
    if found_config is None and environ.get("RENEWED_LINEAGE"):
        guess = os.path.dirname(os.path.dirname(environ["RENEWED_LINEAGE"].rstrip("/")))
        if os.path.isdir(os.path.join(guess, "renewal")):
            found_config = guess
    return (config_dir or found_config or DEFAULT_CONFIG_DIR,
            logs_dir or found_logs or DEFAULT_LOGS_DIR)
