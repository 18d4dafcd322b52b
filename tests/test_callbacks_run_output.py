"""The failing task's error from recorded runs/get-output answers (Jobs API 2.2 RunOutput shapes):
the excerpt, its bounds, ANSI escapes and redaction."""

from __future__ import annotations

from fake_databricks import LEAKED, NOTEBOOK_ANSI, TASK_ERROR

from airflow_callbacks.redact import Redactor
from airflow_callbacks.run_output import (
    LINE_LIMIT,
    MAX_LINES,
    RESULT_LIMIT,
    TRACE_LIMIT,
    TaskError,
    clean,
    excerpt,
)

# A spark_python_task: no error_trace, the traceback is in the task's stdout/stderr (logs).
SPARK_PYTHON_LOGS = {
    "error": "Exception: 3 input files are missing",
    "logs": (
        "24/11/24 02:10:01 INFO SparkContext: Running Spark version 3.5.0\n"
        "loading s3://bucket/raw/2026-11-24 with password=hunter2-the-db-password\n"
        "Traceback (most recent call last):\n"
        '  File "/Workspace/etl/load.py", line 40, in <module>\n'
        "    main()\n"
        '  File "/Workspace/etl/load.py", line 33, in main\n'
        "    check(paths)\n"
        '  File "/Workspace/etl/load.py", line 21, in check\n'
        '    raise Exception(f"{len(missing)} input files are missing")\n'
        "Exception: 3 input files are missing\n"
        "24/11/24 02:10:05 INFO ShutdownHookManager: Shutdown hook called\n"
    ),
    "logs_truncated": False,
    "metadata": {"job_id": 7, "run_id": 88},
}

# A JAR task: a JVM trace whose root cause is the last "Caused by".
JVM = {
    "error": "org.apache.spark.SparkException: Job aborted due to stage failure",
    "error_trace": (
        "org.apache.spark.SparkException: Job aborted due to stage failure\n"
        "\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages(DAGScheduler"
        ".scala:2790)\n"
        "\tat org.apache.spark.scheduler.DAGScheduler.abortStage(DAGScheduler.scala:2726)\n"
        "Caused by: java.io.FileNotFoundException: abfss://raw@acct.dfs.core.windows.net/x.csv\n"
        "\tat com.databricks.sql.io.FileReadException.apply(FileReadException.scala:12)\n"
        "\tat org.apache.spark.sql.execution.datasources.FileScanRDD.next(FileScanRDD.scala:99)\n"
        "\tat scala.collection.Iterator.foreach(Iterator.scala:943)\n"
        "\tat scala.collection.Iterator.foreach$(Iterator.scala:943)\n"
        "\tat scala.collection.AbstractIterator.foreach(Iterator.scala:1431)\n"
        "\t... 42 more\n"
    ),
    "metadata": {"job_id": 7, "run_id": 89},
}

# A notebook that exited with a value (dbutils.notebook.exit), failing the task afterwards.
NOTEBOOK_RESULT = {
    "notebook_output": {"result": "REJECTED: 3 rows failed the schema check", "truncated": True},
    "error": "Notebook exited: REJECTED",
    "metadata": {"job_id": 7, "run_id": 90},
}


def test_an_ansi_coloured_notebook_trace_gives_the_exception_and_the_frames_above_it():
    got = excerpt(NOTEBOOK_ANSI, "ingest", Redactor())
    assert got.error == TASK_ERROR and got.source == "error_trace"
    assert got.trace[-1] == TASK_ERROR
    assert any("----> 7 ratio = rows / 0" in line for line in got.trace)
    assert any("File <command-3478194624461553>, line 7" in line for line in got.trace)
    joined = "\n".join(got.trace)
    assert "\x1b" not in joined and "[0;31m" not in joined
    assert "Traceback (most recent call last)" not in joined and "-----" not in joined
    assert LEAKED not in joined and "'token': '***'" in joined


