#!/usr/bin/env bash
# Render a job's HTML report in headless Chromium and save a screenshot, to check
# by eye that it draws (Debian: apt-get install chromium).
#   scripts/screenshot-report.sh out/demo.zarr [report.png]
set -euo pipefail
output=${1:?usage: $0 OUTPUT [PNG]}
png=${2:-report.png}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [[ -z $browser ]]; then
  echo "no Chromium on PATH (Debian: apt-get install chromium)" >&2
  exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# Offline flags: no update checks or sign-in traffic from a headless run.
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1200,3000 \
  --screenshot="$(realpath -m "$png")" "file://$(realpath "$output").job/report.html" 2>/dev/null
echo "$png"
