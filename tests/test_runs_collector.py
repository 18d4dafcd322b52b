"""The incremental runs collector in-process against the simulator, on a hand-moved clock."""

from __future__ import annotations

import json

import pytest

from databricks_simulator import FaultRule, SimClock, SimConfig, SimServer, SimWorkspace
from exporter.auth import DatabricksAuth
from exporter.client import RUNS_GET, RUNS_LIST, ApiError, DatabricksClient
from exporter.collectors.runs import RunsCollector
from exporter.collectors.runs.ledger import LedgerPolicy, RunLedger
from exporter.config import WorkspaceConfig
from exporter.health import WorkspaceHealth
from exporter.servertime import ServerClock

MIN = 60_000


def setup(
    config: SimConfig, lookback_hours: float = 1.0, overlap_ms: int = MIN
) -> tuple[SimServer, RunsCollector, SimClock]:
    clock = SimClock()
    clock.set(1_800_000_000.0)
    server = SimServer(SimWorkspace(config, clock)).start()
    health = WorkspaceHealth()
    auth = DatabricksAuth(WorkspaceConfig(name="t", host=server.url, token=server.token), health)
    server_clock = ServerClock("t", elapsed=clock.time, wall=clock.time)
    client = DatabricksClient(
        "t", server.url, auth, health, backoff_factor=0.01, server_clock=server_clock
    )
    ledger = RunLedger.starting_at(
        clock.now_ms(), int(lookback_hours * 3600_000), LedgerPolicy(overlap_ms=overlap_ms)
    )
    return server, RunsCollector(client, ledger, clock.now_ms), clock


def counted(collector: RunsCollector) -> int:
    return sum(collector.ledger.runs_total.values())


def test_steady_state_cost_does_not_grow_with_history():
    # 50 jobs, a run every 2-4 minutes, a week of history: ~25k runs.
    config = SimConfig(
        seed=3, jobs=50, history_hours=168, period_seconds=(120, 240), duration_seconds=(30, 300)
    )
    server, collector, clock = setup(config, lookback_hours=1)
    try:
        assert server.model.history_size() > 20_000
        collector.collect()
        baseline = clock.now_ms()
        costs = []
        for _ in range(10):
            clock.advance(60)
            before = server.requests_total()
            collector.collect()
            costs.append(server.requests_total() - before)
        truth = server.model.truth(baseline)
        assert counted(collector) == truth["total"]
        # Listing 6 minutes of runs (interval + overlap) of 50 jobs is 1-4 pages; active runs 1-2.
        assert max(costs) <= 8, costs
    finally:
        server.stop()


def test_runs_get_only_for_runs_that_left_the_active_list_and_started_before_the_window():
    config = SimConfig(
        seed=5,
        jobs=6,
        history_hours=2,
        period_seconds=(600, 900),
        duration_seconds=(2400, 2700),
        long_run_rate=0.0,
        fail_rate=0.0,
    )
    server, collector, clock = setup(config, lookback_hours=2)
    try:
        collector.collect()
        baseline = clock.now_ms()
        gets = 0
        for _ in range(60):
            clock.advance(60)
            before = server.stats.requests[RUNS_GET]
            collector.collect()
            gets += server.stats.requests[RUNS_GET] - before
        truth = server.model.truth(baseline)["total"]
        assert counted(collector) == truth > 0
        # Runs last 40-45 minutes: longer than a listing may reach back (30 minutes), so each
        # one that ended was fetched once with runs/get, and nothing else was.
        assert gets == truth
    finally:
        server.stop()


def test_a_listing_reaches_back_for_runs_that_left_the_active_list_when_that_is_cheaper():
    # Runs of 10-15 minutes, a few jobs: one page reaching back finds every run that ended,
    # where runs/get would cost a request each.
    config = SimConfig(
        seed=5,
        jobs=6,
        history_hours=2,
        period_seconds=(300, 400),
        duration_seconds=(600, 900),
        long_run_rate=0.0,
    )
    server, collector, clock = setup(config)
    try:
        collector.collect()
        baseline = clock.now_ms()
        gets, lists = 0, 0
        for _ in range(40):
            clock.advance(60)
            before_get, before_list = (
                server.stats.requests[RUNS_GET],
                server.stats.requests[RUNS_LIST],
            )
            collector.collect()
            gets += server.stats.requests[RUNS_GET] - before_get
            lists += server.stats.requests[RUNS_LIST] - before_list
        truth = server.model.truth(baseline)["total"]
        assert counted(collector) == truth > 10
        assert gets == 0
        assert lists == 2 * 40  # one active page, one completed page a cycle
    finally:
        server.stop()


