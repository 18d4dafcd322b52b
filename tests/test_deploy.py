"""Deployment files: Kubernetes manifests parse and carry what production needs; rules in sync."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"


def docs() -> dict[str, dict]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[doc["kind"]] = doc
    return found


def test_manifests_have_the_kinds_and_fields_production_needs():
    kinds = docs()
    assert {
        "ServiceAccount",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
    } <= set(kinds)
    assert "azure.workload.identity/client-id" in kinds["ServiceAccount"]["metadata"]["annotations"]
    pod = kinds["Deployment"]["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert "--state-file" in container["args"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/var/lib/databricks-exporter" in mounts
    assert kinds["ServiceMonitor"]["spec"]["endpoints"][0]["port"] == "metrics"


def test_prometheusrule_is_identical_to_the_alert_rules():
    rule = docs()["PrometheusRule"]
    rules = yaml.safe_load((ROOT / "alerts" / "databricks.rules.yml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]
    spec = importlib.util.spec_from_file_location("gen", K8S / "generate_prometheusrule.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (K8S / "prometheusrule.yaml").read_text() == module.render()


def test_dockerfile_is_multi_stage_non_root_with_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") == 2 and "AS build" in text
    assert "USER 10001" in text and "EXPOSE 9180" in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert 'ENTRYPOINT ["databricks-exporter"]' in text
