"""Alert rules with promtool, the Alertmanager example with amtool, and the dashboards' shape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from exporter import outcomes

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alerts" / "databricks.rules.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool comes from Debian's prometheus"
)
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))


def alerts() -> list[dict]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


@needs_promtool
def test_promtool_check_rules():
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass():
    tests = sorted((ROOT / "alerts" / "tests").glob("*.test.yml"))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", *map(str, tests)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests)


def test_every_alert_has_for_severity_summary_description_dashboard_and_a_unit_test():
    tested = "\n".join(p.read_text() for p in (ROOT / "alerts" / "tests").glob("*.test.yml"))
    for rule in alerts():
        name = rule["alert"]
        assert rule.get("for"), name
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert {"summary", "description", "dashboard"} <= set(rule["annotations"]), name
        assert f"alertname: {name}" in tested, f"{name} has no promtool test"


@pytest.mark.skipif(
    shutil.which("amtool") is None, reason="amtool comes from Debian's prometheus-alertmanager"
)
def test_alertmanager_example_is_valid():
    config = ROOT / "alerts" / "alertmanager.example.yml"
    result = subprocess.run(["amtool", "check-config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_files_are_current():
    from mixin import generate

    rendered = generate.render()
    for relative, text in rendered.items():
        assert (ROOT / relative).read_text() == text, f"{relative} is stale: run make mixin"
    assert sorted(f"dashboards/{p.name}" for p in DASHBOARDS) == sorted(
        r for r in rendered if r.startswith("dashboards/")
    )


# A metric in PromQL: a name, then maybe its matchers (label names in by/on lists never start
# with these prefixes).
METRIC = re.compile(r"\b(databricks_\w+|up)\b(\{[^}]*\})?")


def selectors_of(expr: str) -> list[tuple[str, str]]:
    return [(m[1], m[2] or "") for m in METRIC.finditer(expr)]


def test_a_users_config_reaches_every_query_and_threshold(tmp_path: Path):
    """Regenerated for another scrape job and other thresholds, every panel and rule query
    selects that job and the rules carry the new thresholds."""
    from mixin import generate

    config = tmp_path / "mine.yml"
    config.write_text(
        'selector: \'job="dbx", namespace="data"\'\n'
        "grafana_url: https://grafana.example.com/\n"
        "thresholds: {failed_runs: 5, failed_runs_window: 12h, not_succeeded_hours: 50,\n"
        "             stuck_hours: 3, idle_cost_per_day: 250, not_succeeding_periods: 5,\n"
        "             near_timeout_ratio: 0.2, near_timeout_min_minutes: 10}\n"
    )
    out = tmp_path / "out"
    assert generate.main(["--config", str(config), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "dashboards").iterdir()) == [p.name for p in DASHBOARDS]
    exprs = []
    for path in (out / "dashboards").glob("*.json"):
        board = json.loads(path.read_text())
        exprs += [t["expr"] for p in board["panels"] for t in p["targets"]]
        exprs += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    rules = yaml.safe_load((out / "databricks.rules.yml").read_text())
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    exprs += [r["expr"] for r in by_name.values()]
    found = [s for e in exprs for s in selectors_of(e)]
    assert len(found) > 70
    assert [f for f in found if 'job="dbx", namespace="data"' not in f[1]] == []
    assert 'job="databricks-exporter"' not in (out / "databricks.rules.yml").read_text()
    assert "[12h])\n) >= 5" in by_name["DatabricksJobFailingRepeatedly"]["expr"]
    assert "> 50 * 3600" in by_name["DatabricksJobNotSucceededRecently"]["expr"]
    assert "(threshold 3h)" in by_name["DatabricksJobRunStuck"]["annotations"]["description"]
    assert by_name["DatabricksPoolIdleCostHigh"]["expr"].rstrip().endswith("> 250")
    assert by_name["DatabricksJobRunSlow"]["expr"].count("> 600") == 1  # default kept
    quiet = by_name["DatabricksScheduledJobNotSucceeding"]["expr"]
    assert quiet.count("5 * databricks_job_schedule_interval_seconds") == 3
    near = by_name["DatabricksJobRunNearTimeout"]["expr"]
    assert (
        'clamp_min(0.2 * databricks_job_timeout_seconds{job="dbx", namespace="data"}, 600)' in near
    )
    link = by_name["DatabricksExporterDown"]["annotations"]["dashboard"]
    assert link == "https://grafana.example.com/d/databricks-exporter/databricks-exporter"
    kube = yaml.safe_load((out / "prometheusrule.yaml").read_text())
    assert kube["spec"]["groups"] == rules["groups"]
    jobs = json.loads((out / "dashboards" / "databricks-jobs.json").read_text())
    stuck = next(p for p in jobs["panels"] if p["title"] == "Oldest active run")
    steps = stuck["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": 3 * 3600}
    if PROMTOOL:
        result = subprocess.run(
            [PROMTOOL, "check", "rules", str(out / "databricks.rules.yml")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("selector: ''\n", "selector is required"),
        ("selector: '{job=\"x\"}'\n", "without braces"),
        ("selectr: 'job=\"x\"'\n", "unknown keys ['selectr']"),
        ("thresholds: {stuck_hour: 3}\n", "unknown keys ['stuck_hour']"),
        ("thresholds: {stuck_hours: -1}\n", "thresholds.stuck_hours must be a number >= 0"),
        ("thresholds: {stuck_hours: 'six'}\n", "thresholds.stuck_hours must be a number"),
        ("thresholds: {failed_runs_window: 6}\n", "failed_runs_window must be a duration"),
        ("[1, 2]\n", "expected a mapping"),
        ("thresholds: [stuck_hours, 3]\n", "thresholds must be a mapping"),
        ("selector: [\n", "while parsing"),
    ],
)
def test_a_bad_config_is_refused_with_what_to_fix(tmp_path: Path, capsys, text: str, message: str):
    from mixin import generate

    config = tmp_path / "bad.yml"
    config.write_text(text)
    assert generate.main(["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_provisioning_ready(path: Path):
    board = json.loads(path.read_text())
    assert board["uid"].startswith("databricks-") and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["workspace"]["multi"] and variables["workspace"]["includeAll"]
    assert board["links"] and board["links"][0]["tags"] == ["databricks"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        for target in panel["targets"]:
            assert 'workspace=~"$workspace"' in target["expr"], (panel["title"], target["expr"])


def test_alert_dashboard_links_point_at_existing_dashboards():
    uids = {json.loads(p.read_text())["uid"] for p in DASHBOARDS}
    for rule in alerts():
        uid = rule["annotations"]["dashboard"].split("/")[2]
        assert uid in uids, rule["alert"]


def test_alert_rules_use_the_one_definition_of_failed():
    text = (ROOT / "alerts" / "databricks.rules.yml").read_text()
    matchers = re.findall(r'result_state=~"[^"]*"', text)
    assert matchers and set(matchers) == {outcomes.promql_matcher(outcomes.FAILED)}


def test_readme_outcome_tables_say_what_the_code_does():
    readme = (ROOT / "README.md").read_text()
    for result, (outcome, _) in outcomes.RESULT_STATES.items():
        assert re.search(rf"^\| `{result}` \| {outcome} \|", readme, re.M), result
    table = readme[readme.index("| termination code") :].split("\n\n")[0].splitlines()
    for code, result in outcomes.TERMINATION_CODES.items():
        row = next(line for line in table if f"`{code}`" in line.split(" | ")[0])
        assert row.rstrip().endswith(f"| `{result}` |"), (code, row)


def test_every_alert_has_a_runbook_section_its_runbook_url_names():
    readme = (ROOT / "README.md").read_text()
    runbooks = readme[readme.index("### Runbooks") :]
    headings = set(re.findall(r"^#### (\w+)$", runbooks, flags=re.M))
    rules = yaml.safe_load((ROOT / "alerts" / "databricks.rules.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert set(alerts) == headings
    for name, rule in alerts.items():
        assert rule["annotations"]["runbook_url"] == f"README.md#{name.lower()}"
