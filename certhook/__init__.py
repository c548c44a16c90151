"""certhook: end-to-end monitoring of TLS certificates renewed by certbot."""

from __future__ import annotations

__version__ = "0.1.0"
