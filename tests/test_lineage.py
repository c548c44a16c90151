"""certhook.certbot.lineage on certbot-shaped trees built in tmp_path."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certhook.certbot.lineage import read_renewal_conf, read_state
from certhook.errors import LocalError, ParseError
from certhook.x509 import load_pem

KINDS = ("cert", "privkey", "chain", "fullchain")
CONFS = Path(__file__).parent / "data" / "renewal-confs"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA().create_child_ca()  # an intermediate, so chain.pem is not the root


class Tree:
    """A certbot config directory: renewal/, live/, archive/."""

    def __init__(self, root: Path, ca: trustme.CA) -> None:
        self.root = root
        self.ca = ca
        self.serials: dict[tuple[str, int], int] = {}

    def lineage(self, name: str, versions: int = 1, current: int | None = None,
                relative: bool = True, domains: tuple[str, ...] = (),
                params: str = "authenticator = webroot\nserver = https://127.0.0.1:14000/dir\n",
                ) -> None:
        domains = domains or (name.split("-0")[0], "www." + name.split("-0")[0])
        archive = self.root / "archive" / name
        live = self.root / "live" / name
        archive.mkdir(parents=True)
        live.mkdir(parents=True)
        for number in range(1, versions + 1):
            leaf = self.ca.issue_cert(*domains)
            cert_pem = leaf.cert_chain_pems[0].bytes()
            chain_pem = leaf.cert_chain_pems[1].bytes()
            self.serials[name, number] = load_pem(cert_pem)[0].serial_number
            files = {"cert": cert_pem, "chain": chain_pem, "fullchain": cert_pem + chain_pem,
                     "privkey": leaf.private_key_pem.bytes()}
            for kind, data in files.items():
                (archive / f"{kind}{number}.pem").write_bytes(data)
        for kind in KINDS:
            self.link(name, kind, current or versions, relative)
        (live / "README").write_text("This directory contains your keys and certificates.\n")
        (self.root / "renewal").mkdir(exist_ok=True)
        self.conf(name).write_text(
            "version = 5.8.0\n"
            f"archive_dir = {archive}\n"
            + "".join(f"{kind} = {live / (kind + '.pem')}\n" for kind in KINDS)
            + "[renewalparams]\n" + params)

    def link(self, name: str, kind: str, number: int, relative: bool = True) -> Path:
        link = self.root / "live" / name / f"{kind}.pem"
        if os.path.lexists(link):
            link.unlink()
        target = self.root / "archive" / name / f"{kind}{number}.pem"
        os.symlink(os.path.relpath(target, link.parent) if relative else target, link)
        return link

    def conf(self, name: str) -> Path:
        return self.root / "renewal" / f"{name}.conf"


def snapshot(root: Path) -> dict[str, Any]:
    """Everything reading could change: entries, links, contents' mtimes and sizes."""
    seen: dict[str, Any] = {}
    for directory, dirs, files in os.walk(root):
        for entry in dirs + files:
            path = os.path.join(directory, entry)
            info = os.lstat(path)
            link = os.readlink(path) if os.path.islink(path) else None
            seen[path] = (info.st_mode, info.st_size, info.st_mtime_ns, info.st_ino, link)
    return seen


@pytest.fixture
def tree(tmp_path: Path, ca: trustme.CA) -> Tree:
    return Tree(tmp_path / "letsencrypt", ca)


def read_unchanged(root: Path) -> Any:
    before = snapshot(root)
    state = read_state(str(root))
    assert snapshot(root) == before, "reading changed the tree"
    return state


