#!/usr/bin/env bash
# Runs the fault-injection scenarios (tests/faults/) and writes docs/reliability.md from the run.
# Needs the engines the scenarios use (bash scripts/engines.sh starts them).
set -euo pipefail
cd "$(dirname "$0")/.."
MESHKIT_RELIABILITY_REPORT=docs/reliability.md python -m pytest -q -p no:randomly tests/faults "$@"
echo "wrote docs/reliability.md"
