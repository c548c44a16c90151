"""Vantage points (issue 12): each target probed from each named vantage, one verdict.

Two auditors stand for two nodes, ``eu`` and ``us``, on one database (each
store: conftest's backend), with a clock of the test's: each probe is
recorded as a node records it (its own evaluation, then the target's, the
worst of its vantages'), and the notices queued are what the notifier
would send. ``test_two_serve_processes_...`` does the same with two real
``certhook serve`` processes and real TLS servers on loopback.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme
from server_helpers import (
    FakeProbe,
    LineClient,
    ServeProcess,
    ThreadedTlsServer,
    WebhookReceiver,
    add_line,
    config,
    fake_result,
    http,
    new_db,
    wait_until,
)

from certhook.errors import ParseError
from certhook.server import store
from certhook.server.audit import Auditor
from certhook.server.config import AccountNotify, ServerConfig, load_config
from certhook.server.evaluate import TargetState
from certhook.server.store import SILENT, Vantage, VantageWrite
from certhook.server.vantage import is_silent, merge, silent_write

NEW, OLD = "ab" * 32, "cd" * 32
T0 = 1_800_000_000.0
SILENT_AFTER = 600.0


# -- the merge, pure --------------------------------------------------------------------------

def _seen(name: str, state: str, reasons: str = "", deployed: int | None = None,
          days: int | None = 30, time: float | None = T0, status: str | None = None
          ) -> VantageWrite:
    return VantageWrite(name, state, 0, status or state, reasons, None, deployed, days,
                        None, None, time, T0 + 3600)


@pytest.mark.sqlite_only("pure: no database")
def test_the_worst_vantage_is_the_targets_state_and_the_reasons_name_each_vantage() -> None:
    merged = merge(TargetState(notified_state="ok"), [
        _seen("eu-west", "ok", deployed=1, days=89),
        _seen("us-east", "critical", "renewed but not deployed: serving cd...", deployed=0,
              days=3),
    ])
    assert merged is not None
    assert (merged.state, merged.status, merged.days_left) == ("critical", "critical", 3)
    assert merged.reasons == [
        "as seen from us-east: renewed but not deployed: serving cd...",
        "eu-west serves the new certificate"]
    assert merged.notice == {"kind": "not-deployed", "state": "critical", "previous": "ok"}
    assert merged.notified_state == "critical" and merged.deployed is False


@pytest.mark.sqlite_only("pure: no database")
@pytest.mark.parametrize(("states", "notified", "state", "notice"), [
    ((("a", "ok"), ("b", "ok")), "ok", "ok", None),  # no change, no notice
    ((("a", "ok"), ("b", "warning")), "ok", "warning", "problem"),
    ((("a", "ok"), ("b", "ok")), "critical", "ok", "recovery"),
    ((("a", "ok"), ("b", "ok")), None, "ok", None),  # the first ok of a new target
    ((("a", "ok"), ("b", "waiting")), "ok", "waiting", None),  # a renewal in flight
    ((("a", "unknown"), ("b", "critical")), "unknown", "critical", "problem"),
])
def test_one_notice_when_the_worst_state_changes(
        states: tuple[tuple[str, str], ...], notified: str | None, state: str,
        notice: str | None) -> None:
    merged = merge(TargetState(notified_state=notified),
                   [_seen(name, s) for name, s in states])
    assert merged is not None and merged.state == state
    assert (merged.notice or {}).get("kind") == notice


@pytest.mark.sqlite_only("pure: no database")
def test_a_vantage_not_reported_yet_does_not_count_and_a_silent_one_does() -> None:
    assert merge(TargetState(), [_seen("eu", "ok", time=None)]) is None
    merged = merge(TargetState(notified_state="ok"),
                   [_seen("eu", "ok"), _seen("us", "unknown", time=None)])
    assert merged is not None and merged.state == "ok" and merged.notice is None
    row = Vantage("us", "ok", 0, "ok", "", OLD, 1, 30, None, "127.0.0.2", time=T0 - 3600,
                  next_probe=T0 + 100, target=1, created=T0)
    assert not is_silent(row, T0 + 100 + SILENT_AFTER - 1, SILENT_AFTER)
    assert is_silent(row, T0 + 100 + SILENT_AFTER, SILENT_AFTER)
    assert not is_silent(replace(row, lease_owner="n1", lease_until=T0 + 99999),
                         T0 + 100 + SILENT_AFTER, SILENT_AFTER)  # a probe is under way
    mark = silent_write(row)
    assert (mark.state, mark.status, mark.time, mark.fingerprint) == ("unknown", SILENT,
                                                                      None, OLD)
    merged = merge(TargetState(notified_state="ok"), [_seen("eu", "ok"), mark])
    assert merged is not None and merged.state == "unknown"
    assert merged.reasons == [mark.reasons]
    assert mark.reasons.startswith("no result from vantage us since 2027-01-15 07:00 UTC")


# -- two auditors, two vantages, one database -------------------------------------------------

class Nodes:
    """Two auditors (``eu``, ``us``) on one database, on the test's clock."""

    def __init__(self, db: str, **changes: Any) -> None:
        self.db = db
        self.now = [T0]
        self.probes = {name: FakeProbe() for name in ("eu", "us")}
        cfg = config(db, vantages=("eu", "us"), failure_threshold=1, grace=0.0, jitter=0.0,
                     vantage_silent=SILENT_AFTER, retry_interval=60.0, interval=3600.0,
                     notify_default=AccountNotify(webhook=("http://127.0.0.1:9/hook",)),
                     **changes)
        self.auditors = {name: self._auditor(replace(cfg, vantage=name)) for name in self.probes}
        self.store = store.open_store(db)

    def _auditor(self, cfg: ServerConfig) -> Auditor:
        return Auditor(cfg, probe_fn=self.probes[cfg.vantage], clock=lambda: self.now[0],
                       node=f"node-{cfg.vantage}")

    def configure(self, vantage: str, **changes: Any) -> None:
        """Restart ``vantage``'s node with ``changes`` to its configuration."""
        old = self.auditors[vantage]
        old.stop()
        self.auditors[vantage] = self._auditor(replace(old.config, **changes))

    def submit(self, domain: str, fingerprint: str) -> int:
        cfg = self.auditors["eu"].config
        upsert = store.TargetUpsert("alice", domain, 443, "tls", self.now[0], "lineage", None,
                                    fingerprint, self.now[0], self.now[0], "", None, None,
                                    cfg.vantages_for("alice", domain, 443, "tls"))
        sub = store.Submission("alice", f"{domain}-{self.now[0]}", self.now[0], "test", None,
                               domain, "443", "tls", fingerprint, "lineage", None, None,
                               (upsert,))
        assert self.store.commit_batch([], [sub]) == [True]
        return self.store.find_targets("alice", domain)[0].id

    def serve(self, vantage: str, fingerprint: str | None) -> None:
        """What ``vantage`` sees of every target from now on (None: nothing answers)."""
        self.probes[vantage].results["v.example"] = (
            fake_result("ok", fingerprint) if fingerprint else
            fake_result("unknown", connected=False, reasons=("connection refused",)))

    def probe(self, vantage: str, target_id: int) -> None:
        row = self.store.target(target_id)
        assert row is not None
        self.auditors[vantage]._audit(row.id, row.domain, row.port, row.protocol,
                                      vantaged=True)

    def target(self, target_id: int) -> store.Target:
        row = self.store.target(target_id)
        assert row is not None
        return row

    def notices(self) -> list[dict[str, Any]]:
        return [json.loads(n.payload) for n in self.store.notifications()]

    def close(self) -> None:
        for auditor in self.auditors.values():
            auditor.stop()
        self.store.close()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    db, _ = new_db(tmp_path, "alice")
    two = Nodes(db)
    try:
        yield two
    finally:
        two.close()


