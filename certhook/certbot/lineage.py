"""Read certbot's lineages from its config directory, without changing it.

Facts taken from certbot's source (``certbot/_internal/storage.py``,
``cert_manager.py``), which this module mirrors but never imports:

- the lineages are the files ``renewal/*.conf`` (a shell glob, so names
  starting with a dot are skipped), in sorted order; a lineage's name is
  the file name without ``.conf``;
- a conf must name all four of ``cert``, ``privkey``, ``chain`` and
  ``fullchain``; ``archive_dir`` defaults to ``CONFIG_DIR/archive/NAME``;
- each of the four is a symlink in ``live/``, relative or absolute, and
  its version is N where the link target's base name is ``{kind}N.pem``
  (one ``readlink``, not a full ``realpath``, as certbot does);
- the target must lie in the archive directory;
- a top-level ``renew_before_expiry`` (``30 days``) replaces certbot's
  default renewal rule (see :mod:`certhook.certbot.interval`).

certbot's ``RenewableCert`` repairs interrupted updates as a side effect of
being constructed (it rewrites live symlinks from ``previous_*.pem``); this
module only reads, and reports such states as problems instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from certhook.certbot.configobj import Section, parse_configobj
from certhook.certbot.interval import parse_interval
from certhook.errors import LocalError, ParseError
from certhook.x509 import Certificate, load_pem

__all__ = ["CertbotState", "Lineage", "RenewalConf", "read_renewal_conf", "read_state"]

ALL_FOUR = ("cert", "privkey", "chain", "fullchain")
# certbot's r"^{kind}([0-9]+)\.pem$"; longer numbers are not versions we can count
_VERSIONED = re.compile(r"(cert|privkey|chain|fullchain)([0-9]{1,18})\.pem")


@dataclass(frozen=True)
class RenewalConf:
    """One ``renewal/NAME.conf``, parsed. ``params`` is ``[renewalparams]``.

    Sections are read-only mappings and lists are tuples; ``raw`` is the
    whole file.
    """

    path: str
    name: str
    version: str | None
    archive_dir: str | None
    cert: str | None
    privkey: str | None
    chain: str | None
    fullchain: str | None
    params: Mapping[str, Any] = field(hash=False)
    raw: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True)
class Lineage:
    """One lineage as certbot would see it, and what is wrong with it."""

    name: str
    renewal_conf: str
    conf: RenewalConf | None
    cert_path: str | None
    version: int | None
    certificate: Certificate | None
    chain: tuple[Certificate, ...]
    domains: tuple[str, ...]
    authenticator: str | None
    installer: str | None
    server: str | None
    problems: tuple[str, ...]
    #: ``renew_before_expiry`` in seconds; None when absent or unreadable
    #: (then a problem says why).
    renew_before: int | None = None


@dataclass(frozen=True)
class CertbotState:
    """Every lineage of a certbot config directory, sorted by name."""

    config_dir: str
    lineages: tuple[Lineage, ...]
    problems: tuple[str, ...]


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(value)
    return value


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as exc:
        raise LocalError(f"{path}: {exc.strerror or exc}") from None


def read_renewal_conf(path: str) -> RenewalConf:
    """Parse one renewal conf. Bad content raises ParseError, OS faults LocalError."""
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 (byte {exc.start})", path) from None
    raw = parse_configobj(text, path)
    name = os.path.basename(path)
    name = name[: -len(".conf")] if name.endswith(".conf") else name

    def scalar(section: Section, key: str) -> str | None:
        value = section.get(key)
        return value if isinstance(value, str) else None

    params = raw.get("renewalparams")
    return RenewalConf(
        path=path,
        name=name,
        version=scalar(raw, "version"),
        archive_dir=scalar(raw, "archive_dir"),
        cert=scalar(raw, "cert"),
        privkey=scalar(raw, "privkey"),
        chain=scalar(raw, "chain"),
        fullchain=scalar(raw, "fullchain"),
        params=_freeze(params if isinstance(params, dict) else {}),
        raw=_freeze(raw),
    )


def _link_target(link: str) -> str:
    """The absolute target of a symlink, as certbot's ``get_link_target``."""
    target = os.readlink(link)
    if not os.path.isabs(target):
        target = os.path.join(os.path.dirname(link), target)
    return os.path.abspath(target)


def _in_dir(path: str, directory: str) -> bool:
    parent = os.path.dirname(path)
    if os.path.normpath(parent) == os.path.normpath(directory):
        return True
    try:  # the same directory reached another way (certbot uses samefile)
        return os.path.samefile(parent, directory)
    except OSError:
        return False


