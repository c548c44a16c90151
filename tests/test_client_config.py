"""The client's configuration: INI file, then environment, then flags; the key kept quiet."""

from __future__ import annotations

from pathlib import Path

import pytest
from client_helpers import KEY, write_conf

from certhook.client.config import (
    DEFAULT_DEADLINE,
    DEFAULT_SPOOL_DIR,
    ServerURL,
    load_config,
    parse_server,
    parse_servers,
)
from certhook.errors import LocalError, ParseError

SERVERS = [
    ("tcp://audit.example.org", ServerURL("tcp", "audit.example.org", 10023)),
    ("tcp://audit.example.org:4000", ServerURL("tcp", "audit.example.org", 4000)),
    ("tls://Audit.Example.org", ServerURL("tls", "audit.example.org", 10023)),
    ("audit.example.org", ServerURL("tcp", "audit.example.org", 10023)),
    ("127.0.0.1:9", ServerURL("tcp", "127.0.0.1", 9)),
    ("tcp://[::1]:10024", ServerURL("tcp", "::1", 10024)),
    ("tls://[::1]", ServerURL("tls", "::1", 10023)),
    ("::1", ServerURL("tcp", "::1", 10023)),
    ("https://audit.example.org", ServerURL("https", "audit.example.org", 443)),
    ("https://audit.example.org:8023/", ServerURL("https", "audit.example.org", 8023)),
    ("https://audit.example.org/certhook/", ServerURL("https", "audit.example.org", 443,
                                                      "/certhook")),
    ("http://127.0.0.1:8023", ServerURL("http", "127.0.0.1", 8023)),
]


@pytest.mark.parametrize(("text", "expected"), SERVERS)
def test_server_urls(text: str, expected: ServerURL) -> None:
    assert parse_server(text) == expected


@pytest.mark.parametrize("text", [
    "ftp://audit.example.org", "tcp://", "tcp://host:0", "tcp://host:65536", "tcp://host:x",
    "tcp://host/path", "tcp://[::1", "https://user:pass@audit.example.org",
    f"tcp://{KEY}@audit.example.org",
])
def test_bad_server_urls_name_no_credentials(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_server(text, "CERTHOOK_SERVER")
    assert KEY not in str(info.value)
    assert "pass@" not in str(info.value)
    assert str(info.value).startswith("CERTHOOK_SERVER: ")


def test_server_list_keeps_its_order() -> None:
    servers = parse_servers("tls://a.example:1, https://a.example ,,tcp://b.example")
    assert [str(s) for s in servers] == [
        "tls://a.example:1", "https://a.example:443", "tcp://b.example:10023"]


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("certhook.client.config.DEFAULT_CONFIG", str(tmp_path / "none.conf"))
    config = load_config(None, environ={"CERTHOOK_CONFIG": ""})
    assert config.path is None
    assert config.spool_dir == DEFAULT_SPOOL_DIR
    assert config.deadline == DEFAULT_DEADLINE
    assert config.api_key is None


# (file [client] values, environment, flags) -> (server, key, spool dir, deadline)
LAYERS = [
    ({"spool_dir": "/f/spool", "deadline": "3"}, {}, {},
     ("tcp://file.example:10023", "file-key", "/f/spool", 3.0)),
    ({}, {"CERTHOOK_SERVER": "tls://env.example", "CERTHOOK_API_KEY": "env-key",
          "CERTHOOK_SPOOL_DIR": "/e/spool"}, {},
     ("tls://env.example:10023", "env-key", "/e/spool", DEFAULT_DEADLINE)),
    ({"spool_dir": "/f/spool"}, {"CERTHOOK_SERVER": "tls://env.example",
                                 "CERTHOOK_SPOOL_DIR": "/e/spool"},
     {"server": "https://flag.example", "spool_dir": "/x/spool", "deadline": 2.5},
     ("https://flag.example:443", "file-key", "/x/spool", 2.5)),
]


@pytest.mark.parametrize(("section", "environ", "flags", "expected"), LAYERS)
def test_file_then_environment_then_flags(
    tmp_path: Path, section: dict[str, str], environ: dict[str, str],
    flags: dict[str, object], expected: tuple[str, str, str, float],
) -> None:
    conf = write_conf(tmp_path / "certhook.conf", "tcp://file.example", "file-key", **section)
    config = load_config(str(conf), environ=environ, **flags)  # type: ignore[arg-type]
    assert (",".join(map(str, config.servers)), config.api_key, config.spool_dir,
            config.deadline) == expected


def test_config_file_from_environment(tmp_path: Path) -> None:
    conf = write_conf(tmp_path / "c.conf", "tcp://127.0.0.1:5", "k1")
    config = load_config(environ={"CERTHOOK_CONFIG": str(conf)})
    assert config.path == str(conf)
    assert str(config.servers[0]) == "tcp://127.0.0.1:5"


def test_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(LocalError, match="not found"):
        load_config(str(tmp_path / "missing.conf"), environ={})


def test_api_key_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "key").chmod(0o600)
    conf = tmp_path / "c.conf"
    conf.write_text("[client]\nserver = tcp://127.0.0.1:5\napi_key_file = key\n")
    config = load_config(str(conf), environ={})
    assert config.api_key == KEY
    assert config.warnings == ()


@pytest.mark.parametrize(("mode", "warns"), [(0o600, False), (0o640, True), (0o644, True),
                                             (0o604, True), (0o400, False)])
def test_warns_when_the_key_file_is_readable_by_others(
    tmp_path: Path, mode: int, warns: bool,
) -> None:
    conf = write_conf(tmp_path / "c.conf", "tcp://127.0.0.1:5", KEY, mode=mode)
    config = load_config(str(conf), environ={})
    assert bool(config.warnings) is warns
    if warns:
        assert str(conf) in config.warnings[0]
        assert "\n" not in config.warnings[0]
        assert KEY not in config.warnings[0]


def test_key_from_environment_does_not_warn_about_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text("[client]\nserver = tcp://127.0.0.1:5\n")
    conf.chmod(0o644)
    config = load_config(str(conf), environ={"CERTHOOK_API_KEY": KEY})
    assert config.warnings == ()
    assert config.key_source == "CERTHOOK_API_KEY"


@pytest.mark.parametrize("text", [
    "[client]\ndeadline = soon\n", "[client]\ndeadline = 0\n", "[client]\nserver = gopher://x\n",
    f"[client]\napi_key = {KEY}\n[client]\n", f"[client\napi_key = {KEY}\n",
    f"[client]\napi_key = {KEY} more\n",
])
def test_bad_files_raise_parse_errors_without_the_key(tmp_path: Path, text: str) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(text)
    with pytest.raises(ParseError) as info:
        load_config(str(conf), environ={})
    assert KEY not in str(info.value)
    assert "\n" not in str(info.value)


def test_repr_never_shows_the_key(tmp_path: Path) -> None:
    conf = write_conf(tmp_path / "c.conf", "tcp://127.0.0.1:5", KEY)
    config = load_config(str(conf), environ={})
    assert KEY not in repr(config)
    assert "api_key=set" in repr(config)
    assert config.redact(f"server said {KEY}!") == "server said ***!"