def test_a_vantage_serving_the_old_certificate_makes_the_target_critical(
        nodes: Nodes) -> None:
    target = nodes.submit("v.example", NEW)  # certbot deployed NEW
    assert [v.vantage for v in nodes.store.vantages(target)] == ["eu", "us"]
    nodes.serve("eu", NEW)
    nodes.serve("us", OLD)  # one place still gets the old certificate
    nodes.probe("eu", target)
    assert nodes.target(target).state == "ok" and nodes.notices() == []  # us not yet heard
    nodes.now[0] += 5
    nodes.probe("us", target)
    row = nodes.target(target)
    assert row.state == "critical"
    assert row.reasons.splitlines()[0].startswith(
        "as seen from us: renewed but not deployed: serving cdcdcdcdcdcdcdcd..., the"
        " certificate deployed by certbot is abababababababab...")
    assert row.reasons.splitlines()[-1] == "eu serves the new certificate"
    [notice] = nodes.notices()
    assert (notice["kind"], notice["state"]) == ("not-deployed", "critical")
    assert notice["reasons"] == row.reasons.splitlines()
    eu, us = nodes.store.vantages(target)
    assert (eu.state, eu.fingerprint, us.state, us.fingerprint) == ("ok", NEW, "critical", OLD)
    assert [(r.vantage, r.fingerprint) for r in nodes.store.recent_results(target)] == [
        ("eu", NEW), ("us", OLD)]
    # eu's next probe does not hide us's finding; no second notice for the same state
    nodes.now[0] += 5
    nodes.probe("eu", target)
    assert nodes.target(target).state == "critical" and len(nodes.notices()) == 1
    # us gets the new certificate: recovered, one notice
    nodes.serve("us", NEW)
    nodes.now[0] += 5
    nodes.probe("us", target)
    assert nodes.target(target).state == "ok"
    assert [n["kind"] for n in nodes.notices()] == ["not-deployed", "recovery"]


