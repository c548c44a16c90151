"""End to end: real certbot renewing against pebble, each way in, a recording audit server.

Every way in must deliver exactly the renewed lineages' names and new
fingerprints, once each; report a failed renewal as failed; and leave
certbot's exit status as it would have been without certhook.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from acmeenv import Certbot
from client_helpers import KEY, LineServer, client_env, sha256_of_pem

from certhook.client.spool import Spool
from certhook.commands.install_hook import install
from certhook.protocol import Request

pytestmark = pytest.mark.slow

VENV_BIN = Path(sys.executable).parent
CERTHOOK = str(VENV_BIN / "certhook")
BARE_PATH = "/usr/bin:/bin"
LINEAGES = {"a.example.org": ("a.example.org", "www.a.example.org"),
            "b.example.org": ("b.example.org",)}


def issue(certbot: Certbot) -> None:
    for name, domains in LINEAGES.items():
        certbot.certonly(*domains)
        assert (certbot.config_dir / "live" / name / "cert.pem").exists()


def env_for(certbot: Certbot, server: str, path: str | None = None, **extra: str
            ) -> dict[str, str]:
    """certhook's variables and a PATH, for certbot to hand on to its hooks."""
    env = {k: v for k, v in client_env(certbot.base, server, **extra).items()
           if k.startswith("CERTHOOK_")}
    env["PATH"] = path or f"{VENV_BIN}:{BARE_PATH}"
    return env


def fingerprint(certbot: Certbot, name: str) -> str:
    return sha256_of_pem(certbot.config_dir / "live" / name / "cert.pem")


def seen(requests: list[Request]) -> list[tuple[str | None, str | None, tuple[str, ...],
                                                str | None]]:
    return sorted((r.event, r.lineage, r.domains, r.fingerprint) for r in requests)


def renewed_all(certbot: Certbot, event: str = "deployed") -> list[tuple[str | None, str | None,
                                                                          tuple[str, ...],
                                                                          str | None]]:
    return sorted((event, name, domains, fingerprint(certbot, name))
                  for name, domains in LINEAGES.items())


def break_renewal(certbot: Certbot, name: str) -> None:
    """Make the next renewal of one lineage fail, before any ACME traffic.

    An unknown curve makes certbot's key generation fail ("Failed to renew
    certificate NAME with error: Unsupported elliptic curve"). Failing the
    challenge instead is not reliable: pebble may hand back an authorization
    that is already valid, and then no challenge runs at all.
    """
    conf = certbot.config_dir / "renewal" / f"{name}.conf"
    lines = [line for line in conf.read_text().splitlines()
             if not line.startswith(("elliptic_curve", "key_type"))]
    at = lines.index("[renewalparams]") + 1
    lines[at:at] = ["key_type = ecdsa", "elliptic_curve = secp1r1"]
    conf.write_text("\n".join(lines) + "\n")


# -- the three ways in -------------------------------------------------------

@pytest.mark.parametrize("path", ["with-certhook", "bash-only"])
def test_dropin_in_renewal_hooks_deploy(certbot: Certbot, path: str) -> None:
    issue(certbot)
    installed, what = install(str(certbot.config_dir), "deploy")
    assert what == "installed" and Path(installed).stat().st_mode & 0o777 == 0o755
    with LineServer() as server:
        env = env_for(certbot, server.url, path=None if path == "with-certhook" else BARE_PATH)
        proc = certbot.renew(env=env)
    assert proc.returncode == 0
    assert seen(server.requests) == renewed_all(certbot)
    expected_client = "certhook/0.1.0" if path == "with-certhook" else "bash"
    assert {r.client for r in server.requests} == {expected_client}
    assert len(set(server.ids)) == len(server.requests)


def test_deploy_hook_option(certbot: Certbot) -> None:
    issue(certbot)
    with LineServer() as server:
        proc = certbot.renew("--deploy-hook", f"{CERTHOOK} hook", env=env_for(certbot, server.url))
    assert proc.returncode == 0
    assert seen(server.requests) == renewed_all(certbot)
    assert KEY not in proc.stdout + proc.stderr


def test_certhook_run_wrapping_certbot_renew(certbot: Certbot) -> None:
    issue(certbot)
    with LineServer() as server:
        proc = certbot.renew(prefix=(CERTHOOK, "run", "--"), env=env_for(certbot, server.url))
    assert proc.returncode == 0
    assert "Congratulations, all renewals succeeded" in proc.stdout  # certbot's own output
    assert "certhook run:" not in proc.stderr  # nothing to warn about
    assert seen(server.requests) == renewed_all(certbot)


def test_only_the_renewed_lineage_is_reported(certbot: Certbot) -> None:
    issue(certbot)
    with LineServer() as server:
        proc = certbot.renew("--cert-name", "b.example.org", prefix=(CERTHOOK, "run", "--"),
                             env=env_for(certbot, server.url))
    assert proc.returncode == 0
    assert seen(server.requests) == [("deployed", "b.example.org", ("b.example.org",),
                                      fingerprint(certbot, "b.example.org"))]


