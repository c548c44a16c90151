"""The I/O of a probe: resolve, connect, STARTTLS, one TLS handshake, under a deadline.

Every step runs against one monotonic deadline: name resolution in a helper
thread that is abandoned at the deadline, the connect with a socket timeout,
the handshake on a non-blocking socket so that a peer trickling one byte at
a time cannot stretch it. OS and TLS errors become :class:`RemoteError`
(or :class:`RemoteTimeout`) here, once.

The client context is an auditor's, not a browser's: it accepts anything a
server may present (RSA-1024, SHA-1, TLS 1.0, servers without RFC 5746),
because a weak certificate must be seen and reported, not fail to connect.
OpenSSL bounds what a server can make it read: the certificate message is
capped by its ``max_cert_list`` (100 KiB by default), and certhook parses at
most :data:`MAX_CHAIN` certificates of it.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from certhook.errors import LocalError, RemoteError, RemoteTimeout

if TYPE_CHECKING:
    from certhook.probe.targets import Target

__all__ = [
    "MAX_ADDRESSES", "MAX_CHAIN", "AddressRefused", "Handshake", "VerifyFailed", "handshake",
    "resolve", "tls_context",
]

#: The most certificates of a served chain that are kept and parsed.
MAX_CHAIN = 16
#: The most addresses of one name that are probed: a name with hundreds of
#: A records must not turn one target into hundreds of handshakes.
MAX_ADDRESSES = 16

# X509_V_FLAG_NO_CHECK_TIME (OpenSSL 1.1.0+, x509_vfy.h): verify the chain
# without looking at the clock. "Trusted" then means "chains to a trusted
# root"; expiry is judged by the probe's own day count, so an expired
# certificate from a trusted CA is reported as expired, not as untrusted.
_NO_CHECK_TIME = 0x200000
# SSL_OP_LEGACY_SERVER_CONNECT: still talk to servers without RFC 5746.
_LEGACY_SERVER_CONNECT = getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)

_Sockaddr = tuple[Any, ...]
_Address = tuple[int, _Sockaddr]


class AddressRefused(RemoteError):
    """``allow_address`` refused every address there was to connect to."""


class VerifyFailed(RemoteError):
    """The served chain did not verify; the handshake was aborted."""

    def __init__(self, code: int, message: str, address: str) -> None:
        self.code = code
        self.message = message
        self.address = address
        super().__init__(f"certificate verify failed: {message}")


@dataclass(frozen=True)
class Handshake:
    """What one completed handshake showed.

    ``chain`` is what the server sent, leaf first, in its order (only the
    leaf on Python 3.9, where ``chain_sent`` is False); ``verified`` the
    chain OpenSSL built to a trust anchor, when the context verified and
    the interpreter exposes it (3.10+).
    """

    address: str
    chain: tuple[bytes, ...]
    chain_sent: bool
    chain_truncated: bool
    verified: tuple[bytes, ...] | None
    tls_version: str | None
    cipher: str | None


_contexts: dict[tuple[bool, str | None], ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def tls_context(verify: bool, ca_file: str | None = None) -> ssl.SSLContext:
    """The shared client context: verifying (to ``ca_file`` or the system roots) or not.

    Raises :class:`LocalError` when ``ca_file`` cannot be loaded.
    """
    key = (verify, ca_file)
    with _contexts_lock:
        context = _contexts.get(key)
        if context is None:
            context = _contexts[key] = _new_context(verify, ca_file)
        return context


def _new_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the probe checks names itself, RFC 6125 rules
    if verify:
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            if ca_file:
                context.load_verify_locations(cafile=ca_file)
            else:
                context.load_default_certs()
        except (OSError, ssl.SSLError) as exc:
            where = ca_file or "system CA store"
            raise LocalError(f"{where}: cannot load CA certificates: {_reason(exc)}") from None
        try:
            context.verify_flags |= _NO_CHECK_TIME
        except (ValueError, ssl.SSLError):  # pragma: no cover - a TLS library without it
            pass
    else:
        context.verify_mode = ssl.CERT_NONE
    # Security level 0: weak keys and signatures must still connect.
    context.set_ciphers("ALL:!aNULL:@SECLEVEL=0")
    with warnings.catch_warnings():  # Python 3.10+ deprecates naming TLS 1.0
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            context.minimum_version = ssl.TLSVersion.TLSv1
        except (ValueError, ssl.SSLError):  # pragma: no cover - a build without TLS 1.0
            pass
    context.options |= _LEGACY_SERVER_CONNECT | getattr(ssl, "OP_NO_TICKET", 0)
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def _remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise RemoteTimeout(f"timed out {what}")
    return left


def _resolve(host: str, port: int, deadline: float) -> list[_Address]:
    """getaddrinfo, but never past the deadline (a stuck resolver is abandoned)."""
    if "%" not in host:  # an address (the one of an earlier lookup): no lookup at all
        try:
            socket.inet_pton(socket.AF_INET6, host)
            return [(socket.AF_INET6, (host, port, 0, 0))]
        except OSError:
            pass
        try:
            socket.inet_pton(socket.AF_INET, host)
            return [(socket.AF_INET, (host, port))]
        except OSError:
            pass
    flags = 0
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.split("%")[0])
        flags = socket.AI_NUMERICHOST
    except OSError:
        pass
    outcome: list[Any] = []

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=flags
            ))
        except (OSError, UnicodeError) as exc:
            outcome.append(exc)

    if flags:
        lookup()
    else:
        worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
        worker.start()
        worker.join(_remaining(deadline, f"resolving {host}"))
        if not outcome:
            raise RemoteTimeout(f"timed out resolving {host}")
    found = outcome[0]
    if isinstance(found, BaseException):
        raise RemoteError(f"cannot resolve {host}: {_reason(found)}")
    addresses: list[_Address] = []
    for family, _type, _proto, _name, sockaddr in found:
        if (family, sockaddr) not in addresses and family in (socket.AF_INET, socket.AF_INET6):
            addresses.append((family, sockaddr))
    if not addresses:
        raise RemoteError(f"cannot resolve {host}: no IPv4 or IPv6 address")
    return addresses


def resolve(host: str, port: int, deadline: float) -> list[str]:
    """The IPv4 and IPv6 addresses of ``host``, in the resolver's order (RFC 6724),
    each once, at most :data:`MAX_ADDRESSES`; :class:`RemoteError` if none."""
    found = [
        # a link-local IPv6 address keeps its zone (scope id), or it cannot be reached
        f"{sockaddr[0]}%{sockaddr[3]}" if len(sockaddr) > 3 and sockaddr[3] else str(sockaddr[0])
        for _family, sockaddr in _resolve(host, port, deadline)
    ]
    return list(dict.fromkeys(found))[:MAX_ADDRESSES]


def _connect(
    target: Target,
    deadline: float,
    allow_address: Callable[[str], bool] | None,
    only: str | None,
) -> tuple[socket.socket, str]:
    """A connected socket to the first address that answers (``only``, if given)."""
    # The second handshake goes to the address of the first: no second lookup.
    addresses = _resolve(only or target.host, target.port, deadline)
    refused: list[str] = []
    errors: list[str] = []
    for index, (family, sockaddr) in enumerate(addresses):
        ip = str(sockaddr[0])
        if allow_address is not None and not allow_address(ip):
            refused.append(ip)
            continue
        left = _remaining(deadline, f"connecting to {ip}")
        # Leave time for the other addresses: one that drops SYNs must not eat it all.
        budget = left if index == len(addresses) - 1 else max(left / (len(addresses) - index), 1)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(min(budget, left))
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            errors.append(_connect_error(exc, ip))
            continue
        return sock, ip
    if errors:
        raise (RemoteTimeout if errors[-1].startswith("timed out") else RemoteError)(errors[-1])
    raise AddressRefused(f"address not allowed: {', '.join(refused)}")


def _connect_error(exc: OSError, ip: str) -> str:
    if isinstance(exc, socket.timeout):
        return f"timed out connecting to {ip}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {ip}"
    return f"cannot connect to {ip}: {_reason(exc)}"


def _wait(selector: selectors.BaseSelector, sock: ssl.SSLSocket, event: int, deadline: float,
          ip: str) -> None:
    selector.modify(sock, event)
    if not selector.select(_remaining(deadline, f"in the TLS handshake with {ip}")):
        raise RemoteTimeout(f"timed out in the TLS handshake with {ip}")


def _tls_handshake(
    sock: socket.socket, context: ssl.SSLContext, sni: str | None, deadline: float, ip: str
) -> ssl.SSLSocket:
    sock.setblocking(False)
    try:
        tls = context.wrap_socket(sock, server_hostname=sni, do_handshake_on_connect=False)
    except (ValueError, UnicodeError) as exc:  # a server name the IDNA codec refuses
        sock.close()
        raise RemoteError(f"cannot use {sni!r} as server name: {exc}") from None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(tls, selectors.EVENT_READ)
            while True:
                try:
                    tls.do_handshake()
                    return tls
                except ssl.SSLWantReadError:
                    _wait(selector, tls, selectors.EVENT_READ, deadline, ip)
                except ssl.SSLWantWriteError:
                    _wait(selector, tls, selectors.EVENT_WRITE, deadline, ip)
    except ssl.SSLCertVerificationError as exc:
        tls.close()
        code = int(getattr(exc, "verify_code", 0) or 0)
        raise VerifyFailed(code, str(getattr(exc, "verify_message", "") or exc), ip) from None
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError):
        tls.close()
        raise RemoteError(f"{ip} closed the connection during the TLS handshake") from None
    except ssl.SSLError as exc:
        tls.close()
        reason = _reason(exc)
        hint = " (not TLS: does this port need --starttls?)" if "wrong version" in reason \
            or "packet length too long" in reason or "record layer failure" in reason else ""
        raise RemoteError(f"TLS handshake with {ip} failed: {reason}{hint}") from None
    except OSError as exc:
        tls.close()
        raise RemoteError(f"TLS handshake with {ip} failed: {_reason(exc)}") from None
    except BaseException:
        tls.close()
        raise


def _chain(tls: ssl.SSLSocket, accessor: str) -> list[bytes] | None:
    """A chain through the 3.13 public accessor or the 3.10-3.12 ``_sslobj`` one."""
    getter = getattr(tls, accessor, None)  # 3.13+: returns DER bytes
    if getter is None:
        getter = getattr(getattr(tls, "_sslobj", None), accessor, None)
    if getter is None:
        return None
    items = getter() or []
    encoding_der = getattr(sys.modules.get("_ssl"), "ENCODING_DER", 2)
    return [item if isinstance(item, bytes) else item.public_bytes(encoding_der)
            for item in items]


def handshake(
    target: Target,
    context: ssl.SSLContext,
    deadline: float,
    allow_address: Callable[[str], bool] | None = None,
    address: str | None = None,
) -> Handshake:
    """Connect (to ``address`` only, if given), run STARTTLS if needed, handshake.

    Raises :class:`VerifyFailed` when ``context`` verifies and the chain
    does not, :class:`RemoteError` for every other fault of the peer.
    """
    sock, ip = _connect(target, deadline, allow_address, address)
    try:
        if target.protocol != "tls":
            from certhook.probe.starttls import negotiate

            sock.settimeout(_remaining(deadline, f"in the {target.protocol} dialogue with {ip}"))
            host = f"[{ip}]" if ":" in ip else ip
            negotiate(sock, target.protocol, target.servername or target.host, deadline,
                      f"{host}:{target.port}")
        tls = _tls_handshake(sock, context, target.sni, deadline, ip)
    except BaseException:
        sock.close()
        raise
    try:
        sent = _chain(tls, "get_unverified_chain")
        chain_sent = sent is not None
        if sent is None:  # Python 3.9: the leaf alone
            leaf = tls.getpeercert(binary_form=True)
            sent = [leaf] if leaf else []
        verified = _chain(tls, "get_verified_chain") if context.verify_mode else None
        cipher = tls.cipher()
        return Handshake(
            address=ip,
            chain=tuple(sent[:MAX_CHAIN]),
            chain_sent=chain_sent,
            chain_truncated=len(sent) > MAX_CHAIN,
            verified=tuple(verified[:MAX_CHAIN]) if verified is not None else None,
            tls_version=tls.version(),
            cipher=cipher[0] if cipher else None,
        )
    finally:
        tls.close()