def _archive_versions(directory: str) -> dict[str, list[int]] | None:
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    versions: dict[str, list[int]] = {kind: [] for kind in ALL_FOUR}
    for name in names:
        match = _VERSIONED.fullmatch(name)
        if match:
            versions[match.group(1)].append(int(match.group(2)))
    for numbers in versions.values():
        numbers.sort()
    return versions


def _archive_problems(
    archive_dir: str, versions: dict[str, list[int]], current: int | None
) -> list[str]:
    problems = []
    gaps: dict[str, list[str]] = {}  # "2", "4-6" -> the kinds missing them
    for kind in ALL_FOUR:
        numbers = versions[kind]
        for low, high in zip(numbers, numbers[1:]):
            if high > low + 1:
                gap = str(low + 1) if high == low + 2 else f"{low + 1}-{high - 1}"
                gaps.setdefault(gap, []).append(kind)
    if gaps:
        listed = "; ".join(f"{'/'.join(kinds)} {gap}" for gap, kinds in gaps.items())
        problems.append(f"archive {archive_dir} has a gap: no {listed}")
    complete = set.intersection(*(set(versions[kind]) for kind in ALL_FOUR))
    if current is not None and complete and max(complete) > current:
        problems.append(
            f"archive {archive_dir} holds a complete version {max(complete)} newer than the"
            f" live version {current} (an interrupted update; certbot relinks it on its next run)"
        )
    return problems


