#!/usr/bin/env bash
# Uncached read throughput of the scale-out set-ups: the primary alone, with one streaming read
# replica, and through PgBouncer in transaction mode. The service has its cache off and serves
# the same uniform listing reads (wrk); rounds alternate between the set-ups. The replica
# (pg_basebackup of the local server into a temporary directory, its own port) and PgBouncer are
# started here and stopped at the end. On one machine the replica shares the CPU with the
# primary, so its figure shows what routing to a replica costs or gains here, not the capacity a
# replica on its own machine adds. Loopback only; bounded in time.
# Usage: benches/load/scale_out.sh (BENCH_LISTINGS, 20000; BENCH_DURATION, 10; BENCH_ROUNDS, 3;
# BENCH_CONNECTIONS, 32; BENCH_POOL, 16; BENCH_REPLICA_PORT, 5499; BENCH_BOUNCER_PORT, 6499).
# Needs replication connections from 127.0.0.1 (pg_hba.conf, as .ci/run sets) and PgBouncer;
# runs both as postgres.
set -euo pipefail
cd "$(dirname "$0")/../.."

DB_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ua_replica_bench}
LISTINGS=${BENCH_LISTINGS:-20000}
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
POOL=${BENCH_POOL:-16}
REPLICA_PORT=${BENCH_REPLICA_PORT:-5499}
BOUNCER_PORT=${BENCH_BOUNCER_PORT:-6499}
SERVICE_PORT=18183
SERVICE="http://127.0.0.1:${SERVICE_PORT}"
OUT=${CARGO_TARGET_DIR:-target}/bench
mkdir -p "$OUT"
for tool in wrk psql curl python3 runuser pgbouncer; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
say() { printf '\n== %s\n' "$*" >&2; }

say "building (release)"
cargo build --release --bin unified-attributes >&2
bin=${CARGO_TARGET_DIR:-target}/release/unified-attributes