def test_healthy_lineages(tree: Tree) -> None:
    tree.lineage("b.example.org", versions=3, relative=False)
    tree.lineage("a.example.org")
    tree.lineage("a.example.org-0001", versions=2,
                 params="authenticator = nginx\ninstaller = nginx\n")
    state = read_unchanged(tree.root)
    assert [lin.name for lin in state.lineages] == [
        "a.example.org", "a.example.org-0001", "b.example.org"]
    assert state.problems == ()
    a, a1, b = state.lineages
    assert [lin.problems for lin in state.lineages] == [(), (), ()]
    assert (a.version, a1.version, b.version) == (1, 2, 3)
    assert a.certificate is not None and a1.certificate is not None and b.certificate is not None
    assert a.certificate.serial_number == tree.serials["a.example.org", 1]
    assert a1.certificate.serial_number == tree.serials["a.example.org-0001", 2]
    assert b.certificate.serial_number == tree.serials["b.example.org", 3]
    assert a.domains == ("a.example.org", "www.a.example.org")
    assert a1.domains == ("a.example.org", "www.a.example.org")
    assert len(a.chain) == 1 and a.chain[0].subject == a.certificate.issuer
    assert (a.authenticator, a.installer, a.server) == (
        "webroot", None, "https://127.0.0.1:14000/dir")
    assert (a1.authenticator, a1.installer, a1.server) == ("nginx", "nginx", None)
    assert a.cert_path == str(tree.root / "live" / "a.example.org" / "cert.pem")
    assert a.renewal_conf == str(tree.conf("a.example.org"))
    assert a.conf is not None and a.conf.version == "5.8.0"


def test_only_renewal_conf_files_are_lineages(tree: Tree) -> None:
    tree.lineage("a.example.org")
    renewal = tree.root / "renewal"
    shutil.copy(renewal / "a.example.org.conf", renewal / "a.example.org.conf.bak")
    shutil.copy(renewal / "a.example.org.conf", renewal / ".hidden.conf")
    (renewal / "README").write_text("not a conf\n")
    assert [lin.name for lin in read_unchanged(tree.root).lineages] == ["a.example.org"]


def test_broken_conf_does_not_stop_the_others(tree: Tree) -> None:
    tree.lineage("a.example.org")
    tree.lineage("b.example.org")
    tree.lineage("c.example.org")
    tree.conf("b.example.org").write_text("cert = /x\ncert = /y\n")
    a, b, c = read_unchanged(tree.root).lineages
    assert a.problems == () and c.problems == ()
    assert b.conf is None and b.certificate is None and b.domains == ()
    assert b.problems == (f"renewal conf broken: {tree.conf('b.example.org')}: line 2: "
                          "duplicate key 'cert'",)


def _outside(tree: Tree, name: str) -> None:
    elsewhere = tree.root.parent / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(tree.root / "archive" / name / "cert1.pem", elsewhere / "cert1.pem")
    link = tree.root / "live" / name / "cert.pem"
    link.unlink()
    link.symlink_to(elsewhere / "cert1.pem")


def _regular_file(tree: Tree, name: str) -> None:
    link = tree.root / "live" / name / "cert.pem"
    data = link.read_bytes()
    link.unlink()
    link.write_bytes(data)


def _unversioned(tree: Tree, name: str) -> None:
    archive = tree.root / "archive" / name
    shutil.copy(archive / "cert1.pem", archive / "cert.pem")
    link = tree.root / "live" / name / "cert.pem"
    link.unlink()
    link.symlink_to(archive / "cert.pem")


def _drop_version(number: int) -> Callable[[Tree, str], None]:
    def mutate(tree: Tree, name: str) -> None:
        for kind in KINDS:
            (tree.root / "archive" / name / f"{kind}{number}.pem").unlink()
    return mutate


def _conf_edit(old: str, new: str) -> Callable[[Tree, str], None]:
    def mutate(tree: Tree, name: str) -> None:
        conf = tree.conf(name)
        conf.write_text(conf.read_text().replace(old, new))
    return mutate


def _previous(tree: Tree, name: str) -> None:
    for kind in KINDS:
        os.symlink(f"../../archive/{name}/{kind}1.pem",
                   tree.root / "live" / name / f"previous_{kind}.pem")


