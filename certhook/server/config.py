"""The audit server's configuration: an INI file, command-line overrides, defaults.

The file (INI, read by :mod:`certhook.client.ini`, as configparser reads it)
has a ``[server]`` section (database, listeners, limits), an
``[audit]`` section (probing schedule, thresholds, the SSRF allow-list),
an ``[smtp]`` section (the mail relay notifications go through), a
``[notify]`` section (defaults for every account) and one
``[account NAME]`` section per account that wants email or a webhook.
Everything has a default; ``docs/server.md`` documents each key. What the
file may hold is the table :data:`SECTIONS`: it reads the values and names
the known keys.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Union

from certhook.client.ini import Ini, read_ini, unknown_names
from certhook.errors import ParseError, UsageError
from certhook.probe.lifetime import (
    DEFAULT_CRIT,
    DEFAULT_NOTICES,
    DEFAULT_WARN,
    Threshold,
    parse_threshold,
    parse_thresholds,
)

__all__ = [
    "ACCOUNT",
    "DEFAULT_DB",
    "SECTIONS",
    "TARGET",
    "AccountNotify",
    "ServerConfig",
    "SmtpConfig",
    "load_config",
    "parse_duration",
    "parse_hostport",
]

if TYPE_CHECKING:
    from certhook.server.recheck import Selector

DEFAULT_DB = "/var/lib/certhook/certhook.db"

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*$")


_log = logging.getLogger("certhook.server.config")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``6h``, ``1d`` into seconds; UsageError if bad."""
    try:
        return _duration(text)
    except ValueError as exc:
        raise UsageError(f"bad duration: {exc}") from None


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``HOST:PORT``, ``[::1]:PORT`` or ``:PORT`` (loopback) into a pair."""
    text = text.strip()
    match = re.match(r"^\[([0-9a-fA-F:.]+)\]:([0-9]+)$", text) or re.match(
        r"^([^:\[\]]*):([0-9]+)$", text
    )
    if match:
        host, port = match.group(1) or "127.0.0.1", int(match.group(2))
    elif default_port is not None and text and ":" not in text:
        host, port = text, default_port
    else:
        raise UsageError(f"bad address {text!r} (use HOST:PORT or [IPV6]:PORT)")
    if not 0 <= port < 65536:
        raise UsageError(f"bad port in {text!r}")
    return host, port


def _networks(text: str) -> tuple[Network, ...]:
    nets = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise UsageError(f"bad network {item!r} in allow_networks") from None
    return tuple(nets)


def _resolve(text: str) -> tuple[tuple[str, str], ...]:
    """``name=address, ...``: where the auditor connects for a name (as curl --resolve)."""
    pairs = []
    for item in _list(text):
        name, sep, address = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            address = str(ipaddress.ip_address(address.strip("[]")))
        except ValueError:
            raise UsageError(f"bad entry {item!r} in resolve: want NAME=ADDRESS") from None
        pairs.append((name.lower().rstrip("."), address))
    return tuple(pairs)


def _list(text: str) -> tuple[str, ...]:
    return tuple(item for item in re.split(r"[,\s]+", text.strip()) if item)


@dataclass(frozen=True)
class SmtpConfig:
    """The mail relay: ``starttls`` upgrades a plain connection, ``ssl`` is implicit TLS."""

    host: str = ""
    port: int = 25
    starttls: bool = True
    ssl: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    sender: str = "certhook@localhost"
    timeout: float = 30.0
    ca_file: str | None = None


@dataclass(frozen=True)
class AccountNotify:
    """Where one account's notifications go."""

    email: tuple[str, ...] = ()
    webhook: tuple[str, ...] = ()
    log: bool = True


