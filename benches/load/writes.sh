#!/usr/bin/env bash
# Write benchmark: PATCH of one listing value and PUT of a whole listing, in the three write
# modes (legacy only, dual write, unified only), each next to its ceiling measured in the same
# run: pgbench running the very statements the service sends for that write, in one
# transaction. The statements are captured from PostgreSQL's own statement log for one request
# of each kind (log_statement for this database only, while the capture runs), with their
# parameters as typed literals and the listing id made pgbench's variable, so the ceiling follows
# the service's SQL as it changes. Reported: requests per second vs pgbench's transactions per
# second (medians of alternating rounds), p50/p99 at half of the service's maximum (hey, fixed
# rate) next to pgbench's at the same rate (alternating rounds, medians), PostgreSQL
# transactions per write (its own counters) and statements per write.
# Loopback only; every load stops by itself after BENCH_DURATION (10) seconds; BENCH_ROUNDS (3)
# of each side; BENCH_LISTINGS (20,000) reseeded into the database ua_bench_writes each run;
# BENCH_MODES ("legacy dual unified") and BENCH_WRITES ("PATCH PUT") choose what is measured;
# BENCH_BINARY, a release build to measure instead of this tree's.
# Usage: benches/load/writes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

DB_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ua_bench_writes}
LISTINGS=${BENCH_LISTINGS:-20000}
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
POOL=${BENCH_POOL:-8}
PORT=18184
SERVICE="http://127.0.0.1:${PORT}"
OUT=${CARGO_TARGET_DIR:-target}/bench
# BENCH_BINARY: another build to measure (a release build of an earlier commit, for a before/after).
BIN=${BENCH_BINARY:-${CARGO_TARGET_DIR:-target}/release/unified-attributes}
TOKEN=bench-writer
mkdir -p "$OUT"
for tool in wrk hey pgbench psql curl python3 pg_lsclusters; do
    command -v "$tool" >/dev/null || { echo "missing $tool (Debian: wrk hey postgresql-client postgresql-common)" >&2; exit 1; }
done
say() { printf '\n== %s\n' "$*" >&2; }

if [ -z "${BENCH_BINARY:-}" ]; then
    say "building (release)"
    cargo build --release --bin unified-attributes >&2
fi

