"""The spool: atomic files, one id for life, no key on disk, one sender at a time."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from client_helpers import KEY, LineServer, client_env, make_lineage

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


def test_unreadable_files_move_to_corrupt(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    spool.add(request(1))
    (tmp_path / "0000000000001-bad.json").write_text("{not json")
    (tmp_path / "0000000000002-bad.json").write_text(json.dumps({"request": {"domains": []}}))
    entries, warnings = spool.pending()
    assert [e.request for e in entries] == [request(1)]
    assert len(warnings) == 2
    assert sorted(os.listdir(tmp_path / "corrupt")) == [
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


# -- issue 9.6: no file can poison the spool ------------------------------------

_VALID = json.dumps({"id": "00000000000000ee", "created": 1.0, "attempts": 1,
                     "request": {"domains": ["x.example.org"], "id": "00000000000000ee"}})
CORRUPT_FILES: dict[str, bytes] = {
    "deep-nesting.json": b"[" * 60000,
    "deep-objects.json": b'{"a":' * 60000,
    "deep-request.json": b'{"request": ' + b"[" * 60000,
    "truncated.json": _VALID[: len(_VALID) // 2].encode(),
    "binary.json": bytes(range(256)) * 4,
    "empty.json": b"",
    "empty.line": b"",
    "huge.json": b'{"request": {"domains": ["' + b"a" * (5 << 20) + b'"]}}',
    "huge.line": b"command add domain " + b"a" * (1 << 20) + b" id 00000000000000aa\n",
    "not-an-object.json": b"[]",
    "null.json": b"null",
    "request-a-list.json": json.dumps({"request": []}).encode(),
    "domains-a-number.json": json.dumps({"request": {"domains": 5, "id": "0" * 16}}).encode(),
    "id-a-list.json": json.dumps({"request": {"domains": ["a.example.org"], "id": [7]}}).encode(),
    "ports-words.json": json.dumps({"request": {"domains": ["a.example.org"], "ports": ["x"],
                                                "id": "0" * 16}}).encode(),
    "port-huge.json": b'{"request": {"domains": ["a.example.org"], "ports": [' + b"9" * 5000
                      + b'], "id": "0000000000000000"}}',
    "no-id.line": b"command add domain a.example.org event deployed\n",
    "nul-bytes.line": b"command add domain a\x00b id 00000000000000aa\n",
    "brackets.line": b"[" * 60000,
}


def _poisoned_spool(spool_dir: Path, name: str, data: bytes | None) -> list[str]:
    """An older and a newer good entry around one bad file; the good ids."""
    spool = Spool(str(spool_dir))
    ids = [spool.add(request(1)).request.id]
    bad = spool_dir / f"{int(time.time() * 1000):013d}-{name}"
    if data is None:
        bad.mkdir()  # a directory named like an entry
    else:
        bad.write_bytes(data)
    time.sleep(0.002)
    ids.append(spool.add(request(2)).request.id)
    return [i for i in ids if i]


@pytest.mark.parametrize("name", [*CORRUPT_FILES, "a-directory.json"])
@pytest.mark.parametrize("command", ["flush", "hook"])
def test_a_corrupt_spool_file_stops_nothing(tmp_path: Path, name: str, command: str) -> None:
    data = CORRUPT_FILES.get(name)
    spool_dir = tmp_path / "spool"
    good = _poisoned_spool(spool_dir, name, data)
    live = make_lineage(tmp_path / "config", "new.example.org", "new.example.org")
    with LineServer() as server:
        env = client_env(tmp_path, server.url, RENEWED_LINEAGE=str(live),
                         RENEWED_DOMAINS="new.example.org")
        proc = subprocess.run([str(VENV_BIN / "certhook"), command], env=env,
                              capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr
    expected = good + ([] if command == "flush" else [server.requests[-1].id])
    assert server.ids == expected  # the good entries, in order, and the new submission
    if command == "hook":
        assert server.requests[-1].lineage == "new.example.org"
    assert proc.returncode == 0
    [bad] = [n for n in os.listdir(spool_dir) if n.endswith(name)] or [
        n for n in os.listdir(spool_dir / "corrupt")]
    if data is None:
        assert (spool_dir / bad).is_dir() and proc.stderr == ""  # not an entry: left alone
        return
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"spool file {bad} is unreadable (" in proc.stderr
    assert f"moved to {spool_dir / 'corrupt' / bad}" in proc.stderr
    assert (spool_dir / "corrupt" / bad).read_bytes() == data
    assert Spool(str(spool_dir)).names() == []


def test_an_unreadable_spool_file_stops_nothing(tmp_path: Path) -> None:
    # Mode 0 stops no root process: run certhook flush as root without the
    # capabilities that override file modes (as any other user would be).
    spool_dir = tmp_path / "spool"
    good = _poisoned_spool(spool_dir, "unreadable.json", _VALID.encode())
    [bad] = [n for n in os.listdir(spool_dir) if n.endswith("unreadable.json")]
    (spool_dir / bad).chmod(0)
    drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if (
        os.geteuid() == 0) else []
    with LineServer() as server:
        proc = subprocess.run([*drop, str(VENV_BIN / "certhook"), "flush"],
                              env=client_env(tmp_path, server.url), capture_output=True,
                              text=True, timeout=60)
    assert "Traceback" not in proc.stderr
    assert server.ids == good
    assert proc.returncode == 0 and proc.stderr.count("\n") == 1
    assert f"spool file {bad} is unreadable (Permission denied); moved to" in proc.stderr
    assert (spool_dir / "corrupt" / bad).exists()