# (id, versions, current, mutation, expected problem, version, certificate read)
PROBLEMS: list[tuple[str, int, int | None, Callable[[Tree, str], None], str | None,
                     int | None, bool]] = [
    ("missing-link", 1, None, lambda t, n: (t.root / "live" / n / "cert.pem").unlink(),
     "live cert link {live}/cert.pem is missing", None, False),
    ("dangling-link", 1, None, lambda t, n: (t.root / "archive" / n / "cert1.pem").unlink(),
     "live cert link {live}/cert.pem is dangling: {archive}/cert1.pem does not exist",
     None, False),
    ("outside-archive", 1, None, _outside, "live cert link {live}/cert.pem points outside",
     1, True),
    ("regular-file", 1, None, _regular_file, "live cert {live}/cert.pem is not a symlink",
     None, True),
    ("unversioned-target", 1, None, _unversioned,
     "live cert link {live}/cert.pem points to {archive}/cert.pem, not to a certN.pem",
     None, True),
    ("versions-disagree", 2, None, lambda t, n: t.link(n, "privkey", 1),
     "live links point to different versions: cert 2, privkey 1, chain 2, fullchain 2",
     2, True),
    ("archive-gap", 3, None, _drop_version(2),
     "archive {archive} has a gap: no cert/privkey/chain/fullchain 2", 3, True),
    ("pending-version", 3, 2, lambda t, n: None,
     "archive {archive} holds a complete version 3 newer than the live version 2", 2, True),
    ("bad-cert", 1, None, lambda t, n: (t.root / "archive" / n / "cert1.pem").write_text("x"),
     "certificate unreadable: {archive}/cert1.pem: no PEM CERTIFICATE block found", 1, False),
    ("bad-chain", 1, None,
     lambda t, n: (t.root / "archive" / n / "chain1.pem").write_text(
         "-----BEGIN CERTIFICATE-----\n"),
     "chain unreadable: {archive}/chain1.pem:", 1, True),
    ("empty-chain", 1, None, lambda t, n: (t.root / "archive" / n / "chain1.pem").write_text(""),
     None, 1, True),
    ("no-chain-key", 1, None, _conf_edit("chain = ", "#chain = "),
     "renewal conf {conf} lacks 'chain' (certbot skips it)", 1, True),
    ("no-renewalparams", 1, None, _conf_edit("[renewalparams]", "#"),
     "renewal conf {conf} lacks [renewalparams] (certbot skips it)", 1, True),
    ("no-authenticator", 1, None, _conf_edit("authenticator = webroot", ""),
     "renewal conf {conf} names no authenticator (certbot skips it)", 1, True),
    ("no-archive", 1, None, _conf_edit("archive_dir = ", "archive_dir = /nonexistent"),
     "archive directory /nonexistent", 1, True),
    ("interrupted-update", 2, None, _previous, "interrupted update: {live}/previous_cert.pem",
     2, True),
    ("not-utf8", 1, None, lambda t, n: t.conf(n).write_bytes(b"cert = \xff\n"),
     "renewal conf broken: {conf}: not UTF-8 (byte 7)", None, False),
    ("conf-is-a-directory", 1, None,
     lambda t, n: (t.conf(n).unlink(), t.conf(n).mkdir()),
     "renewal conf broken: {conf}: Is a directory", None, False),
]


