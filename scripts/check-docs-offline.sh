#!/usr/bin/env bash
# The docs page must render with no network: headless Chromium, every host but loopback
# unresolvable, must show the API's operations.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "FAIL: chromium is required (Debian package chromium)" >&2; exit 1; }
# shellcheck source=scripts/serve-for-checks.sh
source scripts/serve-for-checks.sh
trap 'kill "$SERVICE_PID" 2>/dev/null || true' EXIT

profile=$(mktemp -d)
dom=$(timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$profile" \
    --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" --virtual-time-budget=10000 \
    --dump-dom "${BASE_URL}/docs/" 2>/dev/null)
operations=$(grep -o 'data-path="/api/[^"]*"' <<<"$dom" | sort -u | wc -l)
expected=$(curl -fs "${BASE_URL}/openapi.json" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["paths"]))')
echo "docs page rendered offline: ${operations} of ${expected} documented paths shown"
if [ "$operations" -ne "$expected" ] || [ "$expected" -lt 10 ]; then
    echo "FAIL: the docs page did not render every operation" >&2
    exit 1
fi