@pytest.mark.parametrize(("eu_sees", "us_sees"), [(OLD, OLD), (NEW, OLD)],
                         ids=["one certificate", "renewed in one place only"])
def test_an_expiry_threshold_is_told_once_whichever_places_see_it(
        nodes: Nodes, eu_sees: str, us_sees: str) -> None:
    target = nodes.submit("v.example", eu_sees)
    # 5 days left of 90: past the 7-day threshold; the renewed one has 89
    for name, fingerprint in (("eu", eu_sees), ("us", us_sees)):
        nodes.probes[name].results["v.example"] = fake_result(
            "ok", fingerprint, days=5 if fingerprint == OLD else 89)
    for _ in range(3):  # the places take turns, as their schedules interleave
        for name in ("eu", "us"):
            nodes.now[0] += 60
            nodes.probe(name, target)
    expiry = [n for n in nodes.notices() if n["kind"] == "expiry"]
    assert len(expiry) == 1, expiry
    assert expiry[0]["served_fingerprint"] == OLD
    kinds = [n["kind"] for n in nodes.notices()]
    assert kinds == (["expiry"] if eu_sees == us_sees else ["expiry", "not-deployed"])


def test_each_vantage_confirms_its_own_failures(nodes: Nodes) -> None:
    nodes.configure("us", failure_threshold=2)
    target = nodes.submit("v.example", NEW)
    nodes.serve("eu", NEW)
    nodes.serve("us", NEW)
    nodes.probe("eu", target)
    nodes.probe("us", target)
    assert nodes.target(target).state == "ok"
    nodes.serve("us", None)  # us cannot connect: one failure is not an outage
    nodes.now[0] += 60
    nodes.probe("us", target)
    nodes.now[0] += 1
    nodes.probe("eu", target)  # eu's success does not reset us's count
    assert nodes.target(target).state == "ok"
    assert nodes.store.vantages(target)[1].failures == 1
    nodes.now[0] += 60
    nodes.probe("us", target)
    row = nodes.target(target)
    assert row.state == "unknown"
    assert "as seen from us: connection refused" in row.reasons.splitlines()
    assert [n["kind"] for n in nodes.notices()] == ["problem"]


