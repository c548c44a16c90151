"""Every ``--format``, from real probes of an ok, a warning, a critical and an unknown target."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from probe_helpers import CA, DAY, NOW, serve, write

from certhook.cli import main
from certhook.probe import ProbeOptions, ProbeResult, Target, probe, probe_many
from certhook.probe.output import FORMATS, render
from certhook.probe.prometheus import escape_label

OPTIONS = ProbeOptions(warn_days=21, crit_days=7, timeout=5)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Target], str]]:
    """Four targets: ok (90 days), warning (15 days of 90), critical (wrong name), unknown."""
    root = CA()
    ca_file = write(tmp_path_factory.mktemp("ca") / "root.pem", root.pem)
    servers = [serve(root.issue("127.0.0.1", days=90)),
               serve(root.issue("127.0.0.1", days=15, not_before=NOW - 75 * DAY)),
               serve(root.issue("127.0.0.2", days=90))]
    for server in servers:
        server.__enter__()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    targets = [Target("127.0.0.1", s.port) for s in servers] + [Target("127.0.0.1", closed)]
    yield targets, ca_file
    for server in servers:
        server.__exit__()


@pytest.fixture(scope="module")
def results(world: tuple[list[Target], str]) -> list[ProbeResult]:
    targets, ca_file = world
    found = probe_many(targets, ProbeOptions(ca_file=ca_file, timeout=5))
    assert [r.status for r in found] == ["ok", "warning", "critical", "unknown"]
    return found


def test_text(results: list[ProbeResult]) -> None:
    lines = render(results, "text", OPTIONS).splitlines()
    assert len(lines) == 5
    assert re.fullmatch(r"OK\s+90d  \d{4}-\d\d-\d\d  127\.0\.0\.1:\d+ +CN=127\.0\.0\.1,"
                        r" issuer certhook test root, ECDSA 256, TLSv1\.3", lines[0])
    assert lines[1].startswith("WARNING") and "expires in 15 days" in lines[1]
    assert lines[2].startswith("CRITICAL") and "name mismatch: 127.0.0.1" in lines[2]
    assert re.fullmatch(r"UNKNOWN\s+-  -\s+127\.0\.0\.1:\d+ +connection refused by 127\.0\.0\.1",
                        lines[3])
    assert lines[4] == "4 targets: 1 ok, 1 warning, 1 critical, 1 unknown"
    # The columns line up.
    assert len({line.index("127.0.0.1:") for line in lines[:4]}) == 1


def test_json_contract(results: list[ProbeResult]) -> None:
    report = json.loads(render(results, "json", OPTIONS))
    contract = {"target", "host", "port", "protocol", "status", "error", "days_left", "not_after",
                "fingerprint_sha256", "serial", "subject_cn", "sans", "name_check", "trusted",
                "self_signed", "key_type", "key_bits", "tls_version", "chain", "local_match",
                "reasons", "address", "issuer", "signature_algorithm", "cipher",
                "earliest_chain_expiry"}
    for item in report:
        assert contract <= set(item)
    ok, warning, critical, unknown = report
    assert ok["status"] == "ok" and ok["days_left"] == 90 and ok["local_match"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ok["not_after"])
    assert set(ok["chain"][0]) >= {"subject", "issuer", "not_after"}
    assert warning["reasons"][0].startswith("certificate expires in 15 days")
    assert critical["name_check"] is False
    assert unknown["error"] == "connection refused by 127.0.0.1"
    assert unknown["days_left"] is None and unknown["chain"] == [] and unknown["sans"] == []


_NAGIOS_HEAD = re.compile(r"CERTHOOK (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| .+)?")


def test_nagios_single(results: list[ProbeResult]) -> None:
    out = render(results[:1], "nagios", OPTIONS)
    port = results[0].target.port
    assert re.fullmatch(rf"CERTHOOK OK - 127\.0\.0\.1:{port}: 90 days left \(not after"
                        r" \d{4}-\d\d-\d\d\) \| days=90;21;7 seconds=(\d+)s;1900799;691199\n",
                        out)
    assert render(results[3:], "nagios", OPTIONS) == (
        f"CERTHOOK UNKNOWN - 127.0.0.1:{results[3].target.port}:"
        " connection refused by 127.0.0.1\n")


def test_nagios_many_worst_first(results: list[ProbeResult]) -> None:
    lines = render(results, "nagios", OPTIONS).splitlines()
    assert _NAGIOS_HEAD.fullmatch(lines[0])
    # Critical outranks unknown in the aggregate (docs/probe.md: the order).
    assert lines[0].startswith("CERTHOOK CRITICAL - 4 targets: 1 ok, 1 warning, 1 critical,"
                               " 1 unknown; 127.0.0.1:")
    assert "name mismatch" in lines[0]
    _head, perf = lines[0].split(" | ")
    labels = re.findall(r"'days_127\.0\.0\.1:(\d+)'=(-?\d+);21;7", perf)
    assert [(int(p), int(d)) for p, d in labels] == [
        (r.target.port, r.days_left) for r in results if r.days_left is not None]
    assert [line.split()[0] for line in lines[1:]] == ["CRITICAL", "WARNING", "UNKNOWN", "OK"]


# (statuses of the targets probed, in this order) -> aggregate status, exit code
AGGREGATES = [
    (("critical", "unknown"), "critical", 2),
    (("unknown", "critical"), "critical", 2),
    (("warning", "unknown"), "warning", 1),
    (("ok", "unknown"), "unknown", 3),
    (("ok", "warning", "critical", "unknown"), "critical", 2),
    (("warning", "ok"), "warning", 1),
]


@pytest.mark.parametrize(("statuses", "worst", "code"), AGGREGATES)
def test_nagios_aggregate_order(statuses: tuple[str, ...], worst: str, code: int,
                                world: tuple[list[Target], str],
                                capsys: pytest.CaptureFixture[str]) -> None:
    targets, ca_file = world
    by_status = dict(zip(("ok", "warning", "critical", "unknown"), targets))
    chosen = [by_status[status].label for status in statuses]
    assert main(["probe", "--format", "nagios", "--ca-file", ca_file, *chosen]) == code
    head, *lines = capsys.readouterr().out.splitlines()
    assert head.startswith(f"CERTHOOK {worst.upper()} - {len(statuses)} targets: ")
    assert [line.split()[0] for line in lines] == sorted(
        (s.upper() for s in statuses), key=["CRITICAL", "WARNING", "UNKNOWN", "OK"].index)


def test_prtg_single(results: list[ProbeResult]) -> None:
    sensor = json.loads(render(results[:1], "prtg", OPTIONS))["prtg"]
    channels = {c["channel"]: c for c in sensor["result"]}
    assert sensor["result"][0]["channel"] == "Days to Expiration"  # the primary channel
    assert channels["Days to Expiration"] == {
        "channel": "Days to Expiration", "value": 90, "unit": "Custom", "customunit": "days",
        "limitmode": 1, "limitminwarning": 21, "limitminerror": 7,
        "limitwarningmsg": "certificate expires soon",
        "limiterrormsg": "certificate expires very soon or has expired"}
    lookups = "prtg.standardlookups.sslcertificatesensor."
    assert channels["Common Name Check"] == {"channel": "Common Name Check", "value": 5,
                                             "valuelookup": lookups + "cncheck"}
    assert channels["Root Authority Trusted"]["value"] == 0
    assert channels["Root Authority Trusted"]["valuelookup"] == lookups + "trustedroot"
    assert channels["Self-Signed"] == {"channel": "Self-Signed", "value": 0,
                                       "valuelookup": lookups + "selfsigned"}
    assert channels["Public Key Length"]["value"] == 256
    assert channels["Status"]["value"] == 0
    assert "Matches Local Certificate" not in channels
    assert sensor["text"].startswith(f"{results[0].target.label}: CN=127.0.0.1, sha256 ")


def test_prtg_critical_name_and_status(results: list[ProbeResult]) -> None:
    channels = {c["channel"]: c for c in json.loads(
        render(results[2:3], "prtg", OPTIONS))["prtg"]["result"]}
    assert channels["Common Name Check"]["value"] == 6
    assert channels["Status"]["value"] == 2 and channels["Status"]["limitmaxerror"] == 1


def test_prtg_unknown_is_the_error_form(results: list[ProbeResult]) -> None:
    assert json.loads(render(results, "prtg", OPTIONS)) == {"prtg": {
        "error": 1, "text": f"{results[3].target.label}: connection refused by 127.0.0.1"}}


def test_prtg_many_prefixes_channels(results: list[ProbeResult]) -> None:
    sensor = json.loads(render(results[:3], "prtg", OPTIONS))["prtg"]
    names = [c["channel"] for c in sensor["result"]]
    assert f"{results[1].target.label} Days to Expiration" in names
    assert len(names) == 3 * 7
    assert sensor["text"].startswith("3 targets, worst critical: ")


_SAMPLE = re.compile(
    r'(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)\}'
    r' (?P<value>-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)'
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict reader of the text format: HELP and TYPE before each family's samples."""
    assert text.endswith("\n")
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    current = None
    helped: set[str] = set()
    series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in helped, f"family {name} twice"
            helped.add(name)
            current = name
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == current and kind == "gauge"
            families[name] = []
        else:
            match = _SAMPLE.fullmatch(line)
            assert match, line
            assert match["name"] == current, line
            labels = dict(_LABEL.findall(match["labels"]))
            key = (match["name"], tuple(sorted(labels.items())))
            assert key not in series, f"duplicate series {line}"
            series.add(key)
            families[current].append((labels, float(match["value"])))
    return families


