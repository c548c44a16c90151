"""A served certificate whose names carry control characters (issue 9.7).

The attack: a TLS endpoint, which anyone with an API key can have the audit
server probe, serves a certificate whose SAN, subject CN and issuer CN hold
CR LF (a forged log line, a forged mail-body line, a fake extra stored
reason), ESC sequences (clear the screen, retitle the terminal window) and
U+202E (reverse the text after it). Before the fix each went through raw:
into the server log, into the mail subject (where the newline made the
alert fail and be abandoned after its retries), into ``certhook status``,
the report page and the stored reasons.

Here the real pieces run on loopback: the certificate minted with
cryptography and served with ssl, ``certhook serve`` as a process with its
log written to a file, aiosmtpd as the relay, ``certhook status`` as a
process; the test reads the log file, the mail, the status output, the
report page and the database.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from acmeenv import free_port, wait_for_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID
from server_helpers import (
    LineClient,
    SmtpServer,
    TlsEndpoint,
    add_line,
    count,
    http,
    new_db,
    notifications,
    targets,
    wait_until,
)

from certhook.escape import visible
from certhook.probe import ProbeOptions, Target, probe

FORGED = "2026-12-02 09:00:00,000 certhook.audit WARNING alice forged.example ok"
SAN_NAMES = [
    f"evil.example\n{FORGED}\r\x1b[2J\x1b[H",  # a forged log line, then clear the screen
    "\x1b]0;pwned\x07title.example",  # OSC: set the terminal title
    "abc\u202eelpmaxe.gro",  # right-to-left override
    "c1\x9b31m.example\x85next",  # C1: CSI and NEL
]
SUBJECT_CN = "cn.example\r\nstate: ok"
ISSUER_CN = "Evil CA\n\x1b[31mtrusted\u2028root"
RAW_BAD = ("\x1b", "\r", "\x07", "\x9b", "\x85", "\u202e", "\u2028")

NAME = "www.example.org"  # what is submitted; [audit] resolve sends it to loopback


def _cn(value: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value, _validate=False)])


def _tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


def _san(names: list[str]) -> x509.UnrecognizedExtension:
    """A subjectAltName of dNSNames, encoded by hand: cryptography's DNSName takes ASCII only.

    RFC 5280 4.2.1.6: GeneralNames ::= SEQUENCE OF GeneralName, dNSName [2] IA5String;
    the bytes here are UTF-8, as a hostile CA (or a self-signed endpoint) may write them.
    """
    body = b"".join(_tlv(0x82, name.encode("utf-8")) for name in names)
    return x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, _tlv(0x30, body))


def _mint(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf whose names carry control characters: (ca, fullchain, key) PEM files."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_cn(ISSUER_CN)).issuer_name(_cn(ISSUER_CN))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(_cn(SUBJECT_CN)).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(_san(SAN_NAMES), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file, chain, key_file = tmp_path / "ca.pem", tmp_path / "chain.pem", tmp_path / "key.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    chain.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, chain, key_file


def _certhook() -> list[str]:
    exe = Path(sys.executable).parent / "certhook"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "certhook"]


class Attack:
    """Everything the test reads after the attack ran."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.ca_file, chain, key = _mint(tmp_path)
        self.endpoint = TlsEndpoint()
        self.endpoint.load(chain, key)
        self.smtp = SmtpServer(tmp_path)
        self.db, self.keys = new_db(tmp_path, "alice")
        self.line_port, self.http_port = free_port(), free_port()
        self.log_file = tmp_path / "serve.log"
        conf = tmp_path / "server.conf"
        conf.write_text(
            f"[server]\ndb = {self.db}\nline_listen = 127.0.0.1:{self.line_port}\n"
            f"http_listen = 127.0.0.1:{self.http_port}\n"
            "[audit]\nretry_interval = 0.2\nprobe_timeout = 5\nfailure_threshold = 2\n"
            f"allow_networks = 127.0.0.0/8\nresolve = {NAME}=127.0.0.1\n"
            f"ca_file = {self.ca_file}\n"
            f"[smtp]\nhost = 127.0.0.1\nport = {self.smtp.port}\n"
            f"username = {SmtpServer.USER}\npassword = {SmtpServer.PASSWORD}\n"
            f"ca_file = {self.smtp.ca_file}\nfrom = certhook@example.org\n"
            # Few, quick retries: before the fix the alert was abandoned within a second.
            "[notify]\nemail = ops@example.org\nretries = 3\nbackoff = 0.2\ngroup_window = 0.2\n"
        )
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen([*_certhook(), "serve", "--config", str(conf)],
                                         stdout=log, stderr=log)

    def run(self) -> None:
        wait_for_port(self.line_port, 30)
        client = LineClient(("127.0.0.1", self.line_port))
        assert client.ask(add_line(self.keys["alice"], NAME, port=self.endpoint.port)
                          ).startswith(b"ok")
        client.close()
        # The alert is either delivered or given up on: wait for either.
        wait_until(lambda: any(n.sent is not None or n.failed is not None
                               for n in notifications(self.db)),
                   timeout=60, what="the alert delivered or abandoned")
        self.status, self.page = http("GET", f"http://127.0.0.1:{self.http_port}/",
                                      basic=("alice", self.keys["alice"]))
        self.api = http("GET", f"http://127.0.0.1:{self.http_port}/api/v1/domains",
                        key=self.keys["alice"])

    def stop_server(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def close(self) -> None:
        self.stop_server()
        self.endpoint.close()
        self.smtp.close()


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    run = Attack(tmp_path_factory.mktemp("cert-strings"))
    try:
        run.run()
        run.stop_server()  # the log is complete; the endpoint still serves
        yield run
    finally:
        run.close()


def _no_raw_control(text: str, where: str) -> None:
    found = sorted({repr(c) for c in RAW_BAD if c in text})
    assert not found, f"raw {', '.join(found)} in {where}"


def test_the_certificate_carries_the_attack(attack: Attack) -> None:
    # The control: the probe (which mirrors cryptography) reads the names raw,
    # so everything below is escaped by its sink, not lost on the way.
    result = probe(Target("127.0.0.1", attack.endpoint.port, servername=NAME,
                          expect_name=NAME),
                   ProbeOptions(timeout=5.0, ca_file=str(attack.ca_file)))
    assert result.leaf is not None and result.leaf.san_dns == tuple(SAN_NAMES)
    assert result.leaf.subject_cn == SUBJECT_CN and result.leaf.issuer_cn == ISSUER_CN
    assert result.status == "critical" and any("\x1b" in r for r in result.reasons)


def test_stored_reasons_are_the_probe_reasons(attack: Attack) -> None:
    result = probe(Target("127.0.0.1", attack.endpoint.port, servername=NAME,
                          expect_name=NAME),
                   ProbeOptions(timeout=5.0, ca_file=str(attack.ca_file)))
    (row,) = targets(attack.db)
    assert row["state"] == "critical", row
    stored = row["reasons"].split("\n")
    # exactly the probe's reasons: no fake extra entry from a newline in a name
    assert stored == [visible(r) for r in result.reasons]
    assert len(stored) == len(result.reasons)
    assert any("evil.example\\n2026-12-02" in r for r in stored), stored
    _no_raw_control(row["reasons"] + (row["issuer"] or ""), "the database")
    status, api = attack.api
    assert status == 200 and api["domains"][0]["reasons"] == stored


def test_the_log_has_no_forged_line(attack: Attack) -> None:
    log = attack.log_file.read_bytes().decode("utf-8")
    _no_raw_control(log, "the server log")
    lines = log.split("\n")
    assert not any(line.startswith(FORGED[:19]) for line in lines), "a forged log line"
    # the notice was logged, its names escaped
    assert any("WARNING alice: CRITICAL www.example.org" in line and "\\x1b[2J" in line
               for line in lines), log


def test_the_alert_is_delivered_and_escaped(attack: Attack) -> None:
    assert count(attack.db, "notifications", sent=lambda v: v is not None) == 1
    assert count(attack.db, "notifications", failed=lambda v: v is not None) == 0
    (envelope,) = attack.smtp.messages
    message: Any = email.message_from_bytes(envelope.content, policy=email.policy.default)
    subject = str(message["Subject"])
    assert subject.startswith("[certhook] CRITICAL www.example.org:"), subject
    _no_raw_control(subject, "the mail subject")
    assert "\n" not in subject and "\\x1b" in subject
    body = message.get_body(("plain",)).get_content().replace("\r\n", "\n")  # SMTP ends
    _no_raw_control(body, "the mail body")
    html = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    _no_raw_control(html, "the mail's HTML part")
    states = [line.strip() for line in body.splitlines() if line.strip().startswith("state:")]
    assert states == ["state: critical"]  # no line forged by the certificate
    assert "issuer: Evil CA\\n\\x1b[31mtrusted\\u2028root" in body


def test_status_in_the_terminal(attack: Attack) -> None:
    out = subprocess.run([*_certhook(), "status", "--db", attack.db], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2, out.stderr  # a critical target
    _no_raw_control(out.stdout, "certhook status")
    assert "\\x1b[2J" in out.stdout and "Evil CA\\n" in out.stdout
    (row,) = targets(attack.db)
    reason_lines = [line for line in out.stdout.splitlines() if line.startswith("  ")]
    assert len(reason_lines) == len(row["reasons"].split("\n"))


def test_the_report_page(attack: Attack) -> None:
    assert attack.status == 200
    _no_raw_control(attack.page, "the report page")
    assert "evil.example\\n2026-12-02" in attack.page and "\\u202e" in attack.page
    (row,) = targets(attack.db)
    assert attack.page.count('href="/target?id=') == 1  # one row: nothing forged another
    assert attack.page.count("<div>") == len(row["reasons"].split("\n"))


def test_probe_output_in_the_terminal(attack: Attack) -> None:
    # certhook probe, run by hand or by a monitoring system, prints the same names.
    for fmt in ("text", "nagios", "prtg"):
        out = subprocess.run(
            [*_certhook(), "probe", "--format", fmt, "--ca-file", str(attack.ca_file),
             "--servername", NAME, "--expect-name", NAME,
             f"127.0.0.1:{attack.endpoint.port}"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (fmt, out.stdout, out.stderr)
        _no_raw_control(out.stdout, f"certhook probe --format {fmt}")
        assert "\\x1b" in out.stdout, (fmt, out.stdout)
        if fmt == "nagios":
            assert len(out.stdout.splitlines()) == 1, out.stdout



def test_evaluate_keeps_one_reason_per_reason() -> None:
    # The unit under the stored reasons: a newline in a quoted name stays inside its reason.
    from server_helpers import fake_leaf, fake_result

    from certhook.server.evaluate import TargetState, evaluate

    result = fake_result("critical", reasons=(f"name mismatch: SAN {SAN_NAMES[0]}",
                                              "chain: \x1b[2J"))
    result.leaf = fake_leaf(issuer=ISSUER_CN)
    ev = evaluate(TargetState(), result, now=0.0)
    assert len(ev.reasons) == 2
    assert ev.reasons[0] == visible(f"name mismatch: SAN {SAN_NAMES[0]}")
    assert ev.issuer == "Evil CA\\n\\x1b[31mtrusted\\u2028root"
