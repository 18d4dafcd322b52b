"""The Alertmanager side speaks the callbacks' words: alerts/databricks.slack.tmpl rendered by
Alertmanager's own amtool for a DatabricksJobRunFailed, and the example's route that keeps an
Airflow-triggered job's failure in the callbacks' thread only."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from airflow_callbacks.message import RUN_PAGE

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "alerts" / "databricks.slack.tmpl"
RUN_URL = "https://adb-1.7.azuredatabricks.net/?o=1#job/1234/run/987654"


def render(tmp_path: Path, alert: dict) -> str:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool (Debian's prometheus-alertmanager) is not installed")
    data = {
        "receiver": "slack-data-platform",
        "status": alert["status"],
        "alerts": [alert],
        "groupLabels": {},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://127.0.0.1:9093",
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    done = subprocess.run(
        [
            amtool,
            "template",
            "render",
            f"--template.glob={TEMPLATE}",
            f"--template.data={path}",
            '--template.text={{ template "databricks.slack.text" . }}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def job_failed(status: str = "firing", **annotations: str) -> dict:
    return {
        "status": status,
        "labels": {
            "alertname": "DatabricksJobRunFailed",
            "job_name": "nightly_load",
            "job_id": "1234",
            "workspace": "prod",
        },
        "annotations": {
            "summary": "Databricks job nightly_load failed (FAILED)",
            "description": "The last run 987654 of job nightly_load ended FAILED.",
            "run_page_url": RUN_URL,
            "dashboard": "/d/databricks-jobs/databricks-jobs?var-job=nightly_load",
            **annotations,
        },
    }


def test_a_failed_job_run_has_the_run_page_repair_dashboard_and_runbook_in_the_callbacks_words(
    tmp_path,
):
    text = render(tmp_path, job_failed(runbook_url="https://wiki.example.com/runbooks/dbx"))
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0] == "*Databricks job nightly_load failed (FAILED)*"
    assert f"• Run page: <{RUN_URL}|{RUN_PAGE}>" in lines
    assert any(line.startswith("• Repair: on the run page") for line in lines)
    assert "• Dashboard: `/d/databricks-jobs/databricks-jobs?var-job=nightly_load`" in lines
    assert "• Runbook: <https://wiki.example.com/runbooks/dbx|Runbook>" in lines


def test_the_default_relative_runbook_is_shown_as_text_not_a_broken_link(tmp_path):
    text = render(tmp_path, job_failed(runbook_url="README.md#databricksjobrunfailed"))
    assert "• Runbook: `README.md#databricksjobrunfailed`" in text.splitlines()


def test_a_resolved_alert_or_one_without_a_runbook_leaves_those_lines_out(tmp_path):
    text = render(tmp_path, job_failed("resolved", dashboard="https://grafana.example.com/d/x"))
    assert "• Repair:" not in text and "• Runbook:" not in text
    assert "• Dashboard: <https://grafana.example.com/d/x|Dashboard>" in text


def test_the_example_drops_job_failures_labelled_airflow_and_keeps_the_rest():
    config = yaml.safe_load((ROOT / "alerts" / "alertmanager.example.yml").read_text())
    first = config["route"]["routes"][0]
    assert first["receiver"] == "null"
    assert first["matchers"] == ['alertname = "DatabricksJobRunFailed"', 'orchestrator = "airflow"']
    assert {"name": "null"} in config["receivers"]
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool is not installed")
    path = str(ROOT / "alerts" / "alertmanager.example.yml")

    def receiver(*labels: str) -> str:
        done = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={path}", *labels],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout.strip()

    assert receiver("alertname=DatabricksJobRunFailed", "orchestrator=airflow") == "null"
    assert receiver("alertname=DatabricksJobRunFailed", "job_name=x") == "slack-data-platform"
    assert receiver("alertname=DatabricksPoolAtMaxCapacity", "orchestrator=airflow") == (
        "slack-data-platform"
    )
