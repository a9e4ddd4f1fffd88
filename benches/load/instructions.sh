#!/usr/bin/env bash
# Instructions per request: a release build of the service under valgrind's callgrind, which
# counts instructions, not seconds — the same count for the same binary and requests whatever
# else the shared machine is doing, so a change of 1 % shows where wall-clock rounds spread 10 %.
# Usage: benches/load/instructions.sh BINARY... (each binary in turn, one line each).
# BENCH_READ: `uncached` (default; listing reads, cache off, uniform ids) or `cached` (the
# category read). BENCH_REQUESTS (2,000) counted after a warm-up, one connection, loopback
# only; the database is ua_bench_ab (BENCH_LISTINGS, 20,000 listings), seeded as ab.sh seeds it.
# First the floor (benches/baseline.rs: the same requests answered by actix-web alone, cached,
# or by actix-web and sqlx running the read's SQL, uncached; BENCH_FLOOR=no skips it), then
# each build, with how many instructions a read it spends above the floor.
# The profile of each run is kept in target/bench/instructions-N.out for callgrind_annotate
# (1 is the floor's):
#   callgrind_annotate --inclusive=yes target/bench/instructions-2.out | less
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
DB_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ua_bench_ab}
LISTINGS=${BENCH_LISTINGS:-20000}
REQUESTS=${BENCH_REQUESTS:-2000}
READ=${BENCH_READ:-uncached}
FLOOR=${BENCH_FLOOR:-yes}
CATEGORY_PATH=/api/v2/marketplace/categories/1311/attributes
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

# The floor: benches/baseline.rs under the same requests — actix-web alone answering the
# service's bytes (cached), or actix-web and sqlx running the read's SQL (uncached).
floor_bin=""
if [ "$FLOOR" = yes ]; then
    floor_bin=$(benches/load/baseline_binary.sh)
    [ -x "$floor_bin" ] || { echo "the floor (benches/baseline.rs) did not build" >&2; exit 1; }
fi

# count LABEL READY_URL COMMAND...: the instructions of COMMAND's process (its environment
# from run_env) over the counted requests, printed per request; the profile kept as the next
# instructions-N.out.
run=0
floor_total=""
count() {
    local label=$1 ready=$2
    shift 2
    run=$((run + 1))
    local profile="$OUT/instructions-$run.out"
    rm -f "$profile" "$profile".*
    env "${run_env[@]}" valgrind --tool=callgrind --callgrind-out-file="$profile" "$@" \
        >"$OUT/instructions-service.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
        curl -fs "$ready" >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -fs "$ready" >/dev/null || { echo "$label did not start: see $OUT/instructions-service.log" >&2; exit 1; }
    # Warm-up (connections opened, statements prepared, caches filled), then count from zero.
    if [ "$READ" = uncached ]; then
        UNIFORM_N=$LISTINGS wrk -t1 -c4 -d5s -s benches/load/uniform.lua "http://127.0.0.1:${PORT}" >/dev/null
    else
        wrk -t1 -c4 -d5s "http://127.0.0.1:${PORT}${CATEGORY_PATH}" >/dev/null
    fi
    callgrind_control -z "$pid" >/dev/null 2>&1
    python3 - "$PORT" "$REQUESTS" "$LISTINGS" "$READ" "$CATEGORY_PATH" <<'PY'
import http.client, random, sys
port, requests, listings, read, category = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
random.seed(7)
connection = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(requests):
    path = (f"/api/v2/marketplace/listings/{random.randint(1, listings)}/attributes"
            if read == "uncached" else category)
    connection.request("GET", path)
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200, (path, answer.status)
PY
    callgrind_control -d "$pid" >/dev/null 2>&1
    stop
    # The dump holds what ran between the zeroing and itself: the counted requests.
    mv "$profile.1" "$profile"
    local total
    total=$(awk '/^summary:/ {print $2}' "$profile")
    if [ "$label" = floor ]; then
        floor_total=$total
    fi
    python3 - "$label" "$total" "$REQUESTS" "$READ" "$floor_total" <<'PY'
import sys
label, total, requests, read, floor = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
line = f"{label}: {total / requests:,.0f} instructions per {read} read ({total} / {requests})"
if floor and label != "floor":
    floor = int(floor)
    line += f"; {(total - floor) / requests:,.0f} above the floor, floor / this {floor / total:.0%}"
print(line)
PY
}

rm -f "$OUT/instructions-body.json"
service_env=(NO_COLOR=1 DATABASE_URL="$DB_URL" APP__DATABASE__MAX_CONNECTIONS=8
    APP__SERVER__WORKERS=2 APP__CACHE__ENABLED="$cache" APP__TELEMETRY__FILTER="${BENCH_LOG_FILTER:-warn}"
    APP__TELEMETRY__FORMAT="${BENCH_LOG_FORMAT:-pretty}")
first=$1
# The floor first (its bytes are the first build's answer, fetched from a plain run of it),
# so that every build's line can say how far above it the build is.
if [ -n "$floor_bin" ]; then
    env "${service_env[@]}" "$first" serve --bind "127.0.0.1:${PORT}" >"$OUT/instructions-service.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
        curl -fs "http://127.0.0.1:${PORT}/health/ready" >/dev/null 2>&1 && break
        sleep 0.2
    done
    if [ "$READ" = uncached ]; then
        curl -fs "http://127.0.0.1:${PORT}/api/v2/marketplace/listings/1/attributes" >"$OUT/instructions-body.json"
        floor_env=(BASELINE_DATABASE_URL="$DB_URL" BASELINE_STATEMENT=benches/load/listing_values.pgbench
            BASELINE_CONNECTIONS=4)
    else
        curl -fs "http://127.0.0.1:${PORT}${CATEGORY_PATH}" >"$OUT/instructions-body.json"
        floor_env=()
    fi
    stop
    run_env=(BASELINE_PORT="$PORT" BASELINE_BODY="$OUT/instructions-body.json" BASELINE_WORKERS=2
        "${floor_env[@]}")
    count floor "http://127.0.0.1:${PORT}/api/v2/marketplace/listings/1/attributes" "$floor_bin"
fi
run_env=("${service_env[@]}")
for binary in "$@"; do
    count "$binary" "http://127.0.0.1:${PORT}/health/ready" "$binary" serve --bind "127.0.0.1:${PORT}"
done
