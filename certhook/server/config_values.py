"""How each value of the server's configuration file is read (``config.py``'s tables).

A reader takes the value's text and returns the value, or raises ValueError
saying what is allowed, in words for a one-line error naming the file, the
line and the key (``config._read``); never quoting a secret.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Union

from certhook.errors import ParseError, UsageError
from certhook.probe.lifetime import Threshold, parse_threshold, parse_thresholds

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*$")



def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``6h``, ``1d`` into seconds; UsageError if bad."""
    try:
        return duration(text)
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


def _networks_or_usage(text: str) -> tuple[Network, ...]:
    nets = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise UsageError(f"bad network {item!r} in allow_networks") from None
    return tuple(nets)


def resolve_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """``name=address, ...``: where the auditor connects for a name (as curl --resolve)."""
    pairs = []
    for item in words(text):
        name, sep, address = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            address = str(ipaddress.ip_address(address.strip("[]")))
        except ValueError:
            raise UsageError(f"bad entry {item!r} in resolve: want NAME=ADDRESS") from None
        pairs.append((name.lower().rstrip("."), address))
    return tuple(pairs)


def words(text: str) -> tuple[str, ...]:
    return tuple(item for item in re.split(r"[,\s]+", text.strip()) if item)




def duration(text: str) -> float:
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError(f"{text[:20]!r} is not a duration (e.g. 30s, 15m, 6h, 1d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def listen(text: str) -> tuple[str, int] | None:
    if text.strip().lower() in ("", "off", "no", "none"):
        return None
    try:
        return parse_hostport(text)
    except UsageError:
        raise ValueError(f"{text.strip()[:40]!r} is not HOST:PORT, [IPV6]:PORT or off") from None


def count(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"{text.strip()[:20]!r} is not a whole number, 0 or more")
    return int(text)


def positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"{text.strip()[:20]!r} is not a whole number, 1 or more")
    return int(text)


def port(text: str) -> int:
    if not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{text.strip()[:20]!r} is not a port number, 1 to 65535")
    return int(text)


def fraction(text: str) -> float:
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


def yes_no(text: str) -> bool:
    value = _BOOLEANS.get(text.strip().lower())
    if value is None:
        raise ValueError(f"{text.strip()[:20]!r} is not yes or no (or true/false, on/off, 1/0)")
    return value


def threshold(text: str) -> Threshold:
    try:
        return parse_threshold(text)
    except ParseError as exc:
        raise ValueError(str(exc)) from None


def bare_days(text: str) -> Threshold:
    return Threshold.days(count(text))


def thresholds(text: str) -> tuple[Threshold, ...]:
    try:
        return parse_thresholds(text)
    except ParseError as exc:
        raise ValueError(f"{text.strip()[:40]!r} is not a list of thresholds"
                         f" (e.g. 23.33%, 7.78%, 1.11% or 21, 7, 1): {exc}") from None


def metrics_public(text: str) -> str:
    value = text.strip().lower()
    if value not in ("no", "loopback"):
        raise ValueError(f"{text.strip()[:20]!r} is not no or loopback")
    return value


def node(text: str) -> str:
    """A node name: up to 100 printable characters without spaces (it is in logs)."""
    value = text.strip()
    if len(value) > 100 or not re.fullmatch(r"[\x21-\x7e]*", value):
        raise ValueError(f"{value[:20]!r} is not a node name (printable, no spaces,"
                         " up to 100 characters)")
    return value


def lease(text: str) -> float:
    value = duration(text)
    if value < 1:
        raise ValueError(f"{text.strip()[:20]!r} is shorter than one second")
    return value


_VANTAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,39}")


def vantage(text: str) -> str:
    """A vantage name: letters, digits, dots and dashes, up to 40 (``eu-west``)."""
    value = text.strip()
    if value and not _VANTAGE.fullmatch(value):
        raise ValueError(f"{value[:20]!r} is not a vantage name (letters, digits, . and -,"
                         " up to 40 characters)")
    return value


def vantages(text: str) -> tuple[str, ...]:
    """``eu-west, us-east``; ``none``: probed from any node, once."""
    if text.strip().lower() in ("", "none", "off"):
        return ()
    names = tuple(dict.fromkeys(vantage(name) for name in words(text)))
    if len(names) > 16:
        raise ValueError("more than 16 vantages")
    return names


def optional(text: str) -> str | None:
    return text.strip() or None


def networks(text: str) -> tuple[Network, ...]:
    try:
        return _networks_or_usage(text)
    except UsageError as exc:
        raise ValueError(str(exc)) from None


def ari(text: str) -> tuple[tuple[str, str], ...] | None:
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


def resolve(text: str) -> tuple[tuple[str, str], ...]:
    try:
        return resolve_pairs(text)
    except UsageError as exc:
        raise ValueError(str(exc)) from None


def db(text: str) -> str:
    """A database: a path, ``sqlite:///PATH`` or ``postgresql://...`` (never quoted with
    its password)."""
    from certhook.server.store.dburl import parse

    try:
        parse(text)
    except ParseError as exc:
        raise ValueError(exc.reason) from None
    return text.strip()


def webhooks(text: str) -> tuple[str, ...]:
    """``URL`` (plain JSON) or ``FORMAT+URL`` (``slack+https://...``), comma-separated."""
    from certhook.server.channels import parse_webhook

    for item in words(text):
        parse_webhook(item)
    return words(text)


def rate(text: str) -> tuple[int, float]:
    """``10/1h``: at most 10 messages a channel per hour; ``0`` or ``off``: no limit."""
    if text.strip().lower() in ("0", "off", "no", "none"):
        return (0, 3600.0)
    count, slash, period = text.partition("/")
    try:
        if not slash or not count.strip().isdigit() or int(count) < 1:
            raise ValueError
        seconds = duration(period if period.strip()[:1].isdigit() else f"1{period.strip()}")
        if seconds <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"{text.strip()[:20]!r} is not COUNT/DURATION"
                         " (e.g. 10/1h, 30/d) or off") from None
    return (int(count), seconds)
