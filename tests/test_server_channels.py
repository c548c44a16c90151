"""The channel table: each webhook format's body against its documented shape, escaping,
the ``webhook = FORMAT+URL`` syntax and its errors, and the docs naming every format."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from certhook.errors import ParseError
from certhook.server import config as server_config
from certhook.server.channels import (
    FORMATS,
    Digest,
    parse_webhook,
    redact,
    render_email,
)

SHAPES = Path(__file__).parent / "data" / "webhook_shapes"
HOSTILE = "evil\r\nX-Injected: 1 <!channel> @everyone <script>alert(1)</script> *[x](http://a)*"


def _check(value: Any, shape: dict[str, Any], where: str = "$") -> None:
    """A small JSON-schema subset: type, required, properties, items, enum, const, lengths."""
    kinds = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}
    if "type" in shape:
        assert isinstance(value, kinds[shape["type"]]), f"{where}: not {shape['type']}"
    if "const" in shape:
        assert value == shape["const"], f"{where}: {value!r} != {shape['const']!r}"
    if "enum" in shape:
        assert value in shape["enum"], f"{where}: {value!r} not in {shape['enum']}"
    if isinstance(value, (str, list)):
        assert len(value) >= shape.get("minLength", shape.get("minItems", 0)), where
        assert len(value) <= shape.get("maxLength", shape.get("maxItems", 10**9)), where
    if isinstance(value, str):
        assert len(value.encode()) <= shape.get("maxBytes", 10**9), where
        if "pattern" in shape:
            assert re.match(shape["pattern"], value), f"{where}: {value!r}"
    if isinstance(value, int) and not isinstance(value, bool):
        assert shape.get("minimum", -10**18) <= value <= shape.get("maximum", 10**18), where
    if isinstance(value, dict):
        for key in shape.get("required", ()):
            assert key in value, f"{where}: lacks {key}"
        if "anyOf" in shape:
            assert any(all(k in value for k in alt["required"]) for alt in shape["anyOf"]), where
        for key, sub in shape.get("properties", {}).items():
            if key in value:
                _check(value[key], sub, f"{where}.{key}")
    if isinstance(value, list):
        if "totalLength" in shape:
            assert len(json.dumps(value)) <= shape["totalLength"] + 2000, where  # JSON overhead
        for i, item in enumerate(value):
            _check(item, shape.get("items", {}), f"{where}[{i}]")


def _notice(i: int, state: str = "unknown", kind: str = "problem",
            reason: str = "connection refused") -> dict[str, Any]:
    return {"kind": kind, "state": state, "account": "alice", "domain": f"h{i}.example",
            "port": 443, "protocol": "tls", "previous": "ok", "reasons": [reason],
            "days_left": 40, "issuer": "CN=R11"}


def _digests() -> list[Digest]:
    burst = [_notice(i) for i in range(200)]
    burst += [_notice(1000 + i, "critical", "not-deployed", "renewed but not deployed")
              for i in range(6)]
    hostile = [_notice(1, "critical", reason=HOSTILE), _notice(2, "ok", "recovery")]
    return [Digest("alice", (_notice(7),)), Digest("alice", tuple(burst)),
            Digest("alice", tuple(hostile), held=1)]


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("digest", _digests(), ids=["one", "burst", "hostile"])
def test_every_body_fits_its_documented_shape(name: str, digest: Digest) -> None:
    shape = json.loads((SHAPES / f"{'slack' if name == 'mattermost' else name}.json").read_text())
    request = FORMATS[name].render(digest)
    if name == "ntfy":
        _check(request.body.decode(), shape["body"], "body")
        _check(request.headers, shape["headers"], "headers")
        text = request.body.decode()
    else:
        assert request.headers["Content-Type"] == "application/json"
        body = json.loads(request.body)
        _check(body, shape)
        text = json.dumps(body)
    # the worst comes first, whatever the format
    if len(digest.notices) > 100:
        assert text.index("CRITICAL") < text.index("UNKNOWN")
        assert "6 critical, 200 unknown" in text


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_peer_strings_are_escaped_for_each_sink(name: str) -> None:
    digest = Digest("alice", (_notice(1, "critical", reason=HOSTILE),))
    request = FORMATS[name].render(digest)
    raw = request.body.decode() + "".join(request.headers.values())
    assert "\r" not in raw and "\nX-Injected" not in raw  # a line break is shown as \r\n
    assert re.search(r"\\+r\\+nX-Injected", raw)
    if name in ("slack", "mattermost"):
        assert "<!channel>" not in raw and "&lt;!channel&gt;" in raw
    if name in ("discord", "teams"):
        assert "\\\\@everyone" in raw and "\\\\<script\\\\>" in raw  # Markdown shown as text
    if name == "discord":
        assert json.loads(request.body)["allowed_mentions"] == {"parse": []}


def test_email_has_text_and_escaped_html() -> None:
    digest = Digest("alice", (_notice(1, "critical", reason=HOSTILE), _notice(2)))
    subject, plain, page = render_email(digest)
    assert subject == "[certhook] alice: 1 critical, 1 unknown"
    assert "CRITICAL h1.example:443/tls: evil\\r\\nX-Injected" in plain
    assert plain.index("CRITICAL") < plain.index("UNKNOWN h2.example")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<table" in page and "1 critical, 1 unknown" in page


@pytest.mark.parametrize(("text", "want"), [
    ("https://h.example/x", ("json", "https://h.example/x")),
    ("slack+https://hooks.slack.com/services/T/B/X", ("slack", "https://hooks.slack.com/services/T/B/X")),
    ("Teams+https://prod.westeurope.logic.azure.com/w", ("teams", "https://prod.westeurope.logic.azure.com/w")),
    ("ntfy+http://127.0.0.1:8080/alerts", ("ntfy", "http://127.0.0.1:8080/alerts")),
    ("https://user+tag@h.example/x", ("json", "https://user+tag@h.example/x")),
])
def test_webhook_syntax(text: str, want: tuple[str, str]) -> None:
    assert parse_webhook(text) == want


@pytest.mark.parametrize(("value", "error"), [
    ("slak+https://hooks.slack.com/services/SECRET",
     "[account alice] webhook: unknown webhook format 'slak' (want FORMAT+URL, FORMAT one of"
     " json, slack, mattermost, teams, ntfy, discord)"),
    ("slack+ftp://h.example/SECRET", "[account alice] webhook: a slack webhook needs an"
     " http:// or https:// URL"),
    ("hooks.example/SECRET", "[account alice] webhook: a json webhook needs an http:// or"
     " https:// URL"),
])
def test_a_bad_webhook_is_one_line_without_the_url(tmp_path: Path, value: str,
                                                   error: str) -> None:
    conf = tmp_path / "serve.conf"
    conf.write_text(f"[account alice]\nwebhook = {value}\n")
    with pytest.raises(ParseError) as info:
        server_config.load_config(conf)
    assert str(info.value) == f"{conf}: line 2: {error}"
    assert "SECRET" not in str(info.value)


@pytest.mark.parametrize(("value", "want"), [
    ("10/1h", (10, 3600.0)), ("30/d", (30, 86400.0)), ("off", (0, 3600.0)),
])
def test_rate_limit_values(tmp_path: Path, value: str, want: tuple[int, float]) -> None:
    conf = tmp_path / "serve.conf"
    conf.write_text(f"[notify]\nrate_limit = {value}\ngroup_window = 2m\nremind = 12h\n")
    cfg = server_config.load_config(conf)
    assert cfg.notify_rate_limit == want
    assert cfg.notify_group_window == 120.0 and cfg.notify_remind == 43200.0


def test_a_bad_rate_limit_is_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "serve.conf"
    conf.write_text("[notify]\nrate_limit = lots\n")
    with pytest.raises(ParseError, match=r"line 2: \[notify\] rate_limit: 'lots' is not"
                                         r" COUNT/DURATION \(e.g. 10/1h, 30/d\) or off$"):
        server_config.load_config(conf)


def test_the_log_never_shows_a_webhook_path() -> None:
    assert redact("slack+https://hooks.slack.com/services/T/B/SECRET") == \
        "slack https://hooks.slack.com/..."
    assert redact("ops@example.org") == "ops@example.org"


def test_docs_name_every_format() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "server.md").read_text()
    section = docs[docs.index("## Notifications"):docs.index("## The report")]
    for name in FORMATS:
        assert f"`{name}`" in section, f"docs/server.md lacks the {name} format"
