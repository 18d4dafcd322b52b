"""Writes prometheusrule.yaml: the groups of alerts/databricks.rules.yml in a PrometheusRule.

python deploy/kubernetes/generate_prometheusrule.py   # a test checks the file is current
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def render() -> str:
    rules = yaml.safe_load((ROOT / "alerts" / "databricks.rules.yml").read_text())
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "databricks-exporter",
            "namespace": "monitoring",
            "labels": {"app.kubernetes.io/name": "databricks-exporter"},
        },
        "spec": {"groups": rules["groups"]},
    }
    header = (
        "# Generated from alerts/databricks.rules.yml by generate_prometheusrule.py; do not edit.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, width=120, allow_unicode=True)


if __name__ == "__main__":
    (Path(__file__).parent / "prometheusrule.yaml").write_text(render())
