"""Every config file certhook reads: a typo is one warning line naming the file,
the line and the nearest known name; a bad value one error line naming the
file, line, key and what is allowed; never a traceback.

Tables: file text in, the exact line out, and the exit code, through the
commands' own ``main([...])``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from client_helpers import KEY, LineServer, make_lineage

from certhook import cli
from certhook.client import config as client_config
from certhook.client.spool import Spool
from certhook.server import config as server_config

# -- the client's certhook.conf -------------------------------------------------

CLIENT_KNOWN = "known: server, api_key, api_key_file, spool_dir, deadline, ca_file, allow_http"

# text -> the warning, after "FILE: "
CLIENT_WARNINGS = [
    ("[client]\nsever = tcp://127.0.0.1:1\n",
     "line 2: unknown key 'sever' in [client], ignored (did you mean 'server'?)"),
    ("[clinet]\nserver = tcp://127.0.0.1:1\n",
     "line 1: unknown section [clinet], ignored (did you mean [client]?)"),
    ("# certhook\n[client]\nintervall = 5\n",
     f"line 3: unknown key 'intervall' in [client], ignored ({CLIENT_KNOWN})"),
    ("[adit]\nk = v\n", "line 1: unknown section [adit], ignored (known: [client], [ports])"),
    ("[client]\nApi-Key = x\n",
     "line 2: unknown key 'api-key' in [client], ignored (did you mean 'api_key'?)"),
    ("[DEFAULT]\ndeadlin = 3\n[client]\n",
     "line 2: unknown key 'deadlin' in [DEFAULT], ignored (did you mean 'deadline'?)"),
]

# text -> the error, after "FILE: "
CLIENT_ERRORS = [
    ("[client]\ndeadline = soon\n",
     "line 2: [client] deadline: 'soon' is not a number of seconds,"
     " more than 0 and at most 3600"),
    ("[client]\n\ndeadline = 0\n",
     "line 3: [client] deadline: '0' is not a number of seconds, more than 0 and at most 3600"),
    ("[client]\nserver = gopher://x\n",
     "line 2: [client] server: server scheme 'gopher' is not tcp://, tls:// or https://"),
    (f"[client]\napi_key = {KEY} more\n",
     "line 2: [client] api_key: must be one word, without spaces"),
    ("[DEFAULT]\ndeadline = nan\n[client]\n",
     "line 2: [client] deadline: 'nan' is not a number of seconds,"
     " more than 0 and at most 3600"),
    ("[client]\njust words\n", "line 2: neither 'key = value' nor a [section] header"),
]


@pytest.fixture
def certbot_dir(tmp_path: Path) -> Path:
    """certbot's config dir with one lineage, example.org."""
    make_lineage(tmp_path / "letsencrypt", "example.org", "example.org")
    return tmp_path / "letsencrypt"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CERTHOOK_CONFIG", "CERTHOOK_SERVER", "CERTHOOK_API_KEY", "RENEWED_LINEAGE",
                 "RENEWED_DOMAINS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CERTHOOK_SPOOL_DIR", str(tmp_path / "spool"))


def _conf(tmp_path: Path, text: str) -> str:
    path = tmp_path / "certhook.conf"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize(("text", "warning"), CLIENT_WARNINGS)
def test_client_typos_warn_once_with_the_nearest_name(
    clean_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
    warning: str,
) -> None:
    conf = _conf(tmp_path, text)
    (tmp_path / "empty" / "renewal").mkdir(parents=True)
    code = cli.main(["report", "--config", conf, "--config-dir", str(tmp_path / "empty")])
    assert (code, capsys.readouterr().err) == (0, f"certhook report: warning: {conf}: {warning}\n")


