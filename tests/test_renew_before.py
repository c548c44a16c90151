"""A lineage's ``renew_before_expiry``: read from the renewal conf, shown by scan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from client_helpers import KEY, LineServer, make_lineage
from hypothesis import example, given
from hypothesis import strategies as st
from test_hook_startup import _PROBE as PROBE
from test_hook_startup import DOMAINS as HOOK_DOMAINS
from test_hook_startup import HEAVY, ROOT, hook_environment
from test_lineage import Tree, read_unchanged

from certhook import cli
from certhook.certbot.interval import MAX_RENEW_BEFORE, parse_interval
from certhook.client.changes import from_states
from certhook.client.config import ClientConfig
from certhook.client.submit import submissions_for
from certhook.errors import ParseError
from certhook.protocol import Request, parse_request

DAY = 86400

# (value in the conf, seconds; None: a lineage problem). The good ones are
# what certbot 5.8 (parsedatetime 2.6) reads as the same interval, months and
# years as 30 and 365 days.
VALUES: list[tuple[str, int | None]] = [
    ("30 days", 30 * DAY),
    ("30", 30 * DAY),  # a bare integer is days
    ("2 weeks", 14 * DAY),
    ("10 hours", 10 * 3600),
    ("1 hour", 3600),
    ("3 days 12 hours", 3 * DAY + 12 * 3600),
    ("30days", 30 * DAY),
    ("  30  Days ", 30 * DAY),
    ("1 day", DAY),
    ("1.5 days", DAY + 12 * 3600),
    ("10 minutes", 600),
    ("5 mins", 300),
    ("10 secs", 10),
    ("0 seconds", 0),
    ("2 months", 60 * DAY),
    ("1 year", 365 * DAY),
    ("11 years 2 months", 11 * 365 * DAY + 60 * DAY),
    ("2w", 14 * DAY),
    ("30 d", 30 * DAY),
    ("100 years", MAX_RENEW_BEFORE),
    # certbot reads these as no time (or backwards): problems here
    ("thirty days", None),
    ("10 hrs", None),
    ("foo", None),
    ("", None),
    ("-5 days", None),
    ("+30 days", None),
    ("30 days ago", None),
    ("days", None),
    ("1..5 days", None),
    (".5 days", None),
    ("30 fortnights", None),
    ("٣٠ days", None),  # Arabic-Indic digits: isdigit() says yes, certbot does not
    ("101 years", None),
    ("99999999999999 days", None),
    ("30 days" * 20, None),
]


@pytest.mark.parametrize(("text", "seconds"), VALUES)
def test_parse_interval(text: str, seconds: int | None) -> None:
    if seconds is None:
        with pytest.raises(ParseError, match="renew_before_expiry"):
            parse_interval(text, "x.conf")
    else:
        assert parse_interval(text, "x.conf") == seconds


@given(st.text(max_size=80))
@example("1." + "9" * 5000 + " days")
@example("9" * 5000)
def test_any_text_gives_seconds_or_parse_error(text: str) -> None:
    try:
        seconds = parse_interval(text)
    except ParseError:
        return
    assert 0 <= seconds <= MAX_RENEW_BEFORE


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA().create_child_ca()


@pytest.fixture
def tree(tmp_path: Path, ca: trustme.CA) -> Tree:
    return Tree(tmp_path / "letsencrypt", ca)


def _with_top_level(tree: Tree, name: str, line: str) -> None:
    conf = tree.conf(name)
    conf.write_text(line + "\n" + conf.read_text())


@pytest.mark.parametrize(("text", "seconds"), [v for v in VALUES if v[0] and "\n" not in v[0]])
def test_lineage_reads_renew_before_expiry(tree: Tree, text: str, seconds: int | None) -> None:
    """A good value is the lineage's renew_before; a bad one is its problem, and
    the lineage (and the next) is still read."""
    tree.lineage("a.example.org")
    tree.lineage("b.example.org")
    _with_top_level(tree, "a.example.org", f"renew_before_expiry = {text}")
    a, b = read_unchanged(tree.root).lineages
    assert (b.renew_before, b.problems) == (None, ())
    assert a.certificate is not None and a.server == "https://127.0.0.1:14000/dir"
    assert a.renew_before == seconds
    if seconds is None:
        assert len(a.problems) == 1, a.problems
        assert a.problems[0].startswith(f"renewal conf {tree.conf('a.example.org')}:"
                                        f" renew_before_expiry {text.strip()[:64]!r} is ")
    else:
        assert a.problems == ()


@pytest.mark.parametrize("line", [
    "renew_before_expiry = 30 days, 2 hours",  # configobj: a list
    "[renew_before_expiry]\nx = 1",  # a section
])
def test_renew_before_expiry_that_is_not_one_value(tree: Tree, line: str) -> None:
    tree.lineage("a.example.org")
    conf = tree.conf("a.example.org")
    # at the top, before any section: after a section it would belong to it
    conf.write_text(line + "\n" + conf.read_text() if "[" not in line
                    else conf.read_text() + line + "\n")
    (a,) = read_unchanged(tree.root).lineages
    assert a.renew_before is None
    assert a.problems == (f"renewal conf {conf}: renew_before_expiry is not one value"
                          " (certbot fails on it)",)


def test_commented_default_is_no_value(tree: Tree) -> None:
    """certbot writes ``# renew_before_expiry = 30 days`` as a comment: not a setting."""
    tree.lineage("a.example.org")
    _with_top_level(tree, "a.example.org", "# renew_before_expiry = 30 days")
    (a,) = read_unchanged(tree.root).lineages
    assert (a.renew_before, a.problems) == (None, ())


