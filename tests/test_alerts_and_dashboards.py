"""Alert rules with promtool, the Alertmanager example with amtool, and the dashboards' shape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
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


def test_dashboards_are_generated_from_generate_py():
    sys.path.insert(0, str(ROOT / "dashboards"))
    try:
        import generate
    finally:
        sys.path.pop(0)
    rendered = generate.render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text() == rendered[path.name], (
            f"{path.name} is stale: run dashboards/generate.py"
        )


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
