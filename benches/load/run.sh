#!/usr/bin/env bash
# Load benchmark of the service on PostgreSQL with 200,000 listings (about 2,000,000
# values), each figure next to its ceiling measured in the same run:
#   - cached category read vs. a minimal actix-web handler returning the same bytes;
#   - listing values with the cache off vs. pgbench running the same SQL, and vs. the floor of
#     the stack (actix-web and sqlx running that SQL, no code of ours: benches/baseline.rs);
#   - p99 at half of the maximum throughput (hey, fixed rate), single and batch-of-50 reads;
#   - database queries per cached read and per miss, and the hit rate on a Zipf(1.0)
#     access pattern, from the service's own metrics;
#   - peak resident memory of the service.
# Loopback only; every load is bounded in time. Usage: benches/load/run.sh
# (BENCH_DURATION seconds per load, 10; BENCH_ROUNDS of each side of a ratio, alternating, 3;
# BENCH_CONNECTIONS, 32; BENCH_POOL, 16; BENCH_RESEED=1; BENCH_CACHE_BYTES, the response
# cache's memory bound, 64 MiB as the service's default; BENCH_ZIPF_WARMUP seconds, 60;
# BENCH_OVERLOAD_WORKERS, 256; BENCH_BINARY, a release build to measure instead of this tree's;
# BENCH_LOG_FILTER, warn, and BENCH_LOG_FORMAT, pretty: `info` and `json` log as production does.)
set -euo pipefail
cd "$(dirname "$0")/../.."

DB_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ua_bench}
LISTINGS=${BENCH_LISTINGS:-200000}
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
POOL=${BENCH_POOL:-16}
ZIPF_WARMUP=${BENCH_ZIPF_WARMUP:-60}
OVERLOAD_WORKERS=${BENCH_OVERLOAD_WORKERS:-256}
SERVICE_PORT=18181
BASELINE_PORT=18182
SERVICE="http://127.0.0.1:${SERVICE_PORT}"
OUT=${CARGO_TARGET_DIR:-target}/bench
TICKS=$(getconf CLK_TCK)
mkdir -p "$OUT"
for tool in wrk hey pgbench psql curl python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool (Debian: wrk hey postgresql-client)" >&2; exit 1; }
done

say() { printf '\n== %s\n' "$*" >&2; }

say "building (release)"
if [ -n "${BENCH_BINARY:-}" ]; then
    service_bin=$BENCH_BINARY # another build (the commit before a change), for a before/after
else
    cargo build --release --bin unified-attributes >&2
    service_bin="${CARGO_TARGET_DIR:-target}/release/unified-attributes"
fi
baseline_bin=$(benches/load/baseline_binary.sh)

