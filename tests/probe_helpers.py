"""Certificates minted with cryptography, and loopback servers that serve them.

For the probe tests and the benchmark. Every server listens on 127.0.0.1 or
::1 only.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

NOW = dt.datetime.now(dt.timezone.utc)
DAY = dt.timedelta(days=1)


def new_key(key_type: str) -> Any:
    if key_type.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    if key_type == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(key_type)


@functools.cache
def leaf_key(key_type: str) -> Any:
    """One key per type for all leaves: RSA-4096 takes a while to make."""
    return new_key(key_type)


def _pem_key(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class Issued:
    cert: x509.Certificate
    key: Any
    issuer: CA | None = None

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _pem_key(self.key)

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()


def _name(common_name: str | None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certhook tests")]
    if common_name:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _build(subject: x509.Name, issuer_name: x509.Name, public_key: Any, signing_key: Any,
           *, is_ca: bool, names: tuple[str, ...], not_before: dt.datetime,
           not_after: dt.datetime, issuer_public: Any, sig_hash: Any) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),
                       critical=False)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False), critical=True)
    if names:
        general: list[x509.GeneralName] = []
        for item in names:
            try:
                general.append(x509.IPAddress(ipaddress.ip_address(item)))
            except ValueError:
                general.append(x509.DNSName(item))
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    if not is_ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else sig_hash
    return builder.sign(signing_key, algorithm)


class CA:
    """A root (or, with ``parent``, an intermediate) that issues test certificates."""

    def __init__(self, name: str = "certhook test root", parent: CA | None = None,
                 not_after: dt.datetime | None = None) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(name)
        self.parent = parent
        signer = parent.key if parent else self.key
        self.cert = _build(
            self.name, parent.name if parent else self.name, self.key.public_key(), signer,
            is_ca=True, names=(), not_before=NOW - 30 * DAY,
            not_after=not_after or NOW + 3650 * DAY,
            issuer_public=(parent.key if parent else self.key).public_key(),
            sig_hash=hashes.SHA256(),
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def intermediate(self, name: str = "certhook test intermediate", **kwargs: Any) -> CA:
        return CA(name, parent=self, **kwargs)

    def chain_pems(self) -> list[bytes]:
        """This CA's certificate and its parents', up to but not including the root."""
        pems, ca = [], self
        while ca.parent is not None:
            pems.append(ca.pem)
            ca = ca.parent
        return pems

    def issue(self, *names: str, key_type: str = "ec256", cn: str | None = "",
              not_before: dt.datetime | None = None, days: float = 90,
              not_after: dt.datetime | None = None, sig_hash: Any = None,
              fresh_key: bool = False) -> Issued:
        key = new_key(key_type) if fresh_key else leaf_key(key_type)
        common_name = (names[0] if names else None) if cn == "" else cn
        cert = _build(
            _name(common_name), self.name, key.public_key(), self.key, is_ca=False,
            names=names, not_before=not_before or NOW - DAY,
            not_after=not_after or NOW + dt.timedelta(days=days, hours=1),
            issuer_public=self.key.public_key(), sig_hash=sig_hash or hashes.SHA256(),
        )
        return Issued(cert, key, self)


def openssl_issue(ca: CA, name: str, digest: str = "sha1") -> Issued:
    """A leaf signed with ``digest`` by the openssl CLI (cryptography refuses SHA-1)."""
    import subprocess

    key = leaf_key("ec256")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {part: os.path.join(tmp, f"{part}.pem") for part in ("ca", "cakey", "key",
                                                                      "csr", "cert")}
        for part, data in (("ca", ca.pem), ("cakey", _pem_key(ca.key)), ("key", _pem_key(key))):
            with open(paths[part], "wb") as stream:
                stream.write(data)
        subprocess.run(["openssl", "req", "-new", "-key", paths["key"], "-subj", f"/CN={name}",
                        "-addext", f"subjectAltName=DNS:{name}", "-out", paths["csr"]],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", paths["csr"], "-CA", paths["ca"],
                        "-CAkey", paths["cakey"], f"-{digest}", "-days", "90",
                        "-set_serial", str(x509.random_serial_number()),
                        "-copy_extensions", "copy", "-out", paths["cert"]],
                       check=True, capture_output=True)
        with open(paths["cert"], "rb") as stream:
            cert = x509.load_pem_x509_certificate(stream.read())
    return Issued(cert, key, ca)


def self_signed(*names: str, key_type: str = "ec256", days: float = 90) -> Issued:
    key = leaf_key(key_type)
    name = _name(names[0] if names else "self-signed")
    cert = _build(name, name, key.public_key(), key, is_ca=False, names=names,
                  not_before=NOW - DAY, not_after=NOW + dt.timedelta(days=days, hours=1),
                  issuer_public=key.public_key(), sig_hash=hashes.SHA256())
    return Issued(cert, key)


def full_chain(issued: Issued) -> list[bytes]:
    """Leaf, then its issuer's chain up to (not including) the root."""
    return [issued.pem, *(issued.issuer.chain_pems() if issued.issuer else [])]


