"""The spool: atomic files, one id for life, no key on disk, one sender at a time."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from client_helpers import KEY, LineServer, client_env

from certhook.client.files import write_atomic
from certhook.client.spool import Spool
from certhook.errors import LocalError
from certhook.protocol import Request

VENV_BIN = Path(sys.executable).parent


def request(n: int = 0, key: str | None = None) -> Request:
    return Request(domains=(f"d{n}.example.org",), apikey=key, lineage=f"d{n}.example.org",
                   event="deployed", id=f"{n:016x}", client="certhook/test")


def test_add_writes_one_file_without_the_key(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    entry = spool.add(request(1, key=KEY), last_error="tcp://x:1: connection refused")
    path = Path(entry.path)
    assert path.parent == tmp_path / "spool"
    assert path.name.endswith(f"-{request(1).id}.json")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    data = path.read_bytes()
    assert KEY.encode() not in data
    doc = json.loads(data)
    assert doc["id"] == request(1).id and doc["attempts"] == 1
    assert doc["request"]["domains"] == ["d1.example.org"]


def test_pending_is_oldest_first_and_keeps_ids(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    for n in range(3):
        spool.add(request(n))
    entries, warnings = spool.pending()
    assert [e.request for e in entries] == [request(n) for n in range(3)]
    assert warnings == []


def test_a_half_written_temp_file_is_ignored_and_cleaned(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    spool.add(request(1))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    killed = tmp_path / f".tmp-{dead}-0badf00d"
    killed.write_bytes(b'{"id": "half')  # a writer killed mid-write
    ours = tmp_path / f".tmp-{os.getpid()}-12345678"
    ours.write_bytes(b"{")  # a live writer's: left alone
    entries, warnings = spool.pending()
    assert [e.request for e in entries] == [request(1)]
    assert warnings == []
    assert not killed.exists()
    assert ours.exists()


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_disk_full_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     call: str) -> None:
    spool = Spool(str(tmp_path))

    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, call, full)
    with pytest.raises(LocalError) as info:
        spool.add(request(1))
    monkeypatch.undo()
    assert str(info.value) == f"cannot write to {tmp_path}: disk full"
    assert os.listdir(tmp_path) == []  # no temp file left behind


def test_unreadable_files_move_to_rejected(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    spool.add(request(1))
    (tmp_path / "0000000000001-bad.json").write_text("{not json")
    (tmp_path / "0000000000002-bad.json").write_text(json.dumps({"request": {"domains": []}}))
    entries, warnings = spool.pending()
    assert [e.request for e in entries] == [request(1)]
    assert len(warnings) == 2
    assert sorted(os.listdir(tmp_path / "rejected")) == [
        "0000000000001-bad.json", "0000000000002-bad.json"]


def test_bash_line_files_are_read_and_lose_their_key(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    (tmp_path / "1700000000000-00000000000000aa.line").write_text(
        f"command add domain a.example.org event deployed id 00000000000000aa client bash"
        f" apikey {KEY}\n")
    entries, _ = spool.pending()
    assert [(e.request.domains, e.request.id, e.request.apikey) for e in entries] == [
        (("a.example.org",), "00000000000000aa", None)]
    assert entries[0].created == 1700000000.0
    spool.update(entries[0], "still down")  # a retry turns it into a .json entry
    assert os.listdir(tmp_path) == ["1700000000000-00000000000000aa.json"]
    again, _ = spool.pending()
    assert again[0].attempts == 1 and again[0].last_error == "still down"


def test_reject_keeps_the_submission(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    entry = spool.add(request(1))
    kept = spool.reject(entry.request, "error syntax bad domain", entry)
    assert spool.names() == []
    assert json.loads(Path(kept).read_text())["last_error"] == "error syntax bad domain"
    fresh = spool.reject(request(2, key=KEY), "error syntax")
    assert KEY not in Path(fresh).read_text()


def test_only_one_holder_of_the_lock(tmp_path: Path) -> None:
    first, second = Spool(str(tmp_path)), Spool(str(tmp_path))
    assert first.lock()
    assert not second.lock(wait=0.1)
    first.unlock()
    assert second.lock()
    second.unlock()


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    write_atomic(str(tmp_path), "f", b"one")
    write_atomic(str(tmp_path), "f", b"two", mode=0o755)
    assert (tmp_path / "f").read_bytes() == b"two"
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o755
    assert os.listdir(tmp_path) == ["f"]


def test_journal_remembers_and_stays_small(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("certhook.client.spool._JOURNAL_MAX", 2000)
    spool = Spool(str(tmp_path))
    spool.remember(["deployed a 00ff"])
    assert spool.delivered() == {"deployed a 00ff"}
    for n in range(200):
        spool.remember([f"deployed lineage-{n} {n:064x}"])
    assert (tmp_path / ".delivered").stat().st_size < 2000 + 100
    assert f"deployed lineage-199 {199:064x}" in spool.delivered()


def test_two_concurrent_flushes_send_each_submission_once(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    ids = []
    for n in range(20):
        ids.append(spool.add(request(n)).request.id)
    with LineServer(delay=0.02) as server:  # a flush takes ~0.4 s: the others must wait
        env = client_env(tmp_path, server.url)
        procs = [subprocess.Popen([str(VENV_BIN / "certhook"), "flush"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(3)]
        codes = [p.wait(30) for p in procs]
    outputs = [p.stdout.read().decode() for p in procs if p.stdout]
    assert codes == [0, 0, 0]
    assert sorted(server.ids, key=str) == sorted(ids)
    assert sum("delivered 20 submissions" in out for out in outputs) == 1
    assert spool.names() == []
