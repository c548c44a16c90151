#!/usr/bin/env bash
# The fuzz run: every hypothesis test (pytest -m hypothesis) under the
# "fuzz" profile of tests/conftest.py (2000 examples where a test does not
# set its own number, no example database), round after round, each with a
# fresh random seed, until SECONDS (default 600) have passed. ./test.sh and
# CI stay derandomized; this is where new counterexamples are found.
#
#   ./fuzz.sh [SECONDS] [pytest arguments, e.g. tests/test_configobj.py]
#
# The first failure stops the run and prints its seed; pin the falsifying
# example hypothesis printed as an @example on the test, then fix the code.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || bash ./setup.sh
budget=${1:-600}
[ $# -gt 0 ] && shift
end=$((SECONDS + budget))
round=0
while [ "$SECONDS" -lt "$end" ]; do
    round=$((round + 1))
    seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
    echo "== fuzz round $round, --hypothesis-seed=$seed, $((end - SECONDS)) s left"
    status=0
    timeout --signal=INT "$((end - SECONDS + 1))" .venv/bin/python -m pytest -q -x \
        -p no:cacheprovider -m hypothesis --hypothesis-profile=fuzz \
        --hypothesis-seed="$seed" "$@" || status=$?
    case $status in
        0) ;;
        124|130) echo "== fuzz: time is up in round $round; no failure"; exit 0 ;;
        *) echo "== fuzz: FAILED in round $round with --hypothesis-seed=$seed" >&2; exit "$status" ;;
    esac
done
echo "== fuzz: $round rounds, no failure"
