#!/usr/bin/env bash
# The fault tests under CPU load: ingest's fault tests and the gateway's broker-outage
# test, RUNS times in a row (5 by default), each beside BURNERS CPU-bound processes (3 by
# default) on this machine's cores. A test that waits for readiness with a fixed sleep, or
# with a deadline too tight for a loaded machine, fails here before it fails in CI.
#
#   scripts/soak-faults.sh [RUNS] [BURNERS]
#
# Prints each run's result and duration; exits non-zero if any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${1:-5}"
BURNERS="${2:-3}"
PYTEST=.venv/bin/pytest
TESTS=(tests/ingest/test_faults.py
       "tests/edge/test_gateway.py::test_broker_down_for_a_minute_every_reading_arrives_once_and_in_order")

burners=()
stop_burners() {
    for pid in "${burners[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${burners[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap stop_burners EXIT

for _ in $(seq "$BURNERS"); do
    python3 -c 'while True: pass' &
    burners+=("$!")
done
echo "$(date -u +%FT%TZ) ${#burners[@]} CPU burners running (pids ${burners[*]}) on $(nproc) cores"

failed=0
for run in $(seq "$RUNS"); do
    started=$(date +%s)
    if "$PYTEST" -q -p no:cacheprovider "${TESTS[@]}" > "/tmp/soak-faults-run$run.log" 2>&1; then
        result=passed
    else
        result=FAILED
        failed=$((failed + 1))
    fi
    summary=$(tail -n 1 "/tmp/soak-faults-run$run.log")
    echo "$(date -u +%FT%TZ) run $run/$RUNS: $result in $(( $(date +%s) - started )) s," \
         "load average $(cut -d' ' -f1-3 /proc/loadavg): $summary"
done
echo "$((RUNS - failed)) of $RUNS runs passed (logs: /tmp/soak-faults-run*.log)"
[ "$failed" -eq 0 ]
