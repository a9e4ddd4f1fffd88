#!/usr/bin/env bash
# Golden tests of deploy.sh, with a fake kubectl and pg_dump on PATH that record their calls,
# and a local stand-in for Prometheus and the Slack webhook:
#   success   every gate passes: the recorded calls equal golden/success.calls, exit 0
#   rollback  the green error ratio is 5 %: phase 3's first gate fails, the traffic and the
#             flags go back; the calls equal golden/rollback.calls, exit 1
#   rollback-incomplete  the flag change is refused every time: tried again, then exit 4,
#             never reported as rolled back
#   no-data   Prometheus has no error ratio or p95 for green's traffic: the gate fails
#   no-traffic green serves no user request: the gate is inconclusive, soaks again, then the
#             deploy pauses (exit 3) with nothing rolled back; golden/no-traffic.calls
#   phase-2/4 a failed rollout or validation rolls back what that phase changed; a failed
#             sync-legacy leaves the rollback incomplete (exit 4), fallback not asked for
#   dry-run   nothing runs; every command is printed
#   ladder-*  rollback.sh, each level of the seed's ladder (L1 by flags and by `kubectl set env`,
#             L2, L3, L4 with and without the archive): its calls equal golden/ladder-*.calls;
#             a refused step stops the level with exit 1
# Each scenario also checks the team notifications and the report. UPDATE_GOLDEN=1 rewrites
# the golden files. Loopback only; the stand-in stops by itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
deploy="$here/../deploy.sh"
work=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

start_server() { # $1 error ratio, $2 p95 seconds, $3 green's user requests/s (default 5)
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -f "$work/port" "$work/messages"
    ERROR_RATIO=$1 P95_SECONDS=$2 REQUEST_RATE=${3:-5} STOP_AFTER=120 \
        python3 "$here/capture_server.py" "$work/messages" "$work/port" &
    server_pid=$!
    for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
    [ -s "$work/port" ] || { echo "the capture server did not start" >&2; exit 2; }
}

# Runs deploy.sh; prints its exit code. Calls go to $work/calls, the report to $work/report.md.
deploy() {
    rm -f "$work/calls" "$work/report.md"
    touch "$work/calls"
    local port
    port=$(cat "$work/port")
    set +e
    PATH="$here/fakes:$PATH" FAKE_CALLS="$work/calls" \
        PROMETHEUS_URL="http://127.0.0.1:$port" SLACK_WEBHOOK_URL="http://127.0.0.1:$port/slack" \
        DATABASE_URL=postgres://deploy@db.example/marketplace BACKUP_DIR="$work" \
        "$deploy" --soak 0 --report "$work/report.md" "$@" >"$work/stdout" 2>"$work/stderr"
    local code=$?
    set -e
    echo "$code"
}

# The recorded calls with the run's time stamps and temp paths made stable.
normalized_calls() {
    sed -E -e "s#${work}#WORK#g" -e "s#$(cd "$here/.." && pwd)#DEPLOY#g" \
        -e 's/[0-9]{8}T[0-9]{6}Z/TIMESTAMP/g' "$work/calls"
}

check_golden() { # $1 scenario
    local golden="$here/golden/$1.calls"
    if [ "${UPDATE_GOLDEN:-0}" = 1 ]; then
        normalized_calls >"$golden"
        echo "updated $golden"
    elif ! diff -u "$golden" <(normalized_calls); then
        fail "$1: the calls differ from $golden"
    fi
}

expect_message() { # $1 scenario, $2 text
    grep -qF -- "$2" "$work/messages" 2>/dev/null || fail "$1: no notification containing '$2'"
}

# success, through the archive (asked for)
start_server 0.001 0.020
code=$(deploy --to-phase 5)
[ "$code" = 0 ] || { fail "success: exit $code"; cat "$work/stderr" >&2; }
check_golden success
for text in "phase 1 (preparation) started" "phase 1 (preparation) passed" \
    "phase 2 (green deployment) passed" "phase 3: 10 % on green" "phase 3: 100 % on green" \
    "phase 4 (finalization) passed" "phase 5 (cleanup) passed" "deployment finished"; do
    expect_message success "$text"
