#!/usr/bin/env bash
# Instructions per call of one micro benchmark, counted by valgrind (repeatable on a noisy VM):
#   bash bench/micro/icount.sh bench/micro/client_meshkit.py [SCRIPT ARGS, e.g. --middleware]
# Runs the script with 10 and 210 rounds of 64 calls and divides the difference by 12,800 calls,
# so start-up and import costs cancel out.
set -euo pipefail
py=$(python -c 'import sys; print(sys.executable)')
script=$1
shift
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$py" "$script" "$@" 2>&1 | awk '/Collected/ {print $4}'; }
a=$(count 10 "$@")
b=$(count 210 "$@")
echo "$script $*: $(( (b - a) / 12800 )) instructions per call"
