"""The callbacks inside real Airflow task runs (`dag.test()`): the Databricks provider's real
operators against a fake Databricks reached through an Airflow connection, a fake Slack, under
Airflow 3 (this environment) and Airflow 2.10 (the second environment `make test` builds), each
with the callbacks' wheel installed (never the source tree: the DAG runs outside the repository)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fake_databricks import LEAKED, STATE_MESSAGE, TASK_ERROR, TOKEN, FakeDatabricks
from fake_slack import BOT_TOKEN, FakeSlack
from packaging_support import install_callbacks

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW2 = ROOT / ".venv-airflow2" / "bin" / "python"

DAG_FILE = textwrap.dedent(
    """
    import datetime
    import functools
    import sys

    try:
        from airflow.sdk import DAG, task
    except ImportError:  # Airflow 2
        from airflow import DAG
        from airflow.decorators import task
    from airflow.providers.databricks.operators.databricks import (
        DatabricksRunNowOperator,
        DatabricksSubmitRunOperator,
    )

    import airflow_callbacks
    from airflow_callbacks import (
        slack_dag_failure_callback,
        slack_failure_callback,
        slack_recovery_callback,
        slack_retry_callback,
    )

    NO_WAIT = datetime.timedelta(seconds=0)

    with DAG(
        "databricks_etl",
        schedule=None,
        start_date=datetime.datetime(2026, 1, 1),
        catchup=False,
        on_failure_callback=functools.partial(slack_dag_failure_callback, channel="#dag-runs"),
        default_args={
            "owner": "data-platform",
            "on_failure_callback": slack_failure_callback,
            "on_retry_callback": slack_retry_callback,
            "on_success_callback": slack_recovery_callback,
            "retry_delay": NO_WAIT,
        },
    ) as dag:
        DatabricksRunNowOperator(
            task_id="run_now",
            databricks_conn_id="databricks_prod",
            job_id=11,
            polling_period_seconds=0,
            retries=1,
        )
        DatabricksSubmitRunOperator(
            task_id="submit",
            databricks_conn_id="databricks_prod",
            json={"run_name": "adhoc", "tasks": [{"task_key": "ingest"}]},
            polling_period_seconds=0,
            retries=0,
        )

        @task(task_id="flaky", retries=1)
        def flaky(n, **context):
            if n == 1 and context["ti"].try_number == 1:
                raise ValueError("first try of index 1 fails")

        @task(task_id="steady", retries=1)
        def steady(**context):
            print("STEADY_TRY", context["ti"].try_number)

        @task(task_id="clear_steady", trigger_rule="all_done")
        def clear_steady(**context):
            # What a user's "Clear" does to a task that succeeded: it runs again (try 2).
            from airflow.models.taskinstance import TaskInstance, clear_task_instances
            from airflow.utils.session import create_session

            with create_session() as session:
                tis = (
                    session.query(TaskInstance)
                    .filter_by(dag_id="databricks_etl", run_id=context["run_id"], task_id="steady")
                    .all()
                )
                clear_task_instances(tis, session)

        @task(task_id="fragile", retries=1)
        def fragile(**context):
            # Tries 1 and 2 fail (a retry, then the final failure); cleared, try 3 succeeds.
            if context["ti"].try_number == 1:
                raise RuntimeError("cluster not ready")
            if context["ti"].try_number == 2:
                raise ValueError("bad input")

        @task(task_id="clear_fragile", trigger_rule="all_done")
        def clear_fragile(**context):
            from airflow.models.taskinstance import TaskInstance, clear_task_instances
            from airflow.utils.session import create_session

            with create_session() as session:
                tis = (
                    session.query(TaskInstance)
                    .filter_by(dag_id="databricks_etl", run_id=context["run_id"], task_id="fragile")
                    .all()
                )
                clear_task_instances(tis, session)

        flaky.expand(n=[0, 1])
        steady() >> clear_steady()
        fragile() >> clear_fragile()

    if __name__ == "__main__":
        when = datetime.datetime(2026, 11, 24, tzinfo=datetime.timezone.utc)
        try:
            state = dag.test(logical_date=when).state
        except TypeError:  # Airflow 2
            state = dag.test(execution_date=when).state
        print("CALLBACKS_FROM", airflow_callbacks.__file__, flush=True)
        print("DAGRUN_STATE", state, flush=True)
    """
)

# Job 11 is tagged team=finance (fake_databricks.JOB_TAGS): its incidents go to #finance-data;
# every CLIENT_ERROR mentions the owner's group (the DAG's owner, data-platform).
MENTION = "<!subteam^S0DATAPLAT|data-platform>"
SETTINGS = {
    "routes": [
        {"job_tag": {"team": "finance"}, "channel": "#finance-data", "mention": "owner"},
        {"termination_type": ["CLIENT_ERROR"], "mention": "owner"},
    ],
    "mentions": {"data-platform": MENTION},
    "mute": ["canceled", "skipped"],
    "dashboard_url": "http://127.0.0.1:3000/d/databricks-jobs/databricks-jobs?var-job={job_id}",
}

PYTHONS = [pytest.param(Path(sys.executable), id="airflow3")]
if os.environ.get("AIRFLOW2_TESTS", "1") != "0":
    PYTHONS.append(pytest.param(AIRFLOW2, id="airflow2"))


def run_dag(python: Path, tmp_path: Path, slack: FakeSlack, dbx: FakeDatabricks):
    install_callbacks(python)  # the wheel, once per session and venv; pip check is clean
    home = tmp_path / "airflow"
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    dag_path = dags / "databricks_etl.py"
    dag_path.write_text(DAG_FILE)
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "AIRFLOW", "DATABRICKS_", "AZURE_"))
        },
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
        "PYTHONPATH": "",  # the callbacks come from the installed wheel, not from ROOT
        # The Databricks operators' own connection; no DATABRICKS_* variables anywhere.
        "AIRFLOW_CONN_DATABRICKS_PROD": json.dumps(dbx.connection()),
        "AIRFLOW_CALLBACKS_SLACK_CONN_ID": "slack_alerts",
        # The callbacks' settings, as an Airflow Variable from the environment.
        "AIRFLOW_VAR_AIRFLOW_CALLBACKS_SETTINGS": json.dumps(SETTINGS),
        "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(
            {
                "conn_type": "slack",
                "password": BOT_TOKEN,
                "extra": {"base_url": slack.api_base, "channel": "#data-oncall"},
            }
        ),
    }
    airflow = python.parent / "airflow"
    migrate = subprocess.run(
        [str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600
    )
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    run = subprocess.run(
        [str(python), str(dag_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    logs = "".join(p.read_text(errors="replace") for p in home.rglob("*.log"))
    return run.stdout + run.stderr, logs


def header(message: dict) -> str:
    return message["blocks"][0]["text"]["text"]


def short(message: dict) -> list[str]:
    """A thread reply's lines; a reply is one section."""
    (block,) = message["blocks"]
    assert block["type"] == "section"
    return block["text"]["text"].split("\n")


