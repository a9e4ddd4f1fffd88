#!/usr/bin/env bash
# Every figure of benches/README.md from one command: the criterion benchmarks of the hot
# paths, the load, write, scale-out and backfill benchmarks, each figure next to its ceiling
# measured in the same run. Writes target/bench/report.md. Loopback only; each part stops by
# itself. Needs PostgreSQL on 127.0.0.1:5432, wrk, hey, pgbench, psql and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${CARGO_TARGET_DIR:-target}/bench
mkdir -p "$OUT"

printf '\n== criterion: hot paths\n' >&2
cargo bench --bench hot_paths -- --noplot 2>/dev/null | tee "$OUT/criterion.txt" >&2
python3 - "$OUT/criterion.txt" >"$OUT/criterion.md" <<'PY'
import re, sys
rows, name = [], None
for line in open(sys.argv[1]):
    if m := re.match(r"^(\S+)\s+time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line):
        rows.append((m.group(1), m.group(2)))
    elif m := re.match(r"^(\S+)$", line.strip()):
        name = m.group(1)
    elif name and (m := re.match(r"^\s+time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)):
        rows.append((name, m.group(1)))
print("| function | time (median estimate) |\n|---|---|")
for function, time in rows:
    print(f"| `{function}` | {time} |")
PY

benches/load/run.sh
benches/load/writes.sh
benches/load/scale_out.sh
benches/backfill/run.sh

{
    printf '## Load (benches/load/run.sh)\n\n'
    cat "$OUT/load.md"
    printf '\n## Writes (benches/load/writes.sh)\n\n'
    cat "$OUT/writes.md"
    printf '\n## Scale-out (benches/load/scale_out.sh)\n\n'
    cat "$OUT/scale_out.md"
    printf '\n## Backfill (benches/backfill/run.sh)\n\n'
    cat "$OUT/backfill.md"
    printf '\n## Criterion (cargo bench --bench hot_paths)\n\n'
    cat "$OUT/criterion.md"
} >"$OUT/report.md"
printf '\n== report: %s\n' "$OUT/report.md" >&2
cat "$OUT/report.md"

# About 1.5 GB of seeded databases: the scripts alone keep theirs for quick reruns, the whole
# run drops them (the test suite's replicas copy the cluster with pg_basebackup).
if [ "${BENCH_KEEP_DB:-0}" != 1 ]; then
    for db in ua_bench ua_bench_writes ua_replica_bench ua_backfill_bench; do
        psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS ${db} WITH (FORCE)" >&2
    done
fi
