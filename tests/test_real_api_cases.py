"""The Jobs API's awkward cases, end to end through the runs collector over loopback HTTP:
deleted jobs, status-only runs, one-time runs, repairs, >100 tasks, continuous jobs, queues."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from conftest import drain, select, sim_env

from databricks_simulator import FaultRule, SimClock, SimConfig, SimServer, SimWorkspace
from exporter.auth import DatabricksAuth
from exporter.client import RUNS_GET, DatabricksClient
from exporter.collectors.pools import PoolsCollector
from exporter.collectors.runs import RunsCollector
from exporter.collectors.runs.families import active_age_family, job_families
from exporter.collectors.runs.ledger import LedgerPolicy, RunLedger
from exporter.config import WorkspaceConfig
from exporter.health import WorkspaceHealth
from exporter.outcomes import is_failure
from exporter.servertime import ServerClock

MIN = 60_000
BASE = SimConfig(
    seed=21,
    jobs=10,
    history_hours=2,
    period_seconds=(120, 300),
    duration_seconds=(20, 200),
    fail_rate=0.5,
    long_run_rate=0.0,
)


def setup(**overrides: Any) -> tuple[SimServer, RunsCollector, SimClock]:
    clock = SimClock()
    clock.set(1_800_000_000.0)
    config = SimConfig(**{**BASE.__dict__, **overrides})
    server = SimServer(SimWorkspace(config, clock)).start()
    health = WorkspaceHealth()
    auth = DatabricksAuth(WorkspaceConfig(name="t", host=server.url, token=server.token), health)
    client = DatabricksClient(
        "t",
        server.url,
        auth,
        health,
        backoff_factor=0.01,
        max_retries=1,
        server_clock=ServerClock("t", elapsed=clock.time, wall=clock.time),
    )
    ledger = RunLedger.starting_at(clock.now_ms(), 3600_000, LedgerPolicy(overlap_ms=5 * MIN))
    return server, RunsCollector(client, ledger, clock.now_ms), clock


def run_cycles(collector: RunsCollector, clock: SimClock, n: int, step: float = 60) -> None:
    for _ in range(n):
        clock.advance(step)
        collector.collect()


def truth_of(server: SimServer, after_ms: int, part: str, key: tuple[str, ...]) -> Counter:
    return Counter(
        {tuple(row[k] for k in key): row["count"] for row in server.model.truth(after_ms)[part]}
    )


JOB_KEY = ("job_id", "job_name", "result_state")


@pytest.fixture
def sims():
    servers: list[SimServer] = []

    def make(**overrides: Any) -> tuple[SimServer, RunsCollector, SimClock]:
        server, collector, clock = setup(**overrides)
        servers.append(server)
        return server, collector, clock

    yield make
    for server in servers:
        server.stop()


def test_a_job_deleted_mid_run_is_dropped_once_and_counting_goes_on(sims):
    server, collector, clock = sims(duration_seconds=(1500, 1800), fail_rate=0.0)
    collector.collect()
    baseline = clock.now_ms()
    run_cycles(collector, clock, 3)
    victim = next(iter(collector.ledger.active.values()))
    server.model.delete_job(int(victim.job_id))
    run_cycles(collector, clock, 40)  # every cycle succeeds (collect() raises otherwise)
    assert collector.ledger.vanished_runs >= 1
    assert victim.run_id not in collector.ledger.active
    counted = Counter(
        {k: v for k, v in collector.ledger.runs_total.items() if k[0] != victim.job_id}
    )
    assert counted == truth_of(server, baseline, "runs", JOB_KEY)
    assert sum(counted.values()) > 20


def test_an_error_about_one_run_keeps_it_and_never_fails_the_cycle(sims):
    server, collector, clock = sims(duration_seconds=(1500, 1800), fail_rate=0.0)
    collector.collect()
    baseline = clock.now_ms()
    run_cycles(collector, clock, 30)
    server.add_faults(FaultRule(path_prefix=RUNS_GET, status=500, count=1000))
    active_before = set(collector.ledger.active)
    run_cycles(collector, clock, 3)  # runs/get fails for every run: the cycles still succeed
    assert active_before <= set(collector.ledger.active) | set(collector.ledger.seen)
    server.faults.clear()
    run_cycles(collector, clock, 3)
    assert collector.ledger.runs_total == truth_of(server, baseline, "runs", JOB_KEY)


def test_status_only_runs_get_their_real_result_and_failures_are_flagged(sims):
    server, collector, clock = sims(status_only_rate=1.0, fail_rate=0.9)
    collector.collect()
    baseline = clock.now_ms()
    run_cycles(collector, clock, 20)
    counted = collector.ledger.runs_total
    assert counted == truth_of(server, baseline, "runs", JOB_KEY)
    results = {result for (_, _, result) in counted}
    assert {"FAILED", "TIMEDOUT", "INTERNAL_ERROR", "CANCELED"} <= results
    assert "NONE" not in results
    assert collector.ledger.tasks_total == truth_of(
        server, baseline, "tasks", ("job_id", "job_name", "task_key", "result_state")
    )
    failed = [r for r in collector.ledger.last_runs.values() if r.failed]
    assert failed and all(
        r.result_state in ("FAILED", "TIMEDOUT", "INTERNAL_ERROR") for r in failed
    )


def test_one_time_runs_are_counted_by_normalised_name_never_by_job_id(sims):
    server, collector, clock = sims(one_time_jobs=4, jobs=8)
    collector.collect()
    baseline = clock.now_ms()
    run_cycles(collector, clock, 30)
    ledger = collector.ledger
    assert ledger.one_time_total == truth_of(
        server, baseline, "one_time", ("run_name", "run_type", "result_state")
    )
    assert sum(ledger.one_time_total.values()) > 30
    # Four names, however many submissions; no job series, no job cap spent on them.
    assert len({name for name, _, _ in ledger.one_time_total}) == 4
    assert {"SUBMIT_RUN", "WORKFLOW_RUN"} == {t for _, t, _ in ledger.one_time_total}
    real_jobs = {str(job.job_id) for job in server.model.jobs[:4]}
    assert set(ledger.last_runs) <= real_jobs and ledger.known_jobs <= real_jobs
    assert {job_id for job_id, _, _ in ledger.runs_total} <= real_jobs
    assert ledger.runs_total == truth_of(server, baseline, "runs", JOB_KEY)


def test_one_time_run_names_beyond_the_cap_are_folded(sims):
    _, collector, clock = sims(one_time_jobs=4, jobs=8)
    collector.ledger.policy = LedgerPolicy(
        overlap_ms=collector.ledger.overlap_ms, max_one_time_names=2
    )
    collector.collect()
    run_cycles(collector, clock, 10)
    names = {name for name, _, _ in collector.ledger.one_time_total}
    assert "__other__" in names and len(names) == 3


@pytest.mark.parametrize("delay", [120, 1800], ids=["within-overlap", "after-overlap"])
def test_repairs_are_counted_apart_and_move_the_last_run_to_the_repaired_outcome(sims, delay):
    server, collector, clock = sims(repair_rate=1.0, repair_delay_seconds=delay, fail_rate=0.6)
    collector.collect()
    baseline = clock.now_ms()
    run_cycles(collector, clock, 60)
    ledger = collector.ledger
    assert ledger.runs_total == truth_of(server, baseline, "runs", JOB_KEY)
    repairs = truth_of(server, baseline, "repairs", JOB_KEY)
    assert ledger.repairs_total == repairs and sum(repairs.values()) > 5
    now = clock.now_ms()
    for job in server.model.jobs:
        last = ledger.last_runs[str(job.job_id)]
        sim_run = server.model.find_run(int(last.run_id))
        assert sim_run is not None
        assert last.failed == (is_failure(sim_run.outcome) and not sim_run.repaired(now))


def test_runs_with_more_than_100_tasks_count_every_task(sims):
    server, collector, clock = sims(wide_jobs=2, fail_rate=0.3)
    collector.collect()
    baseline = clock.now_ms()
    run_cycles(collector, clock, 15)
    tasks = collector.ledger.tasks_total
    assert tasks == truth_of(
        server, baseline, "tasks", ("job_id", "job_name", "task_key", "result_state")
    )
    wide = {key[0] for key in tasks if key[2] == "t129"}
    assert len(wide) == 2


def owed_while_runs_get_fails(
    server: SimServer,
    collector: RunsCollector,
    clock: SimClock,
    each_cycle: Callable[[set[int | str]], None] | None = None,
) -> set[int | str]:
    """Eight cycles with every runs/get failing; the runs owed their details meanwhile (kept
    in the ledger's active runs though over). ``each_cycle`` checks after each cycle."""
    server.add_faults(FaultRule(path_prefix=RUNS_GET, status=500, count=10_000))
    owed: set[int | str] = set()
    for _ in range(8):
        run_cycles(collector, clock, 1)
        owed |= {rid for rid, run in collector.ledger.active.items() if run.terminal}
        if each_cycle is not None:
            each_cycle(owed)
    server.faults.clear()
    return owed


def test_a_run_whose_details_fail_is_counted_once_with_every_task_when_asked_again(sims):
    """runs/get failing for a run the listing cut at 100 tasks: the run is not counted with
    the tasks it lacks, nor shown in flight, but asked for again and then counted whole."""
    server, collector, clock = sims(wide_jobs=2, fail_rate=0.5)
    collector.collect()
    baseline = clock.now_ms()
    run_cycles(collector, clock, 3)

    def not_counted_nor_in_flight(owed: set[int | str]) -> None:
        snap = collector.snapshot
        assert snap is not None and not [r for r in snap.active if r.terminal]
        assert not owed & set(collector.ledger.seen)  # owed, so not counted yet

    owed = owed_while_runs_get_fails(server, collector, clock, not_counted_nor_in_flight)
    run_cycles(collector, clock, 2)
    ledger = collector.ledger
    assert ledger.runs_total == truth_of(server, baseline, "runs", JOB_KEY)
    assert ledger.tasks_total == truth_of(
        server, baseline, "tasks", ("job_id", "job_name", "task_key", "result_state")
    )
    assert len(owed) >= 2  # wide runs ended while runs/get failed
    assert owed <= set(ledger.seen) and not owed & set(ledger.active)


def test_a_run_owed_its_details_and_repaired_meanwhile_counts_once_and_its_repair_apart(sims):
    """The failed run whose runs/get failed is repaired before runs/get answers again: the
    history then says its original attempt ended cycles ago, which must not pass for a run
    counted long ago (only its repair counted): it counts once, its repair apart."""
    server, collector, clock = sims(
        wide_jobs=2, fail_rate=0.7, repair_rate=1.0, repair_delay_seconds=90, repair_seconds=30
    )
    collector.collect()
    baseline = clock.now_ms()
    run_cycles(collector, clock, 3)
    owed = owed_while_runs_get_fails(server, collector, clock)
    run_cycles(collector, clock, 6)
    ledger = collector.ledger
    assert ledger.runs_total == truth_of(server, baseline, "runs", JOB_KEY)
    assert ledger.repairs_total == truth_of(server, baseline, "repairs", JOB_KEY)
    now = clock.now_ms()
    repaired = [rid for rid in owed if server.model.find_run(int(rid)).repair_start_ms]
    assert repaired and all(server.model.find_run(int(r)).repaired(now) for r in repaired)


def test_continuous_jobs_are_marked_and_queued_time_is_not_running_time(sims):
    server, collector, clock = sims(
        continuous_jobs=1, queue_rate=1.0, fail_rate=0.0, duration_seconds=(600, 1200)
    )
    collector.collect()
    run_cycles(collector, clock, 3, step=5)
    snap = collector.snapshot
    assert snap is not None
    families = {f.name: f for f in job_families([("t", snap)])}
    continuous = {s.labels["job_id"] for s in families["databricks_job_continuous"].samples}
    assert continuous == {str(server.model.jobs[0].job_id)}
    queued = [r for r in snap.active if r.queued]
    running = [r for r in snap.active if not r.queued and r.queue_ms]
    assert queued and running
    now = clock.time()
    ages = {
        s.labels["job_id"]: s.value for s in next(active_age_family([("t", snap)], now)).samples
    }
    expected: dict[str, float] = {}
    for run in snap.active:
        if not run.queued:
            since = now - (run.start_ms + run.queue_ms) / 1000
            expected[run.job_id] = max(expected.get(run.job_id, 0.0), since)
    assert ages == pytest.approx(expected)


def exported(proc: Any, name: str, labels: tuple[str, ...]) -> Counter:
    return Counter(
        {
            tuple(dict(k)[label] for label in labels): v
            for k, v in select(proc.samples(), name).items()
        }
    )


def test_every_case_counts_exactly_through_faults_and_sigkill_restarts(
    make_sim, exporter, tmp_path
):
    server = make_sim(
        jobs=12,
        one_time_jobs=3,
        continuous_jobs=1,
        continuous_run_seconds=4,
        wide_jobs=1,
        status_only_rate=0.3,
        repair_rate=0.7,
        # Longer than a restart, even on a loaded machine: the failure is seen before the
        # repair (a run first seen already repaired counts its tasks as repaired, see README).
        repair_delay_seconds=30,
        repair_seconds=1.5,
        queue_rate=0.3,
        pool_error_rate=0.3,
    )
    server.fault_rate = 0.1  # 429 / 500 / 503 on a tenth of the requests
    state = tmp_path / "state.json"
    args = ["--interval", "0.5", "--state-file", str(state)]
    first = exporter(args, sim_env(server))
    first.wait_ready()
    time.sleep(3)
    (base,) = select(first.samples(), "databricks_exporter_baseline_timestamp_seconds").values()
    for _ in range(2):
        first.stop(signal.SIGKILL)
        time.sleep(2)  # runs end and repairs happen while no exporter is watching
        first = exporter(args, sim_env(server))
        first.wait_ready()
        time.sleep(2)
    drain(server)
    time.sleep(32)  # the last repairs end after the last runs
    server.fault_rate = 0.0
    truth = server.model.truth(round(base * 1000))

    def rows(part: str, key: tuple[str, ...]) -> Counter:
        return Counter({tuple(r[k] for k in key): float(r["count"]) for r in truth[part]})

    one_time_key = ("run_name", "run_type", "result_state")
    task_key = ("job_id", "job_name", "task_key", "result_state")
    families = [
        ("databricks_job_runs_total", JOB_KEY, "runs"),
        ("databricks_one_time_runs_total", one_time_key, "one_time"),
        ("databricks_job_run_repairs_total", JOB_KEY, "repairs"),
        ("databricks_task_runs_total", task_key, "tasks"),
    ]
    want = {name: rows(part, key) for name, key, part in families}
    assert sum(want["databricks_job_runs_total"].values()) > 30
    assert sum(want["databricks_job_run_repairs_total"].values()) > 0
    assert want["databricks_one_time_runs_total"]

    def got() -> dict[str, Counter]:
        return {name: exported(first, name, key) for name, key, _ in families}

    deadline = time.monotonic() + 20  # a cycle or two after the last repair ended
    while got() != want and time.monotonic() < deadline:
        time.sleep(0.2)
    assert got() == want
    series = first.metrics_text()
    assert f'job_id="{800_000_000_000}' not in series  # no ephemeral job ids anywhere


HOSTILE_RUNS = [
    {"run_id": {"nested": 1}, "state": {"life_cycle_state": "TERMINATED"}},
    {"run_id": 9_000_001, "job_id": 1, "end_time": float("inf"), "start_time": 1},
    {"run_id": 9_000_002, "job_id": 1, "start_time": "soon", "end_time": 5},
    {"run_id": 9_000_003, "job_id": 1, "start_time": 1, "end_time": 253402300799000},
    {"run_id": [1, 2]},
    "not even an object",
    {"job_id": 1, "state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED"}},
]


