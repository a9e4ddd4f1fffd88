#!/usr/bin/env bash
# The seed's rollback ladder, one level per call. Start at the lowest level that stops the harm
# (RUNBOOK.md says which symptom calls for which):
#   L1 feature flag (~30 s)   reads back to legacy. --via flags (default): a runtime change,
#                             heard by every replica within a second; --via env: the seed's
#                             `kubectl set env … USE_UNIFIED_ATTRIBUTES=false` — the pods
#                             restart and the first applies it as an audited runtime change
#   L2 traffic switch (~1 min) the Istio routing back to blue 100 %
#   L3 rollout undo (~5 min)   `kubectl rollout undo` of green: the previous image and settings
#   L4 data (~15 min)          legacy brought up to date from unified (dual-write on, reverse
#                             sync, verify), then L1; --restore-archive first moves the archived
#                             legacy tables back. Never a pg_dump restore: it loses every write
#                             made since the dump.
# Every command is printed; with --dry-run nothing runs. Prints the level's time at the end.
#
# Usage: deploy/rollback.sh L1|L2|L3|L4 [--via flags|env] [--restore-archive]
#                           [--namespace NS] [--dry-run]
# Environment: KUBECTL (default kubectl).
# Exit codes: 0 done; 1 a step failed (the output says which); 2 usage.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
level=""
via=flags
restore_archive=false
namespace=marketplace
dry_run=false
while [ $# -gt 0 ]; do
    case "$1" in
        L1 | L2 | L3 | L4) level=$1 ;;
        --via) via=${2:?--via needs flags or env}; shift ;;
        --restore-archive) restore_archive=true ;;
        --namespace) namespace=${2:?--namespace needs a value}; shift ;;
        --dry-run) dry_run=true ;;
        -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$level" ] || { echo "which level? L1, L2, L3 or L4 (see --help)" >&2; exit 2; }
case "$via" in flags | env) ;; *) echo "--via is flags or env" >&2; exit 2 ;; esac

kubectl=${KUBECTL:-kubectl}
green=unified-attributes-green
started=$(date +%s)

run() {
    printf '+ %s\n' "$*"
    if ! $dry_run; then
        "$@"
    fi
}

step_failed() {
    echo "rollback ${level}: FAILED at: $*" >&2
    exit 1
}

in_green() {
    run "$kubectl" -n "$namespace" exec "deploy/$green" -- unified-attributes "$@"
}

level_1() {
    if [ "$via" = env ]; then
        run "$kubectl" -n "$namespace" set env "deployment/$green" USE_UNIFIED_ATTRIBUTES=false ||
            step_failed "kubectl set env"
        run "$kubectl" -n "$namespace" rollout status "deployment/$green" --timeout=120s ||
            step_failed "the restarted pods did not become ready"
        # The first pod applied it, or the guardrails refused it (its log says so): show which.
        in_green flags || step_failed "reading the flags"
    else
        in_green flags --set '{"use_unified": false}' --actor rollback.sh ||
            step_failed "the flag change (refused: the rule is printed above; after unified-only writes use L4)"
    fi
}

level_2() {
    # Applied first, so the routing exists whatever state it was left in, then moved.
    run "$kubectl" -n "$namespace" apply -k "$here/k8s/istio" || step_failed "applying the Istio routing"
    run "$kubectl" -n "$namespace" patch virtualservice unified-attributes --type=json -p \
        '[{"op":"replace","path":"/spec/http/1/route/0/weight","value":100},{"op":"replace","path":"/spec/http/1/route/1/weight","value":0}]' ||
        step_failed "moving the weights"
}

level_3() {
    run "$kubectl" -n "$namespace" rollout undo "deployment/$green" || step_failed "kubectl rollout undo"
    run "$kubectl" -n "$namespace" rollout status "deployment/$green" --timeout=300s ||
        step_failed "the previous revision did not become ready"
}

level_4() {
    if $restore_archive; then
        in_green restore-archive || step_failed "restore-archive"
    fi
    in_green flags --set '{"dual_write": true}' --actor rollback.sh || step_failed "dual-write on"
    in_green sync-legacy || step_failed "sync-legacy (exit 1 means a write raced it: run L4 again)"
    in_green verify || step_failed "verify found drift after the sync"
    via=flags
    level_1
}

case "$level" in
    L1) level_1 ;;
    L2) level_2 ;;
    L3) level_3 ;;
    L4) level_4 ;;
esac
echo "rollback ${level}: done in $(($(date +%s) - started)) s"