@dataclass(frozen=True)
class ServerConfig:
    """Every setting of ``certhook serve``; see ``docs/server.md``."""

    db: str = DEFAULT_DB
    line_listen: tuple[str, int] | None = ("127.0.0.1", 10023)
    tls_listen: tuple[str, int] | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    http_listen: tuple[str, int] | None = ("127.0.0.1", 8023)
    https_listen: tuple[str, int] | None = None  # needs tls_cert and tls_key
    idle_timeout: float = 60.0
    max_connections: int = 4096
    # One address (an IPv6 /64) may hold 32 connections: a host with many
    # lineages renewing at once needs a few, a NAT of a few dozen hosts fits,
    # and it takes 128 addresses, not one, to fill max_connections.
    max_connections_per_address: int = 32
    max_pending_per_connection: int = 64
    max_body: int = 64 * 1024
    # Work one submission or account can cause: 64 ports x 100 names per
    # submission at most, and 10,000 targets (connections per audit round).
    max_ports_per_submission: int = 64
    max_targets_per_account: int = 10000
    # GET /metrics without a key: "no", or "loopback" (from 127.0.0.0/8 and ::1 only)
    metrics_public: str = "no"
    # this process's name among the nodes on one database (logs, /metrics, leases);
    # "": hostname:pid:random, new at each start
    node: str = ""
    # auditing
    interval: float = 6 * 3600.0
    jitter: float = 0.1
    first_probe_delay: float = 0.0
    # A failed probe is repeated after retry_interval, doubling after the
    # failure is confirmed, up to retry_max (docs/server.md, "The timeline").
    retry_interval: float = 120.0
    retry_max: float = 3600.0
    concurrency: int = 16
    probe_timeout: float = 10.0
    # How long a node holds a claimed probe (or notification delivery) before another
    # node may take it over: past the longest probe, far below the interval.
    lease: float = 120.0
    grace: float = 300.0
    failure_threshold: int = 2
    # Thresholds by each certificate's lifetime (certhook/probe/lifetime.py):
    # 21 and 7 days of 90 by default; warn_days/crit_days, the old spelling,
    # set them to a bare number of days.
    warn: Threshold = DEFAULT_WARN
    crit: Threshold = DEFAULT_CRIT
    expiry_notices: tuple[Threshold, ...] = DEFAULT_NOTICES
    ca_file: str | None = None
    allow_networks: tuple[Network, ...] = ()
    # name -> address to connect to instead of resolving the name (SNI and the
    # name check still use the name); the SSRF guard checks the address.
    resolve: tuple[tuple[str, str], ...] = ()
    # Vantage points (issue 12): this node's name as a vantage ("": none), the vantages
    # every account's targets are probed from ([account NAME] vantages overrides it;
    # none: from any node, once), and how long past its due time a vantage may go
    # without a result before that is a finding (its node has stopped).
    vantage: str = ""
    vantages: tuple[str, ...] = ()
    account_vantages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # [target NAME] vantages: (the section's selector, the vantages), in file order
    target_vantages: tuple[tuple[Selector, tuple[str, ...]], ...] = ()
    vantage_silent: float = 900.0
    history_keep: int = 500
    # a target no submission has named for this long, and that has failed
    # (critical or unknown) for as long, is removed with one notice; 0: never
    retire_after: float = 30 * 86400.0
    # ARI (RFC 9773): (issuer substring, ACME directory URL) pairs, for targets
    # whose hook sent no acme_server; None turns ARI off altogether.
    ari: tuple[tuple[str, str], ...] | None = ()
    # revocation from the leaf's CRL (cached per process until nextUpdate)
    crl: bool = True
    # notifications
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    notify_default: AccountNotify = field(default_factory=AccountNotify)
    accounts: dict[str, AccountNotify] = field(default_factory=dict)
    notify_retries: int = 8
    notify_backoff: float = 30.0
    # grouping, rate limit and reminders (certhook/server/notify.py)
    notify_group_window: float = 60.0
    notify_rate_limit: tuple[int, float] = (10, 3600.0)  # messages per seconds; 0: none
    notify_remind: float = 86400.0  # 0: no reminders

    def notify_for(self, account: str) -> AccountNotify:
        return self.accounts.get(account, self.notify_default)

    def vantages_for(self, account: str, domain: str = "", port: int = 0,
                     protocol: str = "") -> tuple[str, ...]:
        """The vantages a target is probed from (none: from any node, once): its
        ``[target NAME]`` section's (the most specific that matches: HOST:PORT/PROTOCOL,
        then HOST:PORT, then HOST), else its account's, else ``[audit] vantages``."""
        best: tuple[int, tuple[str, ...]] | None = None
        for selector, names in self.target_vantages:
            if selector.domain != domain or selector.port not in (None, port) or (
                    selector.protocol not in (None, protocol)):
                continue
            rank = (selector.port is not None) + (selector.protocol is not None)
            if best is None or rank >= best[0]:
                best = (rank, names)
        if best is not None:
            return best[1]
        return self.account_vantages.get(account, self.vantages)

    @property
    def uses_vantages(self) -> bool:
        """Whether any target is probed from vantages."""
        return (bool(self.vantages) or any(self.account_vantages.values())
                or any(names for _, names in self.target_vantages))

    def with_overrides(self, **changes: Any) -> ServerConfig:
        """A copy with the given fields replaced; ``None`` values are ignored."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _duration(text: str) -> float:
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError(f"{text[:20]!r} is not a duration (e.g. 30s, 15m, 6h, 1d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _listen(text: str) -> tuple[str, int] | None:
    if text.strip().lower() in ("", "off", "no", "none"):
        return None
    try:
        return parse_hostport(text)
    except UsageError:
        raise ValueError(f"{text.strip()[:40]!r} is not HOST:PORT, [IPV6]:PORT or off") from None


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"{text.strip()[:20]!r} is not a whole number, 0 or more")
    return int(text)


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"{text.strip()[:20]!r} is not a whole number, 1 or more")
    return int(text)


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{text.strip()[:20]!r} is not a port number, 1 to 65535")
    return int(text)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise ValueError(f"{text.strip()[:20]!r} is not a number from 0 to 1")
    return value


# configparser's BOOLEAN_STATES, which this file honoured before
_BOOLEANS = {"1": True, "yes": True, "true": True, "on": True,
             "0": False, "no": False, "false": False, "off": False}


def _bool(text: str) -> bool:
    value = _BOOLEANS.get(text.strip().lower())
    if value is None:
        raise ValueError(f"{text.strip()[:20]!r} is not yes or no (or true/false, on/off, 1/0)")
    return value


def _threshold(text: str) -> Threshold:
    try:
        return parse_threshold(text)
    except ParseError as exc:
        raise ValueError(str(exc)) from None


def _bare_days(text: str) -> Threshold:
    return Threshold.days(_count(text))


def _thresholds(text: str) -> tuple[Threshold, ...]:
    try:
        return parse_thresholds(text)
    except ParseError as exc:
        raise ValueError(f"{text.strip()[:40]!r} is not a list of thresholds"
                         f" (e.g. 23.33%, 7.78%, 1.11% or 21, 7, 1): {exc}") from None


def _metrics_public(text: str) -> str:
    value = text.strip().lower()
    if value not in ("no", "loopback"):
        raise ValueError(f"{text.strip()[:20]!r} is not no or loopback")
    return value


def _node(text: str) -> str:
    """A node name: up to 100 printable characters without spaces (it is in logs)."""
    value = text.strip()
    if len(value) > 100 or not re.fullmatch(r"[\x21-\x7e]*", value):
        raise ValueError(f"{value[:20]!r} is not a node name (printable, no spaces,"
                         " up to 100 characters)")
    return value


def _lease(text: str) -> float:
    value = _duration(text)
    if value < 1:
        raise ValueError(f"{text.strip()[:20]!r} is shorter than one second")
    return value


_VANTAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,39}")


def _vantage(text: str) -> str:
    """A vantage name: letters, digits, dots and dashes, up to 40 (``eu-west``)."""
    value = text.strip()
    if value and not _VANTAGE.fullmatch(value):
        raise ValueError(f"{value[:20]!r} is not a vantage name (letters, digits, . and -,"
                         " up to 40 characters)")
    return value


def _vantages(text: str) -> tuple[str, ...]:
    """``eu-west, us-east``; ``none``: probed from any node, once."""
    if text.strip().lower() in ("", "none", "off"):
        return ()
    names = tuple(dict.fromkeys(_vantage(name) for name in _list(text)))
    if len(names) > 16:
        raise ValueError("more than 16 vantages")
    return names


def _optional(text: str) -> str | None:
    return text.strip() or None


def _networks_value(text: str) -> tuple[Network, ...]:
    try:
        return _networks(text)
    except UsageError as exc:
        raise ValueError(str(exc)) from None


def _ari(text: str) -> tuple[tuple[str, str], ...] | None:
    """``ISSUER-SUBSTRING = DIRECTORY_URL`` per line (or ``;``-separated), or ``off``."""
    if text.strip().lower() in ("off", "no", "false", "0"):
        return None
    pairs = []
    for item in re.split(r"[;\n]", text):
        if not item.strip():
            continue
        issuer, sep, url = item.rpartition("=")
        url = url.strip()
        # An issuer holds "=" (CN=R11,O=Let's Encrypt): the URL is after the last one.
        if not sep or not issuer.strip() or not re.fullmatch(r"https?://[\x21-\x7e]+", url):
            raise ValueError(f"{item.strip()[:60]!r} is not ISSUER-SUBSTRING = DIRECTORY_URL")
        pairs.append((issuer.strip(), url))
    return tuple(pairs)


def _resolve_value(text: str) -> tuple[tuple[str, str], ...]:
    try:
        return _resolve(text)
    except UsageError as exc:
        raise ValueError(str(exc)) from None


def _db(text: str) -> str:
    """A database: a path, ``sqlite:///PATH`` or ``postgresql://...`` (never quoted with
    its password)."""
    from certhook.server.store.dburl import parse

    try:
        parse(text)
    except ParseError as exc:
        raise ValueError(exc.reason) from None
    return text.strip()


def _webhooks(text: str) -> tuple[str, ...]:
    """``URL`` (plain JSON) or ``FORMAT+URL`` (``slack+https://...``), comma-separated."""
    from certhook.server.channels import parse_webhook

    for item in _list(text):
        parse_webhook(item)
    return _list(text)


def _rate(text: str) -> tuple[int, float]:
    """``10/1h``: at most 10 messages a channel per hour; ``0`` or ``off``: no limit."""
    if text.strip().lower() in ("0", "off", "no", "none"):
        return (0, 3600.0)
    count, slash, period = text.partition("/")
    try:
        if not slash or not count.strip().isdigit() or int(count) < 1:
            raise ValueError
        seconds = _duration(period if period.strip()[:1].isdigit() else f"1{period.strip()}")
        if seconds <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"{text.strip()[:20]!r} is not COUNT/DURATION"
                         " (e.g. 10/1h, 30/d) or off") from None
    return (int(count), seconds)


