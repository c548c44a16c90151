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
py39=
for cand in python3.9 /usr/bin/python3.9 "$(pyenv root 2>/dev/null)"/versions/3.9.*/bin/python; do
  if "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 9)' 2>/dev/null; then
    py39=$cand; break
  fi
done
if [ -n "$py39" ]; then
  echo "== every certhook module imports on $("$py39" -V)"
  "$py39" - <<'PY'
import importlib, pkgutil, certhook
names = [m.name for m in pkgutil.walk_packages(certhook.__path__, "certhook.")
         if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(f"{len(names)} modules")
PY
fi
echo "== pytest"
$py/python -m pytest "$@"