def test_failed_cycle_changes_nothing_and_next_cycle_catches_up():
    config = SimConfig(
        seed=9, jobs=10, history_hours=1, period_seconds=(60, 120), duration_seconds=(10, 50)
    )
    server, collector, clock = setup(config)
    try:
        collector.collect()
        baseline = clock.now_ms()
        clock.advance(300)
        server.add_faults(FaultRule(path_prefix=RUNS_LIST, status=500, count=100))
        before = dict(collector.ledger.runs_total), collector.ledger.watermark_ms
        try:
            collector.collect()
            raise AssertionError("collection should have failed")
        except ApiError:
            pass
        assert (dict(collector.ledger.runs_total), collector.ledger.watermark_ms) == before
        server.faults.clear()
        clock.advance(600)  # a 15-minute outage in all
        collector.collect()
        truth = {
            (r["job_id"], r["job_name"], r["result_state"]): r["count"]
            for r in server.model.truth(baseline)["runs"]
        }
        assert dict(collector.ledger.runs_total) == truth
    finally:
        server.stop()


def test_startup_lookback_fills_last_run_of_every_job_without_counting():
    config = SimConfig(
        seed=2, jobs=15, history_hours=3, period_seconds=(300, 900), duration_seconds=(10, 100)
    )
    server, collector, _ = setup(config, lookback_hours=2)
    try:
        collector.collect()  # the first cycle reads no history: ready at once
        assert collector.ledger.backfill_progress == 0.0
        listed = server.stats.requests["/api/2.2/jobs/runs/list"]
        assert listed == 2  # the active and the completed listing, one page each
        while collector.ledger.backfill_window() is not None:
            assert collector.backfill(10) > 0
        assert len(collector.ledger.last_runs) == 15
        assert counted(collector) == 0
        assert collector.ledger.backfill_progress == 1.0
        snap = collector.snapshot
        assert snap is not None and len(snap.last_runs) == 15
        assert collector.backfill(10) == 0  # nothing left: no request
    finally:
        server.stop()


def test_the_lookback_stops_when_a_cycle_starts_and_goes_on_from_where_it_was():
    config = SimConfig(seed=3, jobs=30, history_hours=3, period_seconds=(60, 120))
    server, collector, clock = setup(config, lookback_hours=2)
    try:
        collector.collect()
        collector.busy.set()  # a cycle is running
        assert collector.backfill(10) == 0
        collector.busy.clear()
        assert collector.backfill(0.0) == 0  # no budget: no page
        window = collector.ledger.backfill_window()
        assert window is not None
        pages = 0
        while collector.ledger.backfill_window() is not None:
            pages += collector.backfill(0.05)  # a page or so per call, then a cycle
            clock.advance(60)
            collector.collect()
        assert pages > 10
        truth = server.model.truth(collector.ledger.baseline_ms)["total"]
        assert counted(collector) == truth > 0  # the history never counted a run
        assert len(collector.ledger.last_runs) == 30
    finally:
        server.stop()


def test_an_untrustworthy_runs_get_answer_falls_back_to_the_listing(requests_mock):
    host = "https://adb-1.2.azuredatabricks.net"
    now = 1_800_000_000_000
    listed = {
        "run_id": 7,
        "job_id": 1,
        "run_name": "wide",
        "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"},
        "start_time": now + MIN,
        "end_time": now + 2 * MIN,
        "has_more": True,  # more than 100 tasks: runs/get is asked for the rest
        "tasks": [{"task_key": "t0", "state": {"result_state": "SUCCESS"}}],
    }
    requests_mock.get(
        host + RUNS_LIST,
        [{"json": {"runs": [], "has_more": False}}, {"json": {"runs": [listed]}}],
    )
    requests_mock.get(host + RUNS_GET, json={"run_id": 7, "end_time": float("inf")})
    health = WorkspaceHealth()
    auth = DatabricksAuth(WorkspaceConfig(name="t", host=host, token="dapi-x-12345678"), health)
    client = DatabricksClient("t", host, auth, health, backoff_factor=0.01)
    collector = RunsCollector(
        client, RunLedger.starting_at(now, 0, LedgerPolicy(overlap_ms=5 * MIN)), lambda: now
    )
    assert collector.collect() == 1
    assert collector.ledger.runs_total == {("1", "wide", "SUCCESS"): 1}
    assert collector.ledger.skipped_runs == {"non_finite": 1}


