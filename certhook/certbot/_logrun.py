"""What one certbot run's log records say about each lineage.

Logger names changed over the years (``certbot.renewal``, later
``certbot._internal.renewal``), so records are recognised by their messages
alone; a notification's "Notifying user: " prefix is dropped first.

What a renewal run looks like, by certbot version (from certbot's source:
``renewal.py``, ``hooks.py``, ``display/ops.py``, ``display/util.py``):

- "Processing /etc/letsencrypt/renewal/NAME.conf" opens each lineage, but
  is only logged since 1.10 (``notification`` began to log). Before, a
  lineage is named by a later line: the failure, "Writing certificate to
  .../archive/NAME/certN.pem", "Dry run: skipping updating lineage at ...".
  A "Cert not yet due for renewal" of any version before 1.10 (0.x and
  1.0 to 1.9 alike) has no such line and is dropped; so that the hooks
  after it are not dropped with it, "Running post-hook command" (and a
  post-hook's error) ends the lineage at hand: a post-hook runs once, after
  every lineage, for all those the run renewed.
- Due: "Cert is due for renewal, auto-renewing..." (before 1.16),
  "Certificate is due ..." (1.16+), "Auto-renewal forced with
  --force-renewal...", "Renewing an existing certificate[ for ...]". An
  attempt without a failure counts as renewed.
- Failed: "Failed to renew certificate NAME with error: TEXT" (1.11+);
  "Attempting to renew cert (NAME) from CONF produced an unexpected error:
  TEXT. Skipping." (0.17 to 1.10); "Attempting to renew cert from CONF ..."
  (before 0.17); a broken conf: "Renewal configuration file CONF ...".
- A conf that cannot be read while certbot lists lineages (``certbot
  certificates``, and every command that looks lineages up,
  ``cert_manager``): "Renewal configuration file CONF produced an
  unexpected error: TEXT. Skipping.", without the "(cert: NAME)" that
  ``renew`` writes since 0.17. That is a problem of the lineage (often of
  the user who ran the listing: a private key it may not read), not a
  renewal outcome: ``conf_error``, which never passes for a failed renewal.
- Not due: "Certificate not yet due for renewal" (1.16+), "Cert not ..."
- The summary, logged since 1.10 (failures always): "  PATH (success)",
  "  PATH (failure)", "  PATH expires on DATE (skipped)", "  CONF (parsefail)".
- Hooks: "Hook 'deploy-hook' reported error code 3" (1.18+), "deploy-hook
  command "CMD" returned error code 3" (0.33 to 1.17), "Hook command "CMD"
  returned error code 3" (before 0.33), "Error output from ..." (to 1.17).
- Dry runs (``--dry-run``): every event of the run is "simulated".
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace
from datetime import datetime

_VERSION = re.compile(r"(?:certbot|letsencrypt) version: (\S+)")
_ARGUMENTS = re.compile(r"Arguments: (\[.*\])")
_PROCESSING = re.compile(r"Processing (.+\.conf)")

# message -> what it says about the lineage being processed
_DECISIONS = [
    (re.compile(r"(?:Cert|Certificate) is due for renewal, auto-renewing\.\.\."), "attempt"),
    (re.compile(r"Auto-renewal forced with --force-renewal\.\.\."), "attempt"),
    (re.compile(r"(?:Cert|Certificate) not due for renewal, but simulating renewal for dry run"),
     "dry"),
    (re.compile(r"(?:Cert|Certificate) not yet due for renewal"), "not_due"),
    (re.compile(r"Renewing an existing certificate(?: for .*)?"), "continue"),
    (re.compile(r"Simulating renewal of an existing certificate(?: for .*)?"), "dry_continue"),
]
# renew's wording before 0.17, and the lineage listing's in every version.
_LISTING_ERROR = re.compile(r"Renewal configuration file (\S+) produced an unexpected error: "
                            + r"(.*?)(?:\. Skipping\.)?", re.S)
# The first certbot whose renew says "(cert: NAME)" in its conf errors.
_CERT_IN_CONF_ERROR = (0, 17)
_POST_HOOK = re.compile(r"Running post-hook command: .*|post-hook command .*|"
                        r"Hook 'post-hook' reported error code \d+", re.S)
_RENEW_FAILURES = re.compile(r"\d+ renew failure\(s\), \d+ parse failure\(s\)")
_SKIPPING = r"(.*?)(?:\. Skipping\.)?"
# (pattern, is a renewal failure (else a broken conf), group of the lineage name,
# group of its conf path, group of the error)
_FAILURES = [
    (re.compile(r"Failed to renew certificate (.+?) with error: (.*)", re.S), True, 1, 0, 2),
    (re.compile(r"Attempting to renew cert \((.+?)\) from (.+?) produced an unexpected "
                r"error: " + _SKIPPING, re.S), True, 1, 0, 3),
    (re.compile(r"Attempting to renew cert from (.+?) produced an unexpected error: "
                + _SKIPPING, re.S), True, 0, 1, 2),
    (re.compile(r"Renewal configuration file (.+?) \(cert: (.+?)\) produced an unexpected "
                r"error: " + _SKIPPING, re.S), False, 2, 0, 3),
    (_LISTING_ERROR, False, 0, 1, 2),
    (re.compile(r"Renewal configuration file (\S+) (.*)", re.S), False, 0, 1, 2),
]
# Lines naming the lineage at hand in logs without "Processing" (before 1.10).
_NAME_CUES = [
    re.compile(r"Writing certificate to .*[/\\]([^/\\]+)[/\\]cert\d+\.pem\."),
    re.compile(r"Dry run: skipping updating lineage at (.+)"),
    # Up to the first "fullchain is " only: ".*fullchain is .*" tried every one
    # of them (seconds for a long line of them).
    re.compile(r"new certificate deployed (?:(?!fullchain is ).)*fullchain is"
               r" .*[/\\]([^/\\]+)[/\\]fullchain\.pem"),
    re.compile(r"Certificate is saved at: .*[/\\]([^/\\]+)[/\\][^/\\]+\.pem"),  # 1.15+
    # (\S before .*: "\s*.*" would backtrack quadratically over a run of spaces)
    re.compile(r"Your certificate and chain have been saved at:\s*(?:\S.*)?[/\\]([^/\\]+)[/\\]"
               r"fullchain\.pem"),  # before 1.15
]
_HOOK_ERRORS = [
    # 1.18+; a hook's name holds no quote ("deploy-hook", "--manual-auth-hook"),
    # and '.+?' would try every quote of a long line.
    re.compile(r"Hook '[^']+'(?: for .+)? reported error code \d+"),
    # "deploy-hook command "CMD" ..." (0.33 to 1.17), "Hook command "CMD" ..." (before)
    re.compile(r"\S+ command \".*\" returned error code \d+", re.S),
]
_HOOK_STDERR = re.compile(r"(?:Hook '.+' ran with error output|Error output from .+):\n.*", re.S)
_SUMMARY_HEADS = (
    "Congratulations, all ", "All renewal attempts failed", "All renewals failed",
    "All simulated renewals failed", "The following certs ", "The following certificates ",
    "The following renewals ", "The following simulated renewals ",
    "Additionally, the following renewal configurations", "No renewals were attempted",
    "No simulated renewals were attempted", "** DRY RUN",
)
_REPORT = re.compile(
    r"  (\S.*?)(?: expires on \d{4}-\d\d-\d\d)? \((success|failure|skipped|parsefail)\)")
_REPORT_OUTCOME = {"success": "renewed", "failure": "failed", "skipped": "not_due",
                   "parsefail": "failed"}
_RANK = {"conf_error": 0, "not_due": 1, "renewed": 2, "failed": 3}


@dataclass(frozen=True)
class LogEvent:
    """What happened to one lineage: renewed, failed, not_due, simulated, hook_error,
    or conf_error (its conf could not be read when certbot listed lineages)."""

    lineage: str
    outcome: str
    time: datetime  # naive, the local time certbot logged
    message: str | None
    log_file: str


@dataclass(frozen=True)
class Run:
    """One certbot invocation found in a log file."""

    log_file: str
    started: datetime | None
    certbot_version: str | None
    arguments: tuple[str, ...]
    dry_run: bool
    events: tuple[LogEvent, ...]


def _lineage_of(path: str, parent: bool = False) -> str:
    """NAME from ``.../renewal/NAME.conf``, ``.../live/NAME``, or with ``parent``
    from ``.../live/NAME/fullchain.pem``."""
    parts = re.split(r"[/\\]", path.strip().rstrip("/\\"))
    base = parts[-2] if parent and len(parts) > 1 else parts[-1]
    return base[: -len(".conf")] if base.endswith(".conf") else base


def _parse_arguments(text: str) -> tuple[str, ...]:
    if len(text) > 65536:
        return ()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return ()
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return ()


@dataclass
class _Hook:
    order: int
    name: str | None  # None until the lineage at hand is named
    time: datetime
    message: str


@dataclass
class _Segment:
    """The lineage being processed, possibly not yet named (certbot before 1.10)."""

    name: str | None
    order: int  # its result sorts before its hooks
    decision: str | None = None
    time: datetime | None = None  # of the decision
    last: datetime | None = None  # of its latest record
    saved: datetime | None = None  # when certbot wrote the new certificate
    failed: bool = False
    hooks: list[_Hook] = field(default_factory=list)


class RunBuilder:
    """Collects one run's records and turns them into events."""

    def __init__(self, source: str, started: datetime) -> None:
        self.source = source
        self.started = started
        self.version: str | None = None
        self.arguments: tuple[str, ...] = ()
        self.dry_run = False
        self.segment: _Segment | None = None
        self.in_summary = False
        self.results: dict[str, tuple[int, str, datetime, str | None]] = {}
        self.hooks: list[_Hook] = []
        self.recent_hooks: list[_Hook] = []  # made by the previous record
        self.last_error: str | None = None
        self.abnormal = False
        self.order = 0

    def is_next_run(self, message: str) -> bool:
        """Whether a record with this message starts another run."""
        return bool(_VERSION.fullmatch(message)) and bool(self.version or self.arguments)

    def _next(self) -> int:
        self.order += 1
        return self.order

    def _result(self, name: str, outcome: str, time: datetime, message: str | None,
                order: int | None = None) -> None:
        old = self.results.get(name)
        if old is None or _RANK[outcome] > _RANK[old[1]]:
            self.results[name] = (order or self._next(), outcome, time, message)
        elif old[1] == outcome and old[3] is None and message:
            self.results[name] = (old[0], outcome, old[2], message)

    def _hook(self, name: str | None, time: datetime, message: str) -> _Hook:
        hook = _Hook(self._next(), name, time, message)
        self.hooks.append(hook)
        return hook

    def _close(self, time: datetime) -> None:
        segment, self.segment = self.segment, None
        if segment is not None and segment.name is None:
            segment.name = self._cert_name()  # certonly names no lineage until it saves
        if segment is None or segment.name is None:
            return  # hooks of an unnamed lineage stay unnamed, and are dropped
        when, order = segment.saved or segment.last or time, segment.order
        if segment.decision == "not_due":
            self._result(segment.name, "not_due", segment.time or when, None, order)
        elif segment.decision is not None and not segment.failed:
            if self.abnormal:  # certbot died while at it (certonly, say)
                self._result(segment.name, "failed", when, self.last_error, order)
            else:
                self._result(segment.name, "renewed", when, None, order)
        for hook in segment.hooks:
            hook.name = segment.name

    def _cert_name(self) -> str | None:
        for index, argument in enumerate(self.arguments):
            if argument.startswith("--cert-name="):
                return argument[len("--cert-name="):] or None
            if argument == "--cert-name" and index + 1 < len(self.arguments):
                return self.arguments[index + 1]
        return None

    def _open(self, name: str | None) -> _Segment:
        self.segment = _Segment(name, self._next())
        self.in_summary = False
        return self.segment

    def record(self, time: datetime, level: str, lines: list[str]) -> None:
        """Take the next record: its time, level and lines (message first)."""
        self._interpret(time, level, lines)
        if self.segment is not None:
            self.segment.last = time

    def _interpret(self, time: datetime, level: str, lines: list[str]) -> None:
        recent, self.recent_hooks = self.recent_hooks, []
        message = lines[0]
        if message.startswith("Notifying user: "):
            message = message[len("Notifying user: "):]
        text = "\n".join([message, *lines[1:]]).strip()
        if level in ("ERROR", "CRITICAL") and text and not text.startswith("Exiting abnormally"):
            self.last_error = text
        if message.startswith("Exiting abnormally"):
            if _RENEW_FAILURES.search(text):
                self._close(time)  # the end of a renew run with failures (before 1.10)
            else:  # a crash: the lineage at hand, if any, failed
                self.abnormal = True
                self.last_error = text.splitlines()[-1].strip()
            return
        match = _VERSION.fullmatch(message)
        if match:
            self.version = self.version or match.group(1)
            return
        match = _ARGUMENTS.fullmatch(message)
        if match:
            self.arguments = _parse_arguments(match.group(1))
            self.dry_run = self.dry_run or "--dry-run" in self.arguments
            return
        match = _PROCESSING.fullmatch(message)
        if match:
            self._close(time)
            self._open(_lineage_of(match.group(1)))
            return
        for pattern, decision in _DECISIONS:
            if pattern.fullmatch(message):
                self._decide(time, decision)
                return
        if _POST_HOOK.fullmatch(text):
            self._close(time)  # the post-hook concerns every lineage renewed, not the last
        if self._failure(time, text) or self._hook_error(time, text, recent):
            return
        segment = self.segment
        if segment is not None:
            if text.startswith("Writing certificate to "):
                segment.saved = time
            for cue in _NAME_CUES if segment.name is None else ():
                match = cue.search(text)
                if match:
                    segment.name = _lineage_of(match.group(1))
                    return
        self._summary(time, [message, *lines[1:]])

    def _decide(self, time: datetime, decision: str) -> None:
        segment = self.segment
        if decision in ("dry", "dry_continue"):
            self.dry_run = True
            decision = "attempt" if decision == "dry" else "continue"
        if decision == "continue":  # "Renewing ..." follows the decision, or is certonly's
            if segment is not None and segment.decision is not None:
                return
            decision = "attempt"
        if segment is None or segment.decision is not None:
            self._close(time)
            segment = self._open(None)
        segment.decision, segment.time = decision, time

    def _listing(self) -> bool:
        """Whether the plain conf error is the listing's (not renew's before 0.17)."""
        numbers = re.findall(r"\d+", self.version or "")[:2]
        return len(numbers) == 2 and tuple(map(int, numbers)) >= _CERT_IN_CONF_ERROR

    def _failure(self, time: datetime, text: str) -> bool:
        for pattern, renewing, name_group, conf_group, error_group in _FAILURES:
            match = pattern.fullmatch(text)
            if not match:
                continue
            if pattern is _LISTING_ERROR and self._listing():
                name = _lineage_of(match.group(conf_group))
                self._result(name, "conf_error", time, match.group(error_group).strip() or None)
                return True
            segment = self.segment
            error = match.group(error_group)
            if name_group:
                name = match.group(name_group)
                current = segment.name if segment is not None else None
                known = f"Failed to renew certificate {current} with error: "
                if current and text.startswith(known):
                    name, error = current, text[len(known):]  # " with error: " in the name
            else:
                name = _lineage_of(match.group(conf_group))
            if segment is not None and (segment.name == name or (
                    renewing and segment.name is None)):
                segment.name, segment.failed = name, True
            elif not renewing:
                self._close(time)  # before 1.10 a broken conf just follows the last lineage
            self._result(name, "failed", time, error.strip() or None)
            return True
        return False

    def _hook_error(self, time: datetime, text: str, recent: list[_Hook]) -> bool:
        if _HOOK_STDERR.fullmatch(text):
            if recent:  # the error output of the hook whose exit code came just before
                for hook in recent:
                    hook.message += "\n" + text
                self.recent_hooks = recent
            else:
                self._attach_hook(time, text)
            return True
        if any(pattern.fullmatch(text) for pattern in _HOOK_ERRORS):
            self._attach_hook(time, text)
            return True
        return False

    def _attach_hook(self, time: datetime, text: str) -> None:
        if self.segment is not None:
            hook = self._hook(self.segment.name, time, text)
            self.segment.hooks.append(hook)
            self.recent_hooks = [hook]
            return
        # A post-hook runs once after every lineage: it concerns those renewal touched.
        names = [name for name, result in self.results.items() if result[1] != "not_due"]
        self.recent_hooks = [self._hook(name, time, text) for name in names]

    def _summary(self, time: datetime, lines: list[str]) -> None:
        for line in lines:
            if line.startswith(_SUMMARY_HEADS):
                self._close(time)
                self.in_summary = True
                if "simulated" in line or line.startswith("** DRY RUN"):
                    self.dry_run = True
                continue
            match = _REPORT.fullmatch(line.rstrip()) if self.in_summary else None
            if match:
                path, report = match.groups()
                name = _lineage_of(path, parent=report != "parsefail")
                self._result(name, _REPORT_OUTCOME[report], time, None)

    def finish(self, time: datetime) -> Run:
        self._close(time)
        events = [
            (order, LogEvent(name, outcome, when, message, self.source))
            for name, (order, outcome, when, message) in self.results.items()
        ]
        events += [
            (hook.order, LogEvent(hook.name, "hook_error", hook.time, hook.message, self.source))
            for hook in self.hooks
            if hook.name is not None
        ]
        events.sort(key=lambda item: item[0])
        final = tuple(
            replace(event, outcome="simulated") if self.dry_run else event
            for _, event in events
        )
        return Run(self.source, self.started, self.version, self.arguments, self.dry_run, final)


