"""Writes deploy/k8s/monitoring/prometheusrule.yaml from deploy/prometheus/rules.yml (the
file promtool tests), or with --check fails when the two differ. Needs PyYAML.

The alerts' `runbook_url` is a path in this repository in rules.yml; the PrometheusRule gets it
absolute, under RUNBOOK_BASE_URL (where the team reads this repository's files; the default is
the one checked in — set it to yours and regenerate)."""
import os
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent
RULES = DEPLOY / "prometheus" / "rules.yml"
TARGET = DEPLOY / "k8s" / "monitoring" / "prometheusrule.yaml"
DEFAULT_RUNBOOK_BASE_URL = "https://git.marketplace.internal/marketplace/unified-attributes/-/blob/main"
HEADER = """\
# The alert and recording rules of deploy/prometheus/rules.yml as a PrometheusRule for the
# Prometheus Operator. Generated — do not edit: deploy/check.sh fails when it differs from
# rules.yml. Regenerate with `python3 deploy/prometheus/prometheusrule.py`.
"""


class Indented(yaml.SafeDumper):
    """Indents list items under their key, as yamllint expects."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def absolute_runbooks(rules: dict, base: str) -> dict:
    for group in rules["groups"]:
        for rule in group["rules"]:
            annotations = rule.get("annotations", {})
            if "runbook_url" in annotations and "://" not in annotations["runbook_url"]:
                annotations["runbook_url"] = f"{base.rstrip('/')}/{annotations['runbook_url']}"
    return rules


def rendered() -> str:
    base = os.environ.get("RUNBOOK_BASE_URL", DEFAULT_RUNBOOK_BASE_URL)
    rules = absolute_runbooks(yaml.safe_load(RULES.read_text(encoding="utf-8")), base)
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "unified-attributes",
            "labels": {"app.kubernetes.io/name": "unified-attributes"},
        },
        "spec": rules,
    }
    body = yaml.dump(doc, Dumper=Indented, sort_keys=False, allow_unicode=True, width=150)
    return HEADER + body


if __name__ == "__main__":
    text = rendered()
    if sys.argv[1:] == ["--check"]:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if yaml.safe_load(current) != yaml.safe_load(text):
            sys.exit(f"{TARGET} differs from {RULES}: run python3 {__file__}")
        print("PrometheusRule matches rules.yml")
    else:
        TARGET.write_text(text, encoding="utf-8")
        print(f"wrote {TARGET}")
