"""The sharded StatefulSet manifest: valid Kubernetes objects, and the shard each pod takes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exporter.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
SHARDED = ROOT / "deploy" / "kubernetes" / "sharded" / "exporter-sharded.yaml"


def objects() -> list[dict]:
    return list(yaml.safe_load_all(SHARDED.read_text()))


def test_core_objects_validate_strictly_against_the_kubernetes_schemas(tmp_path: Path):
    pytest.importorskip("kubernetes_validate")
    core = [o for o in objects() if not o["apiVersion"].startswith("monitoring.coreos.com")]
    assert {o["kind"] for o in core} == {"ServiceAccount", "ConfigMap", "StatefulSet", "Service"}
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    tool = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).with_name("kubernetes-validate")
    )
    done = subprocess.run(
        [tool, "--strict", "-k", "1.30.0", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" passed for resource ") == 4, done.stdout
    # The same check refuses a typo (strict: unknown fields are errors), so it is not vacuous.
    broken = [dict(o) for o in core]
    sts = next(o for o in broken if o["kind"] == "StatefulSet")
    sts["spec"] = {**sts["spec"], "replica": 3}
    path.write_text(yaml.safe_dump_all(broken))
    done = subprocess.run(
        [tool, "--strict", "-k", "1.30.0", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "replica" in done.stdout + done.stderr


def test_each_pod_takes_its_shard_from_its_name_and_the_config_from_the_configmap(tmp_path: Path):
    by_kind = {o["kind"]: o for o in objects()}
    sts = by_kind["StatefulSet"]
    replicas = sts["spec"]["replicas"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert "--shard=$(POD_NAME)" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    config = tmp_path / "workspaces.yaml"
    text = by_kind["ConfigMap"]["data"]["workspaces.yaml"]
    config.write_text(text.replace("/var/lib/databricks-exporter/state.json", ""))
    assert yaml.safe_load(text)["total_shards"] == replicas
    served = []
    for ordinal in range(replicas):
        pod = f"{sts['metadata']['name']}-{ordinal}"
        settings = load_settings(["--config", str(config), f"--shard={pod}"], {})
        assert settings.workspaces, f"{pod} would serve no workspace: a poor example"
        served.extend(w.name for w in settings.workspaces)
    names = [w["name"] for w in yaml.safe_load(text)["workspaces"]]
    assert sorted(served) == sorted(names)  # every workspace on exactly one pod
