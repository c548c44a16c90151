"""What a notification looks like on each channel: one class per format, one row each.

The notifier groups an account's notices into a :class:`Digest` (worst
first, with counts) and hands it to a format from :data:`FORMATS`, which
answers with the bytes to POST and their headers: no I/O here. Adding a
format is one class and one row; the config reader (``webhook =
FORMAT+URL``) and the docs check read the same table.

Every string that came from a peer (a certificate's issuer, a probe's
reason, a domain) is escaped for its sink: :func:`certhook.escape.visible`
for every line, then the sink's own markup (Slack's ``&<>``, HTML,
Markdown for Teams and Discord). Discord and Slack are also told not to
turn ``@everyone`` or ``<!channel>`` in a reason into a ping.

Shapes and limits, from the services' public documentation:

* Slack / Mattermost incoming webhook: ``text`` (the notification's
  fallback) plus ``blocks`` (at most 50; a section's text at most 3000
  characters, a header's 150). Mattermost reads ``text`` and ignores blocks.
* Microsoft Teams Workflows ("Send webhook alerts to a channel"):
  ``{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "content": AdaptiveCard}]}``.
* ntfy: the message is the POST body (text), with ``Title``, ``Priority``
  (1-5) and ``Tags`` headers (the header form of docs.ntfy.sh/publish).
* Discord execute-webhook: ``content`` (at most 2000 characters) and
  ``embeds`` (at most 10; title 256, description 4096, 6000 in all).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from certhook import __version__
from certhook.escape import for_header, visible
from certhook.probe.lifetime import describe_left

__all__ = ["FORMATS", "Digest", "Request", "WebhookFormat", "parse_webhook", "redact",
           "render_email", "severity", "summary"]

# worst first: the order of counts and of the lines in a digest
_RANK = {"critical": 5, "unknown": 4, "warning": 3, "waiting": 2, "ok": 0}
_EXPIRY = 1  # an expiry notice ranks after a failure of its own state


def severity(payload: dict[str, Any]) -> int:
    """How bad a notice is; a recovery is 0, a critical failure the most."""
    if payload.get("kind") == "recovery":
        return 0
    rank = _RANK.get(str(payload.get("state")), 3)
    return rank * 2 + (0 if payload.get("kind") == "expiry" else _EXPIRY)


def _left(payload: dict[str, Any]) -> str:
    seconds = payload.get("seconds_left")
    if isinstance(seconds, (int, float)):
        return describe_left(seconds)
    return f"{payload.get('days_left')} days"


def _at(payload: dict[str, Any]) -> str:
    """The notice's threshold: ``notice at 23.33% of its lifetime``, ``notice at 7 days``."""
    threshold = str(payload.get("threshold"))
    if threshold.endswith("%"):
        return f"notice at {threshold} of its lifetime"
    return f"notice at {threshold} days" if threshold.isdigit() else f"notice at {threshold}"


def summary(payload: dict[str, Any]) -> str:
    """One line: ``CRITICAL www.example.org:443/tls: renewed but not deployed ...``.

    Peer strings may be in it (the domain, the reason): it is shown with
    :func:`visible`, one line, no control characters.
    """
    where = f"{payload.get('domain')}:{payload.get('port')}/{payload.get('protocol')}"
    kind = payload.get("kind")
    if kind == "expiry":
        line = f"EXPIRY {where}: certificate expires in {_left(payload)} ({_at(payload)})"
    elif kind == "recovery":
        line = f"RECOVERED {where}: ok again (was {payload.get('previous')})"
    else:
        first = (payload.get("reasons") or [""])[0]
        line = f"{str(payload.get('state', '')).upper()} {where}: {first}".rstrip(": ")
        if kind == "reminder":
            line = f"STILL {line}"
    return visible(line)


def _label(payload: dict[str, Any]) -> str:
    kind = payload.get("kind")
    if kind in ("recovery", "expiry"):
        return str(kind)
    return str(payload.get("state"))


