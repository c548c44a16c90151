"""``certhook probe`` on the command line: usage errors, targets files, exit codes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_helpers import make_lineage
from probe_helpers import CA, Issued, Server, full_chain, serve, write

from certhook.cli import main


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    root = CA()
    ca_file = write(tmp_path_factory.mktemp("ca") / "root.pem", root.pem)
    with serve(root.issue("127.0.0.1", "a.example.org", days=40)) as running:
        yield running, ca_file


@pytest.mark.parametrize(("argv", "message"), [
    ([], "no targets: give TARGET, --targets-file or --from-certbot"),
    (["example.org", "--warn", "21", "--crit", "30"], "--crit 30 is above --warn 21"),
    (["example.org", "--warn", "10%", "--crit", "12.5%"], "--crit 12.5% is above --warn 10%"),
    (["example.org", "--warn", "36h", "--crit", "2d"], "--crit 2d is above --warn 36h"),
    (["example.org", "--warn", "21days"], "'21days' is not a threshold"),
    (["example.org", "--crit", "101%"], "at most 100%"),
    (["example.org", "--warn", "-1"], "must not be negative"),
    (["example.org", "--timeout", "0"], "--timeout must be positive"),
    (["example.org", "--concurrency", "0"], "--concurrency must be at least 1"),
    (["example.org", "--starttls", "gopher"], "--starttls: unknown protocol 'gopher'"),
    (["example.org:99999"], "bad target: 'example.org:99999': port must be a number"),
    (["example.org", "--format", "xml"], "invalid choice: 'xml'"),
    (["example.org", "--name-check", "san"], "invalid choice: 'san'"),
])
def test_usage_errors_exit_2(argv: list[str], message: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["probe", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_targets_file(server: tuple[Server, str], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    running, ca_file = server
    path = tmp_path / "targets"
    path.write_text(f"# loopback\n127.0.0.1:{running.port}\n\n"
                    f"127.0.0.1:{running.port} servername=a.example.org  # by name\n")
    code = main(["probe", "--targets-file", str(path), "--ca-file", ca_file, "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(r["servername"], r["status"], r["days_left"]) for r in report] == [
        (None, "ok", 40), ("a.example.org", "ok", 40)]
    assert running.snis[-2:] in ([None, "a.example.org"], ["a.example.org", None])


def test_targets_file_and_arguments_are_merged_without_duplicates(
    server: tuple[Server, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running, ca_file = server
    path = tmp_path / "targets"
    path.write_text(f"127.0.0.1:{running.port}\n")
    assert main(["probe", f"127.0.0.1:{running.port}", "--targets-file", str(path),
                 "--ca-file", ca_file, "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_bad_targets_file_line_is_one_line_and_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "targets"
    path.write_text("example.org\n\nexample.org:http\n")
    assert main(["probe", "--targets-file", str(path)]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"certhook probe: {path}:3: 'example.org:http': port must be a"
                            " number from 1 to 65535\n")


def test_missing_files_are_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--targets-file", str(tmp_path / "none")]) == 3
    assert capsys.readouterr().err == (
        f"certhook probe: {tmp_path / 'none'}: No such file or directory\n")
    assert main(["probe", "127.0.0.1:1", "--ca-file", str(tmp_path / "none.pem")]) == 3
    assert "cannot load CA certificates" in capsys.readouterr().err
    assert main(["probe", "127.0.0.1:1", "--config-dir", str(tmp_path / "nodir")]) == 3
    assert "certbot config directory" in capsys.readouterr().err


def test_text_is_the_default_format(server: tuple[Server, str],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    running, ca_file = server
    assert main(["probe", f"127.0.0.1:{running.port}", "--ca-file", ca_file,
                 "--warn", "45"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("WARNING  40d  ")
    assert out[-1] == "1 target: 1 warning"


def test_expect_name_and_name_check(server: tuple[Server, str],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    running, ca_file = server
    target = f"127.0.0.1:{running.port}"
    assert main(["probe", target, "--ca-file", ca_file, "--expect-name", "b.example.org"]) == 2
    assert "name mismatch: b.example.org" in capsys.readouterr().out
    assert main(["probe", target, "--ca-file", ca_file, "--expect-name", "b.example.org",
                 "--name-check", "none"]) == 0


def test_silent_server_respects_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with Server(mode="silent") as silent:
        assert main(["probe", f"127.0.0.1:{silent.port}", "--timeout", "0.5",
                     "--format", "nagios"]) == 3
    assert capsys.readouterr().out == (
        f"CERTHOOK UNKNOWN - 127.0.0.1:{silent.port}: timed out in the TLS handshake"
        " with 127.0.0.1\n")


class _Terminal:
    def __init__(self) -> None:
        self.written: list[str] = []

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.written.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_duplicate_targets_are_probed_once(server: tuple[Server, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    running, ca_file = server
    targets = [f"127.0.0.1:{running.port}", f"127.0.0.1:{running.port}/tls"]
    assert main(["probe", *targets, "--ca-file", ca_file, "--format", "json"]) == 0
    out = capsys.readouterr()
    assert len(json.loads(out.out)) == 1
    assert out.err == ""  # no progress when stderr is not a terminal


def test_progress_counts_up(server: tuple[Server, str], monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    running, ca_file = server
    fake = _Terminal()
    monkeypatch.setattr("sys.stderr", fake)
    assert main(["probe", f"127.0.0.1:{running.port}", f"[::1]:{running.port}",
                 "--servername", "a.example.org", "--ca-file", ca_file, "--timeout", "2"]) == 3
    assert "".join(fake.written) == "\rprobed 1/2\rprobed 2/2\n"
    assert capsys.readouterr().out.splitlines()[-1] == "2 targets: 1 ok, 1 unknown"


@pytest.fixture(scope="module")
def by_name(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """A server whose certificate holds names only: probed by its address, it
    is ok only if the probe sends and checks one of those names."""
    root = CA()
    ca_file = write(tmp_path_factory.mktemp("ca") / "root.pem", root.pem)
    with serve(root.issue("a.example.org", "b.example.org", days=40)) as running:
        yield running, ca_file


def test_name_flags_hold_for_every_line_of_a_targets_file(
    by_name: tuple[Server, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running, ca_file = by_name
    path = tmp_path / "targets"
    target = f"127.0.0.1:{running.port}"
    path.write_text(f"{target}\n"
                    f"[::ffff:127.0.0.1]:{running.port}  # the flags\n"
                    f"{target} servername=b.example.org  # its own SNI, the flag's name\n"
                    f"{target} expect-name=c.example.org  # its own name, wrong\n")
    before = len(running.snis)
    code = main(["probe", "--targets-file", str(path), "--servername", "a.example.org",
                 "--expect-name", "a.example.org", "--ca-file", ca_file, "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert [(r["servername"], r["expect_name"], r["status"]) for r in report] == [
        ("a.example.org", "a.example.org", "ok"),
        ("a.example.org", "a.example.org", "ok"),
        ("b.example.org", "a.example.org", "ok"),
        ("a.example.org", "c.example.org", "critical"),
    ]
    assert "name mismatch: c.example.org" in report[3]["reasons"][0]
    assert code == 2
    assert sorted(running.snis[before:]) == ["a.example.org"] * 3 + ["b.example.org"]


@pytest.mark.parametrize(("line", "message"), [
    ("127.0.0.1 servername=a.example.org servername=b.example.org", "servername given twice"),
    ("127.0.0.1 expect-name=a.example.org expect-name=a.example.org",
     "expect-name given twice"),
    ("127.0.0.1 smtp imap", "unexpected 'imap': one protocol per line"),
    ("127.0.0.1 servername=a/b", "'servername=a/b': not a host name or IP address"),
    ("127.0.0.1 servername=", "unexpected 'servername='"),
    ("127.0.0.1 expect-name=a\x1bb", "'expect-name=a\\x1bb': not a host name"),
])
def test_a_bad_line_names_file_and_line(line: str, message: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "targets"
    path.write_text(f"127.0.0.1\n{line}\n", encoding="utf-8")
    assert main(["probe", "--targets-file", str(path)]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"certhook probe: {path}:2: {message}") and err.count("\n") == 1


def test_a_line_s_protocol_beats_the_starttls_flag(tmp_path: Path) -> None:
    from certhook.probe import Target, read_targets_file

    path = tmp_path / "targets"
    path.write_text("mail.example.org:25/smtp\nmail.example.org:2525 lmtp\nmail.example.org\n")
    assert read_targets_file(str(path), "submission") == [
        Target("mail.example.org", 25, "smtp"), Target("mail.example.org", 2525, "lmtp"),
        Target("mail.example.org", 587, "submission")]


@pytest.mark.parametrize(("flag", "value"), [("--servername", "a b"),
                                             ("--expect-name", "[::1]")])
def test_a_bad_name_flag_is_a_usage_error(flag: str, value: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["probe", "example.org", flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == (f"certhook probe: error: {flag}: '{flag[2:]}={value}':"
                   " not a host name or IP address")


def _lineage(config_dir: Path, name: str, issued: Issued) -> None:
    """A certbot lineage holding ``issued`` (as certbot lays one out)."""
    make_lineage(config_dir, name, name)
    archive = config_dir / "archive" / name
    (archive / "cert1.pem").write_bytes(issued.pem)
    (archive / "fullchain1.pem").write_bytes(b"".join(full_chain(issued)))


def test_from_certbot_reads_ports_from_certhook_config_and_takes_the_name_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = CA()
    ca_file = write(tmp_path / "root.pem", root.pem)
    issued = root.issue("a.example.org", "www.a.example.org", days=40)
    _lineage(tmp_path / "letsencrypt", "a.example.org", issued)
    real_getaddrinfo = socket.getaddrinfo

    def loopback(host: str, *args: Any, **kwargs: Any) -> Any:
        assert host.endswith("a.example.org"), host  # no other name is ever looked up
        return real_getaddrinfo("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback)
    with serve(issued) as running:
        conf = tmp_path / "certhook.conf"
        conf.write_text(f"[ports]\na.example.org = {running.port}\n")
        monkeypatch.setenv("CERTHOOK_CONFIG", str(conf))  # as the client commands read it
        common = ["probe", "--from-certbot", "--config-dir", str(tmp_path / "letsencrypt"),
                  "--ca-file", ca_file, "--format", "json"]
        code = main(common)
        report = json.loads(capsys.readouterr().out)
        assert [(r["target"], r["status"], r["local_match"]) for r in report] == [
            (f"a.example.org:{running.port}", "ok", True),
            (f"www.a.example.org:{running.port}", "ok", True)]
        assert code == 0
        # The name flags hold for certbot's targets too.
        code = main([*common, "--servername", "a.example.org", "--expect-name", "b.example.org"])
        report = json.loads(capsys.readouterr().out)
        assert [(r["servername"], r["expect_name"], r["status"]) for r in report] == [
            ("a.example.org", "b.example.org", "critical")] * 2
        assert code == 2
        # --conf still beats the variable.
        other = tmp_path / "other.conf"
        other.write_text("[ports]\na.example.org = 25/smtp\n")
        assert main([*common, "--conf", str(other)]) == 3
        assert {r["target"] for r in json.loads(capsys.readouterr().out)} == {
            "a.example.org:25/smtp", "www.a.example.org:25/smtp"}
        # A variable naming a file that is not there is an error, as for the client.
        monkeypatch.setenv("CERTHOOK_CONFIG", str(tmp_path / "missing.conf"))
        assert main(common) == 3
        assert capsys.readouterr().err.startswith(f"certhook probe: {tmp_path}/missing.conf")


def test_from_certbot_warns_of_typos_in_the_client_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    issued = CA().issue("a.example.org", days=40)
    _lineage(tmp_path / "letsencrypt", "a.example.org", issued)

    def nowhere(host: str, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "not looked up in this test")

    monkeypatch.setattr(socket, "getaddrinfo", nowhere)  # no packet leaves
    conf = tmp_path / "certhook.conf"
    conf.write_text("[ports]\na.exmple.org = 25/smtp\n[clinet]\n")
    main(["probe", "--from-certbot", "--config-dir", str(tmp_path / "letsencrypt"),
          "--conf", str(conf), "--format", "json"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        f"certhook probe: warning: {conf}: line 3: unknown section [clinet], ignored"
        " (did you mean [client]?)",
        f"certhook probe: warning: {conf}: line 2: [ports] 'a.exmple.org' is not a lineage in"
        f" {tmp_path / 'letsencrypt'} (no renewal/a.exmple.org.conf), so never used;"
        " did you mean 'a.example.org'?"]
