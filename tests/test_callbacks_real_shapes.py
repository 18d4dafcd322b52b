"""The callbacks on shapes the real Jobs API and real traces have, which the fake Databricks
does not: task retries inside Databricks (one task listed per attempt), repairs of dependent
tasks, PySpark's own frames over the user's line, secrets in the forms Azure and Spark print
them, and errors that grow when escaped for Slack."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_callbacks.context import TaskFacts
from airflow_callbacks.enrich import _details, _output_targets, latest_tasks, repair_would_rerun
from airflow_callbacks.message import build, task_error_section
from airflow_callbacks.redact import Redactor
from airflow_callbacks.run_output import TaskError, excerpt


def task(key: str, run_id: int, state: str, attempt: int = 0, **more: Any) -> dict[str, Any]:
    life = "TERMINATED" if state not in ("UPSTREAM_FAILED",) else "SKIPPED"
    return {
        "task_key": key,
        "run_id": run_id,
        "attempt_number": attempt,
        "state": {"life_cycle_state": life, "result_state": state},
        "end_time": 1_700_000_000_000 + run_id,
        **more,
    }


# A run whose `flaky` task failed once and recovered on its retry, whose `ingest` failed on
# both attempts, `publish` was kept from running, and `report` (run_if ALL_DONE) ran anyway.
RUN = {
    "run_id": 10,
    "job_id": 7,
    "state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED"},
    "tasks": [
        task("flaky", 11, "FAILED", 0),
        task("flaky", 12, "SUCCESS", 1),
        task("ingest", 21, "FAILED", 0),
        task("ingest", 22, "FAILED", 1),
        task("publish", 31, "UPSTREAM_FAILED", depends_on=[{"task_key": "ingest"}]),
        task("report", 41, "SUCCESS", depends_on=[{"task_key": "ingest"}], run_if="ALL_DONE"),
        task("notify", 51, "SUCCESS", depends_on=[{"task_key": "report"}]),
        task("other", 61, "SUCCESS"),
    ],
}


def test_only_each_tasks_last_attempt_counts():
    latest = {(t["task_key"], t["run_id"]) for t in latest_tasks(RUN)}
    assert ("flaky", 12) in latest and ("flaky", 11) not in latest
    assert ("ingest", 22) in latest and ("ingest", 21) not in latest
    # get-output goes to the last attempt of what failed, not to one that recovered.
    assert _output_targets(RUN) == [("ingest", "22")]
    details = _details(RUN, [], {}, [], {})
    assert [f.task_key for f in details.failed] == ["ingest"]
    assert [f.run_id for f in details.failed] == ["22"]


def test_a_repair_would_rerun_the_failed_the_blocked_and_everything_downstream_once():
    assert repair_would_rerun(latest_tasks(RUN)) == ["ingest", "publish", "report", "notify"]
    assert _details(RUN, [], {}, [], {}).rerun == ["ingest", "publish", "report", "notify"]


PYSPARK = """\x1b[0;31m----------------------------------------------------------------\x1b[0m
\x1b[0;31mAnalysisException\x1b[0m                         Traceback (most recent call last)
File \x1b[0;32m<command-4242>:3\x1b[0m
\x1b[1;32m      1\x1b[0m df = spark.read.table("raw.events")
\x1b[0;32m----> 3\x1b[0m df.write.saveAsTable("silver.events")
File \x1b[0;32m/databricks/spark/python/pyspark/instrumentation_utils.py:47\x1b[0m, in wrapper
\x1b[1;32m     45\x1b[0m start = time.perf_counter()
\x1b[0;32m---> 47\x1b[0m     res = func(*args, **kwargs)
\x1b[1;32m     48\x1b[0m     logger.log_success(
File \x1b[0;32m/databricks/spark/python/pyspark/errors/exceptions/captured.py:230\x1b[0m, in deco
\x1b[1;32m    226\x1b[0m converted = convert_exception(e.java_exception)
\x1b[1;32m    229\x1b[0m     # JVM exception message.
\x1b[0;32m--> 230\x1b[0m     raise converted from None
\x1b[1;32m    231\x1b[0m else:
\x1b[0;31mAnalysisException\x1b[0m: [DELTA_FAILED_TO_MERGE_FIELDS] Failed to merge fields 'id'"""


def test_a_pyspark_trace_keeps_the_users_own_line_above_pysparks_frames():
    trace = excerpt({"error": "AnalysisException: ...", "error_trace": PYSPARK}).trace
    assert trace[0] == "File <command-4242>:3"
    assert trace[1] == '----> 3 df.write.saveAsTable("silver.events")'
    assert trace[-1].startswith("AnalysisException: [DELTA_FAILED_TO_MERGE_FIELDS]")
    assert len(trace) <= 12 and all("\x1b" not in line for line in trace)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Basic dXNlcjpzM2NyZXRQYXNz", "dXNlcjpzM2NyZXRQYXNz"),
        ('password="my secret phrase"', "secret phrase"),
        ("AccountName=acct;AccountKey=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==;Endpoint", "Zm9vYmFy"),
        ('spark.conf.set("fs.azure.account.key.a.dfs.core.windows.net", "Zm9vYmFyYmF6")', "Zm9v"),
        ("fs.azure.account.key.acct.dfs.core.windows.net=Zm9vYmFyYmF6cXV4", "Zm9v"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalr"),
        ("key id AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
        ("refresh_token=0.AAAAabcdefgh1234567890", "0.AAAA"),
        ("sig=AbCdEf%2BgHiJ%3D&se=2026", "AbCdEf"),
        ("DB_PASSWORD=hunter2hunter2", "hunter2"),
        ("https://user:p@ssw0rd@host.example.com/path", "ssw0rd"),
        ("jdbc:sqlserver://h:1433;user=sa;password=P@ssw0rd;encrypt=true", "ssw0rd"),
        ("x-api-key: AIzaSyD-abcdefghijklmnopqrstuvwxyz012", "AIzaSyD"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_"),
    ],
)
def test_secrets_in_the_forms_azure_spark_and_jdbc_print_them_are_redacted(text, secret):
    clean = Redactor()(text)
    assert secret not in clean and "***" in clean


def test_the_jdbc_url_keeps_its_host_and_the_url_its_host():
    assert Redactor()("jdbc:sqlserver://h:1433;user=sa;password=P@ss;x=1").startswith(
        "jdbc:sqlserver://h:1433;user=sa;password=***"
    )
    assert Redactor()("https://u:p@ss@host.example.com/x") == "https://***@host.example.com/x"


FACTS = TaskFacts(
    "dag", "task", -1, 1, 0, "", "run", "owner", "", "AirflowException",
    "Databricks answered: " + "<html><body><h1>502 Bad Gateway</h1></body></html>" * 50, "", "",
)  # fmt: skip


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if isinstance(b.get("text"), dict)]


def test_an_error_that_grows_when_escaped_keeps_its_code_fence_whole():
    (error,) = [t for t in _texts(build(FACTS)["blocks"]) if t.startswith("*Error*")]
    assert len(error) <= 3000 and error.endswith("```") and error.count("```") == 2


def test_backticks_in_a_trace_and_a_result_cannot_close_the_fences_early():
    section = task_error_section(TaskError("t", "boom", ["```" * 800], "```" * 600), None, str)
    text = section["text"]["text"]
    assert len(text) <= 3000 and text.count("```") == 4  # two blocks, each opened and closed