def test_flush_with_nothing_waiting_still_warns_of_a_typo(
    clean_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    text, warning = CLIENT_WARNINGS[0]
    conf = _conf(tmp_path, text)
    code = cli.main(["flush", "-q", "--config", conf, "--spool-dir", str(tmp_path / "spool")])
    assert (code, capsys.readouterr().err) == (0, f"certhook flush: warning: {conf}: {warning}\n")


@pytest.mark.parametrize(("text", "error"), CLIENT_ERRORS)
def test_client_bad_values_are_one_error_line(
    clean_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, error: str,
) -> None:
    conf = _conf(tmp_path, text)
    code = cli.main(["report", "--config", conf, "--config-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert (code, err) == (1, f"certhook report: {conf}: {error}\n")
    assert KEY not in err


@pytest.mark.parametrize(("text", "error"), CLIENT_ERRORS[:4])
def test_the_hook_says_the_same_and_still_spools(
    clean_env: None, tmp_path: Path, certbot_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], text: str, error: str,
) -> None:
    monkeypatch.setenv("CERTHOOK_CONFIG", _conf(tmp_path, text))
    monkeypatch.setenv("RENEWED_LINEAGE", str(certbot_dir / "live" / "example.org"))
    monkeypatch.setenv("RENEWED_DOMAINS", "example.org")
    assert cli.main(["hook"]) == 0  # never breaks certbot
    err = capsys.readouterr().err
    assert err.startswith(f"certhook hook: warning: configuration unusable, nothing sent:"
                          f" {tmp_path / 'certhook.conf'}: {error}; ")
    assert err.count("\n") == 1 and KEY not in err
    assert len(Spool(str(tmp_path / "spool")).names()) == 1


PORTS = [
    # the [ports] key, what the warning adds after "FILE: line 3: "
    ("exmaple.org", "[ports] 'exmaple.org' is not a lineage in {dir} (no"
                    " renewal/exmaple.org.conf), so never used; did you mean 'example.org'?"),
    ("mail.other.net", "[ports] 'mail.other.net' is not a lineage in {dir} (no"
                       " renewal/mail.other.net.conf), so never used"),
    ("Example.ORG", None),  # keys are case-insensitive, as lineages are matched
]


@pytest.mark.parametrize(("key", "warning"), PORTS)
def test_a_ports_key_that_is_no_lineage_warns_where_the_config_dir_is_known(
    clean_env: None, tmp_path: Path, certbot_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], key: str, warning: str | None,
) -> None:
    with LineServer() as server:
        conf = _conf(tmp_path, f"[client]\nserver = {server.url}\n[ports]\n{key} = 25/smtp\n")
        monkeypatch.setenv("CERTHOOK_API_KEY", KEY)
        # report: --config-dir
        code = cli.main(["report", "-q", "--config", conf, "--config-dir", str(certbot_dir)])
        report_err = capsys.readouterr().err
        # the deploy hook: certbot's RENEWED_LINEAGE
        monkeypatch.setenv("CERTHOOK_CONFIG", conf)
        monkeypatch.setenv("RENEWED_LINEAGE", str(certbot_dir / "live" / "example.org"))
        monkeypatch.setenv("RENEWED_DOMAINS", "example.org")
        assert cli.main(["hook"]) == 0
        hook_err = capsys.readouterr().err
    expected = "" if warning is None else f"{conf}: line 4: {warning.format(dir=certbot_dir)}"
    assert (code, report_err) == (0, f"certhook report: warning: {expected}\n" if expected
                                  else "")
    assert hook_err == (f"certhook hook: warning: {expected}\n" if expected else "")
    assert len(server.requests) == 2  # the ports key did not stop the submissions


def test_flush_knows_no_config_dir_and_does_not_guess(
    clean_env: None, tmp_path: Path,
) -> None:
    conf = _conf(tmp_path, "[ports]\nexmaple.org = 25\n")
    config = client_config.load_config(conf, environ={})
    assert config.warnings == ()


def test_no_config_at_all_names_the_file_and_the_variable(
    clean_env: None, tmp_path: Path, certbot_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "etc" / "certhook.conf"
    monkeypatch.setattr(client_config, "DEFAULT_CONFIG", str(missing))
    monkeypatch.setenv("CERTHOOK_API_KEY", KEY)
    assert cli.main(["report", "-q", "--config-dir", str(certbot_dir)]) == 1
    err = capsys.readouterr().err
    assert (f"no audit server configured: {missing} does not exist (CERTHOOK_CONFIG names"
            " another file), nor is CERTHOOK_SERVER set" in err)
    assert err.count("\n") == 1
    conf = _conf(tmp_path, "[client]\n")
    assert cli.main(["report", "-q", "--config", conf, "--config-dir", str(certbot_dir)]) == 1
    assert (f"no audit server configured: no [client] server in {conf}, nor CERTHOOK_SERVER"
            in capsys.readouterr().err)


def test_every_client_key_is_known_because_it_is_read() -> None:
    # The table that reads [client] is the list of known keys: no second list.
    assert client_config.SECTIONS["client"] is client_config._CLIENT_KEYS
    docs = (Path(__file__).parent.parent / "docs" / "client.md").read_text()
    for key in client_config._CLIENT_KEYS:
        assert re.search(rf"^\s*#?\s*{key} =", docs, re.M), f"docs/client.md lacks {key}"


# -- the audit server's file ---------------------------------------------------------

SERVER_ERRORS = [
    ("[smtp]\nhost = mail.example\nport = twentyfive\n",
     "line 3: [smtp] port: 'twentyfive' is not a port number, 1 to 65535"),
    ("[smtp]\nstarttls = maybe\n",
     "line 2: [smtp] starttls: 'maybe' is not yes or no (or true/false, on/off, 1/0)"),
    ("[notify]\nretries = many\n", "line 2: [notify] retries: 'many' is not a whole number,"
                                   " 0 or more"),
    ("[audit]\ngrace = soon\n",
     "line 2: [audit] grace: 'soon' is not a duration (e.g. 30s, 15m, 6h, 1d)"),
    ("[audit]\njitter = 2\n", "line 2: [audit] jitter: '2' is not a number from 0 to 1"),
    ("[audit]\nfailure_threshold = 0\n",
     "line 2: [audit] failure_threshold: '0' is not a whole number, 1 or more"),
    ("[audit]\nexpiry_notices = 21, soon\n",
     "line 2: [audit] expiry_notices: '21, soon' is not a list of thresholds (e.g. 23.33%,"
     " 7.78%, 1.11% or 21, 7, 1): 'soon' is not a threshold: give a fraction of the lifetime"
     " (25%), a time with a unit (21d, 36h, 90m) or a number of days (21)"),
    ("[audit]\nwarn = 21 days\n", "line 2: [audit] warn: '21 days' is not a threshold: give"
     " a fraction of the lifetime (25%), a time with a unit (21d, 36h, 90m) or a number of"
     " days (21)"),
    ("[audit]\ncrit_days = 7d\n",
     "line 2: [audit] crit_days: '7d' is not a whole number, 0 or more"),
    ("[audit]\nallow_networks = 10.0.0.0/33\n",
     "line 2: [audit] allow_networks: bad network '10.0.0.0/33' in allow_networks"),
    ("[server]\nline_listen = nowhere\n",
     "line 2: [server] line_listen: 'nowhere' is not HOST:PORT, [IPV6]:PORT or off"),
    ("[server]\nmax_connections = -1\n",
     "line 2: [server] max_connections: '-1' is not a whole number, 1 or more"),
    ("[account alice]\nlog = sometimes\n", "line 2: [account alice] log: 'sometimes' is not"
                                           " yes or no (or true/false, on/off, 1/0)"),
    ("[server]\nnonsense\n", "line 2: neither 'key = value' nor a [section] header"),
    ("[smtp]\n[smtp]\n", "line 2: section [smtp] given twice"),
]

SERVER_WARNINGS = [
    ("[audit]\nintervall = 1h\n",
     "line 2: unknown key 'intervall' in [audit], ignored (did you mean 'interval'?)"),
    ("[adit]\ninterval = 1h\n", "line 1: unknown section [adit], ignored (did you mean [audit]?)"),
    ("[acount alice]\nemail = a@example.org\n",
     "line 1: unknown section [acount alice], ignored (did you mean [account alice]?)"),
    ("[server]\nmax_conections = 5\n", "line 2: unknown key 'max_conections' in [server],"
                                       " ignored (did you mean 'max_connections'?)"),
    ("[notify]\nretrys = 3\n",
     "line 2: unknown key 'retrys' in [notify], ignored (did you mean 'retries'?)"),
    ("[smtp]\n\nstartls = yes\n",
     "line 3: unknown key 'startls' in [smtp], ignored (did you mean 'starttls'?)"),
    ("[account bob]\nwebhok = https://x.example\n",
     "line 2: unknown key 'webhok' in [account bob], ignored (did you mean 'webhook'?)"),
    ("[mail]\n", "line 1: unknown section [mail], ignored (known: [server], [audit], [smtp],"
                 " [notify], [account NAME], [target NAME])"),
]


class _NoServer:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("listeners started despite a bad configuration")


@pytest.mark.parametrize(("text", "error"), SERVER_ERRORS)
def test_serve_fails_fast_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    text: str, error: str,
) -> None:
    monkeypatch.setattr("certhook.server.runner.AuditServer", _NoServer)
    conf = tmp_path / "server.conf"
    conf.write_text(text)
    code = cli.main(["serve", "--config", str(conf), "--db", str(tmp_path / "db")])
    out, err = capsys.readouterr()
    assert (code, out, err) == (1, "", f"certhook serve: {conf}: {error}\n")


def test_serve_without_its_file_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("certhook.server.runner.AuditServer", _NoServer)
    conf = tmp_path / "none.conf"
    assert cli.main(["serve", "--config", str(conf)]) == 1
    assert capsys.readouterr().err == f"certhook serve: {conf}: configuration file not found\n"


@pytest.mark.parametrize(("text", "warning"), SERVER_WARNINGS)
def test_server_typos_are_one_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, warning: str,
) -> None:
    conf = tmp_path / "server.conf"
    conf.write_text(text)
    with caplog.at_level(logging.WARNING, "certhook.server.config"):
        config = server_config.load_config(conf)
    assert [r.getMessage() for r in caplog.records] == [f"{conf}: {warning}"]
    assert config.interval == server_config.ServerConfig().interval  # the typo is ignored


def test_the_tables_that_read_are_the_known_keys_and_documented() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "server.md").read_text()
    section = docs[docs.index("## Configuration file"):]
    for name, table in server_config.SECTIONS.items():
        header = {server_config.ACCOUNT: "[account alice]",
                  server_config.TARGET: "[target www.example.org]"}.get(name, f"[{name}]")
        assert header in section, f"docs/server.md lacks {header}"
        for key in table:
            assert re.search(rf"^\s*#?\s*{key} =", section, re.M), f"docs lack [{name}] {key}"


def test_the_shipped_example_server_config_is_clean_and_shows_the_defaults(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # contrib/certhook-server.conf says its values are the defaults: keep it true.
    from dataclasses import fields

    from certhook.server.config import ServerConfig, load_config

    example = Path(__file__).parent.parent / "contrib" / "certhook-server.conf"
    with caplog.at_level("WARNING"):
        loaded = load_config(example)
    assert caplog.records == []
    differ = [f.name for f in fields(ServerConfig)
              if getattr(loaded, f.name) != getattr(ServerConfig(), f.name)]
    assert differ == []
