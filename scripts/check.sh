#!/usr/bin/env bash
# The whole check: engines, lint, types, layer contract, tests. README's second command runs this.
set -uo pipefail
cd "$(dirname "$0")/.."

fail=0
step() { echo; echo "=== $*"; }

step "engines"
bash scripts/engines.sh || fail=1

step "ruff"
ruff check src tests bench fuzz docs || fail=1

step "mypy (strict on protocol, transport, rpc)"
mypy || fail=1

step "import-linter (layers)"
lint-imports || fail=1

step "pytest"
python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure"
    fail=1
elif [ "$rc" -ne 0 ]; then
    fail=1
fi

exit "$fail"
