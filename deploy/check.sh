#!/usr/bin/env bash
# Offline checks of everything under deploy/ (run by .ci/run):
#   - every kustomization renders (kubectl kustomize), and every built-in resource kind in it
#     passes kubernetes-validate --strict (Istio and Argo resources are custom kinds it has no
#     schema for; their queries are exercised against a real Prometheus by the test suite);
#   - yamllint; the Grafana dashboard is JSON;
#   - promtool check rules and promtool test rules;
#   - shellcheck on every shell script; the deploy.sh golden tests.
# Needs: kubectl, kubernetes-validate (PyPI), yamllint, promtool (Debian prometheus),
# ShellCheck and python3. A missing tool fails the check.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in kubectl kubernetes-validate yamllint promtool shellcheck python3; do
    command -v "$tool" >/dev/null || { echo "deploy checks need $tool" >&2; exit 1; }
done
step() { printf '\n== %s\n' "$*"; }
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT

step "kustomize + kubernetes-validate"
for kustomization in deploy/k8s/overlays/blue deploy/k8s/overlays/green deploy/k8s/istio deploy/k8s/rollout \
    deploy/k8s/monitoring; do
    out="$rendered/$(echo "$kustomization" | tr / _).yaml"
    kubectl kustomize "$kustomization" >"$out"
    kinds=$(grep -c '^kind:' "$out")
    echo "$kustomization: $kinds resources"
    kubernetes-validate --strict --quiet "$out"
done
# The base must carry what the issue asks of a production Deployment.
deployment="$rendered/deploy_k8s_overlays_green.yaml"
for expected in 'replicas: 3' 'memory: 256Mi' 'memory: 512Mi' 'cpu: 250m' 'cpu: 500m' \
    'path: /health/live' 'path: /health/ready' 'periodSeconds: 30' 'periodSeconds: 10' \
    'kind: HorizontalPodAutoscaler' 'kind: PodDisruptionBudget' 'kind: NetworkPolicy' \
    'name: unified-attributes-secrets' 'prometheus.io/scrape: "true"'; do
    grep -qF -- "$expected" "$deployment" || { echo "green overlay lacks: $expected" >&2; exit 1; }
done

step "monitoring: PrometheusRule = rules.yml, the dashboard's uid, the sidecar's label"
python3 deploy/prometheus/prometheusrule.py --check
python3 - "$rendered/deploy_k8s_monitoring.yaml" deploy/k8s/monitoring/unified-attributes-dashboard.json <<'PY'
import json, sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1], encoding="utf-8"))}
rule = docs["PrometheusRule"]
assert rule["apiVersion"] == "monitoring.coreos.com/v1", rule["apiVersion"]
for group in rule["spec"]["groups"]:
    assert group["name"] and group["rules"], group
    for r in group["rules"]:
        assert ("alert" in r) != ("record" in r) and r["expr"], r
dashboard = docs["ConfigMap"]
assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1", dashboard["metadata"]
uid = json.load(open(sys.argv[2], encoding="utf-8"))["uid"]
assert uid == "unified-attrs", f"the seed's dashboard uid is unified-attrs, not {uid}"
print("PrometheusRule and dashboard ConfigMap: structure checked; dashboard uid unified-attrs")
PY

step "Argo Rollouts: one Rollout over the base workload, routed by the subsets it manages"
python3 - "$rendered/deploy_k8s_rollout.yaml" <<'PY'
import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1], encoding="utf-8")))
by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
rollout = by[("Rollout", "unified-attributes")]["spec"]
ref = rollout["workloadRef"]
deployment = by[(ref["kind"], ref["name"])]["spec"]
template_labels = deployment["template"]["metadata"]["labels"]
for key, value in rollout["selector"]["matchLabels"].items():
    assert template_labels.get(key) == value, f"the Rollout's selector misses the pods: {key}"
canary = rollout["strategy"]["canary"]
istio = canary["trafficRouting"]["istio"]
rule = by[("DestinationRule", istio["destinationRule"]["name"])]["spec"]
subsets = {s["name"]: s for s in rule["subsets"]}
wanted = {istio["destinationRule"]["stableSubsetName"], istio["destinationRule"]["canarySubsetName"]}
assert set(subsets) == wanted, f"subsets {set(subsets)} vs {wanted}"
assert all("labels" not in s for s in subsets.values()), "Argo manages the subsets' labels"
service = by[("VirtualService", istio["virtualService"]["name"])]["spec"]
routes = {r["name"]: r for r in service["http"]}
for name in istio["virtualService"]["routes"]:
    assert {d["destination"]["subset"] for d in routes[name]["route"]} == wanted, name
for template in canary["analysis"]["templates"]:
    assert ("AnalysisTemplate", template["templateName"]) in by, template
assert canary["canaryMetadata"]["labels"]["version"] == canary["analysis"]["args"][0]["value"]
hpa = by[("HorizontalPodAutoscaler", "unified-attributes")]["spec"]["scaleTargetRef"]
assert hpa["kind"] == "Rollout", f"the HPA must scale the Rollout, not {hpa['kind']}"
assert "workloadRef" in rollout and "template" not in rollout
print("Rollout: selector matches the workload, subsets stable/canary unlabelled, routes, analysis, HPA checked")
PY

step "yamllint"
yamllint --strict deploy .yamllint

step "promtool"
promtool check rules deploy/prometheus/rules.yml
promtool test rules deploy/prometheus/rules_test.yml

step "shellcheck"
shellcheck deploy/deploy.sh deploy/rollback.sh deploy/rehearsal/run.sh deploy/check.sh deploy/tests/run.sh deploy/tests/fakes/* .ci/run \
    scripts/*.sh deploy/image/*.sh benches/load/run.sh benches/backfill/run.sh

step "deploy.sh golden tests"
deploy/tests/run.sh