# What the file may hold: [section] -> {key -> how its value is read}. A reader
# returns the value or raises ValueError saying what is allowed (a builtin
# like int or float gets the words of _ALLOWED). These rows are also the keys
# certhook serve knows and warns about (nearest name): one row adds a key,
# read and known. A key of [server] or [audit] sets the ServerConfig field of
# its name; [smtp] the SmtpConfig field (_FIELDS renames); [notify] and
# [account NAME] an AccountNotify, [notify] also notify_retries and
# notify_backoff. docs/server.md documents every row (tests/test_config_errors.py).
_SERVER_KEYS: dict[str, Callable[[str], Any]] = {
    "db": _db,
    "line_listen": _listen,
    "tls_listen": _listen,
    "http_listen": _listen,
    "https_listen": _listen,
    "tls_cert": _optional,
    "tls_key": _optional,
    "idle_timeout": _duration,
    "max_connections": _positive,
    "max_connections_per_address": _positive,
    "max_pending_per_connection": _positive,
    "max_body": _positive,
    "max_ports_per_submission": _positive,
    "max_targets_per_account": _positive,
    "metrics_public": _metrics_public,
    "node": _node,
}
_AUDIT_KEYS: dict[str, Callable[[str], Any]] = {
    "interval": _duration,
    "jitter": _fraction,
    "first_probe_delay": _duration,
    "retry_interval": _duration,
    "retry_max": _duration,
    "concurrency": _positive,
    "probe_timeout": _duration,
    "lease": _lease,
    "grace": _duration,
    "failure_threshold": _positive,
    "warn": _threshold,
    "crit": _threshold,
    "warn_days": _bare_days,  # the old spelling of warn (and crit): a number of days
    "crit_days": _bare_days,
    "expiry_notices": _thresholds,
    "ca_file": _optional,
    "allow_networks": _networks_value,
    "resolve": _resolve_value,
    "vantage": _vantage,
    "vantages": _vantages,
    "vantage_silent": _lease,
    "history_keep": _count,  # 0 keeps every result
    "retire_after": _duration,  # 0 never retires
    "ari": _ari,
    "crl": _bool,
}
_SMTP_KEYS: dict[str, Callable[[str], Any]] = {
    "host": str.strip,
    "port": _port,
    "starttls": _bool,
    "ssl": _bool,
    "username": str.strip,
    "password": str.strip,
    "from": str.strip,
    "timeout": _duration,
    "ca_file": _optional,
}
_CHANNEL_KEYS: dict[str, Callable[[str], Any]] = {
    "email": _list,
    "webhook": _webhooks,
    "log": _bool,
}
_ACCOUNT_KEYS: dict[str, Callable[[str], Any]] = {
    **_CHANNEL_KEYS,
    "vantages": _vantages,  # overrides [audit] vantages for this account
}
_NOTIFY_KEYS: dict[str, Callable[[str], Any]] = {
    **_CHANNEL_KEYS,
    "retries": _count,
    "backoff": _duration,
    "group_window": _duration,
    "rate_limit": _rate,
    "remind": _duration,  # 0: never
}
_TARGET_KEYS: dict[str, Callable[[str], Any]] = {
    "vantages": _vantages,  # overrides its account's
}
ACCOUNT = "account NAME"  # the sections of many names: [account alice], ...
TARGET = "target NAME"  # [target www.example.org], [target mail.example.org:465/smtps]
SECTIONS: dict[str, dict[str, Callable[[str], Any]]] = {
    "server": _SERVER_KEYS,
    "audit": _AUDIT_KEYS,
    "smtp": _SMTP_KEYS,
    "notify": _NOTIFY_KEYS,
    ACCOUNT: _ACCOUNT_KEYS,
    TARGET: _TARGET_KEYS,
}
_FIELDS = {("smtp", "from"): "sender", ("notify", "retries"): "notify_retries",
           ("notify", "backoff"): "notify_backoff",
           ("notify", "group_window"): "notify_group_window",
           ("notify", "rate_limit"): "notify_rate_limit", ("notify", "remind"): "notify_remind",
           ("audit", "warn_days"): "warn",
           ("audit", "crit_days"): "crit"}