@dataclass
class Server:
    """A loopback server in a thread.

    ``mode``: ``tls`` (handshake with ``chain``/``key``), ``silent`` (accept,
    never answer), ``garbage`` (answer with non-TLS bytes), ``close``
    (accept and close), ``trickle`` (one byte of a TLS record every
    ``delay`` seconds).
    """

    chain: list[bytes] = field(default_factory=list)
    key: bytes = b""
    mode: str = "tls"
    host: str = "127.0.0.1"
    delay: float = 0.0
    port: int = 0
    snis: list[str | None] = field(default_factory=list)
    connections: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _open: list[socket.socket] = field(default_factory=list)

    def _context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # Security level 0 before loading: OpenSSL refuses RSA-1024 otherwise.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with tempfile.TemporaryDirectory() as tmp:
            cert_path = os.path.join(tmp, "chain.pem")
            key_path = os.path.join(tmp, "key.pem")
            with open(cert_path, "wb") as stream:
                stream.write(b"".join(self.chain))
            with open(key_path, "wb") as stream:
                stream.write(self.key)
            context.load_cert_chain(cert_path, key_path)

        def remember(sslobj: Any, name: str | None, ctx: Any) -> None:
            self.snis.append(name)

        context.sni_callback = remember
        return context

    def __enter__(self) -> Server:
        self.context = self._context() if self.mode == "tls" else None
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((self.host, self.port))  # port 0 (default): any free one
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        for sock in self._open:
            sock.close()
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            self._open.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            if self.mode == "silent":
                self._stop.wait(30)
            elif self.mode == "garbage":
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nthis is not TLS at all\r\n" * 4)
                self._stop.wait(0.5)
            elif self.mode == "close":
                pass
            elif self.mode == "trickle":
                # A TLS handshake record header announcing 16 KiB, sent slowly.
                for byte in b"\x16\x03\x03\x40\x00" + b"\x02" * 200:
                    if self._stop.wait(self.delay):
                        break
                    conn.sendall(bytes([byte]))
            else:
                assert self.context is not None
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    try:
                        while tls.recv(1024):
                            pass
                    except (OSError, ssl.SSLError):
                        pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


def serve(issued: Issued, chain: list[bytes] | None = None, **kwargs: Any) -> Server:
    """A TLS server for ``issued``, sending ``chain`` (default: the full chain)."""
    return Server(chain=chain if chain is not None else full_chain(issued),
                  key=issued.key_pem, **kwargs)


def write(path: Any, *pems: bytes) -> str:
    with open(path, "wb") as stream:
        stream.write(b"".join(pems))
    return str(path)


def wait_closed(server: Server, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.connections == 0:
        time.sleep(0.01)
