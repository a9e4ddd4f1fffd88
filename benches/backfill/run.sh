#!/usr/bin/env bash
# Backfill benchmark on PostgreSQL: about 2,000,000 legacy listing values (220,000 listings of
# the demo marketplace with every defect), each figure next to its ceiling in the same run:
#   - `backfill` wall time vs. one plain `INSERT … SELECT` of the same rows into a copy of the
#     unified values table (same primary key, index and foreign key; no validation, no
#     quarantine, no checkpoints, one transaction);
#   - `verify` wall time over the same data;
#   - peak resident memory of both commands (GNU time).
# Both run in BENCH_ROUNDS (3) alternating rounds, each from legacy only; medians are reported.
# Loopback only, bounded by the data size. Usage: benches/backfill/run.sh
# (BENCH_LISTINGS, 220000; BENCH_BATCH, 1000; BENCH_ROUNDS, 3; BENCH_RESEED=1 reloads the data;
# BENCH_BINARY, a release build to measure instead of this tree's.)
set -euo pipefail
cd "$(dirname "$0")/../.."

DB_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ua_backfill_bench}
LISTINGS=${BENCH_LISTINGS:-220000}
BATCH=${BENCH_BATCH:-1000}
ROUNDS=${BENCH_ROUNDS:-3}
OUT=${CARGO_TARGET_DIR:-target}/bench
mkdir -p "$OUT"
for tool in psql python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool (Debian: postgresql-client time)" >&2; exit 1; }
done
say() { printf '\n== %s\n' "$*" >&2; }
# The service's tables live in their own schema; psql finds them first, as the service does.
export PGOPTIONS="-c search_path=${DATABASE_SCHEMA:-attributes},public"

# BENCH_BINARY: another build to measure (a release build of an earlier commit, for a before/after).
bin=${BENCH_BINARY:-}
if [ -z "$bin" ]; then
    say "building (release)"
    cargo build --release --bin unified-attributes >&2
    bin=${CARGO_TARGET_DIR:-target}/release/unified-attributes
fi

db_name=${DB_URL##*/}
admin_url=${DB_URL%/*}/postgres
have=$(psql "$DB_URL" -Atqc "SELECT COUNT(*) FROM marketplace_listings" 2>/dev/null || echo 0)
if [ "$have" != "$LISTINGS" ] || [ "${BENCH_RESEED:-0}" = 1 ]; then
    say "database: ${LISTINGS} listings in legacy form"
    psql "$admin_url" -qc "DROP DATABASE IF EXISTS ${db_name}" -c "CREATE DATABASE ${db_name}"
    # Listings only: the baseline copies listing values, so both sides move the same rows.
    "$bin" seed-demo --database-url "$DB_URL" --listings "$LISTINGS" --products 0 >&2
fi
# Every round starts from legacy only.
reset() {
    psql "$DB_URL" -qc "TRUNCATE unified_attribute_values, unified_category_attributes, backfill_quarantine,
        backfill_checkpoint, verify_runs" -c "DELETE FROM unified_attributes" -c "DROP TABLE IF EXISTS bench_copy" >&2
    psql "$DB_URL" -qc "VACUUM ANALYZE" >&2
}
reset
values=$(psql "$DB_URL" -Atqc "SELECT COUNT(*) FROM listing_attribute_values")

# Runs a command under GNU time; prints "seconds max_rss_kb".
measure() {
    local log
    log=$(mktemp)
    /usr/bin/time -f '%e %M' -o "$log" "$@" >/dev/null
    cat "$log"
    rm -f "$log"
}

backfill_runs=() insert_runs=() backfill_kb=0
for round in $(seq 1 "$ROUNDS"); do
    [ "$round" = 1 ] || reset
    say "round ${round}: backfill of ${values} legacy values (batches of ${BATCH} listings)"
    read -r seconds kb < <(measure "$bin" backfill --database-url "$DB_URL" --batch-size "$BATCH")
    backfill_runs+=("$seconds")
    [ "$kb" -gt "$backfill_kb" ] && backfill_kb=$kb
    say "round ${round}: baseline, one INSERT … SELECT of the same rows"
    psql "$DB_URL" -qc "CREATE TABLE bench_copy (LIKE unified_attribute_values INCLUDING ALL)" \
        -c "ALTER TABLE bench_copy ADD FOREIGN KEY (attribute_id) REFERENCES unified_attributes (id)" >&2
    insert_started=$(date +%s.%N)
    psql "$DB_URL" -qc "INSERT INTO bench_copy (entity_type, entity_id, attribute_id, text_value,
            numeric_value, boolean_value, json_value, unit)
        SELECT 'listing', v.listing_id, u.id, v.text_value, v.numeric_value, v.boolean_value,
            v.json_value, v.unit
        FROM listing_attribute_values v
        JOIN unified_attributes u ON u.legacy_category_attribute_id = v.attribute_id" >&2
    insert_runs+=("$(python3 -c "import time; print(f'{time.time() - ${insert_started}:.2f}')")")
    copied=$(psql "$DB_URL" -Atqc "SELECT COUNT(*) FROM bench_copy")
    psql "$DB_URL" -qc "DROP TABLE bench_copy" >&2
    say "round ${round}: backfill ${backfill_runs[*]} s / INSERT … SELECT ${insert_runs[*]} s"
done
migrated=$(psql "$DB_URL" -Atqc "SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = 'listing'")
quarantined=$(psql "$DB_URL" -Atqc "SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'")

say "verify"
set +e
read -r verify_s verify_kb < <(measure "$bin" verify --database-url "$DB_URL" --page-size "$BATCH"; true)
set -e
drifted=$(psql "$DB_URL" -Atqc "SELECT drifted FROM verify_runs ORDER BY id DESC LIMIT 1")

python3 - "$values" "$migrated" "$quarantined" "${backfill_runs[*]}" "$backfill_kb" "${insert_runs[*]}" "$copied" \
    "$verify_s" "$verify_kb" "$drifted" "$BATCH" > "$OUT/backfill.md" <<'EOF'
import statistics, sys
(values, migrated, quarantined, backfill_runs, backfill_kb, insert_runs, copied, verify_s, verify_kb,
 drifted, batch) = sys.argv[1:]
bs, ins = [float(x) for x in backfill_runs.split()], [float(x) for x in insert_runs.split()]
b, i, v = statistics.median(bs), statistics.median(ins), float(verify_s)
runs = lambda xs: " / ".join(f"{x:.1f}" for x in xs)
print(f"""# Backfill benchmark (PostgreSQL, loopback, one machine)

| measure | value | goal |
|---|---|---|
| legacy listing values | {int(values):,} | |
| migrated + quarantined | {int(migrated):,} + {int(quarantined):,} = {int(migrated) + int(quarantined):,} | = legacy |
| `backfill --batch-size {batch}`, median of {len(bs)} rounds ({runs(bs)}) | {b:.1f} s ({int(values) / b:,.0f} rows/s) | |
| plain `INSERT … SELECT` of the same rows ({int(copied):,}), median ({runs(ins)}) | {i:.1f} s | |
| backfill / INSERT … SELECT, medians; per round ({" / ".join(f"{x / y:.2f}" for x, y in zip(bs, ins))}) | {b / i:.2f}× | ≤ 1.5× |
| `verify` (every entity, both directions) | {v:.1f} s, {drifted} drifted | < 30 s |
| peak RSS: backfill / verify | {int(backfill_kb) / 1024:.1f} / {int(verify_kb) / 1024:.1f} MB | < 200 MB |
""")
EOF
cat "$OUT/backfill.md"
