#!/usr/bin/env bash
# The seed's Day 15 rehearsed on this machine: the real deploy/deploy.sh and deploy/rollback.sh
# against live processes while users read and write through a router.
#   - PostgreSQL (one database, as in production) with the demo marketplace, backfilled and
#     verified under dual-write first, as the runbook asks before phase 1;
#   - blue and green: two replicas each of the service binary (kubectl stand-in: kubectl);
#   - HAProxy in front, standing in for the Istio VirtualService (weights by its runtime API,
#     health checks, a draining replica gets no new requests);
#   - Prometheus scraping every replica with its `version` label: the gates read real metrics;
#   - load.py: users through the router during the whole run (forms, listing pages, results
#     pages, writes), every acknowledged write recorded and read back at the end.
# Scenarios: a — the full walk 0 → 4 (archive); b — green slows down after the 10 % gate (its
# database answers 150 ms late, slow_proxy.py): the 25 % gate fails and deploy.sh rolls back by
# itself; c — the validation of the unified phase fails after unified-only writes: the rollback
# turns dual-write on, syncs legacy and goes back to the canary; d — the seed's L1 flag rollback
# by `kubectl set env` while traffic runs, after the switch to 100 %.
# Prints a report per scenario (report.py) and exits 1 if a user request failed, an
# acknowledged write is not readable, or deploy.sh did not end as expected.
#
# Usage: deploy/rehearsal/run.sh [--short] [--scenario a|b|c|d|all] [--binary PATH]
#   --short: 600 listings, 3 s soaks (CI); default: 3,000 listings, 30 s soaks.
# Needs: haproxy, prometheus, psql, pg_dump, python3, PostgreSQL at $TEST_DATABASE_URL's server
# (default postgres://postgres@127.0.0.1:5432/postgres). Loopback only; everything it starts
# is stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
short=false
scenarios="a b c d"
binary="$root/target/debug/unified-attributes"
while [ $# -gt 0 ]; do
    case "$1" in
        --short) short=true ;;
        --scenario) case "${2:-}" in a | b | c | d) scenarios=$2 ;; all) scenarios="a b c d" ;; *) echo "--scenario a, b, c, d or all" >&2; exit 2 ;; esac; shift ;;
        --binary) binary=${2:?--binary needs a path}; shift ;;
        -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done
for tool in haproxy prometheus psql pg_dump python3 curl; do
    command -v "$tool" >/dev/null || { echo "the rehearsal needs $tool" >&2; exit 1; }
