"""Counting rules of the contract, on the ledger alone."""

from __future__ import annotations

from typing import Any

from exporter.state import RunLedger, parse_run

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
    return RunLedger.starting_at(NOW, lookback_ms=24 * 60 * MIN, overlap_ms=5 * MIN)


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
    # Only runs inside the overlap window are remembered for deduplication.
    assert len(book.seen) <= 6


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
    book.max_jobs = 3
    runs = [run(i, NOW + MIN, NOW + 2 * MIN, job_id=j) for i, j in enumerate(range(1, 7), start=1)]
    book.apply(NOW + 3 * MIN, [], runs)
    jobs = {job_id for job_id, _, _ in book.runs_total}
    assert jobs == {"1", "2", "3", "__other__"}
    assert book.runs_total[("__other__", "__other__", "SUCCESS")] == 3
    assert book.snapshot().folded_jobs == 3
    assert caplog.text.count("more than 3 distinct jobs") == 1
