#!/usr/bin/env bash
# The whole reliability suite (fault injection at scale, hostile input), with its
# figures as one JSON line at the end and in reliability-figures.json.
#   scripts/reliability.sh            (about 20 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
export RELIABILITY_FIGURES=${RELIABILITY_FIGURES:-reliability-figures.json}
python -m pytest -m reliability tests/reliability -p no:cacheprovider --durations=0 "$@"
cat "$RELIABILITY_FIGURES"
