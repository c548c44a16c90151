"""The ``db`` setting: its forms, its errors, and a password that never shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from certhook.cli import main
from certhook.errors import ParseError
from certhook.server.config import load_config
from certhook.server.store.dburl import PostgresUrl, SqliteUrl, parse, redacted

SECRET = "Sup3r-s3cret"

SQLITE = [
    ("/var/lib/certhook/certhook.db", "/var/lib/certhook/certhook.db"),
    ("  certhook.db ", "certhook.db"),
    ("./data/c.db", "./data/c.db"),
    ("sqlite:///var/lib/certhook/c.db", "/var/lib/certhook/c.db"),
    ("sqlite:////var/lib/certhook/c.db", "/var/lib/certhook/c.db"),  # SQLAlchemy's absolute
    ("SQLite:/abs/c.db", "/abs/c.db"),
    ("sqlite:rel/c.db", "rel/c.db"),
    ("sqlite:///tmp/with%20space.db", "/tmp/with space.db"),
    ("data:1/c.db", "data:1/c.db"),  # a colon in a relative path is still a path
]


@pytest.mark.parametrize(("text", "path"), SQLITE)
def test_sqlite_forms(text: str, path: str) -> None:
    assert parse(text) == SqliteUrl(path)


POSTGRES = [
    ("postgresql://certhook@db.internal/certhook",
     ((("db.internal", None),), "certhook", "certhook", None, ())),
    (f"postgres://u:{SECRET}@127.0.0.1:5433/c?sslmode=verify-full&connect_timeout=5",
     ((("127.0.0.1", 5433),), "u", "c", SECRET,
      (("sslmode", "verify-full"), ("connect_timeout", "5")))),
    ("postgresql://u:p%40ss%2Fw@[::1]:6432/c",
     ((("::1", 6432),), "u", "c", "p@ss/w", ())),
    ("postgresql://[2001:db8::5]/c", ((("2001:db8::5", None),), None, "c", None, ())),
    ("postgresql://a:5432,b:5433/c?target_session_attrs=read-write",
     ((("a", 5432), ("b", 5433)), None, "c", None, (("target_session_attrs", "read-write"),))),
    ("postgresql:///certhook?host=%2Frun%2Fpostgresql",
     ((), None, "certhook", None, (("host", "/run/postgresql"),))),
    ("postgresql://", ((), None, None, None, ())),
]


@pytest.mark.parametrize(("text", "parts"), POSTGRES)
def test_postgres_forms(text: str, parts: tuple[object, ...]) -> None:
    url = parse(text)
    assert isinstance(url, PostgresUrl)
    assert (url.hosts, url.user, url.dbname, url.password, url.params) == parts
    assert url.url == text
    assert SECRET not in repr(url)


# Each bad value, with a password in it where a URL can hold one.
BAD = [
    ("", "empty"),
    ("   ", "empty"),
    (f"mysql://root:{SECRET}@db/certhook", "unknown scheme 'mysql'"),
    ("file:///var/c.db", "unknown scheme 'file'"),
    (f"https://u:{SECRET}@x/", "unknown scheme 'https'"),
    (f"postgresql:u:{SECRET}@x/db", "not a URL"),
    (f"postgresql://u:{SECRET}@db:99999/c", "port is not a number"),
    (f"postgresql://u:{SECRET}@db:0/c", "port is not a number"),
    (f"postgresql://u:{SECRET}@db:54x/c", "port is not a number"),
    (f"postgresql://u:{SECRET}@db:/c", "empty port"),
    (f"postgresql://u:{SECRET}@[::1/c", "bad IPv6 host"),
    (f"postgresql://u:{SECRET}@[::1]x/c", "bad IPv6 host"),
    (f"postgresql://u:{SECRET}@a,,b/c", "empty host"),
    (f"postgresql://u:{SECRET}@db/c/extra", "one database name"),
    (f"postgresql://u:{SECRET}@db/c?sslmode=maybe", "sslmode must be one of"),
    (f"postgresql://u:{SECRET}@db/c?connect_timeout=soon", "connect_timeout"),
    (f"postgresql://u:{SECRET}@db/c?port=70000", "port is not a number"),
    (f"postgresql://u:{SECRET}@db/c?bogus=1", "unknown parameter 'bogus'"),
    (f"postgresql://u:{SECRET}@db/c?sslmode", "has no '=VALUE'"),
    (f"postgresql://u:{SECRET}@db/c#frag", "fragment"),
    (f"postgresql://u:{SECRET}@db/c%ff", "percent-encoding"),
    (f"postgresql://db/c?password={SECRET}&bogus=1", "unknown parameter"),
    (f"postgresql://db/c?pass%77ord={SECRET}&sslmode=no", "sslmode"),
    (f"postgresql://db/c?sslpassword={SECRET}&bogus=1", "unknown parameter"),
    (f"postgresql://u:{SECRET}/x@db/c", "port"),  # an unencoded '/' in it: u is the host
    (f"postgresql://u:{SECRET}@db/c\n", None),  # trailing whitespace is stripped: valid
    (f"postgresql://u:{SECRET}\x00@db/c", "control characters"),
    (f"host=db password={SECRET} dbname=c", "keyword=value"),
    (f"host=db password='{SECRET} x' dbname=c", "keyword=value"),
    ("sqlite://host/var/c.db", "names no host"),
    ("sqlite:///var/c.db?mode=ro", "no parameters"),
    ("sqlite://", "no file"),
    ("sqlite:%ff", "percent-encoding"),
]


@pytest.mark.parametrize(("text", "why"), BAD)
def test_bad_values_are_one_line_without_the_password(text: str, why: str | None) -> None:
    if why is None:
        assert isinstance(parse(text), PostgresUrl)
        return
    with pytest.raises(ParseError) as caught:
        parse(text)
    message = str(caught.value)
    assert why in message and message.startswith("db: ")
    assert SECRET not in message and "\n" not in message


@pytest.mark.parametrize("text", [text for text, _ in BAD] + [text for text, _ in POSTGRES])
def test_redacted_never_shows_a_password(text: str) -> None:
    assert SECRET not in redacted(text)


@pytest.mark.parametrize(("text", "shown"), [
    (f"postgresql://u:{SECRET}@h:5432/c", "postgresql://u:***@h:5432/c"),
    (f"postgresql://u:{SECRET}@h/c?sslmode=require&password={SECRET}",
     "postgresql://u:***@h/c?sslmode=require&password=***"),
    (f"postgresql://h/c?password={SECRET}", "postgresql://h/c?password=***"),
    ("postgresql://u@h/c", "postgresql://u@h/c"),  # no password: nothing to hide
    ("postgresql://h/c?application_name=x", "postgresql://h/c?application_name=x"),
    (f"postgresql://u:{SECRET}@weird@h/c", "postgresql://u:***@h/c"),
    ("/var/lib/certhook/certhook.db", "/var/lib/certhook/certhook.db"),
])
def test_redacted_forms(text: str, shown: str) -> None:
    assert redacted(text) == shown


def test_the_config_key_checks_the_url(tmp_path: Path) -> None:
    conf = tmp_path / "server.conf"
    conf.write_text(f"[server]\ndb = postgresql://u:{SECRET}@db:99999/c\n")
    with pytest.raises(ParseError) as caught:
        load_config(conf)
    message = str(caught.value)
    assert "[server] db:" in message and "port" in message and "server.conf" in message
    assert SECRET not in message and "postgresql://u:***@db:99999/c" in message
    conf.write_text(f"[server]\ndb = postgresql://u:{SECRET}@db/c\n")
    assert load_config(conf).db == f"postgresql://u:{SECRET}@db/c"
    conf.write_text("[server]\ndb = sqlite:///var/lib/c.db\n")
    assert load_config(conf).db == "sqlite:///var/lib/c.db"


def test_db_migrate_refuses_a_bad_url_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "migrate", "--db", f"mysql://root:{SECRET}@db/c"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown scheme" in err and SECRET not in err


def test_postgres_without_psycopg_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    assert main(["db", "migrate", "--db", f"postgresql://u:{SECRET}@127.0.0.1:1/c"]) == 1
    err = capsys.readouterr().err
    assert err == ("certhook db: db = postgresql://u:***@127.0.0.1:1/c: needs the postgres"
                   " extra: pip install 'certhook[postgres]'\n")


def test_hook_client_and_probe_do_not_import_psycopg() -> None:
    import subprocess
    import sys

    code = ("import sys, certhook.commands.hook, certhook.commands.report,"
            " certhook.commands.probe, certhook.client.submit, certhook.server.config;"
            " print('psycopg' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