done
[ -x "$binary" ] || { echo "no service binary at $binary (cargo build first)" >&2; exit 1; }
if $short; then listings=600 soak=3; else listings=3000 soak=30; fi
admin_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
server_url=${admin_url%/*}
work=$(mktemp -d)
pids=()
databases=()
# SIGTERM to the service replicas the kubectl stand-in started for a scenario.
stop_services() { # $1 state.json
    [ -f "$1" ] || return 0
    python3 - "$1" <<'PY' || true
import json, os, signal, sys
for colour in json.load(open(sys.argv[1]))["colours"].values():
    for replica in colour["replicas"]:
        if replica.get("pid"):
            try:
                os.kill(replica["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
PY
}
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    touch "$work/stop" 2>/dev/null || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    stop_services "$work/current/state.json"
    sleep 1
    for db in "${databases[@]}"; do
        psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
free_ports() { # $1 count
    python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}
say() { printf '\n== %s\n' "$*"; }

overall=0
: >"$work/rehearsal.md"
for scenario in $scenarios; do
    out="$work/$scenario"
    mkdir -p "$out"
    ln -sfn "$out" "$work/current"
    export REHEARSAL_DIR="$out"
    db="ua_rehearsal_$$_${scenario}"
    databases+=("$db")
    url="$server_url/$db"
    say "scenario $scenario: database $db, $listings listings"
    psql -q "$admin_url" -c "CREATE DATABASE $db" >/dev/null
    DATABASE_URL=$url "$binary" seed-demo --listings "$listings" >/dev/null

    read -r b0 b1 g0 g1 bi0 bi1 gi0 gi1 router prom slow <<<"$(free_ports 11)"
    green_env="{}"
    if [ "$scenario" = b ]; then
        # Green reaches the database through a proxy that can slow it down: once the fault is
        # on, its writes and cache misses wait 150 ms per answer (the commands deploy.sh
        # runs in green reach the database directly: the fault is in the serving path).
        python3 "$here/slow_proxy.py" "$slow" "$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlparse(sys.argv[1]).port or 5432)' "$url")" "$out/fault" 150 &
        pids+=($!)
        green_env=$(python3 -c 'import json, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
slow = u._replace(netloc=u.netloc.rsplit(":", 1)[0].rsplit("@", 1)[0] + "@127.0.0.1:" + sys.argv[2])
print(json.dumps({"DATABASE_URL": slow.geturl()}))' "$url" "$slow")
    fi
    python3 - "$out/state.json" "$binary" "$url" <<PY
import json, sys
replicas = lambda pairs: [{"public": p, "internal": i, "pid": None} for p, i in pairs]
json.dump({
    "binary": sys.argv[2],
    "env": {"DATABASE_URL": sys.argv[3], "WRITER_API_TOKEN": "rehearsal-writer",
            "ADMIN_API_TOKEN": "rehearsal-admin", "APP__SERVER__WORKERS": "1",
            "APP__TELEMETRY__FORMAT": "json", "RUST_LOG": "warn",
            "APP__DATABASE__MAX_CONNECTIONS": "4"},
    "colours": {
        "blue": {"weight": 100, "env": {}, "replicas": replicas([($b0, $bi0), ($b1, $bi1)])},
        "green": {"weight": 0, "env": $green_env, "replicas": replicas([($g0, $gi0), ($g1, $gi1)])},
    },
}, open(sys.argv[1], "w"), indent=2)
PY
    cat >"$out/haproxy.cfg" <<CFG
global
    stats socket $out/haproxy.sock mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option http-server-close
    retries 2
    retry-on conn-failure
    option redispatch
frontend users
    bind 127.0.0.1:$router
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /health/ready
    # A slow database makes readiness slow, not failing (as a readiness probe's timeout would
    # allow): a slow colour keeps its traffic, and the gates must see it.
    timeout check 3s
    default-server inter 300ms fall 1 rise 1
    server blue-0 127.0.0.1:$b0 weight 100 check
    server blue-1 127.0.0.1:$b1 weight 100 check
    server green-0 127.0.0.1:$g0 weight 0 check
    server green-1 127.0.0.1:$g1 weight 0 check
CFG
    haproxy -db -f "$out/haproxy.cfg" >"$out/haproxy.log" 2>&1 &
    pids+=($!)
    cat >"$out/prometheus.yml" <<CFG
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: unified-attributes
    static_configs:
      - targets: ['127.0.0.1:$bi0', '127.0.0.1:$bi1']
        labels: {version: blue}
      - targets: ['127.0.0.1:$gi0', '127.0.0.1:$gi1']
        labels: {version: green}
CFG
    prometheus --config.file="$out/prometheus.yml" --storage.tsdb.path="$out/prometheus" \
        --web.listen-address="127.0.0.1:$prom" >"$out/prometheus.log" 2>&1 &
    pids+=($!)
    STOP_AFTER=3600 python3 "$here/webhook.py" "$out/notifications.log" "$out/webhook.port" &
    pids+=($!)
    for _ in $(seq 100); do [ -s "$out/webhook.port" ] && break; sleep 0.1; done
    webhook="http://127.0.0.1:$(cat "$out/webhook.port")/slack"
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$prom/-/ready" >/dev/null && break; sleep 0.2; done
    touch "$out/notifications.log"
    note() { curl -fsS -m 5 -X POST -H 'Content-Type: application/json' \
        --data "$(python3 -c 'import json, sys; print(json.dumps({"text": "rehearsal: " + sys.argv[1]}))' "$1")" "$webhook" >/dev/null; }

    kubectl="$here/kubectl"
    say "blue up; dual-write, backfill and verify (before phase 1, as the runbook asks)"
    "$kubectl" -n marketplace apply -k "$root/deploy/k8s/overlays/blue"
    "$kubectl" -n marketplace exec deploy/unified-attributes-blue -- unified-attributes flags --set '{"dual_write": true}' --actor rehearsal >/dev/null
    "$kubectl" -n marketplace exec deploy/unified-attributes-blue -- unified-attributes backfill >/dev/null 2>&1
    "$kubectl" -n marketplace exec deploy/unified-attributes-blue -- unified-attributes verify >/dev/null
    # The operator's decision on what the demo's quarantine holds (RUNBOOK, "The quarantine"):
    # its defects are not worth resolving here, and unified reads without fallback wait for it.
    "$kubectl" -n marketplace exec deploy/unified-attributes-blue -- unified-attributes quarantine accept --all \
        --actor rehearsal --note "the demo's defects, reviewed" >/dev/null

    psql -At "$url" -c "SELECT id FROM marketplace_listings WHERE category_id = 1311 ORDER BY id" >"$out/listings.txt"
    python3 "$here/load.py" "http://127.0.0.1:$router" rehearsal-writer "$out/listings.txt" "$out" "$out/stop" 4 1800 &
    load_pid=$!
    pids+=("$load_pid")
    sleep 2

    deploy_env=(KUBECTL="$kubectl" PROMETHEUS_URL="http://127.0.0.1:$prom" SLACK_WEBHOOK_URL="$webhook"
        DATABASE_URL="$url" BACKUP_DIR="$out")
    set +e
    case "$scenario" in
        a)
            say "scenario a: the full walk, phases 1 → 5"
            # Time is compressed here: the archive's soak (24 h by default) with it.
            env "${deploy_env[@]}" ARCHIVE_SOAK_HOURS=0 "$root/deploy/deploy.sh" --soak "$soak" --to-phase 5 \
                --report "$out/deploy-report.md"
            code=$?
            expected=0
            ;;
        b)
            say "scenario b: green slows down after the 10 % gate; the 25 % gate must roll back"
            (
                until grep -q "phase 3: 10 % on green" "$out/notifications.log" 2>/dev/null; do sleep 0.2; done
                touch "$out/fault"
            ) &
            pids+=($!)
            env "${deploy_env[@]}" "$root/deploy/deploy.sh" --soak "$soak" --report "$out/deploy-report.md"
            code=$?
            expected=1
            rm -f "$out/fault"
            ;;
        c)
            say "scenario c: the unified phase's validation fails: back through dual-write and reverse sync"
            env "${deploy_env[@]}" REHEARSAL_FAIL="--expect-phase unified" "$root/deploy/deploy.sh" --soak "$soak" --report "$out/deploy-report.md"
            code=$?
            expected=1
            ;;
        d)
            say "scenario d: to 100 % on green (phase 3), then the seed's L1 by kubectl set env"
            env "${deploy_env[@]}" "$root/deploy/deploy.sh" --soak "$soak" --to-phase 3 --report "$out/deploy-report.md"
            code=$?
            expected=0
            if [ "$code" = 0 ]; then
                note "rollback L1 (kubectl set env) started"
                KUBECTL="$kubectl" "$root/deploy/rollback.sh" L1 --via env
                code=$?
                note "rollback L1 (kubectl set env) done"
                sleep "$soak"
            fi
            ;;
    esac
    set -e
    touch "$out/stop"
    wait "$load_pid" || true
    if psql -At "$url" -c "SELECT archived_at IS NOT NULL FROM attributes.migration_state" 2>/dev/null | grep -q t; then
        verify="legacy archived (phase 5 validated the archived state)"
    elif "$kubectl" -n marketplace exec deploy/unified-attributes-green -- unified-attributes verify >"$out/verify.txt" 2>&1 ||
        "$kubectl" -n marketplace exec deploy/unified-attributes-blue -- unified-attributes verify >"$out/verify.txt" 2>&1; then
        verify="clean"
    else
        verify="DRIFT: $(tail -3 "$out/verify.txt" | tr '\n' ' ')"
    fi
    python3 "$here/report.py" "$scenario" "$out" "http://127.0.0.1:$router" "http://127.0.0.1:$prom" \
        "$code" "$expected" "$verify" || overall=1
    [ -f "$out/deploy-report.md" ] && sed 's/^/    /' "$out/deploy-report.md"
    # This scenario's processes stop before the next one starts.
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    pids=()
    stop_services "$out/state.json"
    sleep 1
done
say "rehearsal summary"
cat "$work/rehearsal.md"
exit "$overall"
