"""The Helm chart deploy/helm/databricks-exporter: what each values file renders, that the
objects are valid (Kubernetes' schemas, prometheus-operator's CRD schemas, helm lint), that
the config it writes is one the exporter accepts, and that values.schema.json refuses bad
values."""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml

import exporter
from exporter import config as exporter_config
from exporter.collectors import collector_names
from exporter.config import load_settings, shard_of

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "databricks-exporter"
VALUES = Path(__file__).resolve().parent / "helm-values"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
VALUES_FILES = sorted(p.name for p in VALUES.glob("*.yaml"))
RELEASE, NAMESPACE = "databricks-exporter", "monitoring"
STATE_DIR = "/var/lib/databricks-exporter"
PAT = re.compile(r"dapi[0-9a-fA-F]{32}")  # a Databricks personal access token


def values_of(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((VALUES / name).read_text())
    return loaded


def render(values: dict[str, Any], name: str = RELEASE) -> list[dict[str, Any]]:
    """Every object the chart renders with these values (NOTES.txt left out)."""
    with helm_python.Chart.load(CHART) as chart:
        manifests = chart.render(copy.deepcopy(values), name=name, namespace=NAMESPACE)
    found = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            found += [doc for doc in yaml.safe_load_all(text) if doc]
    return found


@functools.cache
def _rendered_file(name: str) -> str:
    return json.dumps(render(values_of(name)))


def rendered(name: str) -> list[dict[str, Any]]:
    """The objects of a values file under tests/helm-values/ (rendered once per session)."""
    objects: list[dict[str, Any]] = json.loads(_rendered_file(name))
    return objects


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds: dict[str, dict[str, Any]] = {}
    for obj in objects:
        assert obj["kind"] not in kinds, f"two {obj['kind']} objects"
        kinds[obj["kind"]] = obj
    return kinds


def workload(kinds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return kinds.get("Deployment") or kinds["StatefulSet"]


def container(kinds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = workload(kinds)["spec"]["template"]["spec"]["containers"]
    return only


def config_of(kinds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(kinds["ConfigMap"]["data"]["config.yaml"])
    return loaded


# -- the chart itself -----------------------------------------------------------------------


def test_chart_version_and_app_version_are_the_exporters():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == chart["appVersion"] == exporter.__version__


def test_the_chart_rules_file_is_the_generated_alert_rules_file():
    from mixin import generate

    chart_copy = CHART / "files" / "databricks.rules.yml"
    assert str(chart_copy.relative_to(ROOT)) == generate.CHART_RULES
    assert chart_copy.read_text() == generate.render()[generate.CHART_RULES]
    assert chart_copy.read_text() == (ROOT / "alerts" / "databricks.rules.yml").read_text()


def test_the_chart_defaults_alone_are_refused_naming_workspaces():
    with pytest.raises(helm_python.HelmValuesError, match="/workspaces"):
        render({})


def test_defaults_are_those_of_the_plain_manifest():
    """Resources, security contexts and probes as deploy/kubernetes/exporter.yaml."""
    plain = {
        d["kind"]: d for d in yaml.safe_load_all((ROOT / "deploy/kubernetes/exporter.yaml").open())
    }
    plain_pod = plain["Deployment"]["spec"]["template"]["spec"]
    (plain_container,) = plain_pod["containers"]
    kinds = by_kind(rendered("minimal.yaml"))
    pod = workload(kinds)["spec"]["template"]["spec"]
    ours = container(kinds)
    assert ours["resources"] == plain_container["resources"]
    assert ours["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"memory": "384Mi"},
    }
    for key in ("livenessProbe", "readinessProbe"):
        assert ours[key] == plain_container[key]
    assert ours["securityContext"] == plain_container["securityContext"]
    assert ours["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert plain_pod["securityContext"].items() <= pod["securityContext"].items()
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ours["ports"][0]["containerPort"] == 9180
    assert kinds["Service"]["spec"]["ports"][0]["port"] == 9180
    assert kinds["PersistentVolumeClaim"]["spec"] == plain["PersistentVolumeClaim"]["spec"]


# -- validity of what each values file renders ----------------------------------------------

CORE = {"ServiceAccount", "ConfigMap", "Service"}
OPERATOR = {"ServiceMonitor", "PrometheusRule"}
EXPECTED_KINDS = {
    "minimal.yaml": CORE | {"PersistentVolumeClaim", "Deployment"},
    "workload-identity.yaml": CORE | {"PersistentVolumeClaim", "Deployment"} | OPERATOR,
    "pat-secret.yaml": CORE | {"PersistentVolumeClaim", "Deployment"},
    "persistence-off.yaml": CORE | {"Deployment"},
    "sharded.yaml": CORE | {"StatefulSet"} | OPERATOR,
    "kube-prometheus-stack.yaml": CORE | {"PersistentVolumeClaim", "Deployment"} | OPERATOR,
    "network-policy.yaml": CORE | {"PersistentVolumeClaim", "Deployment", "NetworkPolicy"},
    "tls-basic-auth.yaml": CORE | {"PersistentVolumeClaim", "Deployment"} | OPERATOR,
    "mtls.yaml": CORE | {"PersistentVolumeClaim", "Deployment"} | OPERATOR,
}
WITH_OPERATOR = sorted(name for name, kinds in EXPECTED_KINDS.items() if kinds >= OPERATOR)


def test_every_values_file_has_its_expected_kinds():
    assert sorted(EXPECTED_KINDS) == VALUES_FILES
    for name, kinds in EXPECTED_KINDS.items():
        assert sorted(o["kind"] for o in rendered(name)) == sorted(kinds), name


def kubernetes_validate(
    objects: list[dict[str, Any]], tmp_path: Path
) -> subprocess.CompletedProcess:
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    tool = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).with_name("kubernetes-validate")
    )
    return subprocess.run(
        [tool, "--strict", "-k", "1.30.0", str(path)], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("name", VALUES_FILES)
def test_core_objects_validate_strictly_against_the_kubernetes_schemas(name: str, tmp_path: Path):
    core = [o for o in rendered(name) if not o["apiVersion"].startswith("monitoring.coreos.com/")]
    done = kubernetes_validate(core, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" passed for resource ") == len(core), done.stdout


def test_kubernetes_validate_refuses_a_typo_in_a_rendered_object(tmp_path: Path):
    core = [o for o in rendered("sharded.yaml") if o["kind"] == "StatefulSet"]
    core[0]["spec"]["replica"] = core[0]["spec"].pop("replicas")
    done = kubernetes_validate(core, tmp_path)
    assert done.returncode != 0 and "replica" in done.stdout + done.stderr


def closed(schema: Any) -> Any:
    """The schema with every object that lists its properties closed to others, as the API
    server's strict field validation treats unknown fields (a CRD schema leaves them open)."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    file = {"ServiceMonitor": "servicemonitor", "PrometheusRule": "prometheusrule"}[kind]
    schema = json.loads((SCHEMAS / f"{file}-monitoring.coreos.com-v1.json").read_text())
    return jsonschema.Draft7Validator(closed(schema))


@pytest.mark.parametrize("name", WITH_OPERATOR)
def test_servicemonitor_and_prometheusrule_validate_against_the_operators_crd_schemas(name: str):
    kinds = by_kind(rendered(name))
    for kind in ("ServiceMonitor", "PrometheusRule"):
        obj = kinds[kind]
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        errors = [e.message for e in crd_validator(kind).iter_errors(obj)]
        assert not errors, f"{kind}: {errors}"


def test_the_crd_schemas_refuse_a_typo_and_a_wrong_type():
    kinds = by_kind(rendered("kube-prometheus-stack.yaml"))
    monitor = copy.deepcopy(kinds["ServiceMonitor"])
    monitor["spec"]["endpoints"][0]["intervall"] = "60s"
    assert not crd_validator("ServiceMonitor").is_valid(monitor)
    rule = copy.deepcopy(kinds["PrometheusRule"])
    rule["spec"]["groups"][0]["rules"][0]["for"] = 5
    assert not crd_validator("PrometheusRule").is_valid(rule)


@pytest.mark.parametrize("name", VALUES_FILES)
def test_helm_lint_strict_has_no_error_or_warning(name: str):
    report = helm_python.lint(CHART, values_of(name), strict=True, kube_version="v1.30.0")
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report["messages"]


def test_helm_lint_reports_what_is_wrong():
    report = helm_python.lint(CHART, {"workspaces": []}, strict=True, kube_version="v1.30.0")
    assert any(m["severity"] == 3 and "workspaces" in m["error"] for m in report["messages"])


@pytest.mark.parametrize("name", VALUES_FILES)
def test_the_rendered_config_and_flags_are_accepted_by_the_exporters_loader(
    name: str, tmp_path: Path
):
    """The ConfigMap's YAML with the container's arguments, as the pod would run them (the
    state directory in tmp_path, $(POD_NAME) the first pod's, the Secret's keys set)."""
    kinds = by_kind(rendered(name))
    ours = container(kinds)
    path = tmp_path / "config.yaml"
    path.write_text(kinds["ConfigMap"]["data"]["config.yaml"])
    pod = f"{workload(kinds)['metadata']['name']}-0"
    args = [
        a.replace("/etc/databricks-exporter/config.yaml", str(path))
        .replace(STATE_DIR, str(tmp_path))
        .replace("$(POD_NAME)", pod)
        for a in ours["args"]
    ]
    env = {
        v: "not-a-real-secret"
        for w in config_of(kinds)["workspaces"]
        for k, v in w.items()
        if k.endswith("_env")
    }
    settings = load_settings(args, env)
    assert settings.total_shards == values_of(name).get("sharding", {}).get("shards", 1)
    persistent = values_of(name).get("persistence", {}).get("enabled", True)
    assert settings.state_file == (tmp_path / "state.json" if persistent else None)
    assert settings.collectors == tuple(
        c for c in collector_names() if values_of(name).get("collectors", {}).get(c, True)
    )
    for key, value in values_of(name).get("config", {}).items():  # each reaches the exporter
        expected = {"45s": 45.0}.get(value, value) if isinstance(value, str) else value
        got = getattr(settings, key)
        assert (list(got) if isinstance(got, tuple) else got) == expected, key
    assert {w.name for w in settings.workspaces} == {
        w["name"]
        for w in values_of(name)["workspaces"]
        if shard_of(w["name"], settings.total_shards) == 0
    }


# -- what each setting does -----------------------------------------------------------------


def test_a_single_exporter_is_a_deployment_of_one_with_its_state_on_a_pvc():
    kinds = by_kind(rendered("minimal.yaml"))
    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    ours = container(kinds)
    assert f"--state-file={STATE_DIR}/state.json" in ours["args"]
    assert "--config=/etc/databricks-exporter/config.yaml" in ours["args"]
    assert {"name": "state", "mountPath": STATE_DIR} in ours["volumeMounts"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = kinds["PersistentVolumeClaim"]["metadata"]["name"]
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == claim
    assert volumes["config"]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    assert config_of(kinds) == {"workspaces": values_of("minimal.yaml")["workspaces"]}
    assert ours["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert ours["readinessProbe"]["httpGet"]["path"] == "/readyz"
    pod = deployment["spec"]["template"]
    assert "azure.workload.identity/use" not in pod["metadata"]["labels"]
    assert "annotations" not in kinds["ServiceAccount"]["metadata"]
    assert pod["spec"]["serviceAccountName"] == kinds["ServiceAccount"]["metadata"]["name"]


def test_persistence_off_has_no_claim_no_state_volume_and_no_state_file():
    kinds = by_kind(rendered("persistence-off.yaml"))
    assert "PersistentVolumeClaim" not in kinds
    ours = container(kinds)
    assert not [a for a in ours["args"] if a.startswith("--state-file")]
    assert "state" not in {m["name"] for m in ours["volumeMounts"]}
    volumes = {v["name"] for v in kinds["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes == {"config", "tmp"}
    sharded = values_of("sharded.yaml") | {"persistence": {"enabled": False}}
    sts = by_kind(render(sharded))["StatefulSet"]
    assert "volumeClaimTemplates" not in sts["spec"]


def test_a_collector_turned_off_becomes_its_flag():
    kinds = by_kind(rendered("persistence-off.yaml"))
    assert "--no-collector.pools" in container(kinds)["args"]
    assert not [a for a in container(kinds)["args"] if "collector.runs" in a]
    assert not [a for a in container(by_kind(rendered("minimal.yaml")))["args"] if "collector" in a]


def test_the_jobs_collector_is_toggled_and_configured_like_the_others():
    base = values_of("minimal.yaml")
    kinds = by_kind(render(base | {"collectors": {"jobs": False}}))
    assert "--no-collector.jobs" in container(kinds)["args"]
    config = {"jobs_interval": "15m", "job_tags": ["team", "cost-center"]}
    kinds = by_kind(render(base | {"config": config}))
    assert config_of(kinds)["jobs_interval"] == "15m"
    assert config_of(kinds)["job_tags"] == ["team", "cost-center"]
    assert not [a for a in container(kinds)["args"] if "collector" in a]


def test_workload_identity_annotates_the_service_account_and_labels_the_pods():
    kinds = by_kind(rendered("workload-identity.yaml"))
    assert kinds["ServiceAccount"]["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000001",
        "azure.workload.identity/tenant-id": "00000000-0000-0000-0000-0000000000aa",
    }
    pod = kinds["Deployment"]["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["serviceAccountName"] == kinds["ServiceAccount"]["metadata"]["name"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert config_of(kinds)["interval"] == 60 and config_of(kinds)["lookback_hours"] == 48
    # The user's own service account: the pods still carry the label and use that account.
    values = values_of("workload-identity.yaml") | {
        "serviceAccount": {"create": False, "name": "my-identity"}
    }
    kinds = by_kind(render(values))
    assert "ServiceAccount" not in kinds
    pod = kinds["Deployment"]["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == "my-identity"
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"


def test_secrets_come_from_existing_secrets_and_never_appear_in_a_manifest():
    kinds = by_kind(rendered("pat-secret.yaml"))
    ours = container(kinds)
    assert ours["envFrom"] == [{"secretRef": {"name": "databricks-exporter-pats"}}]
    env = {e["name"]: e for e in ours["env"]}
    assert env["PROD_SP_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "databricks-sp",
        "key": "client-secret",
    }
    assert "value" not in env["PROD_SP_SECRET"]
    assert [w.get("token_env") for w in config_of(kinds)["workspaces"]] == [
        "DEV_DATABRICKS_PAT",
        "QA_DATABRICKS_PAT",
        None,
    ]
    for name in VALUES_FILES:
        objects = rendered(name)
        assert "Secret" not in {o["kind"] for o in objects}, name
        assert not PAT.search(json.dumps(objects)), name
        for obj in objects:
            for c in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                for e in c.get("env", []):
                    assert "value" not in e or not re.search("(?i)token|secret", e["name"])


def test_sharded_is_a_statefulset_of_shards_each_with_its_state_and_its_workspaces(
    tmp_path: Path,
):
    kinds = by_kind(rendered("sharded.yaml"))
    assert "Deployment" not in kinds and "PersistentVolumeClaim" not in kinds
    sts = kinds["StatefulSet"]
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == kinds["Service"]["metadata"]["name"]
    ours = container(kinds)
    assert "--shard=$(POD_NAME)" in ours["args"]
    env = {e["name"]: e for e in ours["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert config_of(kinds)["total_shards"] == 3
    (template,) = sts["spec"]["volumeClaimTemplates"]
    assert template["metadata"]["name"] == "state"
    assert template["spec"]["storageClassName"] == "managed-csi"
    assert template["spec"]["resources"]["requests"]["storage"] == "64Mi"
    assert {"name": "state", "mountPath": STATE_DIR} in ours["volumeMounts"]
    assert "state" not in {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}
    # Each pod, named <statefulset>-<ordinal>, takes its shard: every workspace on one pod.
    path = tmp_path / "config.yaml"
    path.write_text(kinds["ConfigMap"]["data"]["config.yaml"])
    served = []
    for ordinal in range(3):
        pod = f"{sts['metadata']['name']}-{ordinal}"
        settings = load_settings(["--config", str(path), f"--shard={pod}"], {})
        assert settings.workspaces, f"{pod} would serve no workspace: a poor example"
        served += [w.name for w in settings.workspaces]
    assert sorted(served) == sorted(w["name"] for w in values_of("sharded.yaml")["workspaces"])


def test_changing_the_config_changes_the_pod_template():
    """The ConfigMap's checksum on the pod template: helm upgrade restarts the exporter."""

    def checksum(values: dict[str, Any]) -> str:
        pod = by_kind(render(values))["Deployment"]["spec"]["template"]
        annotation: str = pod["metadata"]["annotations"]["checksum/config"]
        return annotation

    base = values_of("minimal.yaml")
    assert checksum(base) == checksum(base)
    assert checksum(base) != checksum(base | {"config": {"interval": 120}})


def test_kube_prometheus_stack_selects_the_servicemonitor_and_the_rules():
    kinds = by_kind(rendered("kube-prometheus-stack.yaml"))
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert kinds[kind]["metadata"]["labels"]["release"] == "kube-prometheus-stack", kind
        assert kinds[kind]["metadata"]["namespace"] == NAMESPACE
    (endpoint,) = kinds["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint["port"] == kinds["Service"]["spec"]["ports"][0]["name"] == "metrics"
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "15s")
    selector = kinds["ServiceMonitor"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= kinds["Service"]["metadata"]["labels"].items()
    assert selector.items() <= workload(kinds)["spec"]["template"]["metadata"]["labels"].items()
    others = by_kind(rendered("workload-identity.yaml"))
    assert "release" not in others["ServiceMonitor"]["metadata"]["labels"]
    assert "release" not in others["PrometheusRule"]["metadata"]["labels"]


@pytest.mark.parametrize("release", [RELEASE, "obs"])
def test_the_job_label_is_the_one_the_rules_select_whatever_the_release(release: str):
    kinds = by_kind(render(values_of("kube-prometheus-stack.yaml"), name=release))
    label = kinds["ServiceMonitor"]["spec"]["jobLabel"]
    job = kinds["Service"]["metadata"]["labels"][label]
    selector = yaml.safe_load((ROOT / "mixin" / "config.yml").read_text())["selector"]
    assert f'job="{job}"' in selector
    rules = json.dumps(kinds["PrometheusRule"]["spec"]["groups"])
    assert f"up{{{selector}}}".replace('"', '\\"') in rules
    if release != RELEASE:
        assert kinds["Service"]["metadata"]["name"] == f"{release}-databricks-exporter"


@pytest.mark.parametrize("name", WITH_OPERATOR)
def test_the_prometheusrule_groups_are_the_alert_rules(name: str):
    rule = by_kind(rendered(name))["PrometheusRule"]
    rules = yaml.safe_load((ROOT / "alerts" / "databricks.rules.yml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]


def test_servicemonitor_and_prometheusrule_are_off_by_default_and_each_turns_on_alone():
    """Off by default, so the chart installs on a cluster without the operator's CRDs."""
    assert not {o["kind"] for o in rendered("minimal.yaml")} & OPERATOR
    for kind, key in (("ServiceMonitor", "serviceMonitor"), ("PrometheusRule", "prometheusRule")):
        values = values_of("minimal.yaml") | {key: {"enabled": True}}
        assert {o["kind"] for o in render(values)} & OPERATOR == {kind}


def test_network_policy_admits_the_chosen_scrapers_and_lets_out_only_dns_and_https():
    assert "NetworkPolicy" not in by_kind(rendered("minimal.yaml"))
    kinds = by_kind(rendered("network-policy.yaml"))
    policy = kinds["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= (
        workload(kinds)["spec"]["template"]["metadata"]["labels"].items()
    )
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert ingress["from"] == values_of("network-policy.yaml")["networkPolicy"]["ingressFrom"]
    ports = [
        (p["protocol"], p["port"], bool(rule.get("to")))
        for rule in policy["egress"]
        for p in rule["ports"]
    ]
    assert sorted(ports) == [("TCP", 53, True), ("TCP", 443, False), ("UDP", 53, True)]


def test_image_tag_defaults_to_app_version_and_a_digest_pins_it():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    image = container(by_kind(rendered("minimal.yaml")))["image"]
    assert image == f"ghcr.io/example/databricks-jobs-exporter:{chart['appVersion']}"
    digest = "sha256:" + "a" * 64
    values = values_of("minimal.yaml") | {
        "image": {"repository": "registry.example.com/dbx", "tag": "0.1.0-rc1", "digest": digest}
    }
    assert (
        container(by_kind(render(values)))["image"]
        == f"registry.example.com/dbx:0.1.0-rc1@{digest}"
    )


def test_web_config_comes_from_its_secret_and_probes_and_scrapes_speak_its_tls():
    plain = by_kind(rendered("minimal.yaml"))
    assert not any(a.startswith("--web.config.file") for a in container(plain)["args"])
    assert (
        by_kind(rendered("kube-prometheus-stack.yaml"))["ServiceMonitor"]["spec"]["endpoints"][0][
            "scheme"
        ]
        == "http"
    )
    kinds = by_kind(rendered("tls-basic-auth.yaml"))
    ours = container(kinds)
    assert "--web.config.file=/etc/databricks-exporter-web/web-config.yml" in ours["args"]
    (mount,) = [m for m in ours["volumeMounts"] if m["name"] == "web"]
    assert mount == {"name": "web", "mountPath": "/etc/databricks-exporter-web", "readOnly": True}
    (volume,) = [
        v for v in workload(kinds)["spec"]["template"]["spec"]["volumes"] if v["name"] == "web"
    ]
    assert volume["secret"]["secretName"] == "databricks-exporter-web"
    for probe in ("livenessProbe", "readinessProbe"):
        assert ours[probe]["httpGet"]["scheme"] == "HTTPS"  # no credentials: README
    endpoint = kinds["ServiceMonitor"]["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"]["key"] == "ca.crt"
    assert endpoint["basicAuth"]["password"] == {
        "name": "databricks-exporter-scrape",
        "key": "password",
    }
    mtls = container(by_kind(rendered("mtls.yaml")))
    assert "--web.config.file=/etc/databricks-exporter-web/web.yml" in mtls["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert "httpGet" not in mtls[probe] and mtls[probe]["tcpSocket"] == {"port": "metrics"}


def test_a_tls_servicemonitor_without_a_ca_is_refused_naming_tlsconfig():
    values = values_of("tls-basic-auth.yaml")
    del values["serviceMonitor"]["tlsConfig"]
    with pytest.raises(Exception, match=r"serviceMonitor\.tlsConfig"):
        render(values)


def test_extra_args_and_env_reach_the_container():
    values = values_of("minimal.yaml") | {
        "extraArgs": ["--lookback-hours=48"],
        "extraEnv": [{"name": "LOG_LEVEL", "value": "DEBUG"}],
        "extraEnvFrom": [{"configMapRef": {"name": "proxy"}}],
    }
    ours = container(by_kind(render(values)))
    assert ours["args"][-1] == "--lookback-hours=48"
    assert {"name": "LOG_LEVEL", "value": "DEBUG"} in ours["env"]
    assert ours["envFrom"] == [{"configMapRef": {"name": "proxy"}}]


# -- values.schema.json ---------------------------------------------------------------------

# Each bad value, and where the error names it.
BAD_VALUES: dict[str, tuple[str, dict[str, Any]]] = {
    "an unknown top-level key": ("'workspace' not allowed", {"workspace": []}),
    "a wrong type": ("/service/port", {"service": {"port": "http"}}),
    "no shard": ("/sharding/shards", {"sharding": {"enabled": True, "shards": 0}}),
    "shards as text": ("/sharding/shards", {"sharding": {"enabled": True, "shards": "3"}}),
    "a token in clear in a workspace": (
        "'token' not allowed",
        {
            "workspaces": [
                {"name": "dev", "host": "https://adb-2.2.azuredatabricks.net", "token": "x"}
            ]
        },
    ),
    "a client secret in clear in a workspace": (
        "'client_secret' not allowed",
        {
            "workspaces": [
                {"name": "dev", "host": "https://adb-2.2.azuredatabricks.net", "client_secret": "x"}
            ]
        },
    ),
    "a token in clear in extraEnv": (
        "/extraEnv/0",
        {"extraEnv": [{"name": "DATABRICKS_TOKEN", "value": "x"}]},
    ),
    "a secret in clear in extraEnv": (
        "/extraEnv/0",
        {"extraEnv": [{"name": "PROD_SP_SECRET", "value": "x"}]},
    ),
    "a PAT as the value of any variable": (
        "/extraEnv/0/value",
        {"extraEnv": [{"name": "SOMETHING", "value": "dapi0123456789abcdef0123456789abcdef"}]},
    ),
    "a PAT in extraArgs": (
        "/extraArgs/0",
        {"extraArgs": ["--token=dapi0123456789abcdef0123456789abcdef"]},
    ),
    "a workspace without host": ("missing property 'host'", {"workspaces": [{"name": "dev"}]}),
    "a bad workspace name": (
        "/workspaces/0/name",
        {"workspaces": [{"name": "dev workspace", "host": "https://adb-2.2.azuredatabricks.net"}]},
    ),
    "an unknown config key": ("'intervall' not allowed", {"config": {"intervall": 60}}),
    "a config key the chart owns": (
        "'state_file' not allowed",
        {"config": {"state_file": "/tmp/state.json"}},
    ),
    "a flag the chart owns": ("/extraArgs/0", {"extraArgs": ["--state-file=/tmp/state.json"]}),
    "a web flag the chart owns": ("/extraArgs/0", {"extraArgs": ["--web.listen-address=:1"]}),
    "an interval of zero": ("/config/interval", {"config": {"interval": 0}}),
    "a web config key the chart owns": (
        "'web_config_file' not allowed",
        {"config": {"web_config_file": "/tmp/web.yml"}},
    ),
    "a basic auth password in clear": (
        "/serviceMonitor/basicAuth",
        {"serviceMonitor": {"basicAuth": {"username": "prometheus", "password": "hunter2"}}},
    ),
    "an unknown web key": ("'tlsSecret' not allowed", {"web": {"tlsSecret": "x"}}),
    "TLS without the web config's Secret": ("/web/existingSecret", {"web": {"tls": True}}),
    "client certificates without TLS": (
        "/web/tls",
        {"web": {"existingSecret": "w", "clientCertificates": True}},
    ),
    "every collector off": (
        "/collectors",
        {"collectors": {"runs": False, "pools": False, "pipelines": False, "jobs": False}},
    ),
    "a jobs interval of zero": ("/config/jobs_interval", {"config": {"jobs_interval": 0}}),
    "job tags that are not a list": ("/config/job_tags", {"config": {"job_tags": "team"}}),
    "more job tags than labels allowed": (
        "/config/job_tags",
        {"config": {"job_tags": [f"t{i}" for i in range(21)]}},
    ),
    "an unknown collector": ("'clusters' not allowed", {"collectors": {"clusters": True}}),
    "workload identity without a client id": (
        "/workloadIdentity/clientId",
        {"workloadIdentity": {"enabled": True}},
    ),
    "a client id that is no uuid": (
        "/workloadIdentity/clientId",
        {"workloadIdentity": {"enabled": True, "clientId": "me"}},
    ),
    "a label that is not text": (
        "/serviceMonitor/additionalLabels/release",
        {"serviceMonitor": {"additionalLabels": {"release": True}}},
    ),
    "a scrape interval that is no duration": (
        "/serviceMonitor/interval",
        {"serviceMonitor": {"interval": "one minute"}},
    ),
    "an existing claim for shards": (
        "/persistence/existingClaim",
        {"sharding": {"enabled": True, "shards": 2}, "persistence": {"existingClaim": "state"}},
    ),
    "a size that is no quantity": ("/persistence/size", {"persistence": {"size": "a lot"}}),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_the_schema_refuses_bad_values(case: str):
    base = values_of("minimal.yaml")
    render(base)  # the same values without the bad one render
    where, bad = BAD_VALUES[case]
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(where)):
        render(base | bad)


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return loaded


def test_the_schema_knows_every_value_and_the_exporters_keys():
    """The schema follows values.yaml and the exporter's own YAML keys and collectors, so a
    new exporter setting cannot be silently refused or let through by the chart."""
    s = schema()
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(s["properties"]) == set(defaults) | {"global"}
    jsonschema.Draft7Validator(s).validate(defaults | values_of("minimal.yaml"))
    workspace = s["definitions"]["workspace"]["properties"]
    assert set(workspace) == exporter_config._YAML_WORKSPACE_KEYS
    owned = {
        "workspaces",
        "state_file",
        "shard",
        "total_shards",
        "collectors",
        "listen_address",
        "port",
        "web_listen_address",
        "web_telemetry_path",
        "web_config_file",
    }
    assert set(s["properties"]["config"]["properties"]) | owned == exporter_config._YAML_TOP_KEYS
    assert set(s["definitions"]["collectors"]["properties"]) == set(collector_names())
    assert set(defaults["collectors"]) == set(collector_names())
