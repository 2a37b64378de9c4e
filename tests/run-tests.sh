#!/bin/sh
# run-tests.sh TIMEOUT PROGRAM... -- run each test program, bounded in time.
# A program named test_x-BACKEND runs with TWINE_TEST_BACKEND=BACKEND, and
# asserts that it was linked with that backend.  Prints one line per program
# and exits non-zero if any failed.
set -u
limit=$1; shift
failed=""
for prog in "$@"; do
    backend=${prog##*-}
    start=$(date +%s)
    if out=$(TWINE_TEST_BACKEND=$backend timeout -k 5 "$limit" "$prog" 2>&1); then
        printf 'PASS  %-45s %3ss\n' "$prog" "$(( $(date +%s) - start ))"
    else
        rc=$?
        printf '%s\n' "$out" | tail -n 40
        [ $rc = 124 ] && why="timed out after ${limit}s" || why="exit $rc"
        printf 'FAIL  %-45s (%s)\n' "$prog" "$why"
        failed="$failed $prog"
    fi
done
if [ -n "$failed" ]; then
    echo "twine: failed:$failed" >&2
    exit 1
fi
