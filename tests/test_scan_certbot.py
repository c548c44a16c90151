"""``certhook scan`` against real certbot trees: it must agree with ``certbot certificates``."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from acmeenv import Certbot, Pebble

from certhook.cli import main


def parse_certbot_certificates(text: str) -> dict[str, dict[str, str]]:
    """The per-certificate blocks of ``certbot certificates`` (certbot 1.x to 5.x wording)."""
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        m = re.match(r"\s+Certificate Name: (.+)$", line)
        if m:
            current = found.setdefault(m.group(1), {})
            continue
        m = re.match(r"\s+(Serial Number|Key Type|Identifiers|Domains|Expiry Date): (.+)$", line)
        if m and current is not None:
            current[m.group(1)] = m.group(2)
    return found


def scan_json(capsys: pytest.CaptureFixture[str], certbot: Certbot) -> dict[str, Any]:
    code = main(["scan", "--json", "--config-dir", str(certbot.config_dir),
                 "--logs-dir", str(certbot.logs_dir)])
    out = capsys.readouterr().out
    assert code == 0, out
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture(scope="module")
def certbot_tree(pebble: Pebble, tmp_path_factory: pytest.TempPathFactory) -> Certbot:
    certbot = Certbot(pebble, tmp_path_factory.mktemp("tree"))
    certbot.certonly("rsa2048.example.org", "www.rsa2048.example.org", key_type="rsa", size=2048)
    certbot.certonly("rsa4096.example.org", key_type="rsa", size=4096)
    certbot.certonly("p256.example.org", "a.p256.example.org", "b.p256.example.org",
                     "c.p256.example.org", key_type="ecdsa", size=256)
    certbot.certonly("p384.example.org", key_type="ecdsa", size=384)
    # The same name again under a new lineage: certbot calls it p384.example.org-0001.
    certbot.certonly("p384.example.org", "extra.p384.example.org", key_type="ecdsa", size=384,
                     extra=("--duplicate",))
    certbot.certonly("renewed.example.org", key_type="ecdsa")
    certbot.renew("--cert-name", "renewed.example.org")
    certbot.renew("--cert-name", "renewed.example.org")
    return certbot


def test_scan_agrees_with_certbot_certificates(
    certbot_tree: Certbot, capsys: pytest.CaptureFixture[str]
) -> None:
    theirs = parse_certbot_certificates(certbot_tree.certificates())
    ours = {row["name"]: row for row in scan_json(capsys, certbot_tree)["lineages"]}
    assert set(ours) == set(theirs)
    assert "p384.example.org-0001" in ours
    for name, cert in theirs.items():
        row = ours[name]
        identifiers = cert.get("Identifiers") or cert["Domains"]
        assert row["domains"] == identifiers.split(), name
        assert row["serial"] == cert["Serial Number"], name
        # "2031-11-21 07:21:38+00:00 (VALID: 1825 days)"
        expiry = cert["Expiry Date"].split(" (")[0]
        assert row["not_after"] == expiry.replace(" ", "T").replace("+00:00", "Z"), name
        valid_days = re.search(r"VALID: (\d+) day", cert["Expiry Date"])
        assert valid_days is not None
        assert row["days_left"] == int(valid_days.group(1)), name
        assert row["key_type"] == cert["Key Type"].lower(), name
        assert row["problems"] == [], name
    assert ours["renewed.example.org"]["version"] == 3
    assert ours["rsa4096.example.org"]["key_bits"] == 4096
    assert ours["p384.example.org"]["key_bits"] == 384
    assert ours["renewed.example.org"]["last_event"]["outcome"] == "renewed"


def test_scan_reads_without_writing(
    certbot_tree: Certbot, capsys: pytest.CaptureFixture[str]
) -> None:
    def snapshot(root: Path) -> dict[str, tuple[float, int, str]]:
        out = {}
        for path in sorted(root.rglob("*")):
            st = path.lstat()
            link = os.readlink(path) if path.is_symlink() else ""
            out[str(path)] = (st.st_mtime, st.st_mode, link)
        return out

    before = snapshot(certbot_tree.base)
    scan_json(capsys, certbot_tree)
    main(["scan", "--config-dir", str(certbot_tree.config_dir),
          "--logs-dir", str(certbot_tree.logs_dir)])
    assert snapshot(certbot_tree.base) == before


def test_scan_text_one_row_per_lineage(
    certbot_tree: Certbot, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["scan", "--config-dir", str(certbot_tree.config_dir),
                 "--logs-dir", str(certbot_tree.logs_dir)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].split()[:2] == ["LINEAGE", "DOMAINS"]
    rows = {line.split()[0]: line for line in out[1:-1]}
    assert "p256.example.org +3" in rows["p256.example.org"]
    assert "ECDSA 256" in rows["p256.example.org"]
    assert "RSA 4096" in rows["rsa4096.example.org"]
    assert "renewed" in rows["renewed.example.org"]
    assert out[-1] == "6 lineage(s), 0 with problems"


def test_scan_failed_renewal_is_the_last_event(
    certbot: Certbot, capsys: pytest.CaptureFixture[str]
) -> None:
    certbot.certonly("fails.example.org")
    certbot.server_url = "https://127.0.0.1:1/dir"  # closed loopback port: renewal fails
    proc = certbot.renew(check=False)
    assert proc.returncode != 0
    code = main(["scan", "--json", "--config-dir", str(certbot.config_dir),
                 "--logs-dir", str(certbot.logs_dir)])
    row = json.loads(capsys.readouterr().out)["lineages"][0]
    assert code == 0  # the lineage itself reads cleanly; the failure is its last event
    assert row["last_event"]["outcome"] == "failed"
    assert "127.0.0.1" in row["last_event"]["message"]


def test_scan_missing_config_dir_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["scan", "--config-dir", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert str(tmp_path / "nope") in err
    assert "Traceback" not in err