def test_a_vantage_that_stops_reporting_is_a_finding_once(nodes: Nodes) -> None:
    target = nodes.submit("v.example", NEW)
    nodes.serve("eu", NEW)
    nodes.serve("us", NEW)
    nodes.probe("eu", target)
    nodes.probe("us", target)
    us_due = nodes.store.vantages(target)[1].next_probe
    assert us_due == T0 + 3600  # interval, no jitter
    # the us node stops; eu goes on probing on its schedule
    nodes.now[0] = us_due + SILENT_AFTER - 1
    nodes.probe("eu", target)
    eu = nodes.auditors["eu"]
    eu.recorder.find_silent(nodes.store, nodes.now[0])
    assert nodes.target(target).state == "ok" and nodes.notices() == []  # not yet
    nodes.now[0] = us_due + SILENT_AFTER
    eu.recorder.next_silent = 0.0
    eu.recorder.find_silent(nodes.store, nodes.now[0])
    row = nodes.target(target)
    assert row.state == "unknown"
    assert row.reasons == ("no result from vantage us since 2027-01-15 08:00 UTC (a probe was"
                           " due 2027-01-15 09:00 UTC): its node has stopped probing")
    assert nodes.store.recent_results(target)[-1].vantage == "eu"  # no result was made up
    [notice] = nodes.notices()
    assert (notice["kind"], notice["state"]) == ("problem", "unknown")
    # found once: neither a second look nor the other node finds it again
    eu.recorder.next_silent = 0.0
    eu.recorder.find_silent(nodes.store, nodes.now[0] + 60)
    nodes.auditors["us"].recorder.find_silent(nodes.store, nodes.now[0] + 60)
    nodes.now[0] += 60
    nodes.probe("eu", target)  # eu's own probes keep the finding
    assert nodes.target(target).state == "unknown" and len(nodes.notices()) == 1
    # us is back: its probe ends the finding
    nodes.now[0] += 60
    nodes.probe("us", target)
    assert nodes.target(target).state == "ok"
    assert [n["kind"] for n in nodes.notices()] == ["problem", "recovery"]


def test_a_vantage_named_by_no_node_is_found_silent(nodes: Nodes) -> None:
    nodes.configure("eu", vantages=("eu", "ap"))
    target = nodes.submit("v.example", NEW)
    nodes.store.sync_vantages(lambda *target: ("eu", "ap"), nodes.now[0])
    nodes.serve("eu", NEW)
    nodes.probe("eu", target)
    nodes.now[0] += SILENT_AFTER + 1
    nodes.auditors["eu"].recorder.find_silent(nodes.store, nodes.now[0])
    row = nodes.target(target)
    assert row.state == "unknown"
    assert row.reasons.startswith("no result from vantage ap ever")


def test_a_plain_node_does_not_probe_a_target_of_vantages(nodes: Nodes) -> None:
    target = nodes.submit("v.example", NEW)
    plain = Auditor(replace(nodes.auditors["eu"].config, vantage=""), probe_fn=FakeProbe(),
                    clock=lambda: nodes.now[0], node="plain")
    try:
        assert plain._db().claim_targets(nodes.now[0] + 1, 10, "plain", T0 + 99) == []
        assert [t.id for t in nodes.auditors["eu"]._db().claim_vantages(
            "eu", nodes.now[0] + 1, 10, "node-eu", T0 + 99)] == [target]
    finally:
        plain.stop()


# -- two real nodes, two vantages ---------------------------------------------------------------

NAME = "www.vantage.test"


def _fingerprint(leaf: trustme.LeafCert) -> str:
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    return hashlib.sha256(der).hexdigest()


def _server(leaf: trustme.LeafCert, host: str, port: int = 0) -> ThreadedTlsServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return ThreadedTlsServer(context, host, port)


def _rows(db: str) -> tuple[store.Target, list[Vantage]]:
    opened = store.open_store(db, create=False)
    try:
        [target] = opened.find_targets("alice", NAME)
        return target, opened.vantages(target.id)
    finally:
        opened.close()


