"""The reporting client's configuration: where the audit server is, and the key.

Read in this order, each layer overriding the one before:

1. the INI file ``/etc/certhook/certhook.conf`` (or ``--config`` /
   ``CERTHOOK_CONFIG``), section ``[client]``: ``server``, ``api_key`` or
   ``api_key_file``, ``spool_dir``, ``deadline``, ``ca_file``;
2. the environment: ``CERTHOOK_SERVER``, ``CERTHOOK_API_KEY``,
   ``CERTHOOK_SPOOL_DIR``;
3. command-line flags.

``server`` is a comma-separated list of ``tcp://``, ``tls://`` or
``https://`` URLs, tried in order (``docs/protocol.md``). The API key is
kept out of every repr, message and URL; when it comes from a file that
group or others may read, :attr:`ClientConfig.warnings` says so.

This module is on the certbot hook's fast path: it imports only ``os`` and
the file reader :mod:`certhook.client.ini` (not ``configparser``, which
brings ``re``).
"""

from __future__ import annotations

import os

from certhook.client.ini import read_ini
from certhook.errors import LocalError, ParseError

TYPE_CHECKING = False  # typing costs ~2 ms at start-up; mypy reads this name specially
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_DEADLINE",
    "DEFAULT_SPOOL_DIR",
    "ClientConfig",
    "ServerURL",
    "add_client_arguments",
    "load_config",
    "parse_server",
    "parse_servers",
]

DEFAULT_CONFIG = "/etc/certhook/certhook.conf"
DEFAULT_SPOOL_DIR = "/var/lib/certhook/spool"
DEFAULT_DEADLINE = 10.0
LINE_PORT = 10023  # docs/protocol.md: the line protocol's port, plain or TLS
_SCHEMES = {"tcp": LINE_PORT, "tls": LINE_PORT, "https": 443, "http": 80}


