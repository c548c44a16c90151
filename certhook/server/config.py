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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Union

from certhook.client.ini import Ini, read_ini, unknown_names
from certhook.errors import ParseError
from certhook.probe.lifetime import (
    DEFAULT_CRIT,
    DEFAULT_NOTICES,
    DEFAULT_WARN,
    Threshold,
)
from certhook.server import config_values as v
from certhook.server.config_values import parse_duration, parse_hostport

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

_log = logging.getLogger("certhook.server.config")

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


# What the file may hold: [section] -> {key -> how its value is read}. A reader
# returns the value or raises ValueError saying what is allowed (a builtin
# like int or float gets the words of _ALLOWED). These rows are also the keys
# certhook serve knows and warns about (nearest name): one row adds a key,
# read and known. A key of [server] or [audit] sets the ServerConfig field of
# its name; [smtp] the SmtpConfig field (_FIELDS renames); [notify] and
# [account NAME] an AccountNotify, [notify] also notify_retries and
# notify_backoff. docs/server.md documents every row (tests/test_config_errors.py).
_SERVER_KEYS: dict[str, Callable[[str], Any]] = {
    "db": v.db,
    "line_listen": v.listen,
    "tls_listen": v.listen,
    "http_listen": v.listen,
    "https_listen": v.listen,
    "tls_cert": v.optional,
    "tls_key": v.optional,
    "idle_timeout": v.duration,
    "max_connections": v.positive,
    "max_connections_per_address": v.positive,
    "max_pending_per_connection": v.positive,
    "max_body": v.positive,
    "max_ports_per_submission": v.positive,
    "max_targets_per_account": v.positive,
    "metrics_public": v.metrics_public,
    "node": v.node,
}
_AUDIT_KEYS: dict[str, Callable[[str], Any]] = {
    "interval": v.duration,
    "jitter": v.fraction,
    "first_probe_delay": v.duration,
    "retry_interval": v.duration,
    "retry_max": v.duration,
    "concurrency": v.positive,
    "probe_timeout": v.duration,
    "lease": v.lease,
    "grace": v.duration,
    "failure_threshold": v.positive,
    "warn": v.threshold,
    "crit": v.threshold,
    "warn_days": v.bare_days,  # the old spelling of warn (and crit): a number of days
    "crit_days": v.bare_days,
    "expiry_notices": v.thresholds,
    "ca_file": v.optional,
    "allow_networks": v.networks,
    "resolve": v.resolve,
    "vantage": v.vantage,
    "vantages": v.vantages,
    "vantage_silent": v.lease,
    "history_keep": v.count,  # 0 keeps every result
    "retire_after": v.duration,  # 0 never retires
    "ari": v.ari,
    "crl": v.yes_no,
}
_SMTP_KEYS: dict[str, Callable[[str], Any]] = {
    "host": str.strip,
    "port": v.port,
    "starttls": v.yes_no,
    "ssl": v.yes_no,
    "username": str.strip,
    "password": str.strip,
    "from": str.strip,
    "timeout": v.duration,
    "ca_file": v.optional,
}
_CHANNEL_KEYS: dict[str, Callable[[str], Any]] = {
    "email": v.words,
    "webhook": v.webhooks,
    "log": v.yes_no,
}
_ACCOUNT_KEYS: dict[str, Callable[[str], Any]] = {
    **_CHANNEL_KEYS,
    "vantages": v.vantages,  # overrides [audit] vantages for this account
}
_NOTIFY_KEYS: dict[str, Callable[[str], Any]] = {
    **_CHANNEL_KEYS,
    "retries": v.count,
    "backoff": v.duration,
    "group_window": v.duration,
    "rate_limit": v.rate,
    "remind": v.duration,  # 0: never
}
_TARGET_KEYS: dict[str, Callable[[str], Any]] = {
    "vantages": v.vantages,  # overrides its account's
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
