"""``certhook probe``: connect to TLS endpoints and judge their certificates.

The public API, also used by the audit server::

    from certhook.probe import ProbeOptions, parse_target, probe, probe_many

    result = probe(parse_target("example.org"), ProbeOptions(warn_days=30))
    result.status, result.reasons, result.to_json()
"""

from __future__ import annotations

from certhook.probe.result import STATUSES, ProbeOptions, ProbeResult, exit_code, worst_status
from certhook.probe.runner import DEFAULT_CONCURRENCY, probe, probe_many
from certhook.probe.targets import (
    Target,
    certbot_fingerprints,
    certbot_targets,
    parse_target,
    ports_for_lineage,
    read_targets_file,
)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "STATUSES",
    "ProbeOptions",
    "ProbeResult",
    "Target",
    "certbot_fingerprints",
    "certbot_targets",
    "exit_code",
    "parse_target",
    "ports_for_lineage",
    "probe",
    "probe_many",
    "read_targets_file",
    "worst_status",
]