def test_renew_before_expiry_in_renewalparams_is_not_the_setting(tree: Tree) -> None:
    """certbot reads it from the conf's top level only (``lineage.configuration``)."""
    tree.lineage("a.example.org")
    conf = tree.conf("a.example.org")
    conf.write_text(conf.read_text() + "renew_before_expiry = 60 days\n")
    (a,) = read_unchanged(tree.root).lineages
    assert (a.renew_before, a.problems) == (None, ())


def test_scan_json_shows_renew_before(tree: Tree, capsys: pytest.CaptureFixture[str]) -> None:
    tree.lineage("a.example.org")
    tree.lineage("b.example.org")
    _with_top_level(tree, "a.example.org", "renew_before_expiry = 60 days")
    logs = tree.root.parent / "logs"
    logs.mkdir()
    code = cli.main(["scan", "--config-dir", str(tree.root), "--logs-dir", str(logs), "--json"])
    rows = json.loads(capsys.readouterr().out)["lineages"]
    assert code == 0
    assert [(row["name"], row["renew_before"]) for row in rows] == [
        ("a.example.org", 60 * DAY), ("b.example.org", None)]


# --- the protocol: renew_before on the line and in JSON -----------------------


@pytest.mark.parametrize("seconds", [0, 1, 30 * DAY, MAX_RENEW_BEFORE])
def test_renew_before_on_the_line_and_in_json(seconds: int) -> None:
    request = Request(domains=("a.example",), apikey="k", lineage="a.example",
                      renew_before=seconds)
    line = request.encode()
    assert f" renew_before {seconds} ".encode() in line
    assert parse_request(line) == request
    assert parse_request(line).renew_before == seconds
    body = request.to_json()
    assert body["renew_before"] == seconds
    assert Request.from_json(json.loads(json.dumps(body)), "k", "test") == request
    assert Request.from_json({**body, "renew_before": str(seconds)}, "k", "t") == request
    assert request.replace(apikey=None).renew_before == seconds


def test_no_renew_before_is_none() -> None:
    assert parse_request(b"command add domain a.example apikey k").renew_before is None
    assert "renew_before" not in Request(domains=("a.example",)).to_json()
    assert b"renew_before" not in Request(domains=("a.example",), apikey="k").encode()


