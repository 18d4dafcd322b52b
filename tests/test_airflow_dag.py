"""The callbacks inside a real Airflow task run: apache-airflow 3.x, `dag.test()`, a fake Slack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fake_slack import BOT_TOKEN, FakeSlack

pytest.importorskip("airflow.sdk", reason="apache-airflow is in the test extra")

DAG_FILE = textwrap.dedent(
    """
    import datetime
    from airflow.sdk import DAG, task
    from airflow_callbacks import (
        DatabricksSlackNotifier,
        slack_failure_callback,
        slack_retry_callback,
    )

    with DAG(
        "databricks_etl",
        schedule=None,
        start_date=datetime.datetime(2026, 1, 1),
        catchup=False,
        default_args={"on_failure_callback": slack_failure_callback, "owner": "data-platform"},
    ) as dag:

        @task(task_id="run_databricks_job", retries=0)
        def run_job(**context):
            ti = context["ti"]
            ti.xcom_push(key="run_id", value=123456)
            ti.xcom_push(key="run_page_url", value="https://adb-1.2.azuredatabricks.net/?o=1#job/7/run/123456")
            raise RuntimeError("Databricks run 123456 FAILED: <!channel> boom & bust")

        @task(
            task_id="flaky",
            retries=1,
            retry_delay=datetime.timedelta(seconds=0),
            on_retry_callback=slack_retry_callback,
            on_failure_callback=DatabricksSlackNotifier(
                slack_conn_id="slack_alerts", kind="failure"
            ),
        )
        def flaky():
            raise ValueError("still broken")

        run_job()
        flaky()

    if __name__ == "__main__":
        print("DAGRUN_STATE", dag.test().state)
    """
)


def test_failing_dag_posts_one_alert_per_final_failure(tmp_path: Path):
    home = tmp_path / "airflow"
    dags = home / "dags"
    dags.mkdir(parents=True)
    dag_path = dags / "databricks_etl.py"
    dag_path.write_text(DAG_FILE)
    with FakeSlack() as slack:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AIRFLOW"))},
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "SLACK_WEBHOOK_URL": slack.webhook_url,
            # The notifier's connection, as Airflow reads connections from the environment.
            "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(
                {
                    "conn_type": "slack",
                    "password": BOT_TOKEN,
                    "extra": {"base_url": slack.api_base, "channel": "#data-oncall"},
                }
            ),
        }
        airflow = Path(sys.executable).parent / "airflow"
        migrate = subprocess.run(
            [str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
        )
        assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
        run = subprocess.run(
            [sys.executable, str(dag_path)], env=env, capture_output=True, text=True, timeout=300
        )
        output = run.stdout + run.stderr
        assert "DAGRUN_STATE failed" in output, output[-3000:]
        headers = [m["blocks"][0]["text"]["text"] for m in slack.messages]
    failures = [h for h in headers if "Failed: databricks_etl · run_databricks_job" in h]
    assert len(failures) == 1, headers
    flaky = sorted(h.split(" ", 1)[1].split(":")[0] for h in headers if "flaky" in h)
    assert flaky == ["Failed", "Retrying"], headers  # a retry is not a failure
    # The notifier went through the Airflow connection (Web API), the function through the webhook.
    by_header = {m["blocks"][0]["text"]["text"]: m for m in slack.messages}
    flaky_failed = next(m for h, m in by_header.items() if "Failed" in h and "flaky" in h)
    assert (flaky_failed["via"], flaky_failed["channel"]) == ("api", "#data-oncall")
    message = next(m for h, m in by_header.items() if "run_databricks_job" in h)
    assert message["via"] == "webhook"
    body = json.dumps(message)
    assert "https://adb-1.2.azuredatabricks.net/?o=1#job/7/run/123456" in body
    assert "RuntimeError: Databricks run 123456 FAILED: &lt;!channel&gt; boom &amp; bust" in body
    assert "<!channel>" not in body
    assert "XXXXSECRETXXXX" not in output
