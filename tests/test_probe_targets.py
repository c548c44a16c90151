"""Target syntax, targets files, the [ports] mapping, and name matching rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certhook.client.ini import parse_ini
from certhook.errors import ParseError
from certhook.probe import Target, parse_target, ports_for_lineage, read_targets_file
from certhook.probe.checks import match_dns_name
from certhook.probe.targets import expected_fingerprints


@pytest.mark.parametrize(("text", "starttls", "expected"), [
    ("example.org", None, Target("example.org", 443, "tls")),
    ("Example.ORG", None, Target("example.org", 443, "tls")),
    ("example.org:8443", None, Target("example.org", 8443, "tls")),
    ("mail.example.org:25", None, Target("mail.example.org", 25, "smtp")),
    ("mail.example.org:465", None, Target("mail.example.org", 465, "tls")),
    ("mail.example.org:993", None, Target("mail.example.org", 993, "tls")),
    ("mail.example.org:143", None, Target("mail.example.org", 143, "imap")),
    ("mail.example.org:2525/smtp", None, Target("mail.example.org", 2525, "smtp")),
    ("mail.example.org/smtp", None, Target("mail.example.org", 25, "smtp")),
    ("mail.example.org", "imap", Target("mail.example.org", 143, "imap")),
    ("mail.example.org:10143", "imap", Target("mail.example.org", 10143, "imap")),
    ("mail.example.org:25/tls", "smtp", Target("mail.example.org", 25, "tls")),
    ("127.0.0.1", None, Target("127.0.0.1", 443, "tls")),
    ("127.0.0.1:8443", None, Target("127.0.0.1", 8443, "tls")),
    ("[::1]:443", None, Target("::1", 443, "tls")),
    ("[::1]", None, Target("::1", 443, "tls")),
    ("::1", None, Target("::1", 443, "tls")),
    ("[2001:DB8::1]:25", None, Target("2001:db8::1", 25, "smtp")),
    ("[::1]:5432/postgres", None, Target("::1", 5432, "postgres")),
    # IPv6 in brackets with port and protocol, alone, in any written form
    ("[::1]:8443/tls", None, Target("::1", 8443, "tls")),
    ("[2001:db8::5]", None, Target("2001:db8::5", 443, "tls")),
    ("[2001:db8::5]/smtp", None, Target("2001:db8::5", 25, "smtp")),
    ("::1/tls", None, Target("::1", 443, "tls")),
    ("[0:0:0:0:0:0:0:1]:443", None, Target("::1", 443, "tls")),
    ("[2001:0DB8:0000::0005]:25/tls", None, Target("2001:db8::5", 25, "tls")),
    ("[fe80::1%eth0]:443", None, Target("fe80::1%eth0", 443, "tls")),
])
def test_parse_target(text: str, starttls: str | None, expected: Target) -> None:
    assert parse_target(text, starttls) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "not a host name"),
    ("example.org:", "port must be a number"),
    ("example.org:0", "port must be a number"),
    ("example.org:65536", "port must be a number"),
    ("example.org:https", "port must be a number"),
    ("example.org:25/gopher", "unknown protocol 'gopher'"),
    ("example.org/", "bad protocol"),
    ("[::1", "'[' without ']'"),
    ("[127.0.0.1]:443", "only IPv6 addresses go in brackets"),
    ("[::1]443", "expected ':port'"),
    ("::1::2", "not an IPv6 address"),
    ("exa mple.org", "not a host name"),
    ("user@example.org", "not a host name"),
    ("a..b", "empty label"),
    ("a" * 254, "not a host name"),
])
def test_parse_target_rejects(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=re.escape(message)):
        parse_target(text)


def test_target_label_and_sni() -> None:
    assert Target("::1", 443).label == "[::1]:443"
    assert Target("mail.example.org", 25, "smtp").label == "mail.example.org:25/smtp"
    assert Target("127.0.0.1", 443).sni is None
    assert Target("127.0.0.1", 443, servername="a.example.org.").sni == "a.example.org"
    assert Target("127.0.0.1", 443, servername="a.example.org").name_to_check == "a.example.org"
    assert Target("a.example.org", expect_name="b.example.org").name_to_check == "b.example.org"


def test_targets_file(tmp_path: Path) -> None:
    path = tmp_path / "targets"
    path.write_text(
        "# our endpoints\n"
        "\n"
        "www.example.org\n"
        "mail.example.org:25 smtp   # the MX\n"
        "mail.example.org:2525 smtp\n"
        "127.0.0.1:8443 servername=a.example.org expect-name=b.example.org\n"
        "  [::1]:993  \n"
    )
    assert read_targets_file(str(path)) == [
        Target("www.example.org", 443, "tls"),
        Target("mail.example.org", 25, "smtp"),
        Target("mail.example.org", 2525, "smtp"),
        Target("127.0.0.1", 8443, "tls", "a.example.org", "b.example.org"),
        Target("::1", 993, "tls"),
    ]


@pytest.mark.parametrize(("line", "message"), [
    ("example.org:99999", "port must be a number"),
    ("example.org gopher", "unknown protocol 'gopher'"),
    ("example.org:25/smtp smtp", "protocol given twice"),
    ("example.org sni=x", "unexpected 'sni=x'"),
])
def test_targets_file_names_the_bad_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "targets"
    path.write_text(f"# header\nexample.org\n{line}\n")
    with pytest.raises(ParseError, match=message) as info:
        read_targets_file(str(path))
    assert str(info.value).startswith(f"{path}:3: ")
    assert "\n" not in str(info.value)


def _ports(text: str) -> dict[str, dict[str, str]]:
    return parse_ini(text, "certhook.conf")


@pytest.mark.parametrize(("conf", "lineage", "expected"), [
    ("", "example.org", [(443, "tls")]),
    ("[ports]\nother = 25\n", "example.org", [(443, "tls")]),
    ("[ports]\nexample.org = 443, 25/smtp, 993\n", "example.org",
     [(443, "tls"), (25, "smtp"), (993, "tls")]),
    ("[ports]\nexample.org = 25 587 smtp\n", "example.org", [(25, "smtp"), (587, "submission")]),
    ("[ports]\nmail = 2525/smtp,8443\n", "mail", [(2525, "smtp"), (8443, "tls")]),
    ("[ports]\nmail = imap, 993\n", "mail", [(143, "imap"), (993, "tls")]),
    ("[ports]\nMail.Example.org = 25\n", "mail.example.org", [(25, "smtp")]),
    ("[ports]\nmail.example.org = 25\n", "Mail.Example.org", [(25, "smtp")]),
    ("[ports]\nmail = 25,\n  465\n", "mail", [(25, "smtp"), (465, "tls")]),
    ("[DEFAULT]\nmail = 993\n[ports]\n", "mail", [(993, "tls")]),
])
def test_ports_for_lineage(conf: str, lineage: str, expected: list[tuple[int, str]]) -> None:
    assert ports_for_lineage(_ports(conf), lineage) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("443, 25/gopher", "unknown protocol"),
    ("70000", "port must be a number"),
    ("gopher", "unknown protocol"),
])
def test_ports_for_lineage_rejects(value: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        ports_for_lineage(_ports(f"[ports]\nexample.org = {value}\n"), "example.org")


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("example.org", "example.org", True),
    ("Example.ORG", "example.org", True),
    ("example.org.", "example.org", True),
    ("example.org", "EXAMPLE.org.", True),
    ("example.org", "www.example.org", False),
    ("*.example.org", "www.example.org", True),
    ("*.example.org", "WWW.Example.Org.", True),
    ("*.example.org", "example.org", False),
    ("*.example.org", "a.b.example.org", False),
    ("*.example.org", ".example.org", False),
    ("w*.example.org", "www.example.org", False),
    ("*w.example.org", "www.example.org", False),
    ("www.*.org", "www.example.org", False),
    ("*.*.example.org", "a.b.example.org", False),
    ("*.org", "example.org", False),
    ("*", "example", False),
    ("xn--*.example.org", "xn--bcher-kva.example.org", False),
    ("xn--bcher-kva.example.org", "bücher.example.org", True),
    ("*.example.org", "*.example.org", False),
    ("", "", False),
])
def test_match_dns_name(pattern: str, name: str, matches: bool) -> None:
    assert match_dns_name(pattern, name) is matches


def test_expected_fingerprints() -> None:
    prints = {"a.example.org": "aa", "*.example.org": "ww",
              "b.example.org": frozenset({"b1", "b2"})}
    assert expected_fingerprints(prints, "A.example.org.") == frozenset({"aa"})
    assert expected_fingerprints(prints, "c.example.org") == frozenset({"ww"})
    assert expected_fingerprints(prints, "b.example.org") == frozenset({"b1", "b2"})
    assert expected_fingerprints(prints, "example.net") is None


_TARGET_CHARS = "abcAZ019.-_:[]/%@ #\t*xn" + "é"


@given(st.text(alphabet=_TARGET_CHARS, max_size=40) | st.text(max_size=40))
def test_parse_target_gives_a_target_or_parse_error(text: str) -> None:
    try:
        target = parse_target(text)
    except ParseError:
        return
    assert 0 < target.port < 65536 and target.host
    assert parse_target(target.label) == target  # the label reads back


@given(st.text(alphabet=_TARGET_CHARS + "=,\n", max_size=60) | st.text(max_size=60))
def test_ports_for_lineage_gives_pairs_or_parse_error(value: str) -> None:
    try:
        pairs = ports_for_lineage({"ports": {"lineage": value}}, "lineage")
    except ParseError:
        return
    assert all(0 < port < 65536 and isinstance(protocol, str) for port, protocol in pairs)


@given(st.text(max_size=80))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_targets_file_gives_targets_or_parse_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "targets"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        read_targets_file(str(path))
    except ParseError as exc:
        assert str(exc).startswith(f"{path}")


@pytest.mark.parametrize("target", [Target("mail.example.org", 25, "tls"),
                                    Target("mail.example.org", 25, "smtp"),
                                    Target("::1", 5432, "postgres"),
                                    Target("example.org", 8443, "imap")])
def test_label_reads_back(target: Target) -> None:
    assert parse_target(target.label) == target


def test_certbot_targets_and_fingerprints() -> None:
    from types import SimpleNamespace as Fake

    from certhook.probe import certbot_fingerprints, certbot_targets

    state: Any = Fake(lineages=(
        Fake(name="a", domains=("a.example.org", "*.a.example.org"),
             certificate=Fake(fingerprint_sha256="aa")),
        Fake(name="b", domains=("b.example.org", "a.example.org"),
             certificate=Fake(fingerprint_sha256="bb")),
        Fake(name="broken", domains=(), certificate=None),
    ))
    targets, skipped = certbot_targets(state, _ports("[ports]\nb = 443, 25/smtp\n"))
    assert targets == [Target("a.example.org"), Target("b.example.org"),
                       Target("b.example.org", 25, "smtp"), Target("a.example.org", 25, "smtp")]
    assert skipped == ["*.a.example.org (lineage a): a wildcard has no host to probe"]
    assert certbot_fingerprints(state) == {"a.example.org": frozenset({"aa", "bb"}),
                                           "*.a.example.org": "aa", "b.example.org": "bb"}
