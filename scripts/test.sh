#!/usr/bin/env bash
# Install the project with its test extras into a virtual environment and run
# the checks: ruff (lint + format), mypy, then pytest.
#
#   bash scripts/test.sh            quick suite (what CI runs)
#   bash scripts/test.sh -m ""      every test, slow ones included
#
# torch is pinned to the CPU wheel through constraints/cpu.txt (a constraint,
# not a requirement: a GPU user's CUDA torch is left alone if already there).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
    python3 -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
python -m pip install -q --disable-pip-version-check -c constraints/cpu.txt -e ".[test]"
echo "== ruff"; ruff check pipeline tests benchmarks && ruff format --check pipeline tests benchmarks
echo "== mypy"; mypy pipeline
echo "== pytest"
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit "$status"