@pytest.mark.parametrize(("mutate", "versions", "current", "change", "problem", "version",
                          "has_cert"), PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_problems(tree: Tree, mutate: str, versions: int, current: int | None,
                  change: Callable[[Tree, str], None], problem: str | None,
                  version: int | None, has_cert: bool) -> None:
    name = "a.example.org"
    tree.lineage(name, versions=versions, current=current)
    tree.lineage("z.example.org")
    change(tree, name)
    lineage, other = read_unchanged(tree.root).lineages
    assert other.problems == () and other.certificate is not None
    assert lineage.version == version
    assert (lineage.certificate is not None) == has_cert
    if problem is None:
        assert lineage.problems == ()
        return
    expected = problem.format(live=tree.root / "live" / name,
                              archive=tree.root / "archive" / name, conf=tree.conf(name))
    assert any(found.startswith(expected) for found in lineage.problems), lineage.problems


def test_orphan_live_directory(tree: Tree) -> None:
    tree.lineage("a.example.org")
    tree.lineage("gone.example.org")
    tree.conf("gone.example.org").unlink()
    (tree.root / "live" / "README").write_text("This directory contains your keys...\n")
    state = read_unchanged(tree.root)
    assert [lin.name for lin in state.lineages] == ["a.example.org"]
    assert state.problems == (
        f"{tree.root / 'live' / 'gone.example.org'} has no renewal conf (certbot ignores it)",)


def test_relative_config_dir(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    tree.lineage("a.example.org")
    monkeypatch.chdir(tree.root.parent)
    (lineage,) = read_state(tree.root.name).lineages
    assert lineage.problems == () and lineage.version == 1


def test_empty_and_missing_config_dirs(tmp_path: Path) -> None:
    assert read_state(str(tmp_path)).lineages == ()
    with pytest.raises(LocalError, match=f"^{tmp_path / 'nope'}: certbot config directory: "):
        read_state(str(tmp_path / "nope"))
    (tmp_path / "file").write_text("")
    with pytest.raises(LocalError, match=f"^{tmp_path / 'file'}: not a directory"):
        read_state(str(tmp_path / "file"))
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "renewal").write_text("")
    with pytest.raises(LocalError, match="renewal: cannot list"):
        read_state(str(tmp_path / "dir"))


def test_read_renewal_conf_real_file() -> None:
    conf = read_renewal_conf(str(CONFS / "certbot-5.8.conf"))
    assert conf.name == "certbot-5.8"
    assert conf.version == "5.8.0"
    assert conf.archive_dir == "/tmp/pt/c/archive/a.example.org"
    assert conf.fullchain == "/tmp/pt/c/live/a.example.org/fullchain.pem"
    assert conf.params["server"] == "https://127.0.0.1:14000/dir"
    assert conf.params["pref_challs"] == ("http-01",)
    assert conf.raw["acme_renewal_info"]["ari_retry_after"] == "2026-11-21T13:21:44"
    with pytest.raises(TypeError):
        conf.params["server"] = "changed"  # type: ignore[index]
    ancient = read_renewal_conf(str(CONFS / "certbot-0.4-webroot.conf"))
    assert ancient.version is None and ancient.archive_dir is None
    assert ancient.params["webroot_map"]["www.example.com"] == "/var/www/example"


def test_read_renewal_conf_errors(tmp_path: Path) -> None:
    with pytest.raises(LocalError, match=r"missing\.conf: No such file"):
        read_renewal_conf(str(tmp_path / "missing.conf"))
    (tmp_path / "bad.conf").write_text("[renewalparams\n")
    with pytest.raises(ParseError, match=r"bad\.conf: line 1: unbalanced"):
        read_renewal_conf(str(tmp_path / "bad.conf"))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_any_conf_bytes_give_value_or_parse_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.conf"
    path.write_bytes(data)
    try:
        read_renewal_conf(str(path))
    except ParseError:
        pass


def test_a_thousand_lineages_are_all_read(tmp_path: Path, ca: trustme.CA) -> None:
    # How fast is bench/scan.py's to say (1,000 lineages, against certbot
    # certificates on the same tree): no test asserts on wall-clock time.
    tree = Tree(tmp_path / "le", ca)
    tree.lineage("template.example")
    template = tree.conf("template.example").read_text()
    source = tree.root / "archive" / "template.example"
    for number in range(1000):
        name = f"site{number:04}.example"
        (tree.root / "archive" / name).mkdir()
        (tree.root / "live" / name).mkdir()
        for kind in KINDS:
            os.link(source / f"{kind}1.pem", tree.root / "archive" / name / f"{kind}1.pem")
            tree.link(name, kind, 1)
        tree.conf(name).write_text(template.replace("template.example", name))
    state = read_state(str(tree.root))
    assert len(state.lineages) == 1001
    assert all(lineage.problems == () for lineage in state.lineages)
    assert [lineage.name for lineage in state.lineages][-2:] == [
        "site0999.example", "template.example"]
    # every clone links the template's certificate
    assert {lineage.domains for lineage in state.lineages} == {
        ("template.example", "www.template.example")}
