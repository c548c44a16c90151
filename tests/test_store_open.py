"""``db = postgresql://...`` for every command that opens the store, the password never shown."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from certhook.cli import main
from certhook.errors import StoreUnavailable
from certhook.server.store import dburl, open_store
from certhook.server.store.postgres import PostgresStore

if TYPE_CHECKING:
    from pg import Cluster


def test_commands_open_a_postgresql_store(pg_url: str, pg_cluster: Cluster,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    opened = open_store(pg_url)
    assert isinstance(opened, PostgresStore)
    opened.close()
    assert main(["keys", "add", "alice", "--db", pg_url]) == 0
    assert main(["keys", "list", "--db", pg_url]) == 0
    assert main(["targets", "list", "--db", pg_url]) == 0
    out = capsys.readouterr()
    assert "alice\tactive" in out.out and "account alice created" in out.err
    assert pg_cluster.password not in out.out + out.err


def test_a_store_without_its_schema_or_its_server_is_one_line(
        pg_url: str, pg_cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list", "--db", pg_url]) != 0  # create=False: no schema yet
    err = capsys.readouterr().err
    assert "no certhook schema" in err and pg_cluster.password not in err
    assert "Traceback" not in err
    wrong = pg_url.replace(f":{pg_cluster.port}/", ":1/")
    with pytest.raises(StoreUnavailable) as caught:
        open_store(wrong)
    assert pg_cluster.password not in str(caught.value)
    assert dburl.redacted(wrong) in str(caught.value)