db_name=${DB_URL##*/}
admin_url=${DB_URL%/*}/postgres
have=$(psql "$DB_URL" -Atqc "SELECT COUNT(*) FROM marketplace_listings" 2>/dev/null || echo 0)
if [ "$have" != "$LISTINGS" ]; then
    say "database: ${LISTINGS} listings"
    psql "$admin_url" -qc "DROP DATABASE IF EXISTS ${db_name}" -c "CREATE DATABASE ${db_name}"
    "$bin" seed-demo --database-url "$DB_URL" --listings "$LISTINGS" >&2
fi
psql "$DB_URL" -qc "VACUUM ANALYZE" >&2

say "streaming replica on port ${REPLICA_PORT}"
version=$(psql "$admin_url" -Atqc "SHOW server_version_num")
pg_bin=/usr/lib/postgresql/$((version / 10000))/bin
work=$(mktemp -d /tmp/ua-bench-scale-out-XXXXXX)
chown postgres:postgres "$work"
service_pid=""
cleanup() {
    [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/data" stop -m immediate >/dev/null 2>&1 || true
    [ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
runuser -u postgres -- "$pg_bin/pg_basebackup" -h 127.0.0.1 -p 5432 -U postgres \
    -D "$work/data" -R -X stream -c fast
printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nhot_standby = on\n" \
    "$REPLICA_PORT" "$work" >"$work/data/postgresql.conf"
printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' >"$work/data/pg_hba.conf"
: >"$work/data/pg_ident.conf"
chown -R postgres:postgres "$work"
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/data" -l "$work/replica.log" -w start >&2
REPLICA_URL="postgres://postgres@127.0.0.1:${REPLICA_PORT}/${db_name}"

say "PgBouncer (transaction mode, ${POOL} server connections) on port ${BOUNCER_PORT}"
{
    printf '[databases]\n* = host=127.0.0.1 port=5432\n[pgbouncer]\n'
    printf 'listen_addr = 127.0.0.1\nlisten_port = %s\nunix_socket_dir =\n' "$BOUNCER_PORT"
    printf 'auth_type = trust\nauth_file = %s/users.txt\npool_mode = transaction\n' "$work"
    printf 'default_pool_size = %s\nmax_client_conn = 500\n' "$POOL"
    printf 'ignore_startup_parameters = extra_float_digits\n'
    printf 'logfile = %s/pgbouncer.log\npidfile = %s/pgbouncer.pid\n' "$work" "$work"
} >"$work/pgbouncer.ini"
echo '"postgres" ""' >"$work/users.txt"
chown postgres:postgres "$work/pgbouncer.ini" "$work/users.txt"
runuser -u postgres -- pgbouncer -d "$work/pgbouncer.ini"
BOUNCER_URL="postgres://postgres@127.0.0.1:${BOUNCER_PORT}/${db_name}"

start_service() { # $@: extra variables
    [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
    env NO_COLOR=1 DATABASE_URL="$DB_URL" APP__DATABASE__MAX_CONNECTIONS="$((POOL / 2))" APP__SERVER__WORKERS=2 \
        APP__CACHE__ENABLED=false APP__TELEMETRY__FILTER=warn "$@" \
        "$bin" serve --bind "127.0.0.1:${SERVICE_PORT}" >"$OUT/scale-out-service.log" 2>&1 &
    service_pid=$!
    for _ in $(seq 1 100); do curl -fs "$SERVICE/health/ready" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "the service did not start" >&2; exit 1
}
# The sum of a metric's samples, whatever their labels.
metric() { curl -fs "$SERVICE/metrics" | awk -v name="$1" '$1 == name || index($1, name "{") == 1 {s += $2} END {print s + 0}'; }
wrk_rps() { UNIFORM_N=$LISTINGS wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s benches/load/uniform.lua "$SERVICE" | awk '/Requests\/sec/ {print $2}'; }
median() { python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

primary_runs=() replica_runs=() replica_share=() bouncer_runs=()
for round in $(seq 1 "$ROUNDS"); do
    say "round ${round}: primary alone"
    start_service
    primary_runs+=("$(wrk_rps)")
    say "round ${round}: with the replica"
    start_service DATABASE_READ_URL="$REPLICA_URL"
    for _ in $(seq 1 100); do
        [ "$(metric unified_attributes_replica_up)" = 1 ] && break
        sleep 0.1
    done
    r0=$(metric unified_attributes_replica_reads_total) p0=$(metric unified_attributes_primary_reads_total)
    replica_runs+=("$(wrk_rps)")
    r1=$(metric unified_attributes_replica_reads_total) p1=$(metric unified_attributes_primary_reads_total)
    replica_share+=("$(python3 -c "print(round(100 * ($r1 - $r0) / max(1, $r1 - $r0 + $p1 - $p0), 1))")")
    say "round ${round}: through PgBouncer"
    start_service DATABASE_URL="$BOUNCER_URL" DATABASE_SESSION_URL="$DB_URL" APP__DATABASE__TRANSACTION_POOLER=true
    bouncer_runs+=("$(wrk_rps)")
done
primary=$(median "${primary_runs[@]}")
replica=$(median "${replica_runs[@]}")
bouncer=$(median "${bouncer_runs[@]}")
python3 - "$OUT/scale_out.md" <<PY
import sys
rows = [
    ("uncached listing reads, primary alone, req/s (median)", f"{float('$primary'):,.0f} (${primary_runs[*]})"),
    ("uncached listing reads, with one replica, req/s (median)", f"{float('$replica'):,.0f} (${replica_runs[*]})"),
    ("replica / primary alone", f"{100 * float('$replica') / float('$primary'):.0f} %"),
    ("reads the replica answered, % per round", "${replica_share[*]}"),
    ("uncached listing reads through PgBouncer (transaction mode), req/s (median)", f"{float('$bouncer'):,.0f} (${bouncer_runs[*]})"),
    ("PgBouncer / direct", f"{100 * float('$bouncer') / float('$primary'):.0f} %"),
]
text = "| measure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"
open(sys.argv[1], "w").write(text)
print(text)
PY