@pytest.mark.slow
def test_two_serve_processes_with_different_resolve_maps_one_sees_the_old_certificate(
        tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    authority = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    renewed, stale = authority.issue_cert(NAME), authority.issue_cert(NAME)
    # one name, one port, two addresses: the new certificate on .2, the old one on .3
    new = _server(renewed, "127.0.0.2")
    old = _server(stale, "127.0.0.3", new.port)
    hook = WebhookReceiver()
    audit = ("allow_networks = 127.0.0.0/8\ninterval = 1h\njitter = 0\nretry_interval = 1h\n"
             "first_probe_delay = 0\ngrace = 0s\nfailure_threshold = 1\nlease = 6s\n"
             f"vantage_silent = 4s\nca_file = {ca_file}\n")
    extra = ("[notify]\ngroup_window = 1s\nbackoff = 1s\nrate_limit = off\n"
             f"[account alice]\nvantages = eu-west, us-east\nwebhook = {hook.url}\n")
    nodes: list[ServeProcess] = []
    try:
        for vantage, address in (("eu-west", "127.0.0.2"), ("us-east", "127.0.0.3")):
            home = tmp_path / vantage
            home.mkdir()
            nodes.append(ServeProcess(home, db, audit + f"vantage = {vantage}\n"
                                      f"resolve = {NAME}={address}\n", extra))
        client = LineClient(nodes[0].line_address)
        answer = client.ask(add_line(keys["alice"], NAME, port=new.port, id="renewal-1",
                                     fingerprint=_fingerprint(renewed), event="deployed"))
        client.close()
        assert answer.startswith(b"ok"), answer
        wait_until(lambda: all(v.time for v in _rows(db)[1]), timeout=30,
                   what="a probe from each vantage")
        target, (eu, us) = _rows(db)
        assert (eu.vantage, eu.state, eu.fingerprint) == ("eu-west", "ok",
                                                         _fingerprint(renewed))
        assert (us.vantage, us.state, us.fingerprint) == ("us-east", "critical",
                                                         _fingerprint(stale))
        assert new.handshakes >= 1 and old.handshakes >= 1
        assert target.state == "critical"
        reasons = target.reasons.splitlines()
        assert reasons[0].startswith("as seen from us-east: renewed but not deployed")
        assert reasons[-1] == "eu-west serves the new certificate"
        wait_until(lambda: hook.received, timeout=30, what="the webhook")
        [notice] = hook.received
        # the notice names the vantage (eu-west's line too, if eu-west had reported by then)
        assert (notice["kind"], notice["reasons"][0]) == ("not-deployed", reasons[0])
        # the API and the detail page, from either node, show what each vantage sees
        status, data = http("GET", f"{nodes[1].base}/api/v1/domains/{NAME}",
                            key=keys["alice"])
        assert status == 200, data
        [item] = data["targets"]
        assert item["vantages"] == ["eu-west", "us-east"]
        assert [(v["vantage"], v["state"]) for v in item["vantage_states"]] == [
            ("eu-west", "ok"), ("us-east", "critical")]
        assert {h["vantage"] for h in item["history"]} == {"eu-west", "us-east"}
        status, listing = http("GET", f"{nodes[1].base}/api/v1/targets", key=keys["alice"])
        assert status == 200 and listing["targets"][0]["vantages"] == ["eu-west", "us-east"]
        status, page = http("GET", f"{nodes[0].base}/target?id={target.id}",
                            basic=("alice", keys["alice"]))
        assert status == 200 and "<h2>Vantages</h2>" in page
        row = page.split('<tr class="vantage"><td>us-east</td>')[1].split("</tr>")[0]
        assert '<td class="critical">critical</td>' in row
        assert "renewed but not deployed" in row

        # us-east's node dies: once its probe is overdue by vantage_silent, eu-west says so
        nodes[1].proc.kill()
        nodes[1].stop()
        code, out, err = nodes[0].cli("recheck", "--all")
        assert code == 0, (out, err)
        wait_until(lambda: _rows(db)[0].state == "unknown", timeout=30,
                   what="the silent vantage found")
        target, (eu, us) = _rows(db)
        assert target.reasons.startswith("no result from vantage us-east since ")
        assert (eu.state, us.status) == ("ok", "silent")
        wait_until(lambda: len(hook.received) == 2, timeout=30, what="the second notice")
        assert (hook.received[1]["kind"], hook.received[1]["state"]) == ("problem", "unknown")
        assert "vantage us-east" in hook.received[1]["reasons"][0]
    finally:
        for node in nodes:
            node.stop()
        hook.close()
        new.close()
        old.close()


# -- the configuration: per account, per target ------------------------------------------------

@pytest.mark.sqlite_only("pure: no database")
def test_vantages_come_from_the_target_then_the_account_then_the_default(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conf = tmp_path / "server.conf"
    conf.write_text("[audit]\nvantage = eu-west\nvantages = eu-west, us-east\n"
                    "vantage_silent = 5m\n"
                    "[account bob]\nvantages = none\n"
                    "[account carol]\nvantages = ap\n"
                    "[target www.example.org]\nvantages = eu-west\n"
                    "[target www.example.org:25/smtp]\nvantages = us-east, ap\n"
                    "[target mail.example.org:465]\nvantages = none\nvantagez = x\n")
    with caplog.at_level("WARNING"):
        cfg = load_config(conf)
    assert [r.getMessage() for r in caplog.records] == [
        f"{conf}: line 15: unknown key 'vantagez' in [target mail.example.org:465], ignored"
        " (did you mean 'vantages'?)"]
    assert (cfg.vantage, cfg.vantage_silent, cfg.uses_vantages) == ("eu-west", 300.0, True)
    assert cfg.vantages_for("alice", "other.example", 443, "tls") == ("eu-west", "us-east")
    assert cfg.vantages_for("bob", "other.example", 443, "tls") == ()
    assert cfg.vantages_for("carol", "other.example", 443, "tls") == ("ap",)
    assert cfg.vantages_for("carol", "www.example.org", 443, "tls") == ("eu-west",)
    assert cfg.vantages_for("bob", "www.example.org", 25, "smtp") == ("us-east", "ap")
    assert cfg.vantages_for("alice", "www.example.org", 25, "tls") == ("eu-west",)
    assert cfg.vantages_for("alice", "mail.example.org", 465, "smtps") == ()
    assert not load_config(None).uses_vantages


@pytest.mark.sqlite_only("pure: no database")
@pytest.mark.parametrize(("text", "error"), [
    ("[audit]\nvantage = eu west\n", "line 2: [audit] vantage: 'eu west' is not a vantage name"),
    ("[account a]\nvantages = eu, -x\n", "line 2: [account a] vantages: '-x' is not a vantage"),
    ("[target bad name]\nvantages = eu\n", "line 1: [target bad name]: 'bad name': not a name"),
    ("[target a.example:0]\nvantages = eu\n", "port must be 1 to 65535"),
    ("[audit]\nvantage_silent = 0s\n", "line 2: [audit] vantage_silent: '0s' is shorter than"),
])
def test_a_bad_vantage_setting_is_one_line_naming_where(tmp_path: Path, text: str,
                                                        error: str) -> None:
    conf = tmp_path / "server.conf"
    conf.write_text(text)
    with pytest.raises(ParseError) as caught:
        load_config(conf)
    assert error in str(caught.value) and "\n" not in str(caught.value)


def test_a_place_going_silent_for_many_targets_is_found_batch_after_batch(
        nodes: Nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    from certhook.server import recorder

    count = recorder._SILENT_BATCH + 44
    upserts = tuple(store.TargetUpsert("alice", f"m{i}.example", 443, "tls", T0, None, None,
                                       None, None, T0, "", None, None, ("eu", "us"))
                    for i in range(count))
    sub = store.Submission("alice", "many", T0, "test", None, "", "", "", None, None, None,
                           None, upserts)
    assert nodes.store.commit_batch([], [sub]) == [True]
    monkeypatch.setattr(recorder, "_SILENT_BUDGET", 0.0)  # one batch a look
    eu = nodes.auditors["eu"]
    now = T0 + SILENT_AFTER
    eu.recorder.find_silent(nodes.store, now)

    def found() -> int:
        return sum(1 for t in nodes.store.list_targets("alice")
                   if t.reasons.startswith("no result from vantage"))

    # a look reads one batch of rows (a target's two rows may fall in one): some found,
    # and the next look is soon, not in 30 s
    assert 0 < found() < count
    assert eu.recorder.next_silent == now + recorder.POLL
    for _ in range(3):  # 600 rows in batches of 256
        now = eu.recorder.next_silent
        eu.recorder.find_silent(nodes.store, now)
        if found() == count:
            break
    assert found() == count
    assert eu.recorder.next_silent == now + min(30.0, SILENT_AFTER / 2)  # all found: back to 30 s