_SECRETS = {("smtp", "password")}  # never quoted in a message
_ALLOWED = {int: "a whole number", float: "a number"}


def _kind(section: str) -> str:
    """The entry of :data:`SECTIONS` for a section name (``account alice``: ACCOUNT)."""
    head, _, rest = section.partition(" ")
    if rest.strip() and head in ("account", "target"):
        return ACCOUNT if head == "account" else TARGET
    return section


def _read(ini: Ini, section: str) -> dict[str, Any]:
    """The values of one section, each read by its row; ParseError names the line."""
    table = SECTIONS[_kind(section)]
    out: dict[str, Any] = {}
    for key, text in ini[section].items():
        read = table.get(key)
        if read is None:
            continue  # warned about by unknown_names
        try:
            out[_FIELDS.get((section, key), key)] = read(text)
        except ValueError as exc:
            if (section, key) in _SECRETS:
                why = "is not allowed here (value not shown)"
            elif read in _ALLOWED:
                why = f"{text.strip()[:20]!r} is not {_ALLOWED[read]}"
            else:
                why = str(exc)
            raise ParseError(f"[{section}] {key}: {why}", ini.where(section, key)) from None
    return out


def _account(values: dict[str, Any], default: AccountNotify) -> AccountNotify:
    return AccountNotify(
        email=values.get("email") or default.email,
        webhook=values.get("webhook") or default.webhook,
        log=values.get("log", default.log),
    )


