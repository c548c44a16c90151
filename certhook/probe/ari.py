"""ACME Renewal Information (ARI, RFC 9773): when the CA wants a certificate replaced.

A CA that plans to revoke certificates (a mis-issuance, a key compromise)
moves their renewal window forward; ACME clients that follow ARI (certbot
4.1+) then renew early. certhook asks the same question from outside: the
ACME directory's ``renewalInfo`` URL (RFC 9773 section 3), then
``GET renewalInfo/CERT-ID`` (section 4.1), whose JSON gives the
``suggestedWindow`` ``{start, end}`` and, optionally, an ``explanationURL``
(section 4.2).

The pure part (certificate ID, directory and response parsers, the
findings of a window, ``Retry-After``) takes bytes and values; :func:`lookup`
does the two fetches (``fetch.get``: size and time caps, the SSRF guard)
and keeps an in-memory cache per certificate ID, for the life of the
process: the probe CLI fetches once, the audit server's process keeps
windows between probes and asks again when the CA's ``Retry-After`` says.
A CA that is down, answers 404, sends malformed JSON or is slow yields an
unknown ARI status: no finding, ``ari_window`` null and a note saying why.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Callable

from certhook import _der
from certhook.errors import ParseError, RemoteError

if TYPE_CHECKING:
    from certhook.x509 import Certificate

__all__ = [
    "AriCache", "AriStatus", "Window", "cert_id", "lookup", "parse_directory",
    "parse_renewal_info", "retry_after", "window_findings",
]

MAX_BODY = 64 * 1024  # a directory or a renewalInfo reply is a few hundred bytes
_MAX_URL = 512
# RFC 9773 4.3: poll again after Retry-After, which a client may clamp (the
# RFC's example: under a minute as a minute, over a day as a day); without
# one, six hours. A failed lookup is tried again after an hour.
_MIN_RETRY, _MAX_RETRY, _DEFAULT_RETRY, _ERROR_RETRY = 60.0, 86400.0, 21600.0, 3600.0
_DIRECTORY_TTL = 86400.0
_MAX_ENTRIES = 100_000
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)\Z")


@dataclass(frozen=True)
class Window:
    """A ``suggestedWindow``, aware datetimes, and the CA's ``explanationURL`` if any."""

    start: datetime
    end: datetime
    explanation_url: str | None = None


@dataclass(frozen=True)
class AriStatus:
    """The outcome of a lookup: a window, or why there is none (``error``)."""

    window: Window | None
    error: str | None = None


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _serial_content(der: bytes) -> bytes:
    """The content octets of the serialNumber INTEGER, as encoded (not re-encoded)."""
    _, start, end = _der.expect(der, 0, len(der), _der.SEQUENCE, "Certificate")
    _, pos, tbs_end = _der.expect(der, start, end, _der.SEQUENCE, "tbsCertificate")
    tag, value, item_end = _der.read_tlv(der, pos, tbs_end)
    if tag == 0xA0:  # version [0] EXPLICIT
        tag, value, item_end = _der.read_tlv(der, item_end, tbs_end)
    if tag != _der.INTEGER or value == item_end:
        raise ParseError("certificate has no serialNumber")
    return der[value:item_end]


def cert_id(cert: Certificate) -> str:
    """The ARI certificate identifier (RFC 9773 4.1).

    base64url (unpadded) of the keyIdentifier of the authorityKeyIdentifier,
    a dot, base64url of the content octets of the DER serialNumber (leading
    zero included). ParseError for a certificate without an AKI keyIdentifier.
    """
    aki = cert.authority_key_identifier
    if not aki:
        raise ParseError("no authority key identifier: the certificate has no ARI identity")
    return f"{_b64url(aki)}.{_b64url(_serial_content(cert.der))}"


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ParseError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise ParseError(f"{what} is not a JSON object")
    return value


