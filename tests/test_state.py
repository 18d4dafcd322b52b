"""Counting rules of the contract, on the ledger alone."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from statefile_parts import restore_ledger, save_ledger

from exporter import outcomes
from exporter.collectors.runs.ledger import LedgerPolicy, RunLedger
from exporter.collectors.runs.model import RUN_DURATION_BUCKETS, BadRun, parse_run
from exporter.statefile import StateFile

NOW = 1_800_000_000_000
MIN = 60_000


def raw_run(
    run_id: int,
    start: int,
    end: int = 0,
    life: str = "TERMINATED",
    result: str | None = "SUCCESS",
    job_id: Any = 1,
    **extra: Any,
) -> dict[str, Any]:
    state: dict[str, Any] = {"life_cycle_state": life}
    if result is not None:
        state["result_state"] = result
    return {
        "run_id": run_id,
        "job_id": job_id,
        "run_name": f"job{job_id}",
        "state": state,
        "start_time": start,
        "end_time": end,
        **extra,
    }


def run(*args: Any, **kw: Any):
    parsed = parse_run(raw_run(*args, **kw), NOW)
    assert parsed is not None
    return parsed


def ledger() -> RunLedger:
    return RunLedger.starting_at(NOW, 24 * 60 * MIN, LedgerPolicy(overlap_ms=5 * MIN))


def test_run_ending_after_baseline_is_counted_once_even_if_listed_again():
    book = ledger()
    r = run(1, NOW + MIN, NOW + 2 * MIN)
    assert book.apply(NOW + 3 * MIN, [], [r, r]) == 1
    assert book.apply(NOW + 4 * MIN, [], [r]) == 0
    assert book.runs_total == {("1", "job1", "SUCCESS"): 1}


def test_run_ended_before_baseline_fills_last_run_but_is_not_counted():
    book = ledger()
    old = run(1, NOW - 30 * MIN, NOW - 20 * MIN, result="FAILED")
    book.apply(NOW, [], [old])
    assert not book.runs_total
    assert book.last_runs["1"].run_id == 1 and book.last_runs["1"].failed


def test_last_run_is_the_latest_end_time_not_the_latest_listed():
    book = ledger()
    later = run(2, NOW - 50 * MIN, NOW - 5 * MIN, result="FAILED")
    earlier = run(3, NOW - 20 * MIN, NOW - 10 * MIN)
    book.apply(NOW, [], [later, earlier])
    assert book.last_runs["1"].run_id == 2
    assert book.last_success_ms["1"] == NOW - 10 * MIN


def test_internal_error_without_result_state_is_labelled_internal_error_and_failed():
    r = run(1, NOW, NOW + MIN, life="INTERNAL_ERROR", result=None)
    assert r.result_state == "INTERNAL_ERROR" and r.failed and r.terminal
    bare = run(2, NOW, NOW + MIN, life="TERMINATED", result=None)
    assert bare.result_state == "NONE" and not bare.failed


def test_only_failed_timedout_and_internal_error_are_failures():
    for result in ("FAILED", "TIMEDOUT", "INTERNAL_ERROR"):
        assert run(1, NOW, NOW + 1, result=result).failed
    for result in (
        "SUCCESS",
        "CANCELED",
        "SUCCESS_WITH_FAILURES",
        "EXCLUDED",
        "UPSTREAM_FAILED",
        "MAXIMUM_CONCURRENT_RUNS_REACHED",
        "SOME_FUTURE_STATE",
    ):
        assert not run(1, NOW, NOW + 1, result=result).failed


def test_unknown_enum_values_pass_through():
    r = run(1, NOW, NOW + MIN, life="HIBERNATING", result="PARTIALLY_GLORIOUS")
    assert r.terminal  # unknown life cycle with an end time is over
    book = ledger()
    book.apply(NOW + 2 * MIN, [], [r])
    assert book.runs_total == {("1", "job1", "PARTIALLY_GLORIOUS"): 1}
    still = run(2, NOW, 0, life="HIBERNATING", result=None)
    assert not still.terminal


def test_duration_prefers_run_duration_then_parts_then_wall_clock():
    assert run(1, NOW, NOW + 100_000, run_duration=42_000).duration_seconds == 42.0
    parts = run(
        1, NOW, NOW + 100_000, setup_duration=1000, execution_duration=5000, cleanup_duration=500
    )
    assert parts.duration_seconds == 6.5
    assert run(1, NOW, NOW + 100_000, run_duration=0).duration_seconds == 100.0


def test_terminal_run_with_end_time_zero_uses_duration_or_observation_time():
    with_parts = run(1, NOW, 0, execution_duration=30_000)
    assert with_parts.end_ms == NOW + 30_000
    bare = parse_run(raw_run(2, NOW - MIN, 0), observed_ms=NOW + 5 * MIN)
    assert bare is not None and bare.end_ms == NOW + 5 * MIN


def test_missing_and_null_fields_do_not_break_parsing():
    assert parse_run({"state": None}, NOW) is None  # no run_id: cannot be deduplicated
    r = parse_run(
        {
            "run_id": 9,
            "job_id": None,
            "run_name": None,
            "state": None,
            "start_time": None,
            "end_time": None,
            "tasks": [None, {"task_key": "t", "state": None}],
        },
        NOW,
    )
    assert r is not None
    assert (r.job_id, r.job_name, r.life_cycle_state, r.result_state) == ("", "", "UNKNOWN", "NONE")
    assert [t.result_state for t in r.tasks] == ["NONE"]


def test_task_results_are_counted_with_their_run():
    r = run(
        1,
        NOW,
        NOW + MIN,
        tasks=[
            {"task_key": "a", "state": {"result_state": "SUCCESS"}},
            {"task_key": "b", "state": {"result_state": "FAILED"}},
        ],
        result="FAILED",
    )
    book = ledger()
    book.apply(NOW + 2 * MIN, [], [r])
    assert book.tasks_total == {("1", "job1", "a", "SUCCESS"): 1, ("1", "job1", "b", "FAILED"): 1}


def test_memory_is_bounded_as_the_watermark_moves():
    book = ledger()
    for cycle in range(1, 200):
        t = NOW + cycle * MIN
        book.apply(t, [], [run(cycle, t - MIN // 2, t - 1)])
    assert sum(book.runs_total.values()) == 199
    # Only runs a listing may reach back to (30 minutes) are remembered for deduplication.
    assert len(book.seen) <= 31


def test_active_run_that_vanished_is_dropped_without_counting():
    book = ledger()
    active = run(5, NOW + MIN, 0, life="RUNNING", result=None)
    book.apply(NOW + 2 * MIN, [active], [])
    assert 5 in book.active
    book.apply(NOW + 3 * MIN, [], [], vanished=[5])
    assert not book.active and not book.runs_total


def test_histogram_observes_counted_runs_only():
    book = ledger()
    book.apply(NOW, [], [run(1, NOW - 10 * MIN, NOW - 5 * MIN)])
    book.apply(NOW + 5 * MIN, [], [run(2, NOW, NOW + 100_000, run_duration=100_000)])
    hist = book.durations[("1", "job1")]
    assert hist.count == 1 and hist.total == 100.0
    assert dict(hist.buckets())["120.0"] == 1 and dict(hist.buckets())["60.0"] == 0


def test_jobs_beyond_the_cap_fold_into_other_and_say_so(caplog):
    book = ledger()
    book.policy = replace(book.policy, max_jobs=3)
    runs = [run(i, NOW + MIN, NOW + 2 * MIN, job_id=j) for i, j in enumerate(range(1, 7), start=1)]
    book.apply(NOW + 3 * MIN, [], runs)
    jobs = {job_id for job_id, _, _ in book.runs_total}
    assert jobs == {"1", "2", "3", "__other__"}
    assert book.runs_total[("__other__", "__other__", "SUCCESS")] == 3
    assert book.snapshot().folded_jobs == 3
    assert caplog.text.count("more than 3 distinct jobs") == 1


def status_run(run_id: int, code: str | None, kind: str = "CLIENT_ERROR", **extra: Any) -> Any:
    raw: dict[str, Any] = {
        "run_id": run_id,
        "job_id": 1,
        "run_name": "job1",
        "status": {"state": "TERMINATED"},
        "start_time": NOW,
        "end_time": NOW + MIN,
        **extra,
    }
    if code:
        raw["status"]["termination_details"] = {"code": code, "type": kind}
    parsed = parse_run(raw, NOW)
    assert parsed is not None
    return parsed


@pytest.mark.parametrize(
    ("code", "result", "failed"),
    [
        ("SUCCESS", "SUCCESS", False),
        ("SUCCESS_WITH_FAILURES", "SUCCESS_WITH_FAILURES", False),
        ("RUN_EXECUTION_ERROR", "FAILED", True),
        ("DRIVER_ERROR", "FAILED", True),
        ("CLOUD_FAILURE", "FAILED", True),
        ("CANCELED", "TIMEDOUT", True),
        ("USER_CANCELED", "CANCELED", False),
        ("INTERNAL_ERROR", "INTERNAL_ERROR", True),
        ("SKIPPED", "SKIPPED", False),
        ("MAX_CONCURRENT_RUNS_EXCEEDED", "MAXIMUM_CONCURRENT_RUNS_REACHED", False),
        ("DISABLED", "DISABLED", False),
        ("A_CODE_FROM_NEXT_YEAR", "FAILED", True),  # judged by its type, CLIENT_ERROR
    ],
)
def test_status_only_runs_map_termination_codes_to_one_result_state(code, result, failed):
    r = status_run(1, code)
    assert (r.result_state, r.failed, r.terminal) == (result, failed, True)


def test_status_decides_the_outcome_and_legacy_state_names_it_when_they_agree():
    agree = status_run(1, "SKIPPED", state={"result_state": "UPSTREAM_FAILED"})
    assert agree.result_state == "UPSTREAM_FAILED" and not agree.failed
    disagree = status_run(2, "RUN_EXECUTION_ERROR", state={"result_state": "SUCCESS"})
    assert disagree.result_state == "FAILED" and disagree.failed


def test_every_result_state_and_termination_code_of_the_sdk_has_one_outcome():
    jobs = pytest.importorskip("databricks.sdk.service.jobs")
    for value in jobs.RunResultState:
        assert value.value in outcomes.RESULT_STATES, value
    for code in jobs.TerminationCodeCode:
        assert code.value in outcomes.TERMINATION_CODES, code
    for kind in jobs.TerminationTypeType:
        assert kind.value in outcomes.TERMINATION_TYPES, kind
    for state in jobs.RunLifecycleStateV2State:
        assert state.value in outcomes.ACTIVE_LIFE_CYCLES | outcomes.TERMINAL_LIFE_CYCLES
    for state in jobs.RunLifeCycleState:
        assert state.value in outcomes.ACTIVE_LIFE_CYCLES | outcomes.TERMINAL_LIFE_CYCLES


def test_a_repair_is_counted_apart_and_moves_the_last_run_to_its_outcome():
    book = ledger()
    failed = run(1, NOW + MIN, NOW + 2 * MIN, result="FAILED", end_time=NOW + 2 * MIN)
    book.apply(NOW + 3 * MIN, [], [failed])
    assert book.last_runs["1"].failed
    repairing = run(1, NOW + MIN, 0, life="RUNNING", result=None)
    book.apply(NOW + 4 * MIN, [repairing], [])
    assert book.active[1].reopened
    repaired = run(1, NOW + MIN, NOW + 5 * MIN)
    assert book.apply(NOW + 6 * MIN, [], [repaired]) == 0
    book.apply(NOW + 7 * MIN, [], [repaired])  # listed again: nothing new
    assert book.runs_total == {("1", "job1", "FAILED"): 1}
    assert book.repairs_total == {("1", "job1", "SUCCESS"): 1}
    assert not book.last_runs["1"].failed and book.last_success_ms["1"] == NOW + 5 * MIN


def test_a_repair_of_a_forgotten_run_is_not_a_second_run():
    book = ledger()
    book.apply(NOW + 3 * MIN, [], [run(1, NOW + MIN, NOW + 2 * MIN, result="FAILED")])
    book.apply(NOW + 60 * MIN, [], [])  # long after: the run left `seen`
    assert 1 not in book.seen
    raw = raw_run(1, NOW + MIN, NOW + 62 * MIN)
    raw["repair_history"] = [
        {"type": "ORIGINAL", "end_time": NOW + 2 * MIN, "state": {"result_state": "FAILED"}},
        {
            "type": "REPAIR",
            "id": 9,
            "end_time": NOW + 62 * MIN,
            "status": {
                "state": "TERMINATED",
                "termination_details": {"code": "SUCCESS", "type": "SUCCESS"},
            },
        },
    ]
    repaired = parse_run(raw, NOW)
    assert repaired is not None
    assert book.apply(NOW + 63 * MIN, [], [repaired]) == 0
    assert book.runs_total == {("1", "job1", "FAILED"): 1}
    assert book.repairs_total == {("1", "job1", "SUCCESS"): 1}


def test_one_time_runs_are_keyed_by_normalised_name_and_fill_no_job_gauges():
    book = ledger()
    runs = [
        parse_run(
            {
                **raw_run(i, NOW + MIN, NOW + 2 * MIN, job_id=900 + i),
                "run_type": "SUBMIT_RUN",
                "run_name": f"ADF_f_p_nb_{uuid}",
            },
            NOW,
        )
        for i, uuid in enumerate(
            ["0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7"]
        )
    ]
    book.apply(NOW + 3 * MIN, [], [r for r in runs if r is not None])
    assert book.one_time_total == {("ADF_f_p_nb_*", "SUBMIT_RUN", "SUCCESS"): 2}
    assert not book.runs_total and not book.last_runs and not book.known_jobs


def test_state_file_of_the_previous_format_is_read(tmp_path):
    v1 = {
        "format": "databricks-jobs-exporter/state/v1",
        "workspaces": {
            "prod": {
                "host": "https://x",
                "ledger": {
                    "baseline_ms": NOW,
                    "watermark_ms": NOW + MIN,
                    "overlap_ms": 5 * MIN,
                    "seen": [[5, NOW]],
                    "active": [],
                    "runs_total": [["1", "job1", "SUCCESS", 3]],
                    "tasks_total": [["1", "job1", "main", "SUCCESS", 3]],
                    "durations": [["1", "job1", [0] * 10 + [3, 3, 3], 40000.0, 3]],
                    "last_runs": [
                        {
                            "run_id": 5,
                            "job_id": "1",
                            "job_name": "job1",
                            "life_cycle_state": "TERMINATED",
                            "result_state": "SUCCESS",
                            "start_ms": NOW,
                            "end_ms": NOW + 1,
                            "duration_seconds": 1.0,
                            "run_page_url": "",
                            "tasks": [],
                        }
                    ],
                    "last_success_ms": {"1": NOW + 1},
                },
            }
        },
    }
    path = tmp_path / "state.json"
    path.write_text(json.dumps(v1))
    book = restore_ledger(StateFile(path), "prod", "https://x")
    assert book is not None and not book.fresh
    assert book.runs_total == {("1", "job1", "SUCCESS"): 3}
    assert book.seen == {5: (NOW, 0)} and book.durations[("1", "job1")].count == 3
    save_ledger(StateFile(path), "prod", "https://x", book)  # written back as v2, read again
    again = restore_ledger(StateFile(path), "prod", "https://x")
    assert again is not None and again.durations[("1", "job1")].bounds == RUN_DURATION_BUCKETS
    assert json.loads(path.read_text())["format"].endswith("/v2")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("run_id", {"id": 1}, "bad_run_id"),
        ("run_id", [1], "bad_run_id"),
        ("run_id", 1.5, "bad_run_id"),
        ("run_duration", float("inf"), "non_finite"),
        ("end_time", float("nan"), "non_finite"),
        ("start_time", "yesterday", "wrong_type"),
        ("end_time", {"ms": 1}, "wrong_type"),
        ("end_time", 253402300799000, "impossible_time"),  # 9999-12-31
        ("start_time", -5, "impossible_time"),
    ],
)
def test_a_run_that_cannot_be_trusted_raises_bad_run_with_a_reason(field, value, reason):
    raw = raw_run(1, NOW, NOW + MIN)
    raw[field] = value
    with pytest.raises(BadRun) as info:
        parse_run(raw, NOW)
    assert info.value.reason == reason


def test_one_run_is_one_run_whatever_type_its_id_has():
    book = ledger()
    as_int = run(7, NOW + MIN, NOW + 2 * MIN)
    as_text = parse_run(raw_run("7", NOW + MIN, NOW + 2 * MIN), NOW)  # type: ignore[arg-type]
    as_float = parse_run({**raw_run(7, NOW + MIN, NOW + 2 * MIN), "run_id": 7.0}, NOW)
    assert as_text is not None and as_float is not None
    assert book.apply(NOW + 3 * MIN, [], [as_int, as_text, as_float]) == 1


def test_series_beyond_max_series_fold_into_other_jobs_tasks_and_names(caplog):
    book = ledger()
    book.policy = replace(book.policy, max_series=40 + 3 * 10)  # one job, ten task keys
    tasks = [{"task_key": f"t{i}", "state": {"result_state": "SUCCESS"}} for i in range(50)]
    wide = parse_run({**raw_run(1, NOW + MIN, NOW + 2 * MIN), "tasks": tasks}, NOW)
    other = run(2, NOW + MIN, NOW + 2 * MIN, job_id=2)
    assert wide is not None
    book.apply(NOW + 3 * MIN, [], [wide, other])
    keys = {key for (_, _, key, _) in book.tasks_total}
    assert len(keys) == 11 and "__other__" in keys
    assert book.tasks_total[("1", "job1", "__other__", "SUCCESS")] == 40
    assert ("__other__", "__other__", "SUCCESS") in book.runs_total  # job 2 had no room
    assert book.series_budget_used <= book.policy.max_series
    assert "max_series" in caplog.text


def test_after_time_nobody_watched_the_completed_listing_reaches_back_five_minutes():
    book = RunLedger(baseline_ms=NOW, watermark_ms=NOW, policy=LedgerPolicy(overlap_ms=MIN))
    book.fresh = False
    assert book.completed_list_from([]) == NOW - MIN
    # A restart or a failed cycle: a run repaired and ended meanwhile is found by re-listing.
    assert book.completed_list_from([], after_gap=True) == NOW - 5 * MIN


def test_a_repair_of_a_run_that_failed_before_the_baseline_counts_as_a_repair():
    # The original attempt failed before the baseline; its repair slipped between the first
    # cycle's active and completed listings (started or ended between the two).
    book = ledger()
    listed = run(7, NOW - 10 * MIN, NOW + 1000, run_duration=2000)
    assert listed.paused  # start to end is far longer than the time it ran
    assert book.needs_details(listed)  # started before the baseline: only its history tells
    later = run(8, NOW + 1000, NOW + 10 * MIN, run_duration=2000)
    assert later.paused and not book.needs_details(later)  # watched from its start
    history = {
        "repair_history": [
            {"type": "ORIGINAL", "end_time": NOW - 8 * MIN, "state": {"result_state": "FAILED"}},
            {"type": "REPAIR", "end_time": NOW + 1000, "state": {"result_state": "SUCCESS"}},
        ]
    }
    full = run(7, NOW - 10 * MIN, NOW + 1000, run_duration=2000, **history)
    book.apply(NOW + 2000, [], [full])
    assert book.runs_total == {}  # the run itself ended before the baseline
    assert book.repairs_total == {("1", "job1", "SUCCESS"): 1}