def test_prometheus(results: list[ProbeResult]) -> None:
    families = parse_exposition(render(results, "prometheus", OPTIONS))
    ports = [str(r.target.port) for r in results]

    def values(name: str) -> dict[str, float]:
        return {labels["port"]: value for labels, value in families[name]}

    assert values("probe_success") == dict(zip(ports, [1, 1, 1, 0]))
    assert values("certhook_status") == dict(zip(ports, [0, 1, 2, 3]))
    assert values("certhook_cert_days_left") == dict(zip(ports[:3], [90, 15, 90]))
    assert values("probe_ssl_earliest_cert_expiry")[ports[0]] == int(
        results[0].not_after.timestamp())  # type: ignore[union-attr]
    assert values("certhook_cert_name_ok") == dict(zip(ports[:3], [1, 1, 0]))
    [(labels, one)] = [item for item in families["probe_tls_version_info"]
                       if item[0]["port"] == ports[0]]
    assert labels["version"] == "TLS 1.3" and one == 1
    info = families["probe_ssl_last_chain_info"][0][0]
    assert info["fingerprint_sha256"] == results[0].leaf.fingerprint_sha256  # type: ignore
    assert {labels["target"] for labels, _ in families["probe_success"]} == {
        r.target.label for r in results}
    assert "certhook_cert_local_match" not in families
    assert all(value > 0 for _, value in families["probe_duration_seconds"])