@pytest.mark.parametrize("skew_s", [-120, 0, 120])
def test_exact_counts_with_the_exporter_clock_off_and_runs_listed_up_to_30_s_late(skew_s):
    # A busy workspace: runs of 20 s to 3 minutes, some listed half a minute after they start.
    config = SimConfig(
        seed=11,
        jobs=60,
        history_hours=1,
        period_seconds=(30, 90),
        duration_seconds=(20, 180),
        listing_lag_seconds=30,
    )
    server, collector, clock = setup(config)
    collector.clock_ms = lambda: clock.now_ms() + skew_s * 1000  # the exporter's own clock
    try:
        collector.collect()
        baseline = collector.ledger.baseline_ms
        for _ in range(30):
            clock.advance(60)
            collector.collect()
            # The cycle is timed by Databricks' answers, not by the exporter's clock.
            assert collector.ledger.watermark_ms == clock.now_ms()
        server.model.stop_ms = clock.now_ms()  # no new runs: let the last ones end and be listed
        for _ in range(5):
            clock.advance(60)
            collector.collect()
        truth = server.model.truth(baseline)["total"]
        assert truth > 500
        assert counted(collector) == truth  # every run that ended since the baseline, once
    finally:
        server.stop()


def test_asking_each_job_for_its_last_run_gives_what_paging_the_whole_lookback_gives(monkeypatch):
    from exporter.collectors.runs import collector as module

    config = SimConfig(seed=6, jobs=25, history_hours=8, period_seconds=(30, 600), fail_rate=0.6)
    results = {}
    for mode, probe in (("paged", 10**9), ("per job", module.PROBE_PAGES)):
        monkeypatch.setattr(module, "PROBE_PAGES", probe)
        server, collector, _ = setup(config, lookback_hours=6)
        try:
            collector.collect()
            before = server.requests_total()
            while collector.ledger.backfill_window() is not None:
                collector.backfill(60)
            cost = server.requests_total() - before
            ledger = collector.ledger
            results[mode] = (
                {job: run.run_id for job, run in ledger.last_runs.items()},
                dict(ledger.last_success_ms),
                cost,
                server.stats.requests["/api/2.2/jobs/list"],
            )
            assert sum(ledger.runs_total.values()) == 0  # the look-back never counts
        finally:
            server.stop()
    paged, per_job = results["paged"], results["per job"]
    assert len(paged[0]) == 25
    assert per_job[0] == paged[0] and per_job[1] == paged[1]
    assert per_job[3] == 1 and paged[3] == 0  # one jobs/list page for 25 jobs
    assert per_job[2] < paged[2] / 2  # and far fewer requests


def test_a_listing_past_max_pages_keeps_what_it_read_and_goes_on_next_cycles(monkeypatch):
    from exporter.collectors.runs import collector as module
    from exporter.collectors.runs.persist import ledger_from_dict, ledger_to_dict

    monkeypatch.setattr(module, "PENDING_PAGES", 2)  # a cut listing takes several cycles
    config = SimConfig(
        seed=8, jobs=20, history_hours=1, period_seconds=(60, 120), duration_seconds=(10, 50)
    )
    server, collector, clock = setup(config, overlap_ms=30_000)
    collector.client.max_pages = 3  # 75 runs a listing at most
    try:
        collector.collect()
        baseline = collector.ledger.baseline_ms
        for _ in range(3):
            clock.advance(60)
            assert collector.collect() >= 0
        assert not collector.ledger.pending
        clock.advance(45 * 60)  # the exporter was not watching: ~500 runs ended meanwhile
        counted_before = counted(collector)
        collector.collect()  # not wedged: counts the newest runs, defers the rest
        assert collector.ledger.pending
        assert counted(collector) > counted_before
        # What is still to be read survives a restart with the state file.
        again = ledger_from_dict(json.loads(json.dumps(ledger_to_dict(collector.ledger))))
        assert again.pending == collector.ledger.pending
        cycles = 0
        while collector.ledger.pending:
            clock.advance(60)
            collector.collect()
            cycles += 1
            assert cycles < 30
        assert cycles > 2  # two pages a cycle: it took several
        server.model.stop_ms = clock.now_ms()
        for _ in range(4):
            clock.advance(60)
            collector.collect()
        truth = server.model.truth(baseline)["total"]
        assert truth > 400
        assert counted(collector) == truth  # every run once, none twice
    finally:
        server.stop()