def _param(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    return value if isinstance(value, str) and value != "None" else None


def _read_pem(path: str, problems: list[str], what: str) -> tuple[Certificate, ...]:
    try:
        data = _read_bytes(path)
        if what == "chain" and not data.strip():
            return ()  # a CA that sends no intermediates leaves chain.pem empty
        return tuple(load_pem(data, path))
    except (LocalError, ParseError) as exc:
        problems.append(f"{what} unreadable: {exc}")
        return ()


def _check_link(
    kind: str, link: str, archive_dir: str, archive: dict[str, list[int]] | None,
    problems: list[str],
) -> tuple[str | None, int | None]:
    """Resolve one live link: the file to read (if any) and its version."""
    try:
        target = _link_target(link)
    except FileNotFoundError:
        problems.append(f"live {kind} link {link} is missing")
        return None, None
    except OSError as exc:
        if os.path.isfile(link):  # certbot refuses a regular file; we still read it
            problems.append(f"live {kind} {link} is not a symlink")
            return link, None
        problems.append(f"live {kind} link {link} unreadable: {exc.strerror or exc}")
        return None, None
    match = _VERSIONED.fullmatch(os.path.basename(target))
    number = int(match.group(2)) if match and match.group(1) == kind else None
    in_archive = _in_dir(target, archive_dir)
    if in_archive and archive is not None and number is not None:
        exists = number in archive[kind]  # saves a stat per link
    else:
        exists = os.path.exists(target)
    if not exists:
        problems.append(f"live {kind} link {link} is dangling: {target} does not exist")
        return None, None
    if not in_archive:
        problems.append(f"live {kind} link {link} points outside {archive_dir}: {target}")
    elif number is None:
        problems.append(f"live {kind} link {link} points to {target}, not to a {kind}N.pem")
    return target, number


def _conf_problems(conf: RenewalConf) -> list[str]:
    problems = [
        f"renewal conf {conf.path} lacks {kind!r} (certbot skips it)"
        for kind in ALL_FOUR
        if getattr(conf, kind) is None
    ]
    if "renewalparams" not in conf.raw:
        problems.append(f"renewal conf {conf.path} lacks [renewalparams] (certbot skips it)")
    elif _param(conf.params, "authenticator") is None:
        problems.append(f"renewal conf {conf.path} names no authenticator (certbot skips it)")
    return problems


def _renew_before(conf: RenewalConf, problems: list[str]) -> int | None:
    """The conf's ``renew_before_expiry`` in seconds, or None (absent or bad)."""
    value = conf.raw.get("renew_before_expiry")
    if value is None:
        return None
    if not isinstance(value, str):  # "30 days, 2 hours" is a list; [renew_before_expiry] a section
        problems.append(f"renewal conf {conf.path}: renew_before_expiry is not one value"
                        " (certbot fails on it)")
        return None
    try:
        return parse_interval(value)
    except ParseError as exc:
        problems.append(f"renewal conf {conf.path}: {exc}")
        return None


def _previous_links(conf: RenewalConf) -> list[str]:
    """certbot's marks of an interrupted update, which it rolls back on its next run."""
    live_dirs = {os.path.dirname(path) for path in (conf.cert, conf.privkey) if path}
    found: list[str] = []
    for live_dir in sorted(live_dirs):
        try:
            entries = os.listdir(live_dir)
        except OSError:
            continue
        found.extend(
            os.path.join(live_dir, entry) for entry in sorted(entries)
            if entry.startswith("previous_") and entry.endswith(".pem")
        )
    if not found:
        return []
    return [f"interrupted update: {', '.join(found)} present (certbot rolls back to them)"]


def _read_lineage(config_dir: str, conf_path: str, name: str) -> Lineage:
    try:
        conf = read_renewal_conf(conf_path)
    except (LocalError, ParseError) as exc:
        return Lineage(name, conf_path, None, None, None, None, (), (), None, None, None,
                       (f"renewal conf broken: {exc}",))
    problems = _conf_problems(conf)
    renew_before = _renew_before(conf, problems)
    archive_dir = conf.archive_dir or os.path.join(os.path.abspath(config_dir), "archive", name)
    archive = _archive_versions(archive_dir)
    if archive is None:
        problems.append(f"archive directory {archive_dir} is missing or unreadable")
    files: dict[str, str] = {}
    versions: dict[str, int] = {}
    for kind in ALL_FOUR:
        link = getattr(conf, kind)
        if link is not None:
            path, number = _check_link(kind, link, archive_dir, archive, problems)
            if path is not None:
                files[kind] = path
            if number is not None:
                versions[kind] = number
    if len(set(versions.values())) > 1:
        listed = ", ".join(f"{kind} {number}" for kind, number in versions.items())
        problems.append(f"live links point to different versions: {listed}")
    version = versions.get("cert")
    if archive is not None:
        problems.extend(_archive_problems(archive_dir, archive, version))
    problems.extend(_previous_links(conf))

    certificate = None
    if "cert" in files:
        certs = _read_pem(files["cert"], problems, "certificate")
        certificate = certs[0] if certs else None
    chain = _read_pem(files["chain"], problems, "chain") if "chain" in files else ()
    return Lineage(
        name=name,
        renewal_conf=conf_path,
        conf=conf,
        cert_path=conf.cert,
        version=version,
        certificate=certificate,
        chain=chain,
        domains=certificate.identifiers if certificate is not None else (),
        authenticator=_param(conf.params, "authenticator"),
        installer=_param(conf.params, "installer"),
        server=_param(conf.params, "server"),
        problems=tuple(problems),
        renew_before=renew_before,
    )


def read_state(config_dir: str) -> CertbotState:
    """Read every lineage under ``config_dir`` (``/etc/letsencrypt``).

    A missing or unreadable ``config_dir`` (or ``renewal/`` in it) raises
    :class:`LocalError`; anything wrong with one lineage becomes one of its
    ``problems`` and the others are still read.
    """
    try:
        if not os.path.isdir(config_dir):
            os.stat(config_dir)  # raises for a missing path: say so
            raise LocalError(f"{config_dir}: not a directory")
    except OSError as exc:
        raise LocalError(f"{config_dir}: certbot config directory: {exc.strerror or exc}") from None
    renewal_dir = os.path.join(config_dir, "renewal")
    try:
        # Sorted by lineage name; certbot sorts the paths, which puts
        # "a.org-0001.conf" before "a.org.conf".
        names = sorted(
            (entry for entry in os.listdir(renewal_dir)
             if entry.endswith(".conf") and not entry.startswith(".")),
            key=lambda entry: entry[: -len(".conf")],
        )
    except FileNotFoundError:
        names = []  # certbot creates renewal/ with the first certificate
    except OSError as exc:
        raise LocalError(f"{renewal_dir}: cannot list: {exc.strerror or exc}") from None
    lineages = tuple(
        _read_lineage(config_dir, os.path.join(renewal_dir, entry), entry[: -len(".conf")])
        for entry in names
    )
    return CertbotState(config_dir, lineages, tuple(_orphans(config_dir, lineages)))


def _orphans(config_dir: str, lineages: tuple[Lineage, ...]) -> list[str]:
    """Directories in ``live/`` that no renewal conf refers to."""
    live_dir = os.path.join(config_dir, "live")
    try:
        entries = sorted(os.listdir(live_dir))
    except OSError:
        return []
    known = {
        os.path.normpath(os.path.dirname(lineage.cert_path))
        for lineage in lineages
        if lineage.cert_path
    }
    known.update(os.path.normpath(os.path.join(live_dir, lin.name)) for lin in lineages)
    return [
        f"{os.path.join(live_dir, entry)} has no renewal conf (certbot ignores it)"
        for entry in entries
        if entry != "README"
        and os.path.normpath(os.path.join(live_dir, entry)) not in known
        and os.path.isdir(os.path.join(live_dir, entry))
    ]