# The demo seeds categories in a cycle of 12 listings: ids 12k + 6 are cars (category 1311).
# Every write goes to one of them, picked uniformly, by wrk and pgbench alike.
FIRST=6 STRIDE=12
COUNT=$(((LISTINGS - FIRST) / STRIDE + 1))
db_name=${DB_URL##*/}
admin_url=${DB_URL%/*}/postgres
say "database: ${LISTINGS} listings, writes to ${COUNT} cars"
psql "$admin_url" -qc "DROP DATABASE IF EXISTS ${db_name} WITH (FORCE)" -c "CREATE DATABASE ${db_name}"
"$BIN" seed-demo --database-url "$DB_URL" --listings "$LISTINGS" >&2
others=$(psql "$DB_URL" -Atqc "SELECT COUNT(*) FROM marketplace_listings
    WHERE id % ${STRIDE} = ${FIRST} AND category_id <> 1311")
[ "$others" = 0 ] || { echo "the demo's category cycle changed: ids 12k + 6 are not all cars" >&2; exit 1; }
psql "$DB_URL" -qc "VACUUM ANALYZE" >&2

# The service's search path (its schema, then the marketplace's), for pgbench and the capture.
export PGOPTIONS="-c search_path=attributes,public"

# The statement log of this cluster, where the capture reads what the service sent.
port=$(python3 -c "import sys, urllib.parse; print(urllib.parse.urlparse(sys.argv[1]).port or 5432)" "$DB_URL")
pg_log=$(pg_lsclusters -h | awk -v port="$port" '$3 == port {print $7}')
[ -r "$pg_log" ] || { echo "cannot read the PostgreSQL log of port ${port} (${pg_log:-none}) for the capture" >&2; exit 1; }

read -r -a MODES <<<"${BENCH_MODES:-legacy dual unified}"
mode_env() {
    case $1 in
    legacy) echo "DUAL_WRITE_ATTRIBUTES=false USE_UNIFIED_ATTRIBUTES=false" ;;
    dual) echo "DUAL_WRITE_ATTRIBUTES=true USE_UNIFIED_ATTRIBUTES=false" ;;
    unified) echo "DUAL_WRITE_ATTRIBUTES=false USE_UNIFIED_ATTRIBUTES=true UNIFIED_ATTRIBUTES_PERCENT=100 UNIFIED_ATTRIBUTES_FALLBACK=false" ;;
    esac
}
pid=""
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap 'stop; psql "$DB_URL" -qc "ALTER DATABASE ${db_name} RESET log_statement" 2>/dev/null || true' EXIT
start() { # $1 mode
    stop
    # shellcheck disable=SC2046 # the mode's variables are words on purpose
    env NO_COLOR=1 DATABASE_URL="$DB_URL" APP__DATABASE__MAX_CONNECTIONS="$((POOL / 2))" APP__SERVER__WORKERS=2 \
        APP__CACHE__ENABLED=true APP__TELEMETRY__FILTER=warn WRITER_API_TOKEN="$TOKEN" $(mode_env "$1") \
        "$BIN" serve --bind "127.0.0.1:${PORT}" >"$OUT/writes-service.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -fs "$SERVICE/health/ready" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "the service did not start in mode $1:" >&2; tail -5 "$OUT/writes-service.log" >&2; exit 1
}
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
commits() { sleep 11; psql "$DB_URL" -Atqc "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"; }
median() { python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

# The bodies: a car's mileage, and the whole of listing 6's values as the API reads them.
patch_body='{"mileage": 120000}'
put_body=$(start legacy
    curl -fs "$SERVICE/api/v2/marketplace/listings/${FIRST}/attributes" |
        python3 -c 'import json, sys; print(json.dumps({v["code"]: v["value"] for v in json.load(sys.stdin)["data"]["values"]}))'
    stop)
printf '%s' "$patch_body" >"$OUT/writes-patch.json"
printf '%s' "$put_body" >"$OUT/writes-put.json"

# wrk: one write per request to a random car; the method and body per operation.
cat >"$OUT/writes.lua" <<LUA
math.randomseed(os.time())
function setup(thread) thread:set("seed", math.random(1, 2^31 - 1)) end
function init(args)
  math.randomseed(seed)
  local f = io.open(os.getenv("WRITE_BODY_FILE")); body = f:read("*a"); f:close()
  method = os.getenv("WRITE_METHOD")
end
function request()
  local id = ${STRIDE} * math.random(0, ${COUNT} - 1) + ${FIRST}
  return wrk.format(method, "/api/v2/marketplace/listings/" .. id .. "/attributes",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer ${TOKEN}"}, body)
end
function response(status, headers, body)
  if status ~= 200 then io.stderr:write("write answered " .. status .. ": " .. body .. "\n"); os.exit(1) end
end
LUA

# One request to listing FIRST with the statement log on; its transaction becomes a pgbench
# script (the listing id a variable, every other parameter a literal of its type).
capture() { # $1 mode, $2 method, $3 body file, $4 pgbench script to write
    psql "$DB_URL" -qc "ALTER DATABASE ${db_name} SET log_statement = 'all'"
    start "$1"
    local from
    from=$(stat -c %s "$pg_log")
    # Twice: the first dual write of a code copies its definition to unified; the steady state,
    # the last transaction that writes the listing, is the one measured.
    for _ in 1 2; do
        status=$(curl -s -o "$OUT/writes-capture.json" -w '%{http_code}' -X "$2" -H "Authorization: Bearer ${TOKEN}" \
            -H 'Content-Type: application/json' --data-binary "@$3" "$SERVICE/api/v2/marketplace/listings/${FIRST}/attributes")
        [ "$status" = 200 ] || { echo "$1 $2 answered ${status}: $(cat "$OUT/writes-capture.json")" >&2; exit 1; }
    done
    sleep 1
    tail -c +"$((from + 1))" "$pg_log" >"$OUT/writes-capture.log"
    stop
    psql "$DB_URL" -qc "ALTER DATABASE ${db_name} RESET log_statement"
    python3 - "$OUT/writes-capture.log" "$db_name" "$FIRST" "$STRIDE" "$COUNT" "$DB_URL" >"$4" <<'PY'
import re, subprocess, sys
log, db, listing, stride, count, url = sys.argv[1:]
head = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[(\d+)\] \S*@(\S*) (LOG|DETAIL|ERROR|STATEMENT):  (.*)$")
entries = []  # (pid, kind, text)
for line in open(log, encoding="utf-8", errors="replace"):
    m = head.match(line.rstrip("\n"))
    if m:
        entries.append([m[1], m[3], m[4], m[2]])
    elif entries:
        entries[-1][2] += "\n" + line.rstrip("\n")
statements = {}  # pid -> [(sql, params, position in the log)]
for position, (pid, kind, text, database) in enumerate(entries):
    if database != db:
        continue
    if kind == "LOG":
        m = re.match(r"(?:statement|execute [^:]+): (.*)", text, re.S)
        if m:
            statements.setdefault(pid, []).append([m[1], {}, position])
    elif kind == "DETAIL" and text.startswith("parameters: ") and statements.get(pid):
        params = re.findall(r"\$(\d+) = ('(?:[^']|'')*'|NULL)", text)
        statements[pid][-1][1] = {int(n): v for n, v in params}
# The last request's transaction: BEGIN … COMMIT on one connection, writing the listing.
best, best_at = None, -1
for pid, sts in statements.items():
    begin = None
    for i, (sql, params, position) in enumerate(sts):
        if sql.strip().upper().startswith("BEGIN"):
            begin = i
        elif sql.strip().upper() == "COMMIT" and begin is not None:
            tx = sts[begin:i + 1]
            writes = any(re.search(r"\b(INSERT|UPDATE|DELETE)\b", s, re.I) and f"'{listing}'" in p.values() for s, p, _ in tx)
            if writes and position > best_at:
                best, best_at = [(s, p) for s, p, _ in tx], position
            begin = None
if best is None:
    sys.exit("no transaction writing listing %s in the statement log" % listing)
# Each parameter's type as PostgreSQL infers it; a statement whose types only the service's
# binding gave (sqlx sends them) fails to prepare here and keeps plain literals.
prepare = "\n".join(f"PREPARE bench_{i} AS {sql};" for i, (sql, params) in enumerate(best) if params)
prepare += "\nSELECT name, parameter_types FROM pg_prepared_statements;"
out = subprocess.run(["psql", url, "-Atq"], input=prepare, capture_output=True, text=True).stdout
types = {}
for row in out.splitlines():
    name, _, listed = row.partition("|")
    if name.startswith("bench_"):
        types[int(name.split("_")[1])] = [t.strip('"') for t in listed.strip("{}").split(",")]
print(f"-- One write as the service sent it, {len(best)} round trips (captured by benches/load/writes.sh).")
print(f"\\set id {stride} * random(0, {count} - 1) + {listing}")
for i, (sql, params) in enumerate(best):
    def literal(m):
        n = int(m[1])
        value = params[n]
        kind = types[i][n - 1] if i in types else None
        if value == f"'{listing}'":
            return f"CAST(:id AS {kind if kind in ('integer', 'bigint') else 'bigint'})"
        # An array of the listing's id, once a row (the rewrite's rows as arrays).
        if re.fullmatch(r"'\{%s(,%s)*\}'" % (listing, listing), value):
            ids = value.strip("'{}").split(",")
            return "ARRAY[" + ", ".join("CAST(:id AS bigint)" for _ in ids) + "]"
        if kind:
            return f"CAST({value} AS {kind})"
        # Untyped: a number as a number (the service bound it as one), else the text literal.
        return value.strip("'") if re.fullmatch(r"'-?\d+'", value) else value
    # pgbench reads a command per line, and prepares each alone: one line per statement (the
    # service's `BEGIN; SET LOCAL …` is one round trip of two).
    if params:
        print(" ".join(re.sub(r"\$(\d+)\b", literal, sql).split()) + ";")
    else:
        for part in sql.split(";"):
            if part.strip():
                print(" ".join(part.split()) + ";")
PY
}

# One round of the service: requests/s and its CPU µs per request.
service_round() { # $1 method, $2 body file
    local t0 rps t1
    t0=$(ticks)
    rps=$(WRITE_METHOD=$1 WRITE_BODY_FILE=$2 wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$OUT/writes.lua" "$SERVICE" |
        awk '/Requests\/sec/ {print $2}')
    t1=$(ticks)
    python3 -c "print($rps, round(($t1 - $t0) * 1e6 / $(getconf CLK_TCK) / ($rps * $DURATION), 1))"
}
pgbench_round() { # $1 script
    pgbench -n -M prepared -c "$POOL" -j 2 -T "$DURATION" -f "$1" "$DB_URL" 2>"$OUT/writes-pgbench.err" |
        awk '/^tps/ {print $3}'
}
# What autovacuum does where it runs: this machine's cluster has it off (its CI configuration).
# Without it a dual write's few hot rows — the written cars' unified values, 1,667 live rows —
# gathered 79,000 dead versions over the full-rate rounds, and the service's paced writes read
# 6–9 ms at p50 against pgbench's 2.3–2.7 ms; vacuumed before each round, 2.3–3.1 ms.
vacuum() { psql "$DB_URL" -qc "VACUUM (ANALYZE)"; }
# p50 and p99 (ms) at a fixed rate: one paced hey per listing (a hey sends to one URL), eight
# listings apart, their answers' times pooled.
latency_at() { # $1 rate, $2 method, $3 body file
    local clients=8 i hey_pids=()
    for i in $(seq 0 $((clients - 1))); do
        hey -z "${DURATION}s" -c 1 -q "$(python3 -c "print(max(1, round($1 / $clients)))")" -m "$2" \
            -H "Authorization: Bearer ${TOKEN}" -T application/json -D "$3" -o csv \
            "$SERVICE/api/v2/marketplace/listings/$((STRIDE * (i * COUNT / clients) + FIRST))/attributes" \
            >"$OUT/writes-hey-$i.csv" 2>/dev/null &
        hey_pids+=($!)
    done
    wait "${hey_pids[@]}"
    python3 - "$OUT"/writes-hey-*.csv <<'PY'
import csv, sys
times = sorted(float(r["response-time"]) * 1000 for f in sys.argv[1:] for r in csv.DictReader(open(f)) if r["status-code"] == "200")
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] if times else float("nan")
print(f"{pick(0.5):.2f} {pick(0.99):.2f}")
PY
}
# The floor of those figures: PostgreSQL's own latency for the same statements at the same rate
# (pgbench, as many clients as the service's pools), p50 and p99 (ms).
pgbench_latency_at() { # $1 rate, $2 script
    rm -f "$OUT"/writes-pgbench-log.*
    pgbench -n -M prepared -c "$POOL" -j 2 -T "$DURATION" -R "$1" --log --log-prefix="$OUT/writes-pgbench-log" \
        -f "$2" "$DB_URL" >/dev/null 2>>"$OUT/writes-pgbench.err"
    cat "$OUT"/writes-pgbench-log.* | python3 -c '
import sys
times = sorted(int(line.split()[2]) / 1000 for line in sys.stdin if line.strip())
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] if times else float("nan")
print(f"{pick(0.5):.2f} {pick(0.99):.2f}")'
    rm -f "$OUT"/writes-pgbench-log.*
}

results=()
for mode in "${MODES[@]}"; do
    if [ "$mode" = unified ]; then
        say "the evidence unified-only writes need: backfill, verify, the quarantine accepted"
        for step in "backfill" "verify" "quarantine accept --all --actor bench"; do
            # shellcheck disable=SC2086 # the step's words
            env DUAL_WRITE_ATTRIBUTES=true DATABASE_URL="$DB_URL" "$BIN" $step >/dev/null 2>"$OUT/writes-step.log" ||
                { cat "$OUT/writes-step.log" >&2; exit 1; }
        done
    fi
    for op in ${BENCH_WRITES:-PATCH PUT}; do
        body=$OUT/writes-patch.json
        [ "$op" = PUT ] && body=$OUT/writes-put.json
        script=$OUT/writes-${mode}-${op}.pgbench
        say "${mode} ${op}: capture"
        capture "$mode" "$op" "$body" "$script"
        round_trips=$(sed -n 's/.*, \([0-9]*\) round trips.*/\1/p' "$script")
        start "$mode"
        WRITE_METHOD=$op WRITE_BODY_FILE=$body wrk -t2 -c"$CONNECTIONS" -d2s -s "$OUT/writes.lua" "$SERVICE" >/dev/null
        service_runs=() cpu_runs=() pgbench_runs=()
        c0=$(commits) n0=$(curl -fs "$SERVICE/metrics" | awk '$1 ~ /^unified_attributes_writes_total/ {n += $2} END {print n + 0}')
        for _ in $(seq 1 "$ROUNDS"); do
            read -r rps cpu < <(service_round "$op" "$body")
            service_runs+=("$rps") cpu_runs+=("$cpu")
            pgbench_runs+=("$(pgbench_round "$script")")
            say "${mode} ${op}: service ${service_runs[*]} / pgbench ${pgbench_runs[*]}"
        done
        service_rps=$(median "${service_runs[@]}")
        # PostgreSQL's transactions per write: its counters over the service's full-rate rounds,
        # pgbench's transactions taken off.
        n1=$(curl -fs "$SERVICE/metrics" | awk '$1 ~ /^unified_attributes_writes_total/ {n += $2} END {print n + 0}')
        c1=$(commits)
        pgbench_txns=$(python3 -c "print(round(sum(float(t) for t in '${pgbench_runs[*]}'.split()) * $DURATION))")
        # Latency at half of that rate: the service and pgbench in alternating rounds too, the
        # median of each one's p50s and p99s, each round on a vacuumed database.
        rate=$(python3 -c "print($service_rps / 2)")
        p50s=() p99s=() floor50s=() floor99s=()
        for _ in $(seq 1 "$ROUNDS"); do
            vacuum
            read -r p50 p99 < <(latency_at "$rate" "$op" "$body")
            vacuum
            read -r floor50 floor99 < <(pgbench_latency_at "$rate" "$script")
            p50s+=("$p50") p99s+=("$p99") floor50s+=("$floor50") floor99s+=("$floor99")
        done
        p50=$(median "${p50s[@]}") p99=$(median "${p99s[@]}")
        floor50=$(median "${floor50s[@]}") floor99=$(median "${floor99s[@]}")
        stop
        results+=("${mode}|${op}|${service_runs[*]}|${pgbench_runs[*]}|$(median "${cpu_runs[@]}")|${p50}|${p99}|${floor50}|${floor99}|$(python3 -c "print(round(($c1 - $c0 - $pgbench_txns) / max(1, $n1 - $n0), 2))")|${round_trips}")
    done
done

python3 - "$OUT/writes.md" "${results[@]}" <<'PY'
import statistics, sys
names = {"legacy": "legacy only", "dual": "dual write", "unified": "unified only"}
rows = []
for result in sys.argv[2:]:
    mode, op, service, pgbench, cpu, p50, p99, floor50, floor99, txns, round_trips = result.split("|")
    s, p = [float(x) for x in service.split()], [float(x) for x in pgbench.split()]
    ms, mp = statistics.median(s), statistics.median(p)
    runs = lambda xs: " / ".join(f"{x:,.0f}" for x in xs)
    rows.append((f"{op} ({names[mode]})", f"{ms:,.0f} ({runs(s)})", f"{mp:,.0f} ({runs(p)})",
                 f"{ms / mp:.0%}", f"{float(p50):.2f} / {float(p99):.2f}",
                 f"{float(floor50):.2f} / {float(floor99):.2f}", cpu, txns, round_trips))
text = ("| write | service req/s, median (rounds) | pgbench, same statements, tps (rounds) | ratio "
        "| p50 / p99 ms at half max | pgbench p50 / p99 ms, same rate | service CPU µs/write "
        "| PostgreSQL transactions/write | round trips/write |\n"
        "|---|---|---|---|---|---|---|---|---|\n")
text += "\n".join("| " + " | ".join(row) + " |" for row in rows)
print(text)
open(sys.argv[1], "w").write(text + "\n")
PY
