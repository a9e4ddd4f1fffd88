#!/usr/bin/env bash
# Before/after: two builds of the service side by side on the same database, on the load
# benchmark's hot paths — the cached category read and listing reads with the cache off —
# in alternating rounds (A, B, A, B…), medians and the ratio B/A, and the service's CPU per
# uncached read for each. For a change that must cost the hot path nothing measurable.
# Usage: benches/load/ab.sh BINARY_A BINARY_B (e.g. a release build of the commit before the
# change, and this one). Loopback only; each load stops by itself after BENCH_DURATION (10)
# seconds; BENCH_ROUNDS (5) of each; BENCH_LISTINGS (20,000) in the database ua_bench_ab.
# Logging as the load benchmark has it (`warn`, readable lines), or as production does with
# BENCH_LOG_FILTER=info BENCH_LOG_FORMAT=json (the root span of every request is then live).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 2 ] || { echo "usage: $0 BINARY_A BINARY_B" >&2; exit 2; }
A=$1 B=$2
DB_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ua_bench_ab}
LISTINGS=${BENCH_LISTINGS:-20000}
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-5}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
PORT=18183
SERVICE="http://127.0.0.1:${PORT}"
OUT=${CARGO_TARGET_DIR:-target}/bench
TICKS=$(getconf CLK_TCK)
mkdir -p "$OUT"
for tool in wrk psql curl python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
say() { printf '\n== %s\n' "$*" >&2; }

db_name=${DB_URL##*/}
admin_url=${DB_URL%/*}/postgres
have=$(psql "$DB_URL" -Atqc "SELECT COUNT(*) FROM marketplace_listings" 2>/dev/null || echo 0)
if [ "$have" != "$LISTINGS" ]; then
    say "database: ${LISTINGS} listings"
    psql "$admin_url" -qc "DROP DATABASE IF EXISTS ${db_name}" -c "CREATE DATABASE ${db_name}"
    "$A" seed-demo --database-url "$DB_URL" --listings "$LISTINGS" >&2
fi
# Each binary migrates on start; B may be newer: A starts first on what it knows.

pid=""
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap stop EXIT
start() { # $1 binary, $2 cache on/off
    stop
    env NO_COLOR=1 DATABASE_URL="$DB_URL" APP__DATABASE__MAX_CONNECTIONS=8 APP__SERVER__WORKERS=2 \
        APP__CACHE__ENABLED="$2" APP__TELEMETRY__FILTER="${BENCH_LOG_FILTER:-warn}" \
        APP__TELEMETRY__FORMAT="${BENCH_LOG_FORMAT:-pretty}" \
        "$1" serve --bind "127.0.0.1:${PORT}" >"$OUT/ab-service.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -fs "$SERVICE/health/ready" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "$1 did not start" >&2; exit 1
}
ticks() { awk '{print $14 + $15, $15}' "/proc/$pid/stat"; }
# One round: requests per second, and the service's CPU microseconds per request, all and
# the kernel's part of it (sockets, epoll, wake-ups).
round() { # $1 binary, $2 cache, then wrk's arguments
    local binary=$1 cache=$2
    shift 2
    start "$binary" "$cache"
    wrk -t2 -c"$CONNECTIONS" -d2s "$@" >/dev/null # warm-up
    local t0 k0 rps t1 k1
    read -r t0 k0 < <(ticks)
    rps=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$@" | awk '/Requests\/sec/ {print $2}')
    read -r t1 k1 < <(ticks)
    # A round runs in a command substitution: its service is stopped here, where its pid is known.
    stop
    python3 -c "n = $rps * $DURATION * $TICKS / 1e6; print($rps, round(($t1 - $t0) / n, 1), round(($k1 - $k0) / n, 1))"
}

category="$SERVICE/api/v2/marketplace/categories/1311/attributes"
declare -A runs
for part in cached uncached; do
    for _ in $(seq 1 "$ROUNDS"); do
        for side in A B; do
            binary=$A
            [ "$side" = B ] && binary=$B
            if [ "$part" = cached ]; then
                runs[$part$side]+="$(round "$binary" true "$category");"
            else
                runs[$part$side]+="$(UNIFORM_N=$LISTINGS round "$binary" false -s benches/load/uniform.lua "$SERVICE");"
            fi
            say "$part $side: ${runs[$part$side]}"
        done
    done
done
stop

python3 - "$OUT/ab.md" "${runs[cachedA]}" "${runs[cachedB]}" "${runs[uncachedA]}" "${runs[uncachedB]}" <<'PY'
import statistics, sys
parse = lambda text: [tuple(map(float, r.split())) for r in text.strip(";").split(";")]
rows = []
for name, a, b in [("cached category read", sys.argv[2], sys.argv[3]), ("listing read, cache off", sys.argv[4], sys.argv[5])]:
    a, b = parse(a), parse(b)
    ra, rb = statistics.median(r for r, _, _ in a), statistics.median(r for r, _, _ in b)
    ca, cb = statistics.median(c for _, c, _ in a), statistics.median(c for _, c, _ in b)
    ka, kb = statistics.median(k for _, _, k in a), statistics.median(k for _, _, k in b)
    runs = lambda xs: " / ".join(f"{r:,.0f}" for r, _, _ in xs)
    rows.append((name, f"{ra:,.0f} ({runs(a)})", f"{rb:,.0f} ({runs(b)})", f"{rb / ra:.1%}", f"{ca:.1f} / {cb:.1f}", f"{ka:.1f} / {kb:.1f}"))
text = "| hot path | A req/s, median (rounds) | B req/s, median (rounds) | B / A | service CPU µs per request, A / B | of it in the kernel, A / B |\n|---|---|---|---|---|---|\n"
text += "\n".join("| " + " | ".join(row) + " |" for row in rows)
print(text)
open(sys.argv[1], "w").write(text + "\n")
PY