done
grep -q "outcome: deployed" "$work/report.md" || fail "success: report outcome"
[ "$(grep -c '| passed |' "$work/report.md")" = 5 ] || fail "success: five phases passed in the report"

# by default the run stops before the archive: it waits for the unified phase to soak
code=$(deploy)
[ "$code" = 0 ] || fail "default: exit $code"
grep -q "unified-attributes archive" "$work/calls" && fail "default: no archive unless asked"
grep -q "phase 4 (finalization) passed" "$work/messages" || fail "default: phase 4 ran"
grep -q "stopped after phase 4: the archive (phase 5) waits" "$work/report.md" ||
    fail "default: the report says why it stopped"

# rollback: 5 % errors on green
start_server 0.05 0.020
code=$(deploy)
[ "$code" = 1 ] || fail "rollback: exit $code (expected 1)"
check_golden rollback
expect_message rollback "phase 3 FAILED: health gate failed at 10 %"
expect_message rollback "phase 3 rolled back"
grep -q "outcome: rolled back in phase 3" "$work/report.md" || fail "rollback: report outcome"
grep -q "phase_4\|archive" "$work/calls" && fail "rollback: nothing after the failed phase runs"

# rollback whose flag change never lands (the database refuses it, as a lock timeout does):
# tried again, then reported incomplete with exit 4, never as rolled back
start_server 0.05 0.020
code=$(FAKE_KUBECTL_FAIL='"use_unified": false' ROLLBACK_FLAG_ATTEMPTS=3 deploy)
[ "$code" = 4 ] || fail "rollback-incomplete: exit $code (expected 4)"
[ "$(grep -cF '"use_unified": false' "$work/calls")" = 3 ] ||
    fail "rollback-incomplete: the flag change is tried ROLLBACK_FLAG_ATTEMPTS times"
grep -q "weight" "$work/calls" || fail "rollback-incomplete: the traffic still goes back"
expect_message rollback-incomplete "phase 3 rollback INCOMPLETE: the flags were not changed"
grep -q "phase 3 rolled back" "$work/messages" && fail "rollback-incomplete: reported as rolled back"
grep -q "outcome: rollback incomplete in phase 3" "$work/report.md" ||
    fail "rollback-incomplete: report outcome"

# no data: the gate fails rather than passing on silence
start_server none none
code=$(deploy)
[ "$code" = 1 ] || fail "no-data: exit $code (expected 1)"
expect_message no-data "phase 3 FAILED: health gate failed at 10 %"

# no user traffic on green: inconclusive, never a pass — soaks again, then pauses
start_server 0.001 0.020 0
code=$(deploy)
[ "$code" = 3 ] || fail "no-traffic: exit $code (expected 3)"
check_golden no-traffic
expect_message no-traffic "phase 3: gate inconclusive at 10 % (no user traffic on green); soaking again"
expect_message no-traffic "phase 3 PAUSED: gate inconclusive at 10 %"
grep -q "outcome: paused in phase 3 (inconclusive)" "$work/report.md" || fail "no-traffic: report outcome"
grep -qF '"use_unified": false' "$work/calls" && fail "no-traffic: a pause rolls nothing back"

# a failed command in phase 2 (green never ready) scales green back down
start_server 0.001 0.020
code=$(FAKE_KUBECTL_FAIL='rollout status' deploy)
[ "$code" = 1 ] || fail "phase-2: exit $code (expected 1)"
grep -q "scale deployment unified-attributes-green --replicas=0" "$work/calls" ||
    fail "phase-2: green is scaled down"
expect_message phase-2 "phase 2 FAILED: green did not become ready"

