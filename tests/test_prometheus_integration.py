"""Dashboards and alerts against a real Prometheus and Alertmanager (Debian's packages) scraping
the real exporter, which watches the loopback simulator; Alertmanager posts to a fake Slack."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from conftest import free_port
from fake_slack import FakeSlack

from databricks_simulator import FaultRule

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None,
    reason="Debian's prometheus and prometheus-alertmanager (installed by .ci/run)",
)
# Grafana's variables as the test substitutes them: every workspace and job, short windows.
SUBSTITUTIONS = {
    "$workspace": ".*",
    "$job": ".*",
    "$__rate_interval": "1m",
    "$__range": "5m",
    "$__interval": "15s",
    "$autotermination": "10",
}


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Daemon:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._out.close()


@pytest.fixture
def stack(tmp_path: Path, make_sim, exporter) -> Iterator[dict[str, Any]]:
    # 20 ordinary jobs, most runs failing, some repaired: some job ends on a failure (each job's
    # last run fails with p ~ 0.35, so all 20 succeed with p ~ 0.0002).
    sim = make_sim(
        jobs=24,
        fail_rate=0.9,
        one_time_jobs=3,
        continuous_jobs=1,
        continuous_run_seconds=3600,
        repair_rate=0.4,
        repair_delay_seconds=0.5,
        repair_seconds=0.5,
        pool_error_rate=1.0,
        # Lakeflow pipelines with an update every few seconds, most of them failing: some
        # pipeline's last update has failed whenever the panels are asked.
        pipelines=3,
        pipeline_period_seconds=(4.0, 8.0),
        pipeline_fail_rate=0.8,
    )
    sim.add_faults(
        FaultRule(path_prefix="/api/2.2/jobs/runs/list", status=429, retry_after=0, count=3)
    )
    # The shipped example price table, less one node type: the pools without a price panel.
    prices = yaml.safe_load((ROOT / "deploy" / "azure-vm-prices.example.yml").read_text())
    del prices["prices"]["node_types"]["Standard_F4s_v2"]
    config = tmp_path / "exporter.yml"
    config.write_text(
        yaml.safe_dump(
            {
                **prices,
                "workspaces": [{"name": "demo", "host": sim.url, "token_env": "SIM_TOKEN"}],
            }
        )
    )
    proc = exporter(["--interval", "1", "--config", str(config)], {"SIM_TOKEN": sim.token})
    proc.wait_ready()
    slack = FakeSlack().__enter__()
    am_port, prom_port = free_port(), free_port()
    am_config = yaml.safe_load((ROOT / "alerts" / "alertmanager.example.yml").read_text())
    am_config["route"].update(group_wait="1s", group_interval="1s")
    am_config["receivers"][0]["slack_configs"][0]["api_url"] = slack.webhook_url
    am_config["templates"] = [str(ROOT / "alerts" / "databricks.slack.tmpl")]
    (tmp_path / "am.yml").write_text(yaml.safe_dump(am_config))
    am = Daemon(
        [
            ALERTMANAGER,
            f"--config.file={tmp_path / 'am.yml'}",
            f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        tmp_path / "alertmanager.log",
    )
    prom_config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "alerts" / "databricks.rules.yml")],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
        },
        "scrape_configs": [
            {
                "job_name": "databricks-exporter",
                "static_configs": [{"targets": [f"127.0.0.1:{proc.port}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
    prom = Daemon(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        tmp_path / "prometheus.log",
    )
    prom_url, am_url = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}"
    try:
        wait_until(
            lambda: requests.get(prom_url + "/-/ready", timeout=2).ok, 60, "Prometheus ready"
        )
        wait_until(
            lambda: requests.get(am_url + "/-/ready", timeout=2).ok, 60, "Alertmanager ready"
        )
        yield {
            "sim": sim,
            "exporter": proc,
            "slack": slack,
            "prometheus": prom_url,
            "alertmanager": am_url,
            "logs": (prom.log, am.log),
        }
    finally:
        prom.stop()
        am.stop()
        slack.__exit__()


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    response = requests.get(prom + "/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body.get("status") == "success", f"{expr}\n{body}"
    return body["data"]["result"]


def panel_queries() -> Iterator[tuple[str, str, str]]:
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for var, value in SUBSTITUTIONS.items():
                    expr = expr.replace(var, value)
                yield path.name, panel["title"], expr


def test_every_panel_returns_data_and_the_failed_job_alert_reaches_slack(stack):
    prom = stack["prometheus"]
    wait_until(lambda: query(prom, "databricks_job_runs_total"), 60, "counted runs in Prometheus")
    wait_until(
        lambda: query(prom, "databricks_exporter_api_retries_total"), 30, "retries in Prometheus"
    )
    wait_until(
        lambda: query(prom, "databricks_pipeline_updates_total"), 60, "pipeline updates counted"
    )
    # Counting starts at zero when the exporter starts, and a series that Prometheus has seen
    # once has no increase() yet: panels such as "Top failing jobs" fill as the runs end, after
    # a few cycles. Wait for that (bounded) instead of sleeping for a guess.
    deadline = time.monotonic() + 90
    while True:
        empty = [
            (board, title, expr) for board, title, expr in panel_queries() if not query(prom, expr)
        ]
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert empty == [], (
        "panels without data after 90 s:\n"
        + "\n".join(map(str, empty))
        + f"\nruns counted: {query(prom, 'sum by (result_state) (databricks_job_runs_total)')}"
        + f"\nexporter log (tail):\n{stack['exporter'].output()[-4000:]}"
    )
    for board, title, expr in panel_queries():
        assert not re.search(r"\$\w+", expr), (board, title, expr)

    requests.post(stack["sim"].url + "/sim/stop", json={}, timeout=5)  # freeze the last runs
    # Runs still active, and repairs of failed ones, settle each job's last run first.
    wait_until(lambda: stack["sim"].model.active_count() == 0, 30, "the last runs to end")
    time.sleep(3)
    failed = wait_until(
        lambda: query(prom, "databricks_job_last_run_failed == 1"), 30, "a failed job"
    )
    job_ids = {r["metric"]["job_id"] for r in failed}

    def firing() -> list[dict[str, Any]]:
        alerts = requests.get(prom + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "DatabricksJobRunFailed"
            and a["state"] == "firing"
            and a["labels"]["job_id"] in job_ids
        ]

    alerts = wait_until(firing, 150, "DatabricksJobRunFailed to fire")
    alert = alerts[0]
    job_id = alert["labels"]["job_id"]
    (info,) = query(prom, f'databricks_job_last_run_info{{job_id="{job_id}"}}')
    url = info["metric"]["run_page_url"]
    assert url.startswith("https://adb-") and url in alert["annotations"]["description"]
    assert alert["annotations"]["run_page_url"] == url
    assert alert["labels"]["job_name"] == info["metric"]["job_name"]

    def slack_got_it() -> list[dict[str, Any]]:
        return [m for m in stack["slack"].messages if url in json.dumps(m)]

    messages = wait_until(slack_got_it, 60, "Alertmanager to post to Slack")
    text = json.dumps(messages[0])
    assert "Open the Databricks run" in text and info["metric"]["job_name"] in text
