"""What changed: certbot's variables, the state before and after, the log."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from client_helpers import make_lineage, renew_lineage, sha256_of_pem

from certhook.certbot.lineage import read_state
from certhook.certbot.log import LogEvent, Run
from certhook.client.changes import (
    Change,
    certbot_dirs,
    deploy_change,
    environment_kind,
    fingerprint_pem,
    from_log,
    from_post_environment,
    from_states,
    runs_since,
)
from certhook.errors import LocalError, ParseError
from certhook.x509 import load_pem_file

NOW = datetime(2026, 1, 2, 3, 4, 5)


def run(*events: tuple[str, str], dry: bool = False) -> Run:
    return Run("letsencrypt.log", NOW, "5.8.0", ("renew",), dry,
               tuple(LogEvent(name, outcome, NOW, None, "letsencrypt.log")
                     for name, outcome in events))


KINDS = [
    ({"RENEWED_LINEAGE": "/etc/letsencrypt/live/a", "RENEWED_DOMAINS": "a"}, "deploy"),
    # certbot leaves the last deploy's variables in the post hook's environment
    ({"RENEWED_LINEAGE": "/x/live/a", "RENEWED_DOMAINS": "a b", "FAILED_DOMAINS": ""}, "post"),
    ({"RENEWED_DOMAINS": "", "FAILED_DOMAINS": "c"}, "post"),
    ({}, "none"),
    ({"RENEWED_LINEAGE": ""}, "none"),
]


@pytest.mark.parametrize(("environ", "kind"), KINDS)
def test_environment_kind(environ: dict[str, str], kind: str) -> None:
    assert environment_kind(environ) == kind


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    make_lineage(config, "a.example.org", "a.example.org", "www.a.example.org")
    make_lineage(config, "b.example.org", "b.example.org")
    make_lineage(config, "b.example.org-0001", "b.example.org")  # same names, two lineages
    return config


def test_fingerprint_matches_the_certificate_parser(config_dir: Path) -> None:
    pem = config_dir / "live" / "a.example.org" / "cert.pem"
    assert fingerprint_pem(str(pem)) == load_pem_file(str(pem))[0].fingerprint_sha256
    assert fingerprint_pem(str(pem)) == sha256_of_pem(pem)


@pytest.mark.parametrize(("data", "error"), [
    (b"", ParseError), (b"-----BEGIN CERTIFICATE-----\n", ParseError),
    (b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", ParseError),
])
def test_fingerprint_of_a_bad_file(tmp_path: Path, data: bytes, error: type[Exception]) -> None:
    (tmp_path / "cert.pem").write_bytes(data)
    with pytest.raises(error):
        fingerprint_pem(str(tmp_path / "cert.pem"))
    with pytest.raises(LocalError):
        fingerprint_pem(str(tmp_path / "missing.pem"))


def test_deploy_change(config_dir: Path) -> None:
    live = config_dir / "live" / "a.example.org"
    change = deploy_change({"RENEWED_LINEAGE": str(live) + "/",
                            "RENEWED_DOMAINS": "a.example.org www.a.example.org"})
    assert change == Change("deployed", "a.example.org", ("a.example.org", "www.a.example.org"),
                            sha256_of_pem(live / "cert.pem"))


def test_deploy_change_without_domains_reads_the_certificate(config_dir: Path) -> None:
    live = config_dir / "live" / "a.example.org"
    change = deploy_change({"RENEWED_LINEAGE": str(live)})
    assert change.domains == ("a.example.org", "www.a.example.org")


POST = [
    # RENEWED_DOMAINS, FAILED_DOMAINS, log events -> (event, lineage, domains)
    ("a.example.org www.a.example.org", "", [("a.example.org", "renewed")],
     [("deployed", "a.example.org", ("a.example.org", "www.a.example.org"))]),
    ("a.example.org www.a.example.org", "b.example.org",
     [("a.example.org", "renewed"), ("b.example.org-0001", "failed")],
     [("deployed", "a.example.org", ("a.example.org", "www.a.example.org")),
      ("failed", "b.example.org-0001", ("b.example.org",))]),
    ("", "b.example.org", None, [("failed", "b.example.org", ("b.example.org",))]),
    ("a.example.org www.a.example.org gone.example.org", "", None,
     [("deployed", "a.example.org", ("a.example.org", "www.a.example.org")),
      ("deployed", None, ("gone.example.org",))]),
]


@pytest.mark.parametrize(("renewed", "failed", "events", "expected"), POST)
def test_post_environment_maps_names_to_lineages(
    config_dir: Path, renewed: str, failed: str, events: list[tuple[str, str]] | None,
    expected: list[tuple[str, str | None, tuple[str, ...]]],
) -> None:
    state = read_state(str(config_dir))
    log = run(*events) if events is not None else None
    changes = from_post_environment({"RENEWED_DOMAINS": renewed, "FAILED_DOMAINS": failed},
                                    state, log)
    assert [(c.event, c.lineage, c.domains) for c in changes] == expected
    for change in changes:
        if change.lineage:
            pem = config_dir / "live" / change.lineage / "cert.pem"
            assert change.fingerprint == sha256_of_pem(pem)


def test_post_environment_of_a_dry_run_reports_nothing(config_dir: Path) -> None:
    state = read_state(str(config_dir))
    environ = {"RENEWED_DOMAINS": "a.example.org www.a.example.org", "FAILED_DOMAINS": ""}
    assert from_post_environment(environ, state, run(dry=True)) == []


def test_from_states(config_dir: Path) -> None:
    before = read_state(str(config_dir))
    renew_lineage(config_dir, "a.example.org", "a.example.org", "www.a.example.org")
    make_lineage(config_dir, "new.example.org", "new.example.org")
    after = read_state(str(config_dir))
    changes = from_states(before, after, [run(("a.example.org", "renewed"),
                                              ("b.example.org", "failed"))])
    assert [(c.event, c.lineage) for c in changes] == [
        ("deployed", "a.example.org"), ("deployed", "new.example.org"),
        ("failed", "b.example.org")]
    a_pem = config_dir / "live" / "a.example.org" / "cert.pem"
    assert changes[0].fingerprint == sha256_of_pem(a_pem)
    assert changes[0].fingerprint != before.lineages[0].certificate.fingerprint_sha256  # type: ignore[union-attr]


def test_from_states_without_a_before_reports_everything(config_dir: Path) -> None:
    changes = from_states(None, read_state(str(config_dir)), [])
    assert [c.lineage for c in changes] == ["a.example.org", "b.example.org",
                                            "b.example.org-0001"]


def test_from_log(config_dir: Path) -> None:
    state = read_state(str(config_dir))
    changes = from_log(state, run(("a.example.org", "renewed"), ("b.example.org", "failed"),
                                  ("b.example.org-0001", "not_due"), ("gone", "failed")))
    assert [(c.event, c.lineage) for c in changes] == [
        ("deployed", "a.example.org"), ("failed", "b.example.org")]
    assert changes[1].journal_key == f"failed b.example.org {NOW.isoformat()}"
    assert from_log(state, run(("a.example.org", "simulated"), dry=True)) == []
    assert from_log(state, None) == []


ARGV = [
    (["certbot", "renew", "--config-dir", "/c", "--logs-dir", "/l"], ("/c", "/l")),
    (["certbot", "renew", "--config-dir=/c"], ("/c", "/var/log/letsencrypt")),
    (["certbot", "renew"], ("/etc/letsencrypt", "/var/log/letsencrypt")),
]


@pytest.mark.parametrize(("argv", "expected"), ARGV)
def test_certbot_dirs_from_the_wrapped_command(argv: list[str],
                                               expected: tuple[str, str]) -> None:
    assert certbot_dirs({}, argv) == expected


def test_certbot_dirs_flags_win_and_renewed_lineage_helps(config_dir: Path) -> None:
    live = config_dir / "live" / "a.example.org"
    assert certbot_dirs({"RENEWED_LINEAGE": str(live)}, [])[0] == str(config_dir)
    assert certbot_dirs({}, ["certbot", "--config-dir", "/c"], "/flag", "/logs") == (
        "/flag", "/logs")


def _log_run(start: datetime, lineage: str) -> str:
    stamp = start.strftime("%Y-%m-%d %H:%M:%S")
    return "".join(f"{stamp},{n:03}:{record}\n" for n, record in enumerate((
        "DEBUG:certbot._internal.main:certbot version: 5.8.0",
        "DEBUG:certbot._internal.main:Arguments: ['-q']",
        "DEBUG:certbot._internal.display.obj:Notifying user: Processing"
        f" /etc/letsencrypt/renewal/{lineage}.conf",
        "INFO:certbot._internal.renewal:Certificate is due for renewal, auto-renewing...",
    )))


def test_runs_since_reads_no_older_log_than_it_needs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "letsencrypt.log").write_text(_log_run(datetime(2026, 1, 3), "c")
                                          + _log_run(datetime(2026, 1, 4), "d"))
    (logs / "letsencrypt.log.1").write_text(_log_run(datetime(2026, 1, 1), "a")
                                            + _log_run(datetime(2026, 1, 2), "b"))
    # Older logs that cannot be read: reading them would raise LocalError.
    (logs / "letsencrypt.log.2").mkdir()
    (logs / "letsencrypt.log.3").mkdir()

    def names(runs: list[Run]) -> list[str]:
        return [event.lineage for r in runs for event in r.events]

    assert names(runs_since(str(logs), None)) == ["d"]
    assert names(runs_since(str(logs), datetime(2026, 1, 3, 12))) == ["d"]
    assert names(runs_since(str(logs), datetime(2026, 1, 2))) == ["b", "c", "d"]
    assert names(runs_since(str(logs), datetime(2026, 1, 2), files=1)) == ["c", "d"]
    with pytest.raises(LocalError, match=r"letsencrypt\.log\.2: Is a directory"):
        runs_since(str(logs), datetime(2026, 1, 1))  # this one needs the older ones
    (logs / "letsencrypt.log").write_text("")  # certbot just rotated: the run is in .1
    assert names(runs_since(str(logs), None)) == ["b"]
