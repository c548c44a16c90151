"""The harness itself: pebble issues, certbot writes a lineage, nothing leaves loopback."""

from __future__ import annotations

from acmeenv import Certbot


def test_certbot_against_pebble_makes_a_lineage(certbot: Certbot) -> None:
    certbot.certonly("a.example.org", "www.a.example.org")
    live = certbot.config_dir / "live" / "a.example.org" / "cert.pem"
    assert live.is_symlink()
    assert "a.example.org www.a.example.org" in certbot.certificates()


def test_every_certbot_call_names_the_loopback_server(certbot: Certbot) -> None:
    argv = certbot.argv("renew", "--dry-run")
    server = argv[argv.index("--server") + 1]
    assert server.startswith("https://127.0.0.1:")
