#!/usr/bin/env bash
# Instructions per request: a release build of the service under valgrind's callgrind, which
# counts instructions, not seconds — the same count for the same binary and requests whatever
# else the shared machine is doing, so a change of 1 % shows where wall-clock rounds spread 10 %.
# Usage: benches/load/instructions.sh BINARY... (each binary in turn, one line each).
# BENCH_READ: `uncached` (default; listing reads, cache off, uniform ids) or `cached` (the
# category read). BENCH_REQUESTS (2,000) counted after a warm-up, one connection, loopback
# only; the database is ua_bench_ab (BENCH_LISTINGS, 20,000 listings), seeded as ab.sh seeds it.
# The profile of each run is kept in target/bench/instructions-N.out for callgrind_annotate:
#   callgrind_annotate --inclusive=yes target/bench/instructions-1.out | less
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
DB_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ua_bench_ab}
LISTINGS=${BENCH_LISTINGS:-20000}
REQUESTS=${BENCH_REQUESTS:-2000}
READ=${BENCH_READ:-uncached}
PORT=18184
OUT=${CARGO_TARGET_DIR:-target}/bench
mkdir -p "$OUT"
for tool in valgrind callgrind_control wrk psql curl python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
case "$READ" in
    uncached) cache=false ;;
    cached) cache=true ;;
    *) echo "BENCH_READ is uncached or cached, not $READ" >&2; exit 2 ;;
esac

db_name=${DB_URL##*/}
admin_url=${DB_URL%/*}/postgres
have=$(psql "$DB_URL" -Atqc "SELECT COUNT(*) FROM marketplace_listings" 2>/dev/null || echo 0)
if [ "$have" != "$LISTINGS" ]; then
    echo "database: ${LISTINGS} listings" >&2
    psql "$admin_url" -qc "DROP DATABASE IF EXISTS ${db_name}" -c "CREATE DATABASE ${db_name}"
    "$1" seed-demo --database-url "$DB_URL" --listings "$LISTINGS" >&2
fi

pid=""
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap stop EXIT
run=0
for binary in "$@"; do
    run=$((run + 1))
    profile="$OUT/instructions-$run.out"
    rm -f "$profile" "$profile".*
    env NO_COLOR=1 DATABASE_URL="$DB_URL" APP__DATABASE__MAX_CONNECTIONS=8 APP__SERVER__WORKERS=2 \
        APP__CACHE__ENABLED="$cache" APP__TELEMETRY__FILTER=warn \
        valgrind --tool=callgrind --callgrind-out-file="$profile" \
        "$binary" serve --bind "127.0.0.1:${PORT}" >"$OUT/instructions-service.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
        curl -fs "http://127.0.0.1:${PORT}/health/ready" >/dev/null 2>&1 && break
        sleep 0.2
    done
    # Warm-up (connections opened, statements prepared, caches filled), then count from zero.
    if [ "$READ" = uncached ]; then
        UNIFORM_N=$LISTINGS wrk -t1 -c4 -d5s -s benches/load/uniform.lua "http://127.0.0.1:${PORT}" >/dev/null
    else
        wrk -t1 -c4 -d5s "http://127.0.0.1:${PORT}/api/v2/marketplace/categories/1311/attributes" >/dev/null
    fi
    callgrind_control -z "$pid" >/dev/null 2>&1
    python3 - "$PORT" "$REQUESTS" "$LISTINGS" "$READ" <<'PY'
import http.client, random, sys
port, requests, listings, read = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
random.seed(7)
connection = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(requests):
    path = (f"/api/v2/marketplace/listings/{random.randint(1, listings)}/attributes"
            if read == "uncached" else "/api/v2/marketplace/categories/1311/attributes")
    connection.request("GET", path)
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200, (path, answer.status)
PY
    callgrind_control -d "$pid" >/dev/null 2>&1
    stop
    # The dump holds what ran between the zeroing and itself: the counted requests.
    mv "$profile.1" "$profile"
    total=$(awk '/^summary:/ {print $2}' "$profile")
    python3 -c "print(f'$binary: {$total / $REQUESTS:,.0f} instructions per $READ read ($total / $REQUESTS)')"
done
