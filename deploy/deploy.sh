#!/usr/bin/env bash
# The five-phase deployment of the unified attributes service, with health gates and an
# automatic rollback when a gate fails:
#   1 preparation   backup (pg_dump), verify legacy = unified, install the alert rules and the
#                   dashboard (k8s/monitoring), monitoring is up
#   2 green         deploy the green colour, wait for it, validate it, apply the Istio routing
#   3 switch        move traffic and the unified read share 10 → 25 → 50 → 100 %, a gate after each
#   4 finalize      dual-write off, fallback off (the unified phase), validate
#   5 cleanup       archive the legacy tables, scale the blue colour down — only when asked
#                   (--to-phase 5), in a later run once the unified phase has soaked: `archive`
#                   waits ARCHIVE_SOAK_HOURS (24) after the switch and is refused before
# Every command is printed; with --dry-run nothing runs. A report is written at the end, and
# SLACK_WEBHOOK_URL (a Slack-compatible incoming webhook) hears of every phase. A gate that sees
# no user traffic on green is inconclusive, never a pass: it soaks again (--gate-retries times),
# then the deploy pauses where it is, without a rollback, for a human (exit 3).
#
# Usage: deploy/deploy.sh [--dry-run] [--image-tag TAG] [--namespace NS] [--report FILE]
#                         [--soak SECONDS] [--from-phase N] [--to-phase N (default 4)] [--gate-retries N]
# Environment: DATABASE_URL (backup), PROMETHEUS_URL, ADMIN_API_TOKEN, SLACK_WEBHOOK_URL,
#   KUBECTL (default kubectl), BACKUP_DIR (default .).
# Exit codes: 0 deployed; 1 a gate failed and the rollback ran; 2 usage or a failed command;
#   3 paused: a gate stayed inconclusive (no user traffic on green); 4 a gate failed and a step
#   of the rollback failed (the message names what is left to do by hand, in order).
# ROLLBACK_FLAG_ATTEMPTS (5): how often a rollback tries each flag change, 2 s apart.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dry_run=false
image_tag=""
namespace=marketplace
report=""
soak=60
from_phase=1
to_phase=4
gate_retries=2
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=true ;;
        --image-tag) image_tag=${2:?--image-tag needs a value}; shift ;;
        --namespace) namespace=${2:?--namespace needs a value}; shift ;;
        --report) report=${2:?--report needs a value}; shift ;;
        --soak) soak=${2:?--soak needs a value}; shift ;;
        --from-phase) from_phase=${2:?--from-phase needs a value}; shift ;;
        --to-phase) to_phase=${2:?--to-phase needs a value}; shift ;;
        --gate-retries) gate_retries=${2:?--gate-retries needs a value}; shift ;;
        -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$soak" in '' | *[!0-9]*) echo "--soak must be a number of seconds" >&2; exit 2 ;; esac
case "$gate_retries" in '' | *[!0-9]*) echo "--gate-retries must be a number" >&2; exit 2 ;; esac
case "$from_phase" in [1-5]) ;; *) echo "--from-phase must be 1 to 5" >&2; exit 2 ;; esac
case "$to_phase" in [1-5]) ;; *) echo "--to-phase must be 1 to 5" >&2; exit 2 ;; esac

