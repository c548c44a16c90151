"""certhook's main job, end to end on loopback, with its embedded defaults.

1. Starts pebble (a real ACME server) on 127.0.0.1 and has real certbot
   issue a few certificates into a temporary certbot tree.
2. Runs ``certhook scan`` over that tree (and over /etc/letsencrypt too,
   when this machine has one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from acmeenv import Certbot, Pebble

CERTHOOK = str(Path(sys.executable).parent / "certhook")


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="certhook-demo-") as tmp, \
            Pebble(Path(tmp) / "pebble") as pebble:
        step(f"pebble ACME server on {pebble.directory_url}; certbot issues three certificates")
        certbot = Certbot(pebble, Path(tmp) / "certbot")
        certbot.certonly("www.example.org", "example.org")
        certbot.certonly("mail.example.org", key_type="rsa")
        certbot.certonly("ldap.example.org", key_type="ecdsa", size=384)
        step("certbot renews www.example.org")
        certbot.renew("--cert-name", "www.example.org")
        step("certhook scan")
        code = subprocess.call([CERTHOOK, "scan", "--config-dir", str(certbot.config_dir),
                                "--logs-dir", str(certbot.logs_dir)])
        if os.path.isdir("/etc/letsencrypt"):
            step("certhook scan of this machine's /etc/letsencrypt")
            subprocess.call([CERTHOOK, "scan"])
    return code


if __name__ == "__main__":
    raise SystemExit(main())