def _url(value: object, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_URL or not value.isascii() \
            or not value.isprintable() or " " in value \
            or not value.lower().startswith(("https://", "http://")):
        raise ParseError(f"{what} is not an http(s) URL")
    return value


def parse_directory(body: bytes) -> str:
    """The ``renewalInfo`` URL of an ACME directory (RFC 8555 7.1.1, RFC 9773 3)."""
    directory = _json_object(body, "ACME directory")
    if "renewalInfo" not in directory:
        raise ParseError("the ACME directory has no renewalInfo: the CA does not offer ARI")
    return _url(directory["renewalInfo"], "renewalInfo")


def _parse_time(value: object, what: str) -> datetime:
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise ParseError(f"{what} is not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    zone = match.group(8)
    offset = timedelta(0) if zone in "Zz" else (
        (1 if zone[0] == "+" else -1) * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    if not timedelta(hours=-24) < offset < timedelta(hours=24):
        raise ParseError(f"{what} has a bad offset")
    try:
        naive = datetime(year, month, day, hour, minute, min(second, 59))  # a leap second
        return (naive - offset).replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):  # 2026-02-30; 0001-01-01T00:00+01:00
        raise ParseError(f"{what} is not a valid date") from None


def parse_renewal_info(body: bytes) -> Window:
    """A renewalInfo response (RFC 9773 4.2) into a :class:`Window`.

    ``suggestedWindow`` with ``start`` before ``end`` is required (4.2:
    a window whose end is not after its start is invalid); an
    ``explanationURL`` that is not a plain http(s) URL is dropped, not shown.
    """
    info = _json_object(body, "renewalInfo response")
    window = info.get("suggestedWindow")
    if not isinstance(window, dict):
        raise ParseError("renewalInfo response has no suggestedWindow object")
    start = _parse_time(window.get("start"), "suggestedWindow.start")
    end = _parse_time(window.get("end"), "suggestedWindow.end")
    if not start < end:
        raise ParseError("suggestedWindow ends before it starts")
    try:
        explanation: str | None = _url(info.get("explanationURL"), "explanationURL")
    except ParseError:
        explanation = None
    return Window(start, end, explanation)


def retry_after(value: str | None, now: datetime) -> float:
    """Seconds until the next lookup: ``Retry-After`` (seconds or an HTTP date), clamped."""
    if value is None:
        return _DEFAULT_RETRY
    value = value.strip()
    if value.isdigit():
        seconds = float(int(value[:12]))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return _DEFAULT_RETRY
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - now).total_seconds()
    return min(max(seconds, _MIN_RETRY), _MAX_RETRY)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def window_findings(window: Window, now: datetime) -> list[tuple[str, str]]:
    """``(severity, text)`` for the served certificate's window: nothing before it
    starts, a warning inside it, critical once it has ended."""
    if now < window.start:
        return []
    text = f"the CA asks for renewal between {_when(window.start)} and {_when(window.end)}"
    if window.explanation_url:
        text += f" ({window.explanation_url})"
    if now < window.end:
        return [("warning", text)]
    return [("critical", f"{text}: the window has passed")]


class AriCache:
    """Windows per certificate ID and renewalInfo URLs per directory, in memory.

    Thread-safe; an entry is reused until the time ``Retry-After`` gave (a
    failure: an hour), so a CA is asked at most that often per certificate.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], tuple[float, AriStatus]] = {}
        self._directories: dict[str, tuple[float, str]] = {}

    def window(self, key: tuple[str, str], clock: float) -> AriStatus | None:
        with self._lock:
            entry = self._windows.get(key)
            return entry[1] if entry is not None and entry[0] > clock else None

    def keep(self, key: tuple[str, str], until: float, status: AriStatus) -> None:
        with self._lock:
            if len(self._windows) >= _MAX_ENTRIES:  # a bound on memory: drop stale ones
                now = self.clock()
                self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
            self._windows[key] = (until, status)

    def directory(self, url: str, clock: float) -> str | None:
        with self._lock:
            entry = self._directories.get(url)
            return entry[1] if entry is not None and entry[0] > clock else None

    def keep_directory(self, url: str, until: float, renewal_info: str) -> None:
        with self._lock:
            self._directories[url] = (until, renewal_info)


#: The process's cache (the probe CLI and each audit server process).
CACHE = AriCache()


def lookup(
    cert: Certificate,
    directory_url: str,
    *,
    now: datetime,
    timeout: float,
    allow_address: Callable[[str], bool] | None = None,
    cache: AriCache = CACHE,
) -> AriStatus:
    """The renewal window the CA at ``directory_url`` suggests for ``cert``.

    Never raises for a fault of the CA: the status then has ``error`` set.
    Both fetches share ``timeout`` seconds.
    """
    from certhook.probe.fetch import get

    try:
        identifier = cert_id(cert)
    except ParseError as exc:
        return AriStatus(None, exc.reason)
    clock = cache.clock()
    key = (directory_url, identifier)
    cached = cache.window(key, clock)
    if cached is not None:
        return cached
    deadline = time.monotonic() + timeout
    try:
        base = cache.directory(directory_url, clock)
        if base is None:
            reply = get(directory_url, timeout=timeout, max_bytes=MAX_BODY,
                        accept="application/json", allow_address=allow_address)
            if reply.status != 200:
                raise RemoteError(f"the ACME directory answered HTTP {reply.status}")
            base = parse_directory(reply.body)
            cache.keep_directory(directory_url, clock + _DIRECTORY_TTL, base)
        reply = get(f"{base.rstrip('/')}/{identifier}",
                    timeout=max(deadline - time.monotonic(), 0.001), max_bytes=MAX_BODY,
                    accept="application/json", allow_address=allow_address)
        if reply.status != 200:
            raise RemoteError(f"renewalInfo answered HTTP {reply.status}")
        status = AriStatus(parse_renewal_info(reply.body))
        wait = retry_after(reply.headers.get("retry-after"), now)
    except (RemoteError, ParseError) as exc:
        status = AriStatus(None, str(exc))
        wait = _ERROR_RETRY
    cache.keep(key, clock + wait, status)
    return status