kubectl=${KUBECTL:-kubectl}
prometheus=${PROMETHEUS_URL:-http://prometheus.monitoring.svc.cluster.local:9090}
backup_dir=${BACKUP_DIR:-.}
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
report=${report:-deploy-report-$(date -u +%Y%m%dT%H%M%SZ).md}
green=unified-attributes-green
blue=unified-attributes-blue
# The admin API listens on the internal port inside the pod.
internal=http://127.0.0.1:9090
phase_rows=()

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# Prints a command, then runs it unless this is a dry run.
run() {
    printf '+ %s\n' "$*"
    if ! $dry_run; then
        "$@"
    fi
}

# Tells the team, when a webhook is configured. A failed notification never stops a deploy.
notify() {
    local text="unified-attributes deploy (${namespace}): $*"
    log "$text"
    [ -n "${SLACK_WEBHOOK_URL:-}" ] || return 0
    local payload
    payload=$(python3 -c 'import json, sys; print(json.dumps({"text": sys.argv[1]}))' "$text")
    if $dry_run; then
        printf '+ curl -X POST %s (%s)\n' "[webhook]" "$payload"
        return 0
    fi
    curl -fsS -m 10 -X POST -H 'Content-Type: application/json' --data "$payload" \
        "$SLACK_WEBHOOK_URL" >/dev/null || log "notification failed (ignored)"
}

# Runs the service binary inside a green pod (it has the database settings).
in_green() {
    run "$kubectl" -n "$namespace" exec "deploy/$green" -- unified-attributes "$@"
}

# Changes the runtime flags (stored in the database, audited, heard by every replica within a
# second; a change that breaks a guardrail is refused).
set_flags() {
    in_green flags --set "$1" --actor deploy.sh
}

# What a rollback could not do, as commands to run by hand, in order: a rollback never reports
# success over a step that failed.
rollback_unfinished=()
rollback_flags_unchanged=false

# Runs one step of a rollback; $1 is what to run by hand when it fails.
rollback_step() {
    local by_hand=$1
    shift
    "$@" && return 0
    rollback_unfinished+=("$by_hand")
    return 1
}

# A rollback's flag change must land, and it is needed most when the database is slow: the
# change waits for the writes in flight (up to the lock timeout) and can time out while a slow
# colour still holds them. Tried again, 2 s apart, once the traffic has moved; returns 1 when
# it never landed.
rollback_flag_attempts=${ROLLBACK_FLAG_ATTEMPTS:-5}
set_flags_for_rollback() {
    local attempt
    for attempt in $(seq 1 "$rollback_flag_attempts"); do
        set_flags "$1" && return 0
        log "rollback: flags ${1} not changed (attempt ${attempt} of ${rollback_flag_attempts})"
        [ "$attempt" -lt "$rollback_flag_attempts" ] && sleep 2
    done
    rollback_unfinished+=("unified-attributes flags --set '$1'")
    rollback_flags_unchanged=true
    return 1
}

# A Prometheus query's single value ("" when there is none).
prometheus_value() {
    curl -fsS -m 10 --get "$prometheus/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json, sys
result = json.load(sys.stdin)["data"]["result"]
print(result[0]["value"][1] if result else "")'
}

# Gate: the green colour's error ratio and p95 over the soak window, on user traffic only (the
# service leaves probes and scrapes out of its request metrics). Returns 0 pass, 1 fail, and
# 2 inconclusive when green served no user request in the window: silence is never a pass.
metrics_gate() {
    $dry_run && { printf '+ gate: green user traffic > 0, error ratio <= 0.01, p95 <= 0.1 s (Prometheus)\n'; return 0; }
    local traffic errors p95
    traffic=$(prometheus_value 'sum(rate(unified_attributes_requests_total{version="green"}[2m]))') || return 1
    if ! python3 -c 'import sys; v = sys.argv[1]; sys.exit(0 if v not in ("", "NaN") and float(v) > 0 else 1)' "$traffic"; then
        log "gate: inconclusive, no user traffic on green"
        return 2
    fi
    # No 5xx at all means no 5xx series: read as 0 (else a clean green could never pass).
    errors=$(prometheus_value '(sum(rate(unified_attributes_requests_total{version="green",status="5xx"}[2m])) or vector(0)) / sum(rate(unified_attributes_requests_total{version="green"}[2m]))') || return 1
    p95=$(prometheus_value 'histogram_quantile(0.95, sum by (le) (rate(unified_attributes_response_time_bucket{version="green"}[2m])))') || return 1
    log "gate: green requests/s=${traffic} error ratio=${errors:-none} p95=${p95:-none}"
    python3 -c 'import math, sys
e, p = sys.argv[1], sys.argv[2]
ok = e not in ("", "NaN") and p not in ("", "NaN") and float(e) <= 0.01 and float(p) <= 0.1
sys.exit(0 if ok else 1)' "$errors" "$p95"
}

# Soaks, then gates; an inconclusive gate soaks and looks again, up to --gate-retries times,
# then pauses the deploy (exit 3) where it is. Returns 1 when the gate failed.
soak_and_gate() {
    local phase=$1 where=$2 attempt=0 verdict
    while true; do
        soak_for
        verdict=0
        metrics_gate || verdict=$?
        [ "$verdict" = 2 ] || return "$verdict"
        if [ "$attempt" -ge "$gate_retries" ]; then
            pause "$phase" "gate inconclusive ${where}: no user traffic on green"
        fi
        attempt=$((attempt + 1))
        notify "phase ${phase}: gate inconclusive ${where} (no user traffic on green); soaking again"
    done
}

# Stops without a rollback: nothing failed, the evidence is missing. Re-run with --from-phase.
pause() {
    local phase=$1 reason=$2
    notify "phase ${phase} PAUSED: ${reason}; nothing rolled back — check the traffic, then re-run with --from-phase ${phase}"
    record "$phase" paused "$reason"
    write_report "paused in phase ${phase} (inconclusive)"
    exit 3
}

# Routes `weight` percent of the traffic to green (the rest to blue).
set_weights() {
    local to_green=$1
    run "$kubectl" -n "$namespace" patch virtualservice unified-attributes --type=json -p \
        "[{\"op\":\"replace\",\"path\":\"/spec/http/1/route/0/weight\",\"value\":$((100 - to_green))},{\"op\":\"replace\",\"path\":\"/spec/http/1/route/1/weight\",\"value\":${to_green}}]"
}

soak_for() {
    if $dry_run || [ "$soak" = 0 ]; then
        printf '+ sleep %s\n' "$soak"
    else
        sleep "$soak"
    fi
}

record() { phase_rows+=("| $1 | $2 | $3 |"); }

write_report() {
    local outcome=$1
    {
        echo "# Deployment report"
        echo
        echo "- namespace: ${namespace}"
        echo "- image tag: ${image_tag:-unchanged}"
        echo "- started: ${started_at}; finished: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "- dry run: ${dry_run}"
        echo "- outcome: ${outcome}"
        echo
        echo "| phase | result | detail |"
        echo "|---|---|---|"
        printf '%s\n' "${phase_rows[@]}"
    } >"$report"
    log "report: $report"
}

# A gate failed in `phase`: undo what that phase and the earlier ones changed, up to the
# ladder level that phase needs, then stop with exit code 1.
rollback() {
    local phase=$1 reason=$2
    notify "phase ${phase} FAILED: ${reason}; rolling back"
    record "$phase" failed "$reason"
    case "$phase" in
        5)
            # The archive is one transaction: a failed one moved nothing. Back to phase 3.
            ;;
        4)
            # Unified-only writes may have happened: dual-write first, then bring legacy up to
            # date (the guardrails refuse legacy fallback until then), then fallback again.
            # A step that failed leaves the ones after it to the operator, in this order.
            local fallback_by_hand="unified-attributes flags --set '{\"fallback\": true}'"
            if ! set_flags_for_rollback '{"dual_write": true}'; then
                rollback_unfinished+=("unified-attributes sync-legacy" "$fallback_by_hand")
            elif ! rollback_step "unified-attributes sync-legacy" in_green sync-legacy; then
                rollback_unfinished+=("$fallback_by_hand")
            else
                set_flags_for_rollback '{"fallback": true}' || true
            fi
            ;;
        3)
            rollback_step "traffic back to blue: weight 0 on green (RUNBOOK.md, L2)" set_weights 0 || true
            set_flags_for_rollback '{"use_unified": false, "unified_percent": 0, "fallback": true, "dual_write": true}' || true
            ;;
        2)
            rollback_step "kubectl -n ${namespace} scale deployment ${green} --replicas=0" \
                run "$kubectl" -n "$namespace" scale deployment "$green" --replicas=0 || true
            ;;
    esac
    if [ ${#rollback_unfinished[@]} -gt 0 ]; then
        local why="a step failed" left
        $rollback_flags_unchanged && why="the flags were not changed"
        left=$(printf '%s; ' "${rollback_unfinished[@]}")
        notify "phase ${phase} rollback INCOMPLETE: ${why}; left to do by hand, in order: ${left%; }; see RUNBOOK.md"
        record "$phase" "rollback incomplete" "left to do: ${left%; }"
        write_report "rollback incomplete in phase ${phase}"
        exit 4
    fi
    notify "phase ${phase} rolled back"
    record "$phase" "rolled back" "see RUNBOOK.md"
    write_report "rolled back in phase ${phase}"
    exit 1
}

phase_1() {
    notify "phase 1 (preparation) started"
    local backup
    backup="${backup_dir}/unified-attributes-$(date -u +%Y%m%dT%H%M%SZ).dump"
    run pg_dump --format=custom --file="$backup" "${DATABASE_URL:?DATABASE_URL is needed for the backup}" ||
        rollback 1 "backup failed"
    # Green is not there yet: the running colour checks the stores.
    run "$kubectl" -n "$namespace" exec "deploy/$blue" -- unified-attributes verify ||
        rollback 1 "verify found drift between legacy and unified (run the backfill first)"
    # The alert rules (PrometheusRule) and the dashboard (ConfigMap for the Grafana sidecar).
    run "$kubectl" -n "$namespace" apply -k "$here/k8s/monitoring" ||
        rollback 1 "the alert rules and the dashboard could not be installed"
    if ! $dry_run; then
        curl -fsS -m 10 "$prometheus/-/ready" >/dev/null || rollback 1 "Prometheus is not ready"
    else
        printf '+ curl %s/-/ready\n' "$prometheus"
    fi
    record 1 passed "backup ${backup}; verify clean; rules and dashboard installed; monitoring up"
    notify "phase 1 (preparation) passed"
}

phase_2() {
    notify "phase 2 (green deployment) started"
    local overlay="$here/k8s/overlays/green"
    if [ -n "$image_tag" ]; then
        run "$kubectl" -n "$namespace" apply -k "$overlay" || rollback 2 "apply failed"
        run "$kubectl" -n "$namespace" set image "deployment/$green" "unified-attributes=unified-attributes:${image_tag}" ||
            rollback 2 "image update failed"
    else
        run "$kubectl" -n "$namespace" apply -k "$overlay" || rollback 2 "apply failed"
    fi
    run "$kubectl" -n "$namespace" rollout status "deployment/$green" --timeout=300s ||
        rollback 2 "green did not become ready"
    in_green validate --base-url http://127.0.0.1:8080 --internal-url "$internal" --expect-phase dual_write ||
        rollback 2 "post-deployment validation of green failed"
    # The routing phase 3 moves: the Service over both colours, the subsets, the weights
    # (all on blue until phase 3 patches them).
    run "$kubectl" -n "$namespace" apply -k "$here/k8s/istio" || rollback 2 "the Istio routing could not be applied"
    record 2 passed "green ready and validated; routing applied (blue 100 %)"
    notify "phase 2 (green deployment) passed"
}

phase_3() {
    notify "phase 3 (progressive switch) started"
    local percent
    for percent in 10 25 50 100; do
        set_weights "$percent" || rollback 3 "weights not applied at ${percent} %"
        set_flags "{\"dual_write\": true, \"use_unified\": true, \"unified_percent\": ${percent}, \"fallback\": true}" ||
            rollback 3 "flags not applied at ${percent} %"
        soak_and_gate 3 "at ${percent} %" || rollback 3 "health gate failed at ${percent} %"
        notify "phase 3: ${percent} % on green and unified reads, gate passed"
    done
    record 3 passed "10 → 25 → 50 → 100 %, every gate passed"
    notify "phase 3 (progressive switch) passed"
}

phase_4() {
    notify "phase 4 (finalization) started"
    set_flags '{"dual_write": false, "fallback": false}' || rollback 4 "flags not applied"
    in_green validate --base-url http://127.0.0.1:8080 --internal-url "$internal" --expect-phase unified ||
        rollback 4 "validation in the unified phase failed"
    soak_and_gate 4 "in the unified phase" || rollback 4 "health gate failed in the unified phase"
    record 4 passed "dual-write and fallback off; validated"
    notify "phase 4 (finalization) passed"
}

phase_5() {
    notify "phase 5 (cleanup) started"
    # Unified values of listings and products the marketplace deleted meanwhile (it owns them
    # and may hard-delete): removed before the final state is archived and validated.
    in_green sweep-orphans || rollback 5 "sweep-orphans failed"
    # Refused unless the flags mean the unified phase and the last verify (phase 1) is clean.
    in_green archive || rollback 5 "archive refused or failed"
    # The final, archived state is validated too (read-only: ids from the database).
    in_green validate --base-url http://127.0.0.1:8080 --internal-url "$internal" --expect-phase archived ||
        rollback 5 "validation of the archived phase failed"
    run "$kubectl" -n "$namespace" scale deployment "$blue" --replicas=0 ||
        rollback 5 "blue did not scale down"
    record 5 passed "legacy tables archived (manifest in archive_manifests); blue scaled to 0"
    notify "phase 5 (cleanup) passed"
}

for phase in 1 2 3 4 5; do
    if [ "$phase" -lt "$from_phase" ] || [ "$phase" -gt "$to_phase" ]; then
        continue
    fi
    "phase_${phase}"
done
if [ "$to_phase" -lt 5 ]; then
    stopped="stopped after phase ${to_phase}"
    [ "$to_phase" = 4 ] && stopped="${stopped}: the archive (phase 5) waits until the unified phase has soaked; then run deploy.sh --from-phase 5 --to-phase 5"
    write_report "$stopped"
    notify "deployment $stopped"
    exit 0
fi
write_report "deployed"
notify "deployment finished: unified phase, legacy archived"