@pytest.mark.parametrize("python", PYTHONS)
def test_real_databricks_operators_threads_recovery_and_dag_summary(python: Path, tmp_path):
    if not python.exists():
        pytest.fail(f"{python} is missing: `make test` builds it (make .venv-airflow2)")
    with FakeSlack() as slack, FakeDatabricks() as dbx:
        output, logs = run_dag(python, tmp_path, slack, dbx)
        assert "DAGRUN_STATE failed" in output, output[-4000:]
        (source,) = [
            line.split("CALLBACKS_FROM ", 1)[1]
            for line in output.splitlines()
            if "CALLBACKS_FROM " in line
        ]
        assert source.startswith(str(python.parent.parent)) and "site-packages" in source, source
        messages, updates = slack.messages, slack.updates
    by_task: dict[str, list[dict]] = {}
    for m in messages:
        if "thread_ts" not in m and m["channel"] != "#dag-runs":
            by_task.setdefault(header(m).split("· ", 1)[-1], []).append(m)

    # run_now: try 1 retried, try 2 failed. One thread: the first try's message with the facts,
    # the final failure as a one-line reply, and the parent rewritten to its current state.
    (parent,) = by_task.pop("run_now")
    assert parent["channel"] == "#finance-data"  # routed by the job's tag (jobs/get)
    (reply,) = slack.thread(parent["ts"])
    assert "Retrying" in header(parent)
    assert short(reply) == [
        ":red_circle: *Failed* · try 2 of 2 failed, no retries left · cc " + MENTION
    ]
    (update,) = [u for u in updates if u["ts"] == parent["ts"]]
    assert "Failed: databricks_etl · run_now" in header(update)
    body = json.dumps(parent)
    # The run page URL, the state message and the failed task, all through the connection.
    run_id = min(r for r, run in dbx.runs.items() if run["job_id"] == 11)
    assert dbx.page(11, run_id).replace("&", "&amp;") in body or dbx.page(11, run_id) in body
    assert STATE_MESSAGE in body and "*Failed task* `ingest` (FAILED)" in body
    assert TASK_ERROR in body  # the operator's exception, with the task's error output
    # The task's own trace from runs/get-output (with the task's run id), colours stripped,
    # the token it printed redacted; what a repair re-runs; the owner's group; the dashboard.
    # (The trace is in error_trace only, which the operator itself never asks for.)
    assert "----&gt; 7 ratio = rows / 0" in body and "\\u001b" not in body
    assert "File &lt;command-3478194624461553&gt;, line 7" in body
    assert "*Repair* would re-run `ingest`, `publish`" in body
    assert parent["text"].startswith(MENTION) and "cc " + MENTION in body
    assert "var-job=11" in body and '"Dashboard"' in body

    # submit: no retries, one final failure; runs/submit's run has a job id of its own (no
    # tags: jobs/get answers 400, the routing falls to the CLIENT_ERROR rule).
    (submitted,) = by_task.pop("submit")
    assert submitted["channel"] == "#data-oncall" and submitted["text"].startswith(MENTION)
    assert "Failed" in header(submitted) and STATE_MESSAGE in json.dumps(submitted)
    assert "ratio = rows / 0" in json.dumps(submitted)  # one-time runs get their error too
    assert slack.thread(submitted["ts"]) == []
    (submit_run,) = [run for run in dbx.runs.values() if run["run_name"] == "adhoc"]
    assert submit_run["run_page_url"] in json.dumps(submitted)

    # The mapped task: index 1 failed its first try and recovered, in its own thread.
    (mapped,) = by_task.pop("flaky[1]")
    assert mapped["channel"] == "#data-oncall" and MENTION not in json.dumps(mapped)
    (recovered,) = slack.thread(mapped["ts"])
    assert short(recovered) == [":large_green_circle: *Recovered* · try 2 of 2 succeeded"]
    assert any(u["ts"] == mapped["ts"] and "Recovered" in header(u) for u in updates)

    # fragile: retry -> failure (a new error: shown once) -> cleared -> recovery, one thread.
    (fragile,) = by_task.pop("fragile")
    assert "RuntimeError: cluster not ready" in json.dumps(fragile)
    failed, recovered = [short(m) for m in slack.thread(fragile["ts"])]
    assert failed == [
        ":red_circle: *Failed* · try 2 of 2 failed, no retries left",
        "```ValueError: bad input```",
    ]
    assert len(recovered) == 1 and recovered[0].startswith(
        ":large_green_circle: *Recovered* · try 3"
    ), recovered

    # No secret the notebook printed, anywhere in Slack.
    assert LEAKED not in json.dumps(messages) + json.dumps(updates)

    # steady succeeded, was cleared and succeeded again (try 2): no "Recovered".
    assert "STEADY_TRY 2" in output + logs
    assert by_task == {}, list(by_task)
    assert not any("steady" in header(m) for m in messages)

    # One DAG summary for the failed DAG run, listing the failed tasks with their links.
    summaries = [m for m in messages if m["channel"] == "#dag-runs"]
    assert len(summaries) == 1, [header(m) for m in summaries]
    summary = json.dumps(summaries[0])
    assert "DAG run failed: databricks_etl" in header(summaries[0])
    assert "*run_now*" in summary and "*submit*" in summary and "flaky" not in summary
    assert "owner data-platform" in summary and "|Databricks run>" in summary

    # No secret anywhere, with every logger at DEBUG, except in Airflow 3's own supervisor line
    # that hands each connection's password to its masker (`MaskSecret(value='...')`), which
    # Airflow logs at DEBUG for every connection a task reads, ours or the operator's.
    lines = [line for line in (output + logs).splitlines() if "MaskSecret(value=" not in line]
    for secret in (TOKEN, BOT_TOKEN):
        assert not [line for line in lines if secret in line], secret
    assert "Sending a request" in output + logs  # slack-sdk's DEBUG logging really ran
