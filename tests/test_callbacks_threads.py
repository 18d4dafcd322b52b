"""Short threads: the parent holds the facts and is rewritten; each reply says what changed (the
try, the new error when it differs, the recovery) in a line or two. And the parent's layout: the
task's own error, the repair line beside the run page link."""

from __future__ import annotations

from types import SimpleNamespace

from test_callbacks import FakeTI, context, text_of

import airflow_callbacks
from airflow_callbacks import error_digest, notify
from airflow_callbacks.context import task_facts
from airflow_callbacks.enrich import FailedTask, RunDetails
from airflow_callbacks.incidents import MemoryStore
from airflow_callbacks.message import AIRFLOW_ERROR_LIMIT, RUN_PAGE, SECTION_LIMIT, build, reply
from airflow_callbacks.run_output import TaskError

ERROR = TaskError(
    "ingest",
    "ZeroDivisionError: division by zero",
    ["  File x", "ZeroDivisionError: division by zero"],
)
RUN = RunDetails(
    run_page_url="https://adb-1.2.azuredatabricks.net/?o=1#job/7/run/42",
    lines=["Databricks: Task ingest failed"],
    failed=[
        FailedTask("ingest", "FAILED", "https://adb-1.2.azuredatabricks.net/?o=1#job/7/run/43")
    ],
    errors=[ERROR],
    rerun=["ingest", "publish"],
)


def lines_of(message: dict) -> list[str]:
    (block,) = message["blocks"]
    assert block["type"] == "section" and "fields" not in block
    return block["text"]["text"].split("\n")


def say(monkeypatch, run: RunDetails) -> None:
    monkeypatch.setattr(airflow_callbacks, "run_details", lambda *a, **kw: run)


BOOM = RuntimeError("boom")


def ctx(try_number: int, exception: BaseException | None = BOOM):
    task = SimpleNamespace(owner="data-eng", retries=2, task_id="run_job")
    return context(
        FakeTI({("run_id", -1): 42}, try_number=try_number), exception=exception, task=task
    )


def test_retry_retry_failure_recovery_replies_are_one_or_two_lines(bot, monkeypatch):
    store = MemoryStore()
    say(monkeypatch, RUN)
    assert notify(ctx(1), "retry", store=store)
    assert notify(ctx(2), "retry", store=store)  # the same error: not repeated
    other = TaskError("ingest", "FileNotFoundError: /mnt/raw/2026-11-24", [])
    say(monkeypatch, RunDetails(errors=[other], run_page_url=RUN.run_page_url))
    assert notify(ctx(3), "failure", store=store)  # a new error: shown once
    assert notify(ctx(4, None), "recovery", store=store)
    parent, *replies = bot.messages
    assert [lines_of(r) for r in replies] == [
        [":large_orange_circle: *Retrying* · try 2 of 3 failed, retrying"],
        [
            ":red_circle: *Failed* · try 3 of 3 failed, no retries left",
            "```ingest: FileNotFoundError: /mnt/raw/2026-11-24```",
        ],
        [":large_green_circle: *Recovered* · try 4 of 3 succeeded"],
    ]
    assert all(r["thread_ts"] == parent["ts"] for r in replies)
    # The parent has the facts: fields, the error and its trace, buttons, the repair line.
    body = text_of(parent)
    assert "*Try*\\n1 of 3" in body and "ZeroDivisionError: division by zero" in body
    assert any(b["type"] == "actions" for b in parent["blocks"])
    assert "*Repair* would re-run `ingest`, `publish`" in body
    # And it is rewritten to the current state, the latest error included.
    failed_update = bot.updates[1]
    assert "Failed: databricks_etl · run_job" in failed_update["blocks"][0]["text"]["text"]
    assert "FileNotFoundError" in text_of(failed_update) and "2 updates in the thread" in text_of(
        failed_update
    )
    recovered = bot.updates[-1]
    assert "Recovered" in recovered["blocks"][0]["text"]["text"]
    # The recovered parent still says what failed (the record keeps the redacted line only).
    assert "Failed before with: ingest: FileNotFoundError: /mnt/raw/2026-11-24" in text_of(
        recovered
    )


def test_errors_that_differ_only_in_numbers_are_the_same_error():
    assert error_digest("Run 1234 failed at 02:10") == error_digest("Run 1299 failed at 03:11")
    assert error_digest("ValueError: x") != error_digest("KeyError: x")
    assert error_digest("") == ""


def test_a_reply_escapes_and_redacts_the_new_error():
    facts = task_facts(ctx(2))
    got = reply(facts, "failure", "<!here> token=dapi0123456789abcdef0123456789abcdef")
    text = "\n".join(lines_of(got))
    assert "<!here>" not in text and "&lt;!here&gt;" in text
    assert "dapi0123456789abcdef" not in text + got["text"]


def test_the_airflow_error_is_kept_short_when_the_tasks_own_error_is_shown():
    facts = task_facts(ctx(1, RuntimeError("x" * 5000)))
    with_task = build(facts, "failure", run=RUN)
    error_block = next(
        b for b in with_task["blocks"] if "*Error*" in b.get("text", {}).get("text", "")
    )
    assert len(error_block["text"]["text"]) < AIRFLOW_ERROR_LIMIT + 50
    assert (
        "*Failed task* `ingest` (FAILED) · "
        "<https://adb-1.2.azuredatabricks.net/?o=1#job/7/run/43|task run>" in text_of(with_task)
    )
    without = build(facts, "failure")
    error_block = next(
        b for b in without["blocks"] if "*Error*" in b.get("text", {}).get("text", "")
    )
    assert len(error_block["text"]["text"]) > 2000


def test_the_repair_line_sits_beside_the_run_page_link():
    facts = task_facts(ctx(1))
    message = build(facts, "failure", run=RUN)
    kinds = [b["type"] for b in message["blocks"]]
    at = kinds.index("actions")
    repair = message["blocks"][at + 1]["elements"][0]["text"]
    assert repair.startswith(":wrench: *Repair* would re-run `ingest`, `publish` · <")
    assert f"|{RUN_PAGE}>" in repair
    assert "Repair" not in text_of(build(facts, "recovery", run=RUN))
    many = RunDetails(rerun=[f"t{i}" for i in range(30)])
    assert "and 10 more" in text_of(build(facts, "failure", run=many))


def test_a_task_key_cannot_inject_mentions_into_the_repair_line_or_the_error_title():
    facts = task_facts(ctx(1))
    hostile = RunDetails(rerun=["<!channel>"], errors=[TaskError("<!here>", "E: x")], failed=[])
    body = text_of(build(facts, "failure", run=hostile))
    assert "<!channel>" not in body and "<!here>" not in body


def test_a_task_error_section_keeps_its_code_fences_within_the_section_limit():
    facts = task_facts(ctx(1))
    worst = TaskError("k" * 300, "&" * 500, ["&" * 240] * 12, "&" * 500, True)
    failed = [FailedTask("k" * 300, "FAILED", "https://x.example/" + "u" * 2000)]
    message = build(facts, "failure", run=RunDetails(errors=[worst, worst], failed=failed))
    sections = [
        b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b
    ]
    task_sections = [t for t in sections if t.startswith("*Failed task*")]
    assert len(task_sections) == 2
    for text in task_sections:
        assert len(text) <= SECTION_LIMIT and text.count("```") == 4, len(text)