@dataclass(frozen=True)
class Digest:
    """One account's notices for one message: worst first; ``held`` were rate-limited."""

    account: str
    notices: tuple[dict[str, Any], ...]
    held: int = 0
    counts: tuple[tuple[str, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.notices, key=lambda n: (-severity(n), summary(n))))
        object.__setattr__(self, "notices", ordered)
        counts: dict[str, int] = {}
        for notice in ordered:
            counts[_label(notice)] = counts.get(_label(notice), 0) + 1
        object.__setattr__(self, "counts", tuple(counts.items()))

    @property
    def title(self) -> str:
        """``[certhook] alice: 2 critical, 200 unknown``, one line."""
        counts = ", ".join(f"{n} {label}" for label, n in self.counts)
        held = f" (with {self.held} held back by the rate limit)" if self.held else ""
        if len(self.notices) == 1:
            return visible(f"[certhook] {summary(self.notices[0])}")
        return visible(f"[certhook] {self.account}: {counts}{held}")

    @property
    def heading(self) -> str:
        """``[certhook] alice: 1 critical``: the counts alone, no string from a peer."""
        counts = ", ".join(f"{n} {label}" for label, n in self.counts)
        return visible(f"[certhook] {self.account}: {counts}")

    def lines(self) -> list[str]:
        return [summary(n) for n in self.notices]

    @property
    def worst(self) -> int:
        return severity(self.notices[0]) if self.notices else 0


@dataclass(frozen=True)
class Request:
    """What to POST: the body and its headers."""

    body: bytes
    headers: dict[str, str]


def _json(value: Any) -> Request:
    return Request(json.dumps(value).encode(), {"Content-Type": "application/json"})


def _fit(lines: list[str], limit: int, more: str = "... and {n} more") -> str:
    """As many whole lines as fit in ``limit`` characters, then how many were left out."""
    out: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        tail = len(more.format(n=len(lines) - i)) + 1
        if used + len(line) + 1 + (tail if i < len(lines) - 1 else 0) > limit:
            out.append(more.format(n=len(lines) - i))
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


class WebhookFormat:
    """A webhook body format: :meth:`render` a digest into the request to POST."""

    name: ClassVar[str] = ""

    def render(self, digest: Digest) -> Request:
        raise NotImplementedError


class PlainJson(WebhookFormat):
    """Today's body: the worst notice's fields at the top (as before grouping), and all of them.

    ``notices`` holds every notice of the digest, ``lines`` their one-line
    summaries, ``counts`` the count per state, ``held`` how many were held
    back by the rate limit.
    """

    name = "json"

    def render(self, digest: Digest) -> Request:
        worst = digest.notices[0] if digest.notices else {}
        return _json({"certhook": __version__, **worst, "title": digest.title,
                      "counts": dict(digest.counts), "held": digest.held,
                      "lines": digest.lines(),
                      "notices": list(digest.notices)})


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn: &, < and > are the only characters it asks to escape;
    # a < left alone would make <!channel> or a link out of a reason.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Slack(WebhookFormat):
    """Slack and Mattermost: ``text`` (the fallback) and ``blocks`` (header, counts, lines)."""

    name = "slack"

    def render(self, digest: Digest) -> Request:
        lines = [_slack_escape(line) for line in digest.lines()]
        title = _slack_escape(digest.title)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": digest.heading[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _fit(lines, 3000)}},
        ]
        if digest.held:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                           f"{digest.held} more held back by the rate limit, listed above"}]})
        return _json({"text": _fit([title, *lines], 3000), "blocks": blocks})


def _markdown_escape(text: str) -> str:
    """Markdown's punctuation shown as itself (Teams TextBlock, Discord)."""
    text = re.sub(r"([\\`*_~|\[\]()<>#@!])", r"\\\1", text)
    return text


class Teams(WebhookFormat):
    """Microsoft Teams Workflows: an Adaptive Card (1.4) in a ``message`` envelope."""

    name = "teams"

    def render(self, digest: Digest) -> Request:
        body: list[dict[str, Any]] = [
            {"type": "TextBlock", "text": _markdown_escape(digest.title), "weight": "Bolder",
             "size": "Medium", "wrap": True,
             "color": "Attention" if digest.worst >= 8 else "Default"},
            {"type": "TextBlock", "wrap": True, "text": _fit(
                [_markdown_escape(line) for line in digest.lines()], 20000).replace("\n", "\n\n")},
        ]
        card = {"type": "AdaptiveCard", "version": "1.4",
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "body": body}
        return _json({"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
             "content": card}]})


