#!/usr/bin/env bash
# What capture costs the marketplace's own writes: pgbench runs the monolith's listing save
# (one transaction: delete every row of a random listing, then one multi-row upsert of five
# values) against the demo marketplace, with the capture triggers on and then off
# (`ALTER TABLE … DISABLE TRIGGER`), alternating, three rounds each; prints each run and the
# medians of throughput and mean latency. The service is not running: this is the cost inside
# the writer's transaction (the outbox insert); applying the changes happens after commit.
# Loopback only, bounded in time (BENCH_SECONDS per run, 15). Usage: benches/capture/run.sh
# (BENCH_LISTINGS, 20000; BENCH_CLIENTS, 4.)
set -euo pipefail
cd "$(dirname "$0")/../.."

DB_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ua_capture_bench}
LISTINGS=${BENCH_LISTINGS:-20000}
SECONDS_PER_RUN=${BENCH_SECONDS:-15}
CLIENTS=${BENCH_CLIENTS:-4}
for tool in psql pgbench; do
    command -v "$tool" >/dev/null || { echo "missing $tool (Debian: postgresql-client)" >&2; exit 1; }
done
say() { printf '\n== %s\n' "$*" >&2; }

say "building (release)"
cargo build --release --bin unified-attributes >&2
bin=${CARGO_TARGET_DIR:-target}/release/unified-attributes

db_name=${DB_URL##*/}
admin_url=${DB_URL%/*}/postgres
psql "$admin_url" -qc "DROP DATABASE IF EXISTS ${db_name}" -c "CREATE DATABASE ${db_name}"
say "database: ${LISTINGS} listings in legacy form, the service's migrations (capture triggers)"
"$bin" seed-demo --database-url "$DB_URL" --listings "$LISTINGS" --products 0 >&2
attributes=$(psql "$DB_URL" -Atqc "SELECT string_agg(CAST(id AS TEXT), ' ') FROM (SELECT id FROM category_attributes ORDER BY id LIMIT 5) a")
read -r a1 a2 a3 a4 a5 <<<"$attributes"
script=$(mktemp)
trap 'rm -f "$script"' EXIT
cat >"$script" <<SQL
\set listing random(1, ${LISTINGS})
BEGIN;
DELETE FROM listing_attribute_values WHERE listing_id = :listing;
INSERT INTO listing_attribute_values
    (listing_id, attribute_id, text_value, numeric_value, boolean_value, json_value, unit)
VALUES (:listing, ${a1}, 'a', NULL, NULL, NULL, NULL), (:listing, ${a2}, NULL, 42, NULL, NULL, NULL),
       (:listing, ${a3}, 'b', NULL, NULL, NULL, NULL), (:listing, ${a4}, NULL, NULL, true, NULL, NULL),
       (:listing, ${a5}, 'c', NULL, NULL, NULL, 'km')
ON CONFLICT (listing_id, attribute_id) DO UPDATE SET
    text_value = EXCLUDED.text_value, numeric_value = EXCLUDED.numeric_value,
    boolean_value = EXCLUDED.boolean_value, json_value = EXCLUDED.json_value, unit = EXCLUDED.unit;
COMMIT;
SQL
psql "$DB_URL" -qc "VACUUM ANALYZE" >&2

run() { # $1: on|off
    if [ "$1" = off ]; then
        psql "$DB_URL" -qc "ALTER TABLE listing_attribute_values DISABLE TRIGGER USER"
    else
        psql "$DB_URL" -qc "ALTER TABLE listing_attribute_values ENABLE TRIGGER USER"
    fi
    pgbench -n -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" -f "$script" "$DB_URL" 2>/dev/null |
        awk -v mode="$1" '/^tps/ {tps=$3} /latency average/ {lat=$4} END {printf "%s %s %s\n", mode, tps, lat}'
}
results=$(mktemp)
for round in 1 2 3; do
    for mode in on off; do
        line=$(run "$mode")
        echo "$line" >>"$results"
        echo "round ${round}: capture ${line%% *}: $(echo "$line" | awk '{printf "%.0f tps, %.2f ms mean latency", $2, $3}')" >&2
    done
done
psql "$DB_URL" -qc "ALTER TABLE listing_attribute_values ENABLE TRIGGER USER"
captured=$(psql "$DB_URL" -Atqc "SELECT COUNT(*) FROM attributes.attribute_changes WHERE source = 'direct'")
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
on_tps=$(awk '$1=="on" {print $2}' "$results" | median)
off_tps=$(awk '$1=="off" {print $2}' "$results" | median)
on_lat=$(awk '$1=="on" {print $3}' "$results" | median)
off_lat=$(awk '$1=="off" {print $3}' "$results" | median)
rm -f "$results"
python3 - "$on_tps" "$off_tps" "$on_lat" "$off_lat" "$captured" "$CLIENTS" <<'PY'
import sys
on_tps, off_tps, on_lat, off_lat, captured, clients = sys.argv[1:]
on_tps, off_tps, on_lat, off_lat = map(float, (on_tps, off_tps, on_lat, off_lat))
print(f"the monolith's listing save, {clients} clients (medians of 3 runs each):")
print(f"  capture off: {off_tps:8.0f} saves/s  {off_lat:6.2f} ms mean")
print(f"  capture on:  {on_tps:8.0f} saves/s  {on_lat:6.2f} ms mean")
print(f"  throughput on/off {on_tps / off_tps:.2f}, latency +{on_lat - off_lat:.2f} ms ({(on_lat / off_lat - 1) * 100:.0f} %)")
print(f"  captured rows written: {captured} (two per save: its delete and its insert)")
PY