class ServerURL:
    """One audit server: ``scheme://host:port[/path]``, without credentials.

    ``str()`` gives the form used in every message.
    """

    __slots__ = ("host", "path", "port", "scheme")

    def __init__(self, scheme: str, host: str, port: int, path: str = "") -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path

    @property
    def is_line(self) -> bool:
        """Whether this server speaks the line protocol (``tcp://``, ``tls://``)."""
        return self.scheme in ("tcp", "tls")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    def __repr__(self) -> str:
        return f"ServerURL({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServerURL) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def parse_server(text: str, source: str | None = None) -> ServerURL:
    """``tcp://host[:port]``, ``tls://...``, ``https://host[:port][/path]``, or ``host[:port]``.

    A bare ``host[:port]`` means ``tcp://``. The line protocol's default
    port is 10023; https and http default to 443 and 80. Credentials in the
    URL are refused (and not echoed): the key travels in the protocol.
    """
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    scheme = scheme.lower()
    if scheme not in _SCHEMES:
        raise ParseError(
            f"server scheme {scheme[:10]!r} is not tcp://, tls:// or https://", source)
    hostport, slash, path = rest.partition("/")
    if "@" in hostport:
        raise ParseError(
            f"{scheme}:// server URL carries credentials; put the key in api_key instead",
            source)
    path = "/" + path.rstrip("/") if slash and path.strip("/") else ""
    if path and scheme in ("tcp", "tls"):
        raise ParseError(f"{scheme}:// server URL cannot have a path", source)
    if hostport.startswith("["):
        host, bracket, tail = hostport[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ParseError(f"bad IPv6 server address in {scheme}:// URL", source)
        port_text = tail[1:] if tail else ""
    elif hostport.count(":") > 1:
        host, port_text = hostport, ""  # a bare IPv6 address
    else:
        host, _, port_text = hostport.partition(":")
    if not host or any(c in host for c in " \t/?#"):
        raise ParseError(f"no host in {scheme}:// server URL", source)
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ParseError(f"bad port {port_text[:8]!r} in server URL", source)
        port = int(port_text)
    else:
        port = _SCHEMES[scheme]
    return ServerURL(scheme, host.lower(), port, path)


def parse_servers(text: str, source: str | None = None) -> tuple[ServerURL, ...]:
    """A comma-separated list of server URLs, in the order they are to be tried."""
    return tuple(parse_server(item, source) for item in text.split(",") if item.strip())


class ClientConfig:
    """Everything a submitting command needs. The key is never in ``repr``."""

    __slots__ = ("api_key", "ca_file", "deadline", "key_source", "path", "sections",
                 "servers", "spool_dir", "warnings")

    def __init__(
        self,
        servers: tuple[ServerURL, ...] = (),
        api_key: str | None = None,
        spool_dir: str = DEFAULT_SPOOL_DIR,
        deadline: float = DEFAULT_DEADLINE,
        ca_file: str | None = None,
        path: str | None = None,
        sections: dict[str, dict[str, str]] | None = None,
        key_source: str | None = None,
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.servers = servers
        self.api_key = api_key
        self.spool_dir = spool_dir
        self.deadline = deadline
        self.ca_file = ca_file
        self.path = path  # the INI file read, if any
        self.sections = sections or {}  # its contents (certhook.client.ini), for [ports]
        self.key_source = key_source  # where the key came from: a path or a variable
        self.warnings = warnings

    def __repr__(self) -> str:
        servers = ",".join(map(str, self.servers))
        key = "set" if self.api_key else "unset"
        return (f"ClientConfig(servers={servers!r}, api_key={key}, spool_dir={self.spool_dir!r},"
                f" deadline={self.deadline}, ca_file={self.ca_file!r}, path={self.path!r})")

    def redact(self, text: str) -> str:
        """``text`` with the API key, should a peer have echoed it, replaced by ``***``."""
        if self.api_key and len(self.api_key) >= 4:
            text = text.replace(self.api_key, "***")
        return text


def _world_readable_warning(path: str) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & 0o044:
        return (f"{path} holds the API key and is readable by group or others"
                f" (mode {mode & 0o777:o}); chmod 600 it")
    return None


def _read_key_file(path: str) -> str:
    try:
        # bytes.decode("ascii") is built in; a text stream naming "ascii" would
        # import encodings.ascii, on every run of the hook.
        with open(path, "rb") as stream:
            key = stream.read().decode("ascii").strip()
    except OSError as exc:
        raise LocalError(f"{path}: cannot read the API key file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ParseError("the API key file is not ASCII", path) from None
    if not key or any(c.isspace() for c in key):
        raise ParseError("the API key file must hold one key, without spaces", path)
    return key


def _parse_deadline(text: str, source: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ParseError(f"deadline {text[:20]!r} is not a number of seconds", source) from None
    if not 0 < value <= 3600:
        raise ParseError("deadline must be more than 0 and at most 3600 seconds", source)
    return value


def load_config(
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    server: str | None = None,
    api_key_file: str | None = None,
    spool_dir: str | None = None,
    deadline: float | None = None,
    ca_file: str | None = None,
) -> ClientConfig:
    """Layer the INI file, the environment and the flags (the keyword arguments).

    ``path`` is the ``--config`` flag; without it ``CERTHOOK_CONFIG``, then
    :data:`DEFAULT_CONFIG`, which may be missing. A named file that is
    missing raises :class:`LocalError`; a bad value :class:`ParseError`.
    """
    env = os.environ if environ is None else environ
    explicit = path or env.get("CERTHOOK_CONFIG") or None
    conf_path = explicit or DEFAULT_CONFIG
    sections = read_ini(conf_path, required=explicit is not None)
    section: Mapping[str, str] = sections.get("client", {}) if sections is not None else {}
    where = f"{conf_path} [client]"

    servers: tuple[ServerURL, ...] = ()
    if section.get("server"):
        servers = parse_servers(section["server"], where)
    if env.get("CERTHOOK_SERVER"):
        servers = parse_servers(env["CERTHOOK_SERVER"], "CERTHOOK_SERVER")
    if server:
        servers = parse_servers(server, "--server")

    warnings: list[str] = []
    key: str | None = None
    key_source: str | None = None
    if section.get("api_key_file"):
        key_path = os.path.join(os.path.dirname(conf_path), section["api_key_file"].strip())
        key, key_source = _read_key_file(key_path), key_path
    elif section.get("api_key"):
        key, key_source = section["api_key"].strip(), conf_path
    if key_source is not None:
        warning = _world_readable_warning(key_source)
        if warning:
            warnings.append(warning)
    if env.get("CERTHOOK_API_KEY"):
        key, key_source = env["CERTHOOK_API_KEY"].strip(), "CERTHOOK_API_KEY"
    if api_key_file:
        key, key_source = _read_key_file(api_key_file), api_key_file
        warning = _world_readable_warning(api_key_file)
        if warning:
            warnings.append(warning)
    if key is not None and (not key or any(c.isspace() or not c.isprintable() for c in key)):
        raise ParseError("the API key is empty or has spaces", key_source)

    spool = section.get("spool_dir") or DEFAULT_SPOOL_DIR
    spool = env.get("CERTHOOK_SPOOL_DIR") or spool
    spool = spool_dir or spool

    limit = DEFAULT_DEADLINE
    if section.get("deadline"):
        limit = _parse_deadline(section["deadline"], where)
    if deadline is not None:
        limit = _parse_deadline(str(deadline), "--deadline")

    ca = section.get("ca_file") or None
    ca = ca_file or ca
    return ClientConfig(
        servers=servers,
        api_key=key or None,
        spool_dir=spool,
        deadline=limit,
        ca_file=ca,
        path=conf_path if sections is not None else None,
        sections=sections,
        key_source=key_source,
        warnings=tuple(warnings),
    )


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every submitting command shares (``hook``, ``run``, ``report``, ``flush``)."""
    group = parser.add_argument_group("audit server")
    group.add_argument("--config", metavar="PATH",
                       help=f"certhook's INI file (default $CERTHOOK_CONFIG or {DEFAULT_CONFIG})")
    group.add_argument("--server", metavar="URLS",
                       help="tcp://, tls:// or https:// URLs, comma-separated, tried in order"
                            " (default $CERTHOOK_SERVER, then [client] server)")
    group.add_argument("--api-key-file", metavar="PATH",
                       help="read the API key from this file (default $CERTHOOK_API_KEY, then"
                            " [client] api_key or api_key_file)")
    group.add_argument("--spool-dir", metavar="DIR",
                       help="where undelivered submissions wait (default $CERTHOOK_SPOOL_DIR,"
                            f" then [client] spool_dir, then {DEFAULT_SPOOL_DIR})")
    group.add_argument("--ca-file", metavar="PATH",
                       help="CA certificates for tls:// and https:// (default: system roots)")
    group.add_argument("--deadline", type=float, metavar="SECONDS",
                       help="give up on the network after this many seconds"
                            f" (default {DEFAULT_DEADLINE:g})")


def config_from_args(args: argparse.Namespace) -> ClientConfig:
    """:func:`load_config` with the flags of :func:`add_client_arguments`."""
    return load_config(
        args.config,
        server=args.server,
        api_key_file=args.api_key_file,
        spool_dir=args.spool_dir,
        deadline=args.deadline,
        ca_file=args.ca_file,
    )