def test_prometheus_escapes_label_values() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    weird = Target("127.0.0.1", 1, servername='x"y\\z\nw')
    result = probe(weird, ProbeOptions(timeout=1))
    families = parse_exposition(render([result], "prometheus", OPTIONS))
    [(labels, _)] = families["probe_success"]
    assert labels["servername"] == 'x\\"y\\\\z\\nw'


@pytest.mark.parametrize("fmt", FORMATS)
def test_exit_code_is_the_worst_status_in_every_format(
    fmt: str, world: tuple[list[Target], str], capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    targets, ca_file = world
    labels = [t.label for t in targets]
    media_type = FORMATS[fmt].media_type
    for chosen, code in ((labels[:1], 0), (labels[:2], 1), (labels[:3], 2), (labels, 2),
                         (labels[3:], 3), (labels[:1] + labels[3:], 3)):
        assert main(["probe", "--format", fmt, "--ca-file", ca_file, *chosen]) == code
        out = capsys.readouterr().out
        if media_type == "application/json":
            json.loads(out)
        elif media_type.startswith("text/plain; version=0.0.4"):
            parse_exposition(out)
        else:
            assert media_type == "text/plain" and out.endswith("\n")


def test_the_docs_have_a_section_per_format() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "probe.md").read_text()
    part = text.split("## Output formats (`--format`)\n", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^### `([a-z]+)`", part, re.M) == list(FORMATS)


def test_the_command_line_offers_every_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--format {" + ",".join(FORMATS) + "}" in out
