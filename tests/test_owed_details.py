"""Runs owed their runs/get: a terminal run the ledger needs details for (its listing cut the
tasks at 100, or it may be a repair of a run that failed before the baseline) whose runs/get
fails or says it runs again. It waits uncounted and out of the runs in flight, its job's last
run known at once, and is counted once, whole, when runs/get answers (or as listed after
OWED_MS). A scripted client: these are the edge cases; the loopback tests in
test_real_api_cases.py run the same paths against the simulator."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.client import ApiError
from exporter.collectors.runs import RunsCollector
from exporter.collectors.runs.ledger import OWED_MS, LedgerPolicy, RunLedger

MIN = 60_000
T = 1_700_000_000_000


class ScriptedClient:
    """Listings and runs/get from a list of runs; runs/get fails while told to."""

    workspace = "t"
    closed = False

    def __init__(self) -> None:
        self.active: list[dict[str, Any]] = []
        self.completed: list[dict[str, Any]] = []
        self.fail_gets = False
        self.fail_pattern: list[bool] = []  # popped per runs/get (True: fail), before fail_gets
        self.gets: list[int | str] = []
        self.list_from: list[int] = []  # each cycle's completed listing's start_time_from
        self.answer: dict[int | str, dict[str, Any]] = {}  # runs/get's own answer for a run

    def iter_runs(
        self,
        *,
        active_only: bool = False,
        completed_only: bool = False,
        start_time_from: int | None = None,
        start_time_to: int | None = None,
        expand_tasks: bool = False,
        dates: list[int | None] | None = None,
        max_pages: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        if active_only:
            if dates is not None:
                dates.append(None)
            yield from copy.deepcopy(self.active)
            return
        if start_time_to is None and start_time_from is not None:
            self.list_from.append(start_time_from)
        for run in sorted(self.completed, key=lambda r: -r["start_time"]):
            if start_time_from is not None and run["start_time"] < start_time_from:
                continue
            if start_time_to is not None and run["start_time"] > start_time_to:
                continue
            listed = copy.deepcopy(run)
            listed.pop("repair_history", None)  # listings carry no history
            if len(listed.get("tasks", [])) > 100:
                listed["tasks"] = listed["tasks"][:100]
                listed["has_more"] = True
            yield listed

    def get_run(self, run_id: int | str) -> dict[str, Any] | None:
        self.gets.append(run_id)
        fail = self.fail_pattern.pop(0) if self.fail_pattern else self.fail_gets
        if fail:
            raise ApiError("workspace t: GET runs/get: HTTP 500", status=500)
        if run_id in self.answer:
            return copy.deepcopy(self.answer[run_id])
        for run in self.completed + self.active:
            if run["run_id"] == run_id:
                return {**copy.deepcopy(run), "has_more": False}
        return None


def raw(
    run_id: int,
    start: int,
    end: int = 0,
    result: str = "SUCCESS",
    tasks: int = 0,
    run_duration: int | None = None,
) -> dict[str, Any]:
    run: dict[str, Any] = {
        "run_id": run_id,
        "job_id": 1,
        "run_name": "j",
        "start_time": start,
        "state": {"life_cycle_state": "TERMINATED" if end else "RUNNING"},
        "run_duration": max(end - start, 0) if run_duration is None else run_duration,
    }
    if end:
        run["end_time"] = end
        run["state"]["result_state"] = result
    if tasks:
        run["tasks"] = [
            {"task_key": f"t{i:03d}", "state": {"result_state": result}} for i in range(tasks)
        ]
    return run


class Setup:
    def __init__(self) -> None:
        self.now = T
        self.client = ScriptedClient()
        self.ledger = RunLedger.starting_at(T, 0, LedgerPolicy(overlap_ms=5 * MIN))
        self.collector = RunsCollector(self.client, self.ledger, lambda: self.now)  # type: ignore[arg-type]
        self.collector.collect()

    def at(self, minute: float) -> None:
        self.now = T + int(minute * MIN)
        self.collector.collect()

    def counted(self) -> tuple[int, int, int]:
        """(runs, tasks, repairs) counted."""
        ledger = self.ledger
        return (
            sum(ledger.runs_total.values()),
            sum(ledger.tasks_total.values()),
            sum(ledger.repairs_total.values()),
        )

    def owed(self) -> list[int | str]:
        return [rid for rid, run in self.ledger.active.items() if run.terminal]


@pytest.fixture
def s() -> Setup:
    return Setup()


def test_an_owed_run_is_not_counted_nor_in_flight_but_its_job_knows_its_last_run(s):
    s.client.completed.append(raw(42, T + 2 * MIN, T + 3 * MIN, "FAILED", tasks=150))
    s.client.fail_gets = True
    for minute in range(4, 9):
        s.at(minute)
        assert s.owed() == [42] and s.counted() == (0, 0, 0)
        snap = s.collector.snapshot
        assert snap is not None and snap.active == ()  # not in flight
        assert snap.last_runs["1"].run_id == 42 and snap.last_runs["1"].failed  # alerts now
    s.client.fail_gets = False
    s.at(9)
    s.at(10)
    assert s.counted() == (1, 150, 0) and s.owed() == []


def test_an_owed_run_costs_one_runs_get_a_cycle_and_never_widens_the_listing(s):
    s.client.completed.append(raw(42, T + 2 * MIN, T + 3 * MIN, tasks=150))
    s.client.fail_gets = True
    for minute in range(4, 30):
        s.at(minute)
    assert s.owed() == [42]
    assert len(s.client.gets) == 26  # one a cycle, asked again
    # The listing follows the watermark (less the overlap), not the owed run's start.
    last = s.client.list_from[-1]
    assert last == T + 28 * MIN - 5 * MIN
    s.client.fail_gets = False
    before = len(s.client.gets)
    s.at(30)
    assert s.counted() == (1, 150, 0)
    assert len(s.client.gets) == before + 1  # its answer is counted without asking again


def test_a_run_owed_past_the_overlap_and_repaired_before_the_baseline_keeps_its_repair(s):
    """Run 5 failed 15 minutes before the baseline; its repair runs at the first cycle and
    succeeds after it. runs/get fails for 8 cycles (past the 5-minute overlap): the repair
    still counts, and the run (counted, if at all, before the exporter started) does not."""
    s = Setup.__new__(Setup)
    s.now = T
    s.client = ScriptedClient()
    s.ledger = RunLedger.starting_at(T, 0, LedgerPolicy(overlap_ms=5 * MIN))
    s.collector = RunsCollector(s.client, s.ledger, lambda: s.now)  # type: ignore[arg-type]
    s.client.active = [raw(5, T - 20 * MIN)]
    s.collector.collect()  # fresh: run 5 is running (its repair), inherited
    s.client.active = []
    done = raw(5, T - 20 * MIN, T + 30_000, run_duration=3 * MIN)
    done["repair_history"] = [
        {"type": "ORIGINAL", "end_time": T - 15 * MIN, "state": {"result_state": "FAILED"}},
        {"type": "REPAIR", "end_time": T + 30_000, "state": {"result_state": "SUCCESS"}},
    ]
    s.client.completed.append(done)
    s.client.fail_gets = True
    for minute in range(1, 9):
        s.at(minute)
        assert s.owed() == [5]
    s.client.fail_gets = False
    for minute in range(9, 12):
        s.at(minute)
    assert s.counted() == (0, 0, 1) and s.owed() == []


def test_a_run_in_two_listings_whose_first_runs_get_fails_counts_once_and_is_no_repair(s):
    s.at(10)
    # A listing cut earlier: [T+4, T+8] still to read. Run 42 started inside it and inside this
    # cycle's own listing (from T+5): the backlog's copy is counted, the other copy owed.
    s.ledger.pending = [(T + 4 * MIN, T + 8 * MIN, T + 5 * MIN)]
    s.client.completed.append(raw(42, T + 7 * MIN, T + 10 * MIN + 30_000, tasks=150))
    s.client.fail_pattern = [True, False]
    for minute in (11, 12, 13, 14):
        s.at(minute)
    assert s.counted() == (1, 150, 0) and s.owed() == []


def test_a_run_whose_runs_get_says_it_runs_again_is_counted_whole_when_it_ends(s):
    s.client.completed.append(raw(42, T + 2 * MIN, T + 3 * MIN, "FAILED", tasks=150))
    running = raw(42, T + 2 * MIN, tasks=150)  # its repair started after the listing
    s.client.answer[42] = running
    s.at(4)
    assert s.counted() == (0, 0, 0)
    snap = s.collector.snapshot
    assert snap is not None and [r.run_id for r in snap.active] == [42]  # in flight: it runs
    repaired = raw(42, T + 2 * MIN, T + 6 * MIN, "SUCCESS", tasks=150, run_duration=2 * MIN)
    repaired["repair_history"] = [
        {"type": "ORIGINAL", "end_time": T + 3 * MIN, "state": {"result_state": "FAILED"}},
        {"type": "REPAIR", "end_time": T + 6 * MIN, "state": {"result_state": "SUCCESS"}},
    ]
    s.client.completed = [repaired]
    s.client.answer[42] = repaired
    s.at(7)
    s.at(8)
    assert s.counted() == (1, 150, 1)
    assert s.ledger.runs_total == {("1", "j", "FAILED"): 1}  # its original result


def test_a_run_owed_for_an_hour_is_counted_as_listed_with_a_warning(s, caplog):
    s.client.completed.append(raw(42, T + 2 * MIN, T + 3 * MIN, tasks=150))
    s.client.fail_gets = True
    caplog.set_level(logging.WARNING, logger="exporter.collectors.runs.collector")
    minute = 4
    while minute * MIN - 3 * MIN <= OWED_MS:
        s.at(minute)
        assert s.counted() == (0, 0, 0)
        minute += 1
    s.at(minute)  # over an hour after the run ended
    assert s.counted() == (1, 100, 0) and s.owed() == []
    assert any("counted as its listing shows it" in r.getMessage() for r in caplog.records)
    s.at(minute + 1)
    assert s.counted() == (1, 100, 0)  # once


def test_an_owed_run_survives_a_restart_through_the_state_file(s):
    from exporter.collectors.runs.persist import ledger_from_dict, ledger_to_dict

    s.client.completed.append(raw(42, T + 2 * MIN, T + 3 * MIN, tasks=150))
    s.client.fail_gets = True
    s.at(4)
    assert s.owed() == [42]
    restored = ledger_from_dict(json.loads(json.dumps(ledger_to_dict(s.ledger))), s.ledger.policy)
    s.ledger = restored
    s.collector = RunsCollector(s.client, restored, lambda: s.now)  # type: ignore[arg-type]
    s.client.fail_gets = False
    s.at(5)
    s.at(6)
    assert s.counted() == (1, 150, 0)


def test_an_owed_run_without_end_time_keeps_its_first_end_and_a_later_run_stays_the_last(s):
    """A terminal run with no end_time (inferred as the time observed) whose runs/get fails:
    its end stays the first cycle's, so a later run of its job stays the last run, and the
    owed run is still given up an hour after that end."""
    started_early = raw(5, T - 1 * MIN, run_duration=0)  # before the baseline: needs runs/get
    started_early["state"] = {"life_cycle_state": "TERMINATED", "result_state": "FAILED"}
    s.client.completed.append(started_early)
    s.client.fail_gets = True
    s.at(2)
    assert s.ledger.last_runs["1"].run_id == 5 and s.owed() == [5]
    s.client.completed.append(raw(6, T + 150_000, T + 3 * MIN))  # a later run succeeds
    s.at(4)
    s.at(5)
    last = s.ledger.last_runs["1"]
    assert last.run_id == 6 and not last.failed
    assert s.ledger.active[5].end_ms == T + 2 * MIN
    s.at(2 + OWED_MS / MIN + 1)
    assert s.owed() == []  # given up: counted as listed, once
    assert s.ledger.runs_total == {("1", "j", "SUCCESS"): 1, ("1", "j", "FAILED"): 1}
