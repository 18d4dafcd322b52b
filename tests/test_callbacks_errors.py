"""The failed task's own error in the alert: one runs/get-output per failed task (its own run id,
at most MAX_OUTPUTS), through the task's Databricks connection or the environment, against the
fake Databricks on loopback; a get-output that fails or hangs never delays or drops the alert."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fake_databricks import LEAKED, STATE_MESSAGE, TASK_ERROR, TOKEN, FakeDatabricks
from fake_slack import FakeSlack
from test_callbacks import FakeTI, context, text_of
from test_callbacks_run_output import NOTEBOOK_RESULT, SPARK_PYTHON_LOGS

from airflow_callbacks import notify
from airflow_callbacks.enrich import MAX_OUTPUTS, run_details
from airflow_callbacks.incidents import MemoryStore
from airflow_callbacks.message import MAX_BLOCKS, SECTION_LIMIT

OUTPUT = ("GET", "/api/2.2/jobs/runs/get-output")
VIAS = ["connection", "environment"]


@pytest.fixture
def dbx() -> Iterator[FakeDatabricks]:
    with FakeDatabricks() as server:
        yield server
        if server.hang_outputs is not None:
            server.hang_outputs.set()


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    for name in ("SLACK_BOT_TOKEN", "AIRFLOW_CALLBACKS_SLACK_CONN_ID", "DATABRICKS_HOST"):
        monkeypatch.delenv(name, raising=False)
    with FakeSlack() as server:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", server.webhook_url)
        yield server


def task_context(dbx: FakeDatabricks, monkeypatch: pytest.MonkeyPatch, via: str, run_id: int):
    """A failed Databricks operator's context: its connection, or DATABRICKS_* settings."""
    if via == "connection":
        pytest.importorskip("airflow.providers.databricks")
        monkeypatch.setenv("AIRFLOW_CONN_DBX_PROD", json.dumps(dbx.connection()))
        conn = "dbx_prod"
    else:
        monkeypatch.setenv("DATABRICKS_HOST", dbx.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
        conn = ""
    task = SimpleNamespace(owner="o", retries=0, task_id="run_job", databricks_conn_id=conn)
    return context(FakeTI({("run_id", -1): run_id}), task=task)


def outputs_asked(dbx: FakeDatabricks) -> int:
    return sum(1 for request in dbx.requests if request == OUTPUT)


@pytest.mark.parametrize("via", VIAS)
def test_the_failed_tasks_trace_is_in_the_alert_asked_with_the_tasks_run_id(
    dbx, slack, monkeypatch, via
):
    run = dbx.start()
    assert notify(task_context(dbx, monkeypatch, via, run["run_id"]), store=MemoryStore())
    body = text_of(slack.messages[0])
    assert "*Failed task* `ingest` (FAILED)" in body and TASK_ERROR in body
    assert "----&gt; 7 ratio = rows / 0" in body and "\\u001b" not in body
    assert LEAKED not in body and TOKEN not in body
    assert STATE_MESSAGE in body  # runs/get's details as before
    assert "*Repair* would re-run `ingest`, `publish`" in body
    assert outputs_asked(dbx) == 1  # one failed task, one get-output; none for publish


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Run output unavailable"}),
        (403, {"error_code": "PERMISSION_DENIED", "message": "no CAN VIEW on the job"}),
        (500, {"error_code": "INTERNAL_ERROR", "message": "try again"}),
        (200, b"<html>a proxy's page, not JSON</html>"),
        (200, ["not", "an", "object"]),
    ],
    ids=["400", "403", "500", "not-json", "not-an-object"],
)
def test_a_get_output_that_fails_leaves_the_alert_as_it_was(
    dbx, slack, monkeypatch, via, status, answer
):
    run = dbx.start()
    dbx.outputs[run["run_id"] + 1] = (status, answer)
    assert notify(task_context(dbx, monkeypatch, via, run["run_id"]), store=MemoryStore())
    (message,) = slack.messages
    body = text_of(message)
    assert "ratio = rows / 0" not in body and "*Failed task* `ingest`" not in body
    assert STATE_MESSAGE in body and "Failed task ingest (FAILED)" in body
    assert "*Repair* would re-run" in body
    assert outputs_asked(dbx) == 1  # one try, whatever the answer