# a failed validation in the unified phase: dual-write back, legacy synced, fallback back
start_server 0.001 0.020
code=$(FAKE_KUBECTL_FAIL='--expect-phase unified' deploy)
[ "$code" = 1 ] || fail "phase-4: exit $code (expected 1)"
for call in 'flags --set {"dual_write": true}' 'unified-attributes sync-legacy' 'flags --set {"fallback": true}'; do
    grep -qF -- "$call" "$work/calls" || fail "phase-4: rollback runs '$call'"
done
grep -q "unified-attributes archive" "$work/calls" && fail "phase-4: no archive after a failed phase 4"
expect_message phase-4 "phase 4 FAILED: validation in the unified phase failed"

# the same, but sync-legacy fails: fallback is not asked for (the guardrails would refuse it),
# and the rollback ends incomplete, naming what is left in order, never as rolled back
start_server 0.001 0.020
code=$(FAKE_KUBECTL_FAIL='--expect-phase unified|sync-legacy' deploy)
[ "$code" = 4 ] || fail "phase-4-sync: exit $code (expected 4)"
grep -qF 'flags --set {"fallback": true}' "$work/calls" && fail "phase-4-sync: no fallback before legacy is synced"
expect_message phase-4-sync "phase 4 rollback INCOMPLETE: a step failed; left to do by hand, in order: unified-attributes sync-legacy; unified-attributes flags --set"
grep -q "phase 4 rolled back" "$work/messages" && fail "phase-4-sync: reported as rolled back"

# dry run: prints, runs nothing
code=$(deploy --dry-run --to-phase 5)
[ "$code" = 0 ] || fail "dry-run: exit $code"
[ ! -s "$work/calls" ] || fail "dry-run: commands ran: $(cat "$work/calls")"
grep -q "^+ kubectl -n marketplace apply -k .*overlays/green" "$work/stdout" || fail "dry-run: apply printed"
grep -q "^+ kubectl -n marketplace exec deploy/unified-attributes-green -- unified-attributes archive" "$work/stdout" ||
    fail "dry-run: archive printed"
grep -q "^+ pg_dump" "$work/stdout" || fail "dry-run: backup printed"

# the rollback ladder, level by level
ladder() { # $1 golden name, then rollback.sh's arguments; prints the exit code
    local name=$1
    shift
    rm -f "$work/calls"
    touch "$work/calls"
    set +e
    PATH="$here/fakes:$PATH" FAKE_CALLS="$work/calls" "$here/../rollback.sh" "$@" >"$work/stdout" 2>"$work/stderr"
    local code=$?
    set -e
    echo "$code"
}
for case in "ladder-L1 L1" "ladder-L1-env L1 --via env" "ladder-L2 L2" "ladder-L3 L3" \
    "ladder-L4 L4" "ladder-L4-archived L4 --restore-archive"; do
    read -r name args <<<"$case"
    # shellcheck disable=SC2086 # the arguments are words
    code=$(ladder "$name" $args)
    [ "$code" = 0 ] || fail "$name: exit $code: $(cat "$work/stderr")"
    grep -q "^rollback L[1-4]: done in [0-9]* s$" "$work/stdout" || fail "$name: the level's time is not reported"
    check_golden "$name"
done
code=$(FAKE_KUBECTL_FAIL='flags --set' ladder ladder-refused L1)
[ "$code" = 1 ] || fail "ladder-refused: exit $code (expected 1)"
grep -q "rollback L1: FAILED at: the flag change" "$work/stderr" || fail "ladder-refused: the failed step is named"
code=$(ladder ladder-usage L5)
[ "$code" = 2 ] || fail "ladder-usage: exit $code (expected 2)"

# usage errors
code=$(deploy --soak x)
[ "$code" = 2 ] || fail "usage: exit $code (expected 2)"

if [ "$failures" -gt 0 ]; then
    echo "deploy.sh tests: $failures failed" >&2
    exit 1
fi
echo "deploy.sh tests: success, rollback, rollback-incomplete, no-data, no-traffic, phase-2 and phase-4 failures (and a failed sync-legacy), dry-run, the rollback ladder L1–L4, usage — all passed"
