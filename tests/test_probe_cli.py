"""``certhook probe`` on the command line: usage errors, targets files, exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from probe_helpers import CA, Server, serve, write

from certhook.cli import main


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    root = CA()
    ca_file = write(tmp_path_factory.mktemp("ca") / "root.pem", root.pem)
    with serve(root.issue("127.0.0.1", "a.example.org", days=40)) as running:
        yield running, ca_file


@pytest.mark.parametrize(("argv", "message"), [
    ([], "no targets: give TARGET, --targets-file or --from-certbot"),
    (["example.org", "--crit", "30"], "--crit 30 is above --warn 21"),
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