def load_config(path: str | os.PathLike[str] | None) -> ServerConfig:
    """The configuration in ``path`` over the defaults (just the defaults for None).

    A file that cannot be read raises :class:`LocalError`; one that does not
    parse, or a bad value, :class:`ParseError` naming the file, the line and
    the key (one line, never a secret). An unknown section or key is logged
    as a warning, with the nearest known name, and ignored.
    """
    if path is None:
        return ServerConfig()
    ini = read_ini(os.fspath(path))
    assert ini is not None  # required: a missing file raised
    for warning in unknown_names(ini, SECTIONS, _kind):
        _log.warning("%s", warning)
    values: dict[str, Any] = {}
    for section in ("server", "audit"):
        if section in ini:
            values.update(_read(ini, section))
    if "smtp" in ini:
        values["smtp"] = SmtpConfig(**_read(ini, "smtp"))
    default = AccountNotify()
    if "notify" in ini:
        notify = _read(ini, "notify")
        default = _account(notify, default)
        values.update({k: v for k, v in notify.items() if k.startswith("notify_")})
    values["notify_default"] = default
    accounts = {section.split(None, 1)[1].strip(): _read(ini, section)
                for section in ini if _kind(section) == ACCOUNT}
    values["accounts"] = {name: _account(read, default) for name, read in accounts.items()}
    values["account_vantages"] = {name: read["vantages"] for name, read in accounts.items()
                                  if "vantages" in read}
    targets = [(section, _read(ini, section)) for section in ini if _kind(section) == TARGET]
    values["target_vantages"] = tuple((_selector(ini, section), read["vantages"])
                                      for section, read in targets if "vantages" in read)
    return replace(ServerConfig(), **values)


def _selector(ini: Ini, section: str) -> Selector:
    """The target a ``[target NAME]`` section names; ParseError names its line."""
    from certhook.server.recheck import parse_selector

    try:
        return parse_selector(section.split(None, 1)[1])
    except ParseError as exc:
        raise ParseError(f"[{section}]: {exc.reason}", ini.where(section)) from None