def test_a_python_task_with_logs_only_gives_the_traceback_from_its_logs():
    got = excerpt(SPARK_PYTHON_LOGS, "load", Redactor())
    assert got.source == "logs"
    assert got.trace[-1] == "Exception: 3 input files are missing"
    assert got.trace[0] == '  File "/Workspace/etl/load.py", line 40, in <module>'
    assert not any("INFO" in line for line in got.trace)  # log noise around it is left out
    assert "hunter2" not in got.text()


def test_a_jvm_trace_gives_the_root_cause_and_the_frames_under_it():
    got = excerpt(JVM, "aggregate")
    assert got.trace[0].startswith("Caused by: java.io.FileNotFoundException")
    assert len(got.trace) == 5 and all(line.startswith("    at ") for line in got.trace[1:])
    assert "DAGScheduler" not in "\n".join(got.trace)


def test_a_notebook_result_is_kept_with_its_truncation_flag():
    got = excerpt(NOTEBOOK_RESULT, "validate")
    assert got.result == "REJECTED: 3 rows failed the schema check" and got.result_truncated
    assert got.error == "Notebook exited: REJECTED" and got.trace == []
    long = excerpt({"notebook_output": {"result": "x" * 10_000}})
    assert len(long.result) == RESULT_LIMIT


def test_a_1_mb_trace_is_cut_to_its_bounds_and_keeps_the_exception_line():
    frame = '  File "/lib/mod{0}.py", line {0}, in f{0}\n    f{1}()\n'
    frames = "".join(frame.format(i, i + 1) for i in range(20_000))
    trace = "Traceback (most recent call last):\n" + frames
    trace += "\nRecursionError: maximum recursion depth exceeded " + "y" * 5000
    assert len(trace) > 1_000_000
    got = excerpt({"error": "RecursionError: " + "z" * 100_000, "error_trace": trace})
    assert len(got.trace) <= MAX_LINES
    assert sum(len(line) + 1 for line in got.trace) <= TRACE_LIMIT
    assert all(len(line) <= LINE_LIMIT for line in got.trace)
    assert got.trace[-1].startswith("RecursionError: maximum recursion depth exceeded")
    assert got.trace[-1].endswith("…") and len(got.error) <= 500


def test_a_secret_at_the_cut_of_a_long_line_is_redacted_before_the_cut():
    line = "ValueError: " + "a" * (LINE_LIMIT - 20) + " " + LEAKED
    got = excerpt({"error_trace": line, "error": line}, redact=Redactor())
    assert LEAKED[:12] not in got.text()


def test_no_exception_line_keeps_the_last_lines():
    logs = "\n".join(f"step {i}" for i in range(100))
    got = excerpt({"logs": logs})
    assert got.trace == [f"step {i}" for i in range(100 - MAX_LINES, 100)]


def test_malformed_answers_give_an_empty_excerpt():
    for bad in (None, [], "text", {"error": 3, "error_trace": {"x": 1}, "notebook_output": "r"}):
        got = excerpt(bad, "t")
        assert got == TaskError("t") and not got


def test_clean_strips_escapes_and_carriage_return_overwrites():
    assert clean("\x1b]8;;http://x\x07link\x1b]8;;\x07 \x1b[1mbold\x1b[0m") == "link bold"
    assert clean("progress 10%\rprogress 100%\nnext\x00") == "progress 100%\nnext"


def test_the_recorded_shapes_are_the_real_run_output_model():
    """Every field the excerpt reads survives databricks-sdk's own RunOutput model."""
    import pytest

    jobs = pytest.importorskip("databricks.sdk.service.jobs")
    for shape in (NOTEBOOK_ANSI, SPARK_PYTHON_LOGS, JVM, NOTEBOOK_RESULT):
        model = jobs.RunOutput.from_dict(shape).as_dict()
        for key in ("error", "error_trace", "logs", "logs_truncated", "notebook_output"):
            if shape.get(key):
                assert model[key] == shape[key], key
        assert model["metadata"] == shape["metadata"]