@pytest.mark.parametrize("via", VIAS)
def test_a_get_output_that_never_answers_costs_the_deadline_and_keeps_runs_get(
    dbx, slack, monkeypatch, via
):
    """The alert goes with what runs/get said, without the excerpt, within the budget."""
    run = dbx.start()
    dbx.hang_outputs = threading.Event()
    budget = 4.0  # the Databricks details get min(5 s, budget / 2) = 2 s
    ctx = task_context(dbx, monkeypatch, via, run["run_id"])
    started = time.monotonic()
    assert notify(ctx, budget=budget, store=MemoryStore()) is True
    elapsed = time.monotonic() - started
    dbx.hang_outputs.set()
    (message,) = slack.messages
    body = text_of(message)
    assert STATE_MESSAGE in body and "Failed task ingest (FAILED)" in body
    assert "ratio = rows / 0" not in body
    assert elapsed < budget  # generous: the deadline is half of it


def test_at_most_max_outputs_get_output_calls_first_failed_first(dbx, slack, monkeypatch):
    run = dbx.start()
    first = run["tasks"][0]
    run["tasks"] = [
        {**first, "task_key": f"t{i}", "run_id": run["run_id"] + 1, "end_time": 100 - i}
        for i in range(5)
    ]
    dbx.outputs[run["run_id"] + 1] = (200, SPARK_PYTHON_LOGS)
    details = run_details(
        str(run["run_id"]), env={"DATABRICKS_HOST": dbx.url, "DATABRICKS_TOKEN": TOKEN}
    )
    assert outputs_asked(dbx) == MAX_OUTPUTS
    assert [e.task_key for e in details.errors] == ["t4", "t3"]  # the first to end first
    assert details.errors[0].trace[-1] == "Exception: 3 input files are missing"
    assert [f.task_key for f in details.failed] == [f"t{i}" for i in range(5)]


def test_a_run_without_tasks_is_asked_with_its_own_run_id(dbx, slack, monkeypatch):
    """A legacy one-time run (runs/submit with a single task at the top level)."""
    run = dbx.start(None, "adhoc")
    run["tasks"] = []
    dbx.outputs[run["run_id"]] = (200, NOTEBOOK_RESULT)
    assert notify(task_context(dbx, monkeypatch, "environment", run["run_id"]), store=MemoryStore())
    body = text_of(slack.messages[0])
    assert "*Notebook result* (truncated by Databricks)" in body
    assert "REJECTED: 3 rows failed the schema check" in body


def test_a_1_mb_trace_stays_within_slacks_limits(dbx, slack, monkeypatch):
    run = dbx.start()
    trace = (
        "Traceback (most recent call last):\n" + '  File "x.py", line 1, in f\n    f()\n' * 30_000
    )
    trace += "RecursionError: maximum recursion depth exceeded\n"
    assert len(trace) > 1 << 20
    dbx.outputs[run["run_id"] + 1] = (200, {"error": "RecursionError", "error_trace": trace})
    assert notify(task_context(dbx, monkeypatch, "environment", run["run_id"]), store=MemoryStore())
    message = slack.messages[0]
    assert len(message["blocks"]) <= MAX_BLOCKS
    for block in message["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= SECTION_LIMIT
    assert "RecursionError: maximum recursion depth exceeded" in text_of(message)


def test_error_tasks_0_asks_no_get_output(dbx, slack, monkeypatch):
    run = dbx.start()
    ctx = task_context(dbx, monkeypatch, "environment", run["run_id"])
    assert notify(ctx, store=MemoryStore(), settings={"error_tasks": 0})
    assert outputs_asked(dbx) == 0 and STATE_MESSAGE in text_of(slack.messages[0])


def test_the_termination_type_is_the_runs_else_its_first_failed_tasks(dbx, slack):
    env = {"DATABRICKS_HOST": dbx.url, "DATABRICKS_TOKEN": TOKEN}
    run = dbx.start()
    assert run_details(str(run["run_id"]), env=env).termination_type == "CLIENT_ERROR"
    del run["status"]  # a legacy answer: state only
    run["tasks"][0]["status"] = {
        "state": "TERMINATED",
        "termination_details": {"code": "CLOUD_FAILURE", "type": "cloud_failure"},
    }
    assert run_details(str(run["run_id"]), env=env).termination_type == "CLOUD_FAILURE"