@pytest.mark.parametrize("value", [
    "-1", "+5", "1.5", "30d", "", "٣٠", "²", str(MAX_RENEW_BEFORE + 1), "9" * 11,
    "0x10", " 5",
])
def test_bad_renew_before_is_a_syntax_error(value: str) -> None:
    # a value the line grammar already refuses (a space, non-ASCII) is refused as such
    with pytest.raises(ParseError, match=r"bad renew_before|printable ASCII words"):
        parse_request(f"command add domain a.example renew_before {value} apikey k"
                      .encode())
    with pytest.raises(ParseError, match="bad renew_before"):
        Request.from_json({"domains": ["a.example"], "renew_before": value}, "k", "t")


@pytest.mark.parametrize("value", [-1, MAX_RENEW_BEFORE + 1, 10 ** 30, 1.5, True, None, [1]])
def test_bad_renew_before_in_json(value: object) -> None:
    with pytest.raises(ParseError, match="renew_before"):
        Request.from_json({"domains": ["a.example"], "renew_before": value}, "k", "t")


def test_renew_before_given_twice() -> None:
    with pytest.raises(ParseError, match="renew_before given twice"):
        parse_request(b"command add domain a.example renew_before 1 renew_before 2 apikey k")


@given(st.text(max_size=14))
@example("0" * 10)
@example("3153600000")
def test_renew_before_value_or_parse_error(value: str) -> None:
    """Any value of the key: the seconds it spells in ASCII digits, or ParseError."""
    line = f"command add domain a.example renew_before {value} apikey k".encode(
        "utf-8", "surrogatepass")
    try:
        request = parse_request(line)
    except ParseError:
        return
    assert request.renew_before is not None
    assert value.isascii() and value.isdigit() and int(value) == request.renew_before
    assert 0 <= request.renew_before <= MAX_RENEW_BEFORE


# --- the hook, run and report send it ------------------------------------------


@pytest.mark.parametrize(("line", "expected"), [
    ("renew_before_expiry = 60 days", 60 * DAY),
    ("renew_before_expiry = 2 weeks  # certbot reads up to the comment", 14 * DAY),
    ("renew_before_expiry = sixty days", None),  # scan names it; the report goes on
    ("# renew_before_expiry = 30 days", None),  # certbot's commented-out default
])
def test_deploy_hook_sends_renew_before(tmp_path: Path, line: str,
                                        expected: int | None) -> None:
    """``certhook hook`` as certbot runs it, in a fresh interpreter: the lineage's
    renew_before_expiry reaches the server, and the fast path stays lean."""
    live = make_lineage(tmp_path / "config", "a.example.org", *HOOK_DOMAINS.split())
    conf = tmp_path / "config" / "renewal" / "a.example.org.conf"
    conf.write_text(line + "\n" + conf.read_text())
    with LineServer() as server:
        env = hook_environment(tmp_path, live, server.url)
        proc = subprocess.run([sys.executable, "-S", "-c", PROBE, str(ROOT), "hook"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")
    _before, loaded = (out.split() for out in proc.stdout.splitlines())
    assert [(r.lineage, r.renew_before, r.acme_server) for r in server.requests] == [
        ("a.example.org", expected, "https://127.0.0.1:1/dir")]
    if expected is not None:
        assert f" renew_before {expected} ".encode() in server.lines[0]
    assert sorted(set(HEAVY) & set(loaded)) == []


def test_from_states_and_log_carry_renew_before(tree: Tree) -> None:
    """``certhook run`` (state before/after) and the log path: a Change per
    lineage with its renew_before, and the submission carries it."""
    tree.lineage("a.example.org")
    tree.lineage("b.example.org")
    _with_top_level(tree, "a.example.org", "renew_before_expiry = 10 hours")
    after = read_unchanged(tree.root)
    changes = from_states(None, after, [])
    assert [(c.lineage, c.renew_before) for c in changes] == [
        ("a.example.org", 10 * 3600), ("b.example.org", None)]
    subs, problems = submissions_for(changes, ClientConfig(api_key=KEY))
    assert problems == []
    assert [s.request.renew_before for s in subs] == [10 * 3600, None]