say "database: ${LISTINGS} listings"
db_name=${DB_URL##*/}
admin_url=${DB_URL%/*}/postgres
if ! psql "$admin_url" -Atqc "SELECT 1 FROM pg_database WHERE datname = '${db_name}'" | grep -q 1; then
    psql "$admin_url" -qc "CREATE DATABASE ${db_name}"
fi
have=$(psql "$DB_URL" -Atqc "SELECT COUNT(*) FROM marketplace_listings" 2>/dev/null || echo 0)
# BENCH_RESEED=1 reloads the data (after the demo dataset changed).
if [ "$have" != "$LISTINGS" ] || [ "${BENCH_RESEED:-0}" = 1 ]; then
    psql "$admin_url" -qc "DROP DATABASE ${db_name}" -c "CREATE DATABASE ${db_name}"
    "$service_bin" seed-demo --database-url "$DB_URL" --listings "$LISTINGS" >&2
fi
values=$(psql "$DB_URL" -Atqc "SELECT COUNT(*) FROM listing_attribute_values")
psql "$DB_URL" -qc "VACUUM ANALYZE" >&2

service_pid=""
stop_service() { [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null; service_pid=""; }
trap 'stop_service; [ -n "${baseline_pid:-}" ] && kill "$baseline_pid" 2>/dev/null' EXIT
start_service() { # $1: cache on/off
    stop_service
    # The pool size is per worker thread: two workers share POOL connections, as many as pgbench gets.
    env NO_COLOR=1 DATABASE_URL="$DB_URL" APP__DATABASE__MAX_CONNECTIONS="$((POOL / 2))" APP__SERVER__WORKERS=2 \
        APP__CACHE__ENABLED="$1" APP__CACHE__MAX_BYTES="${BENCH_CACHE_BYTES:-$((64 * 1024 * 1024))}" APP__TELEMETRY__FILTER="${BENCH_LOG_FILTER:-warn}" \
        APP__TELEMETRY__FORMAT="${BENCH_LOG_FORMAT:-pretty}" "$service_bin" serve --bind "127.0.0.1:${SERVICE_PORT}" >"$OUT/service.log" 2>&1 &
    service_pid=$!
    for _ in $(seq 1 100); do curl -fs "$SERVICE/health/ready" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "the service did not start" >&2; exit 1
}
peak_rss_mb() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/${service_pid}/status"; }
# User and system CPU (clock ticks) of processes, and the PostgreSQL backends of the database.
cpu_ticks() { local total=0 pid; for pid in "$@"; do [ -r "/proc/$pid/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done; echo "$total"; }
# Of those, the system CPU of one process: its sockets' sends and receives, epoll and wake-ups.
kernel_ticks() { awk '{print $15}' "/proc/$1/stat"; }
# CPU ticks PostgreSQL has spent so far: the postmaster of the benchmark's cluster and its live
# processes, plus the children it has reaped (cutime + cstime) — so a backend that exits inside a
# window (pgbench's, at its end) still counts, and another cluster's processes never do.
postmaster=$(head -n 1 "$(psql "$DB_URL" -Atqc "SHOW data_directory")/postmaster.pid")
postgres_cpu() {
    local total pid
    total=$(awk '{print $14 + $15 + $16 + $17}' "/proc/${postmaster}/stat")
    for pid in $(pgrep -P "$postmaster" || true); do
        [ -r "/proc/$pid/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}
# Waits (10 s at most each) until the processes are reaped: gone from /proc, a zombie included.
wait_reaped() {
    local pid
    for pid in "$@"; do
        for _ in $(seq 1 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
        [ -e "/proc/$pid" ] && echo "backend $pid not reaped after 10 s: its CPU is not counted" >&2
    done
    return 0
}
current_rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/${service_pid}/status"; }
# Transactions PostgreSQL committed in the benchmark's database: each statement the service
# sends outside a transaction is one. A backend flushes its statistics at most once a second,
# and an idle one within ten: wait for them.
commits() { sleep 11; psql "$DB_URL" -Atqc "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"; }
wrk_rps() { wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
hey_p99_ms() { # $1 rate (req/s), $2 url
    local workers=8
    local per_worker
    per_worker=$(python3 -c "print(max(1, round($1 / $workers)))")
    hey -z "${DURATION}s" -c "$workers" -q "$per_worker" "$2" | awk '/ 99% in/ {printf "%.2f", $3 * 1000}'
}
metric() { curl -fs "$SERVICE/metrics" | awk -v name="$1" '$1 == name {print $2}'; }
median() { python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

say "cached category read vs. minimal actix-web handler"
start_service true
category="$SERVICE/api/v2/marketplace/categories/1311/attributes"
curl -fs "$category" >"$OUT/category.json"
BASELINE_PORT=$BASELINE_PORT BASELINE_BODY="$OUT/category.json" BASELINE_WORKERS=2 "$baseline_bin" &
baseline_pid=$!
sleep 1
# Alternating rounds, medians: the machine is shared, and one run of each is noise.
queries_before=$(metric unified_attributes_db_queries_total)
service_runs=() baseline_runs=()
for _ in $(seq 1 "$ROUNDS"); do
    service_runs+=("$(wrk_rps "$category")")
    baseline_runs+=("$(wrk_rps "http://127.0.0.1:${BASELINE_PORT}/")")
done
queries_after=$(metric unified_attributes_db_queries_total)
kill "$baseline_pid"; baseline_pid=""
service_rps=$(median "${service_runs[@]}")
baseline_rps=$(median "${baseline_runs[@]}")

say "p99 at half of the maximum throughput"
category_p99=$(hey_p99_ms "$(python3 -c "print($service_rps / 2)")" "$category")
batch="$SERVICE/api/v2/marketplace/listings/attributes?ids=$(seq -s, 1 50)"
curl -fs "$batch" >/dev/null
batch_rps=$(wrk_rps "$batch")
batch_p99=$(hey_p99_ms "$(python3 -c "print($batch_rps / 2)")" "$batch")
rss_cached=$(peak_rss_mb)

say "Zipf(1.0) over ${LISTINGS} listings (warm-up ${ZIPF_WARMUP} s, then measured)"
start_service true
rss_start=$(current_rss_mb)
ZIPF_N=$LISTINGS wrk -t2 -c"$CONNECTIONS" -d"${ZIPF_WARMUP}s" -s benches/load/zipf.lua "$SERVICE" >/dev/null
hits0=$(metric 'unified_attributes_cache_hits_total{cache="responses"}')
misses0=$(metric 'unified_attributes_cache_misses_total{cache="responses"}')
q0=$(metric unified_attributes_db_queries_total)
x0=$(commits)
# The CPU a mostly-cached read costs each side: deploy/CAPACITY.md sizes pods by it.
zipf_cpu0=$(cpu_ticks "$service_pid") zipf_pg0=$(postgres_cpu)
zipf_rps=$(ZIPF_N=$LISTINGS wrk_rps -s benches/load/zipf.lua "$SERVICE")
zipf_cpu=$(($(cpu_ticks "$service_pid") - zipf_cpu0)) zipf_pg_cpu=$(($(postgres_cpu) - zipf_pg0))
hits1=$(metric 'unified_attributes_cache_hits_total{cache="responses"}')
misses1=$(metric 'unified_attributes_cache_misses_total{cache="responses"}')
q1=$(metric unified_attributes_db_queries_total)
x1=$(commits)
rss_zipf=$(peak_rss_mb)
rss_end=$(current_rss_mb)
zipf_entries=$(metric 'unified_attributes_cache_entries{cache="responses"}')
zipf_cache_bytes=$(metric 'unified_attributes_cache_bytes{cache="responses"}')

say "listing values with the cache off vs. pgbench on the same SQL, and the stack's floor"
start_service false
curl -fs "$SERVICE/api/v2/marketplace/listings/1/attributes" >"$OUT/listing.json"
nocache_runs=() pgbench_runs=() floor_runs=() nocache_misses=0 nocache_commits=0
service_cpu=0 pg_cpu_service=0 pg_cpu_pgbench=0 pgbench_txns=0 floor_cpu=0 floor_requests=0
service_kernel=0 floor_kernel=0
for _ in $(seq 1 "$ROUNDS"); do
    # The floor: actix-web and sqlx alone, the same statement and connections per worker as
    # the service, the service's answer bytes (benches/baseline.rs).
    BASELINE_PORT=$BASELINE_PORT BASELINE_BODY="$OUT/listing.json" BASELINE_WORKERS=2 \
        BASELINE_DATABASE_URL="$DB_URL" BASELINE_STATEMENT=benches/load/listing_values.pgbench \
        BASELINE_CONNECTIONS="$((POOL / 2))" "$baseline_bin" &
    baseline_pid=$!
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:${BASELINE_PORT}/listings/1" >/dev/null 2>&1 && break; sleep 0.1; done
    f0=$(cpu_ticks "$baseline_pid") fk0=$(kernel_ticks "$baseline_pid")
    floor_runs+=("$(UNIFORM_N=$LISTINGS wrk_rps -s benches/load/uniform.lua "http://127.0.0.1:${BASELINE_PORT}")")
    f1=$(cpu_ticks "$baseline_pid") fk1=$(kernel_ticks "$baseline_pid")
    kill "$baseline_pid"; wait "$baseline_pid" 2>/dev/null || true; baseline_pid=""
    floor_cpu=$((floor_cpu + f1 - f0)) floor_kernel=$((floor_kernel + fk1 - fk0))
    floor_requests=$(python3 -c "print($floor_requests + ${floor_runs[-1]} * $DURATION)")
    m0=$(metric 'unified_attributes_cache_misses_total{cache="responses"}') c0=$(commits)
    s0=$(cpu_ticks "$service_pid") sk0=$(kernel_ticks "$service_pid") p0=$(postgres_cpu)
    nocache_runs+=("$(UNIFORM_N=$LISTINGS wrk_rps -s benches/load/uniform.lua "$SERVICE")")
    s1=$(cpu_ticks "$service_pid") sk1=$(kernel_ticks "$service_pid") p1=$(postgres_cpu)
    m1=$(metric 'unified_attributes_cache_misses_total{cache="responses"}') c1=$(commits)
    nocache_misses=$(python3 -c "print($nocache_misses + $m1 - $m0)")
    nocache_commits=$((nocache_commits + c1 - c0))
    service_cpu=$((service_cpu + s1 - s0)) pg_cpu_service=$((pg_cpu_service + p1 - p0))
    service_kernel=$((service_kernel + sk1 - sk0))
    # PostgreSQL's CPU over the whole pgbench run, per transaction pgbench counted. Its
    # backends exit when it does, and their CPU moves into the postmaster's reaped-children
    # counters only once the postmaster reaps them: read before that, a backend already gone
    # from the children but not yet in the counters is lost (this line once read 19 µs in one
    # run and 82 in the next). So the backends are named during the run and waited for.
    pg_before=$(postgres_cpu)
    pgbench -n -M prepared -c "$POOL" -j 2 -T "$DURATION" -f benches/load/listing_values.pgbench "$DB_URL" \
        >"$OUT/pgbench.txt" 2>/dev/null &
    pgbench_pid=$!
    sleep 1
    mapfile -t pgbench_backends < <(psql "$DB_URL" -Atqc \
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' AND datname = current_database()")
    wait "$pgbench_pid"
    wait_reaped "${pgbench_backends[@]}"
    pg_after=$(postgres_cpu)
    tps=$(awk '/^tps/ {print $3}' "$OUT/pgbench.txt")
    pg_cpu_pgbench=$((pg_cpu_pgbench + pg_after - pg_before))
    pgbench_txns=$((pgbench_txns + $(awk '/number of transactions actually processed/ {print $NF}' "$OUT/pgbench.txt")))
    pgbench_runs+=("$tps")
done
rss_nocache=$(peak_rss_mb)
nocache_rps=$(median "${nocache_runs[@]}")
pgbench_tps=$(median "${pgbench_runs[@]}")
floor_rps=$(median "${floor_runs[@]}")

say "overload: 3x the measured maximum of uncached reads, at a fixed rate"
# hey paces each of its workers to a fixed rate (-q per worker); with many workers the offered
# load holds even when answers slow down. Each answer's status and time go to a CSV.
offered=$(python3 -c "print(round(3 * $nocache_rps))")
hey -z "${DURATION}s" -c "$OVERLOAD_WORKERS" -q "$(python3 -c "print(max(1, round($offered / $OVERLOAD_WORKERS)))")" \
    -t 5 -o csv "$SERVICE/api/v2/marketplace/listings/77/attributes" >"$OUT/overload.csv" 2>/dev/null || true
stop_service
overload=$(python3 - "$OUT/overload.csv" "$DURATION" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")
ok = [float(r["response-time"]) for r in rows if r["status-code"] == "200"]
# 503: the worker's bound; 429: one client's share of it (hey is a single client).
shed = [float(r["response-time"]) for r in rows if r["status-code"] in ("503", "429")]
other = len(rows) - len(ok) - len(shed)
print(f"{len(rows) / float(sys.argv[2]):.0f} {len(ok) / float(sys.argv[2]):.0f} {p(ok, 0.99):.2f} "
      f"{len(shed)} {p(shed, 0.99):.2f} {other}")
PY
)
read -r overload_sent overload_ok_rps overload_ok_p99 overload_shed overload_shed_p99 overload_other <<<"$overload"

service_runs_text="${service_runs[*]}" baseline_runs_text="${baseline_runs[*]}"
nocache_runs_text="${nocache_runs[*]}" pgbench_runs_text="${pgbench_runs[*]}" floor_runs_text="${floor_runs[*]}"
python3 - "$OUT/load.md" <<PY
import sys
r = lambda a, b: a / b if b else float("nan")
rounds = lambda text: " / ".join(f"{float(x):,.0f}" for x in text.split())
service, baseline = float("$service_rps"), float("$baseline_rps")
nocache, pg = float("$nocache_rps"), float("$pgbench_tps")
hits, misses = float("$hits1") - float("$hits0"), float("$misses1") - float("$misses0")
# The hit rate of a cache that never evicts, for the requests this run made: a listing's first
# request is a miss whatever the cache (Zipf(1.0) over N, the warm-up's requests, then the
# measured ones). The measured hit rate's ceiling.
n, warm = $LISTINGS, float("$hits0") + float("$misses0")
h = sum(1 / k for k in range(1, n + 1))
p = [1 / k / h for k in range(1, n + 1)]
first = sum((1 - (1 - q) ** (hits + misses)) * (1 - q) ** warm for q in p)
ceiling = 1 - first / (hits + misses)
entries = float("$zipf_entries")
rows = [
    ("listings / values", "$LISTINGS / $values", "200,000 / ~2,000,000"),
    ("cached category read, req/s (median)", f"{service:,.0f} ({rounds('$service_runs_text')})", ""),
    ("minimal actix-web, same bytes, req/s (median)", f"{baseline:,.0f} ({rounds('$baseline_runs_text')})", ""),
    ("ratio of the medians", f"{r(service, baseline):.0%}", ">= 75%"),
    ("DB queries during the cached-read run", f"{float('$queries_after') - float('$queries_before'):.0f}", "0"),
    ("p99 at half max, category read", "$category_p99 ms", "< 5 ms"),
    ("batch of 50 listings, req/s", f"{float('$batch_rps'):,.0f}", ""),
    ("p99 at half max, batch of 50", "$batch_p99 ms", "< 10 ms"),
    ("Zipf(1.0) listing reads, req/s", f"{float('$zipf_rps'):,.0f}", ""),
    ("Zipf requests: warm-up / measured", f"{warm:,.0f} / {hits + misses:,.0f}", ""),
    ("CPU per Zipf read: service / PostgreSQL (/proc)", f"{r(float('$zipf_cpu') * 1e6 / $TICKS, hits + misses):.1f} / {r(float('$zipf_pg_cpu') * 1e6 / $TICKS, hits + misses):.1f} us", ""),
    ("cache hit rate (Zipf, after warm-up)", f"{r(hits, hits + misses):.1%}", ">= 95%"),
    ("ceiling: a cache that never evicts, same requests", f"{ceiling:.1%}", ""),
    ("listings cached at the end (Zipf)", f"{entries:,.0f}", ""),
    ("cache's weighed bytes per listing", f"{r(float('$zipf_cache_bytes'), entries):,.0f}", ""),
    ("resident bytes per cached listing (RSS growth / listings)", f"{r((float('$rss_end') - float('$rss_start')) * 1048576, entries):,.0f}", ""),
    ("DB queries per miss (Zipf, service's count)", f"{r(float('$q1') - float('$q0'), misses):.2f}", "1"),
    ("PostgreSQL transactions per miss (Zipf, pg_stat_database)", f"{r(float('$x1') - float('$x0'), misses):.3f}", "1"),
    ("listing values, cache off, req/s (median)", f"{nocache:,.0f} ({rounds('$nocache_runs_text')})", ""),
    ("pgbench, same SQL, tps (median)", f"{pg:,.0f} ({rounds('$pgbench_runs_text')})", ""),
    ("ratio of the medians", f"{r(nocache, pg):.0%}", ">= 70%"),
    ("CPU per uncached read: service / PostgreSQL (/proc)", f"{r(float('$service_cpu') * 1e6 / $TICKS, float('$nocache_misses')):.0f} / {r(float('$pg_cpu_service') * 1e6 / $TICKS, float('$nocache_misses')):.0f} us", "service <= 30 us"),
    ("the service's CPU per uncached read: user + kernel", f"{r(float('$service_cpu') - float('$service_kernel'), float('$nocache_misses')) * 1e6 / $TICKS:.0f} + {r(float('$service_kernel'), float('$nocache_misses')) * 1e6 / $TICKS:.0f} us", ""),
    ("CPU per pgbench transaction: PostgreSQL (/proc, the whole run, its backends reaped)", f"{r(float('$pg_cpu_pgbench') * 1e6 / $TICKS, float('$pgbench_txns')):.0f} us", ""),
    ("floor: actix-web + sqlx, same statement, rows undecoded, req/s (median)", f"{float('$floor_rps'):,.0f} ({rounds('$floor_runs_text')})", ""),
    ("service / floor", f"{r(nocache, float('$floor_rps')):.0%}", ""),
    ("CPU per request of the floor (/proc): user + kernel", f"{r(float('$floor_cpu') * 1e6 / $TICKS, float('$floor_requests')):.0f} us: {r(float('$floor_cpu') - float('$floor_kernel'), float('$floor_requests')) * 1e6 / $TICKS:.0f} + {r(float('$floor_kernel'), float('$floor_requests')) * 1e6 / $TICKS:.0f}", ""),
    ("floor / pgbench: the most the stack allows", f"{r(float('$floor_rps'), pg):.0%}", ""),
    ("PostgreSQL transactions per read, cache off (pg_stat_database)", f"{r(float('$nocache_commits'), float('$nocache_misses')):.3f}", "1"),
    ("overload: offered 3x max / answered per s", f"{3 * nocache:,.0f} / {float('$overload_sent'):,.0f}", ""),
    ("overload: 200 per s, their p99", f"{float('$overload_ok_rps'):,.0f}, $overload_ok_p99 ms", "< 20 ms"),
    ("overload: 503/429 (shed), their p99", f"{int('$overload_shed'):,}, $overload_shed_p99 ms", "quick"),
    ("overload: other answers (timeouts, errors)", "$overload_other", "0"),
    ("peak RSS (cached / Zipf / cache off)", "$rss_cached / $rss_zipf / $rss_nocache MB", "< 96 MB"),
]
text = "| measure | value | goal |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
print(text)
open(sys.argv[1], "w").write(text + "\n")
PY
