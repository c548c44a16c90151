#!/usr/bin/env bash
# Sets up (./setup.sh) and runs certhook's main job end to end on loopback:
# see contrib/demo.py for the steps. Everything it starts listens on
# 127.0.0.1 and is stopped when it ends; nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")"
bash ./setup.sh
exec .venv/bin/python contrib/demo.py "$@"