def test_a_dry_run_reports_nothing(certbot: Certbot) -> None:
    issue(certbot)
    install(str(certbot.config_dir), "post")
    with LineServer() as server:
        proc = certbot.renew("--dry-run", prefix=(CERTHOOK, "run", "--"),
                             env=env_for(certbot, server.url))
    assert proc.returncode == 0
    assert server.requests == []


# -- failures ----------------------------------------------------------------

def expected_with_failure(certbot: Certbot) -> list[tuple[str | None, str | None,
                                                          tuple[str, ...], str | None]]:
    return sorted([("deployed", "a.example.org", LINEAGES["a.example.org"],
                    fingerprint(certbot, "a.example.org")),
                   ("failed", "b.example.org", LINEAGES["b.example.org"],
                    fingerprint(certbot, "b.example.org"))])


def test_run_reports_a_failed_renewal_and_keeps_certbots_exit_status(certbot: Certbot) -> None:
    issue(certbot)
    break_renewal(certbot, "b.example.org")
    bare = certbot.renew(check=False)  # the same run without certhook, for its exit status
    assert bare.returncode == 1
    with LineServer() as server:
        proc = certbot.renew(prefix=(CERTHOOK, "run", "--"), env=env_for(certbot, server.url),
                             check=False)
    assert proc.returncode == bare.returncode
    assert seen(server.requests) == expected_with_failure(certbot)


def test_post_hook_option_reports_the_failure(certbot: Certbot) -> None:
    issue(certbot)
    break_renewal(certbot, "b.example.org")
    with LineServer() as server:
        proc = certbot.renew("--post-hook", f"{CERTHOOK} hook --post",
                             env=env_for(certbot, server.url), check=False)
    assert proc.returncode == 1
    assert seen(server.requests) == expected_with_failure(certbot)


@pytest.mark.parametrize("path", ["with-certhook", "bash-only"])
def test_deploy_and_post_dropins_together_report_each_once(certbot: Certbot, path: str) -> None:
    issue(certbot)
    install(str(certbot.config_dir), "deploy")
    install(str(certbot.config_dir), "post")
    break_renewal(certbot, "b.example.org")
    with LineServer() as server:
        env = env_for(certbot, server.url, path=None if path == "with-certhook" else BARE_PATH)
        proc = certbot.renew(env=env, check=False)
    assert proc.returncode == 1
    if path == "with-certhook":
        assert seen(server.requests) == expected_with_failure(certbot)
    else:  # bash knows no lineage or fingerprint of a failure: just its names
        assert seen(server.requests) == sorted([
            ("deployed", "a.example.org", LINEAGES["a.example.org"],
             fingerprint(certbot, "a.example.org")),
            ("failed", None, LINEAGES["b.example.org"], None)])


def test_hook_without_environment_reads_the_log(certbot: Certbot) -> None:
    issue(certbot)
    break_renewal(certbot, "b.example.org")
    assert certbot.renew(check=False).returncode == 1
    with LineServer() as server:
        import subprocess

        proc = subprocess.run(
            [CERTHOOK, "hook", "--config-dir", str(certbot.config_dir),
             "--logs-dir", str(certbot.logs_dir)],
            env=certbot.env(env_for(certbot, server.url)), capture_output=True, text=True,
            timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert seen(server.requests) == expected_with_failure(certbot)


# -- the audit server away ---------------------------------------------------

def test_server_down_during_renewal_then_flush_delivers_once(certbot: Certbot) -> None:
    issue(certbot)
    import subprocess

    # The hook, timed from outside: certbot runs it once per renewed lineage.
    timings = certbot.base / "hook-timings"
    timed_hook = certbot.base / "timed-hook.sh"
    timed_hook.write_text(
        "#!/bin/bash\nstart=$(date +%s%N)\n"
        f"{CERTHOOK} hook --deadline 2\nrc=$?\n"
        f"echo \"$rc $(( ($(date +%s%N) - start) / 1000000 ))\" >> {timings}\n"
        "exit $rc\n")
    timed_hook.chmod(0o755)
    with LineServer("silent") as server:  # accepts, reads, never answers
        env = env_for(certbot, server.url)
        proc = certbot.renew("--deploy-hook", str(timed_hook), env=env)
        port = server.port
    assert proc.returncode == 0
    runs = [line.split() for line in timings.read_text().splitlines()]
    assert len(runs) == len(LINEAGES)
    for code, millis in runs:
        assert code == "0"
        assert 2000 <= int(millis) < 2000 + 1500  # the deadline, plus start-up and spooling
    spool = Spool(env["CERTHOOK_SPOOL_DIR"])
    entries, _ = spool.pending()
    assert sorted((e.request.lineage, e.request.fingerprint) for e in entries) == sorted(
        (name, fingerprint(certbot, name)) for name in LINEAGES)
    with LineServer(port=port) as server:
        first = subprocess.run([CERTHOOK, "flush"], env=certbot.env(env), capture_output=True,
                               text=True)
        second = subprocess.run([CERTHOOK, "flush"], env=certbot.env(env), capture_output=True,
                                text=True)
    assert (first.returncode, second.returncode) == (0, 0)
    assert sorted(server.ids, key=str) == sorted(e.request.id for e in entries)
    assert seen(server.requests) == renewed_all(certbot)
    assert spool.names() == []
