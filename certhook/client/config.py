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

from certhook.client.ini import Ini, nearest, read_ini, unknown_names
from certhook.errors import LocalError, ParseError

TYPE_CHECKING = False  # typing costs ~2 ms at start-up; mypy reads this name specially
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Collection, Mapping
    from typing import Any

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
    "ports_warnings",
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

    __slots__ = ("api_key", "ca_file", "deadline", "key_source", "looked_for", "path",
                 "sections", "servers", "spool_dir", "warnings")

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
        looked_for: str | None = None,
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
        self.looked_for = looked_for or path  # the INI file looked for, found or not

    def unset(self, what: str) -> str:
        """Why the ``server`` or the ``api_key`` is not configured, naming the file."""
        name, variable = (("audit server", "CERTHOOK_SERVER") if what == "server"
                          else ("API key", "CERTHOOK_API_KEY"))
        keys = "server" if what == "server" else "api_key or api_key_file"
        if self.path is None and self.looked_for:
            where = (f"{self.looked_for} does not exist (CERTHOOK_CONFIG names another file),"
                     f" nor is {variable} set")
        else:
            where = f"no [client] {keys} in {self.path or 'the configuration'}, nor {variable}"
        return f"no {name} configured: {where}"

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


def _deadline(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 3600:  # NaN too
        raise ValueError(f"{text.strip()[:20]!r} is not a number of seconds,"
                         " more than 0 and at most 3600")
    return value


def _api_key(text: str) -> str:
    key = text.strip()
    if any(c.isspace() or not c.isprintable() for c in key):
        raise ValueError("must be one word, without spaces")  # never quoted: it is the key
    return key


def _yes_no(text: str) -> str:
    if text.strip().lower() not in ("yes", "no", "true", "false", "on", "off", "1", "0"):
        raise ValueError(f"{text.strip()[:40]!r} is not yes or no")
    return text.strip()


# [client] key -> how its value is read: the value, or ValueError saying what is
# allowed (ParseError is one). These rows are also the keys [client] knows, so
# one row adds a key that is read and known (tests/test_config_errors.py).
# A reader never quotes api_key's value. An empty value leaves a key unset.
_CLIENT_KEYS: dict[str, Callable[[str], object]] = {
    "server": parse_servers,
    "api_key": _api_key,
    "api_key_file": str.strip,
    "spool_dir": str.strip,
    "deadline": _deadline,
    "ca_file": str.strip,
    "allow_http": _yes_no,  # read where it is used: client/transport.py
}
# The sections of certhook.conf; [ports] maps lineage names (any key) to ports.
SECTIONS: dict[str, Collection[str] | None] = {"client": _CLIENT_KEYS, "ports": None}


def _read_section(ini: Ini) -> dict[str, Any]:
    """The [client] values of the file, each read by its row of the table."""
    values: dict[str, Any] = {}
    for key, text in ini.get("client", {}).items():
        read = _CLIENT_KEYS.get(key)
        if read is None or not text.strip():
            continue  # an unknown key is warned about; an empty one is unset
        try:
            values[key] = read(text)
        except ValueError as exc:
            why = exc.reason if isinstance(exc, ParseError) else str(exc)
            raise ParseError(f"[client] {key}: {why}", ini.where("client", key)) from None
    return values


def _lineages(certbot_dir: str) -> list[str] | None:
    """certbot's lineage names (``renewal/NAME.conf``), None if unreadable."""
    try:
        names = os.listdir(os.path.join(certbot_dir, "renewal"))
    except OSError:
        return None  # no certbot state here (yet): nothing to check [ports] against
    return [name[:-5] for name in names if name.endswith(".conf") and len(name) > 5]


def ports_warnings(ini: Ini, certbot_dir: str) -> list[str]:
    """A warning for each ``[ports]`` key that names no lineage of certbot's.

    The rule: a key of ``[ports]`` is a lineage name, the ``NAME`` of
    certbot's ``CONFIG/renewal/NAME.conf`` (in any case); another key is
    never used. Checked when the command knows certbot's config directory.
    """
    given = [key for (section, key) in ini.lines if section == "ports" and key]
    lineages = _lineages(certbot_dir) if given else None
    if not lineages:
        return []
    known = {name.lower(): name for name in lineages}
    warnings = []
    for key in given:
        if key in known:
            continue
        guess = nearest(key, known)
        hint = f"; did you mean {known[guess]!r}?" if guess else ""
        warnings.append(f"{ini.where('ports', key)}: [ports] {key[:60]!r} is not a lineage in"
                        f" {certbot_dir} (no renewal/{key[:60]}.conf), so never used{hint}")
    return warnings


def _certbot_dir(certbot_dir: str | None, env: Mapping[str, str]) -> str | None:
    """certbot's config dir: as given, else a deploy hook's (``CONFIG/live/NAME``)."""
    if certbot_dir is None and env.get("RENEWED_LINEAGE"):
        certbot_dir = os.path.dirname(os.path.dirname(env["RENEWED_LINEAGE"].rstrip("/")))
    return certbot_dir


def load_config(
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    server: str | None = None,
    api_key_file: str | None = None,
    spool_dir: str | None = None,
    deadline: float | None = None,
    ca_file: str | None = None,
    certbot_dir: str | None = None,
) -> ClientConfig:
    """Layer the INI file, the environment and the flags (the keyword arguments).

    ``path`` is the ``--config`` flag; without it ``CERTHOOK_CONFIG``, then
    :data:`DEFAULT_CONFIG`, which may be missing. A named file that is
    missing raises :class:`LocalError`; a bad value :class:`ParseError`
    naming the file, line and key. Unknown sections and keys become
    :attr:`ClientConfig.warnings`, and so do ``[ports]`` keys that are no
    lineage in ``certbot_dir`` (certbot's config directory, when the
    command knows it; a deploy hook's ``RENEWED_LINEAGE`` tells it too).
    """
    env = os.environ if environ is None else environ
    explicit = path or env.get("CERTHOOK_CONFIG") or None
    conf_path = explicit or DEFAULT_CONFIG
    ini = read_ini(conf_path, required=explicit is not None)
    warnings: list[str] = []
    values: dict[str, Any] = {}
    if ini is not None:
        values = _read_section(ini)
        warnings += unknown_names(ini, SECTIONS)  # difflib is imported only to warn
        certbot_dir = _certbot_dir(certbot_dir, env)
        if certbot_dir is not None:
            warnings += ports_warnings(ini, certbot_dir)

    servers: tuple[ServerURL, ...] = values.get("server", ())
    if env.get("CERTHOOK_SERVER"):
        servers = parse_servers(env["CERTHOOK_SERVER"], "CERTHOOK_SERVER")
    if server:
        servers = parse_servers(server, "--server")

    key: str | None = None
    key_source: str | None = None
    if values.get("api_key_file"):
        key_path = os.path.join(os.path.dirname(conf_path), values["api_key_file"])
        key, key_source = _read_key_file(key_path), key_path
    elif values.get("api_key"):
        key, key_source = values["api_key"], conf_path
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

    spool = env.get("CERTHOOK_SPOOL_DIR") or values.get("spool_dir") or DEFAULT_SPOOL_DIR
    spool = spool_dir or spool

    limit: float = values.get("deadline", DEFAULT_DEADLINE)
    if deadline is not None:
        try:
            limit = _deadline(str(deadline))
        except ValueError as exc:
            raise ParseError(str(exc), "--deadline") from None

    return ClientConfig(
        servers=servers,
        api_key=key or None,
        spool_dir=spool,
        deadline=limit,
        ca_file=ca_file or values.get("ca_file") or None,
        path=conf_path if ini is not None else None,
        sections=ini,
        key_source=key_source,
        warnings=tuple(warnings),
        looked_for=conf_path,
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


def config_from_args(args: argparse.Namespace, certbot_dir: str | None = None) -> ClientConfig:
    """:func:`load_config` with the flags of :func:`add_client_arguments`;
    certbot's config dir from ``certbot_dir``, else ``--config-dir``."""
    return load_config(
        args.config,
        server=args.server,
        api_key_file=args.api_key_file,
        spool_dir=args.spool_dir,
        deadline=args.deadline,
        ca_file=args.ca_file,
        certbot_dir=certbot_dir or getattr(args, "config_dir", None),
    )