def test_malformed_runs_in_the_listing_are_skipped_and_counts_stay_exact(sims):
    server, collector, clock = sims()
    server.extra_runs = HOSTILE_RUNS
    collector.collect()
    baseline = clock.now_ms()
    run_cycles(collector, clock, 10)  # every cycle succeeds: collect() would raise otherwise
    ledger = collector.ledger
    assert ledger.runs_total == truth_of(server, baseline, "runs", JOB_KEY)
    assert sum(ledger.runs_total.values()) > 20
    assert set(ledger.skipped_runs) == {
        "bad_run_id",
        "non_finite",
        "wrong_type",
        "impossible_time",
        "no_run_id",
    }
    assert "1" not in ledger.last_runs  # nothing of them reached a last-run gauge


def test_pool_start_errors_are_counted_with_databricks_own_message(sims, caplog):
    server, collector, clock = sims(pool_error_rate=1.0, pools=3)
    pools = PoolsCollector(collector.client)
    pools.collect()
    minute = clock.now_ms() // 60_000
    assert pools.snapshot is not None
    for p, pool in enumerate(pools.snapshot.pools):
        errors = server.model.pool_errors(p, minute)
        assert pool.pending_errors == len(errors) > 0
        assert pool.pending_error_message.startswith("Azure error code: QuotaExceeded")
    assert caplog.text.count("cannot start") == 3  # once per pool and message, not per cycle
    pools.collect()
    assert caplog.text.count("cannot start") == 3