class Ntfy(WebhookFormat):
    """ntfy: the lines as the text body, ``Title``/``Priority``/``Tags`` headers."""

    name = "ntfy"

    def render(self, digest: Digest) -> Request:
        # HTTP headers are Latin-1 at best: the title is cut to ASCII (escapes for the rest).
        title = for_header(digest.title, limit=200).encode("ascii", "backslashreplace").decode()
        priority = "5" if digest.worst >= 8 else "4" if digest.worst >= 2 else "3"
        tags = "rotating_light" if digest.worst >= 2 else "white_check_mark"
        # ntfy's message limit is 4096 bytes (longer becomes an attachment)
        text = _fit([digest.heading, *digest.lines()], 3500)
        return Request(text.encode(), {"Content-Type": "text/plain; charset=utf-8",
                                       "Title": title, "Priority": priority, "Tags": tags})


class Discord(WebhookFormat):
    """Discord: ``content`` (the title) and one embed listing the notices; no mentions."""

    name = "discord"

    def render(self, digest: Digest) -> Request:
        lines = [_markdown_escape(line) for line in digest.lines()]
        embed = {"title": digest.title[:256], "description": _fit(lines, 4000),
                 "color": 0xD0312D if digest.worst >= 8 else 0x2E8B57}
        return _json({"content": _markdown_escape(digest.title)[:2000], "embeds": [embed],
                      "allowed_mentions": {"parse": []}})


# The formats a webhook may speak: ``webhook = NAME+https://...``; no prefix is json.
FORMATS: dict[str, WebhookFormat] = {
    "json": PlainJson(),
    "slack": Slack(),
    "mattermost": Slack(),
    "teams": Teams(),
    "ntfy": Ntfy(),
    "discord": Discord(),
}


def parse_webhook(text: str) -> tuple[str, str]:
    """``slack+https://hooks...`` into ``("slack", "https://hooks...")``; ValueError if bad.

    The message never quotes the URL: a webhook URL is a secret.
    """
    name, plus, url = text.partition("+")
    if not plus or "://" in name:
        name, url = "json", text
    name = name.lower()
    if name not in FORMATS:
        raise ValueError(f"unknown webhook format {visible(name[:20])!r}"
                         f" (want FORMAT+URL, FORMAT one of {', '.join(FORMATS)})")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("http", "https") or not url.split("://", 1)[1].strip("/"):
        raise ValueError(f"a {name} webhook needs an http:// or https:// URL")
    return name, url


def redact(destination: str) -> str:
    """A destination for the log: an address, or a webhook's format, scheme and host."""
    if "://" not in destination:
        return visible(destination)
    name, url = parse_webhook(destination)
    host = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    return visible(f"{name} {url.split('://', 1)[0]}://{host}/...")


def render_email(digest: Digest) -> tuple[str, str, str]:
    """The subject, the plain text and the HTML of a digest's mail."""
    subject = for_header(digest.title, limit=200)
    text = [digest.title, ""]
    if len(digest.notices) > 1:
        text += [", ".join(f"{n} {label}" for label, n in digest.counts), ""]
    text += digest.lines()
    if digest.held:
        text += ["", f"{digest.held} of these were held back by the rate limit."]
    details: list[str] = []
    for notice in digest.notices:
        details += ["", summary(notice)]
        for key in ("account", "domain", "port", "protocol", "state", "previous", "days_left",
                    "seconds_left", "issuer", "served_fingerprint", "expected_fingerprint"):
            if notice.get(key) is not None:
                details.append(f"  {key}: {visible(str(notice[key]))}")
        details += [f"  - {visible(str(r))}" for r in notice.get("reasons") or []]
    plain = "\n".join([*text, "", "Details:", *details]) + "\n"
    rows = "".join(
        f"<tr><td>{html.escape(_label(n))}</td><td>{html.escape(summary(n))}</td></tr>"
        for n in digest.notices)
    page = (f"<!DOCTYPE html><html><body><h2>{html.escape(digest.title)}</h2>"
            f"<p>{html.escape(', '.join(f'{n} {label}' for label, n in digest.counts))}</p>"
            f"<table border=\"1\" cellpadding=\"4\">{rows}</table>"
            + (f"<p>{digest.held} held back by the rate limit.</p>" if digest.held else "")
            + "</body></html>\n")
    return subject, plain, page
