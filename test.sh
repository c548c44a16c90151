#!/usr/bin/env bash
# Sets up (./setup.sh) and runs certhook's checks: lint, types, the
# Python 3.9 floor, then the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
bash ./setup.sh
py=.venv/bin
echo "== ruff"
$py/ruff check certhook tests bench contrib
echo "== mypy --strict certhook"
$py/mypy
echo "== vermin: certhook runs on Python 3.9"
$py/vermin --target=3.9- --no-tips --violations --eval-annotations --backport dataclasses certhook
echo "== pytest"
$py/python -m pytest "$@"
