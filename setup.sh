#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine (as root) for certhook's tests and
# demo: the Debian packages in tests/apt-packages (pebble, real mail,
# directory and database servers), and a venv in .venv with certhook
# installed editable plus its test extra (certbot, pytest, ...).
# Idempotent: a second run installs nothing. Sourced by test.sh and demo.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log=$(mktemp)
trap 'rm -f "$log"' EXIT

missing=()
while read -r pkg; do
  case "$pkg" in ''|'#'*) continue ;; esac
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done < tests/apt-packages
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages such as dovecot or slapd start their system service on install;
  # the tests start their own instances on loopback, so keep those stopped.
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made_policy=1
  fi
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -30 "$log"; [ -n "$made_policy" ] && rm -f "$policy"
    echo "setup: apt-get install failed" >&2; exit 1
  fi
  [ -n "$made_policy" ] && rm -f "$policy"
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.certhook-setup
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing certhook and its test extra into .venv"
  if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' >"$log" 2>&1; then
    grep -v '^WARNING: Location' "$log" | tail -30
    echo "setup: pip install failed" >&2; exit 1
  fi
  touch "$stamp"
fi
