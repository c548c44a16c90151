"""The audit server's configuration: an INI file, command-line overrides, defaults.

The file has a ``[server]`` section (database, listeners, limits), an
``[audit]`` section (probing schedule, thresholds, the SSRF allow-list),
an ``[smtp]`` section (the mail relay notifications go through), a
``[notify]`` section (defaults for every account) and one
``[account NAME]`` section per account that wants email or a webhook.
Everything has a default; ``docs/server.md`` documents each key.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Union

from certhook.errors import UsageError

__all__ = [
    "DEFAULT_DB",
    "AccountNotify",
    "ServerConfig",
    "SmtpConfig",
    "load_config",
    "parse_duration",
    "parse_hostport",
]

DEFAULT_DB = "/var/lib/certhook/certhook.db"

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``6h``, ``1d`` into seconds; UsageError if bad."""
    match = _DURATION.match(text.lower())
    if not match:
        raise UsageError(f"bad duration {text!r} (use e.g. 30s, 15m, 6h, 1d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


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
    idle_timeout: float = 60.0
    max_connections: int = 4096
    max_connections_per_address: int = 4096
    max_pending_per_connection: int = 64
    max_body: int = 64 * 1024
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
    grace: float = 300.0
    failure_threshold: int = 2
    warn_days: int = 21
    crit_days: int = 7
    expiry_notices: tuple[int, ...] = (21, 7, 1)
    ca_file: str | None = None
    allow_networks: tuple[Network, ...] = ()
    # name -> address to connect to instead of resolving the name (SNI and the
    # name check still use the name); the SSRF guard checks the address.
    resolve: tuple[tuple[str, str], ...] = ()
    history_keep: int = 500
    # notifications
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    notify_default: AccountNotify = field(default_factory=AccountNotify)
    accounts: dict[str, AccountNotify] = field(default_factory=dict)
    notify_retries: int = 8
    notify_backoff: float = 30.0

    def notify_for(self, account: str) -> AccountNotify:
        return self.accounts.get(account, self.notify_default)

    def with_overrides(self, **changes: Any) -> ServerConfig:
        """A copy with the given fields replaced; ``None`` values are ignored."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_SERVER_KEYS = {
    "db": str,
    "idle_timeout": parse_duration,
    "max_connections": int,
    "max_connections_per_address": int,
    "max_pending_per_connection": int,
    "max_body": int,
    "tls_cert": str,
    "tls_key": str,
}
_AUDIT_KEYS = {
    "interval": parse_duration,
    "jitter": float,
    "first_probe_delay": parse_duration,
    "retry_interval": parse_duration,
    "retry_max": parse_duration,
    "concurrency": int,
    "probe_timeout": parse_duration,
    "grace": parse_duration,
    "failure_threshold": int,
    "warn_days": int,
    "crit_days": int,
    "ca_file": str,
    "history_keep": int,
}


def _convert(section: configparser.SectionProxy, table: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in section.items():
        if key in table:
            try:
                out[key] = table[key](value)
            except ValueError:
                raise UsageError(f"[{section.name}] {key}: bad value {value!r}") from None
    return out


def _notify(section: configparser.SectionProxy, default: AccountNotify) -> AccountNotify:
    return AccountNotify(
        email=_list(section.get("email", "")) or default.email,
        webhook=_list(section.get("webhook", "")) or default.webhook,
        log=section.getboolean("log", default.log),
    )


def load_config(path: str | os.PathLike[str] | None) -> ServerConfig:
    """The configuration in ``path`` over the defaults (just the defaults for None)."""
    if path is None:
        return ServerConfig()
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise UsageError(f"{path}: {exc}") from None
    values: dict[str, Any] = {}
    if parser.has_section("server"):
        server = parser["server"]
        values.update(_convert(server, _SERVER_KEYS))
        for key in ("line_listen", "tls_listen", "http_listen"):
            if key in server:
                text = server[key].strip()
                values[key] = None if text in ("", "off", "no") else parse_hostport(text)
    if parser.has_section("audit"):
        audit = parser["audit"]
        values.update(_convert(audit, _AUDIT_KEYS))
        if "allow_networks" in audit:
            values["allow_networks"] = _networks(audit["allow_networks"])
        if "resolve" in audit:
            values["resolve"] = _resolve(audit["resolve"])
        if "expiry_notices" in audit:
            try:
                values["expiry_notices"] = tuple(
                    sorted({int(x) for x in _list(audit["expiry_notices"])}, reverse=True)
                )
            except ValueError:
                raise UsageError("[audit] expiry_notices: not a list of day counts") from None
    if parser.has_section("smtp"):
        s = parser["smtp"]
        values["smtp"] = SmtpConfig(
            host=s.get("host", ""),
            port=s.getint("port", 25),
            starttls=s.getboolean("starttls", True),
            ssl=s.getboolean("ssl", False),
            username=s.get("username", ""),
            password=s.get("password", ""),
            sender=s.get("from", SmtpConfig.sender),
            timeout=parse_duration(s.get("timeout", "30")),
            ca_file=s.get("ca_file") or None,
        )
    default = AccountNotify()
    if parser.has_section("notify"):
        default = _notify(parser["notify"], default)
        values["notify_retries"] = parser["notify"].getint("retries", 8)
        values["notify_backoff"] = parse_duration(parser["notify"].get("backoff", "30"))
    values["notify_default"] = default
    values["accounts"] = {
        name.split(None, 1)[1].strip(): _notify(parser[name], default)
        for name in parser.sections()
        if name.startswith("account ") and name.split(None, 1)[1:]
    }
    return replace(ServerConfig(), **values)
