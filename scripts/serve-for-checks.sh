#!/usr/bin/env bash
# Starts the service from `target/debug` on a free loopback port over a fresh SQLite demo
# database, for the checks that drive it from outside. Prints the base URL; the caller
# stops it with `kill "$SERVICE_PID"` (the variable is exported by sourcing this file).
set -euo pipefail

binary="${BINARY:-${CARGO_TARGET_DIR:-target}/debug/unified-attributes}"
binary=$(realpath "$binary")
workdir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
# `exec` makes the service itself the background job, so SERVICE_PID is the service's PID.
(cd "$workdir" && exec env -i PATH="$PATH" NO_COLOR=1 WRITER_API_TOKEN="${WRITER_API_TOKEN:-check-writer}" \
    ADMIN_API_TOKEN="${ADMIN_API_TOKEN:-check-admin}" "$binary" serve --bind "127.0.0.1:${port}" \
    >"$workdir/service.log" 2>&1) &
export SERVICE_PID=$!
export BASE_URL="http://127.0.0.1:${port}"
for _ in $(seq 1 100); do
    curl -fs "${BASE_URL}/health/ready" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fs "${BASE_URL}/health/ready" >/dev/null || { cat "$workdir/service.log" >&2; echo "FAIL: the service did not start" >&2; exit 1; }
