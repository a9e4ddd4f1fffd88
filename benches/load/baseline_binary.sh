#!/usr/bin/env bash
# Builds the load benchmark's floors (benches/baseline.rs, a release build) and prints the path
# of the executable: run.sh and instructions.sh start it beside the service.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench --bench baseline --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "baseline" and m.get("executable"):
        print(m["executable"])'
