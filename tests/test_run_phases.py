"""Where runs' time goes (issue 27): each task's queue, setup, execution and cleanup by the
compute it ran on, the clusters runs started, and runs by compute kind, against the
simulator's truth over loopback, and the Jobs API's shapes one by one."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import replace

import pytest

from databricks_simulator import SimConfig
from exporter.collectors.runs.ledger import (
    SERIES_PER_JOB,
    SERIES_PER_PHASE_SET,
    SERIES_PER_START_UP,
    RunLedger,
)
from exporter.collectors.runs.model import BadRun, parse_run
from exporter.collectors.runs.persist import ledger_from_dict, ledger_to_dict
from exporter.collectors.runs.phases import (
    ALL_PURPOSE,
    COMPUTE_KINDS,
    ON_DEMAND,
    PHASES,
    POOL,
    SERVERLESS,
    UNKNOWN,
    run_phases,
    start_ups,
)
from tests.test_runs_collector import setup

NOW = 1_800_000_000_000
MIN = 60_000

WORLD = SimConfig(
    seed=11,
    jobs=24,
    history_hours=3,
    period_seconds=(120, 400),
    duration_seconds=(60, 900),
    multi_task_rate=0.5,
    queue_rate=0.4,
    fail_rate=0.3,
    one_time_jobs=3,
    wide_jobs=1,
    pools=3,
)


def _sums(histograms) -> tuple[dict, dict]:
    seconds: Counter = Counter()
    counts: Counter = Counter()
    for (owner, _, phase, compute), hist in histograms.items():
        seconds[(owner, phase, compute)] += hist.total
        if phase == "setup":
            counts[(owner, compute)] += hist.count
    return dict(seconds), dict(counts)


def test_phase_sums_compute_kinds_and_start_ups_match_the_simulator_truth():
    server, collector, clock = setup(WORLD, lookback_hours=0.5)
    try:
        collector.collect()
        baseline = collector.ledger.baseline_ms
        for _ in range(40):
            clock.advance(60)
            collector.collect()
        truth = server.model.phase_truth(baseline, collector.ledger.watermark_ms)
        ledger = collector.ledger
        assert sum(ledger.runs_total.values()) > 100
        # Every compute kind the simulator has is seen (the world mixes them all).
        kinds = {key[3] for key in ledger.phases}
        assert kinds == {POOL, ON_DEMAND, ALL_PURPOSE, SERVERLESS, UNKNOWN}, kinds
        seconds, tasks = _sums(ledger.phases)
        one_time_seconds, one_time_tasks = _sums(ledger.one_time_phases)
        seconds.update(one_time_seconds)
        tasks.update(one_time_tasks)
        want = {k: v for k, v in truth["phase_seconds"].items()}
        assert set(seconds) == set(want)
        for key, value in want.items():
            assert seconds[key] == pytest.approx(value, abs=1.0), key
        assert tasks == truth["tasks"]
        assert dict(ledger.runs_by_compute) == {
            (job_id, name, compute): n
            for (job_id, name, _), _n in ledger.runs_total.items()
            for (jid, compute), n in truth["runs_by_compute"].items()
            if jid == job_id
        }
        got_start_ups = {k: h.count for k, h in ledger.start_ups.items()}
        assert got_start_ups == truth["start_ups"]
        for key, value in truth["start_up_seconds"].items():
            assert ledger.start_ups[key].total == pytest.approx(value, abs=1.0), key
        # Pools' start-ups are seconds, the cloud's minutes (the figure that justifies a pool).
        pool_p50 = _mean(ledger.start_ups, POOL)
        cloud_p50 = _mean(ledger.start_ups, ON_DEMAND)
        assert pool_p50 < 60 < cloud_p50
    finally:
        server.stop()


def _mean(start_up_hists, compute: str) -> float:
    hists = [h for (c, _, _), h in start_up_hists.items() if c == compute]
    return sum(h.total for h in hists) / sum(h.count for h in hists)


def test_each_run_s_phases_are_within_a_second_of_the_simulator_s():
    server, collector, clock = setup(WORLD, lookback_hours=0.5)
    try:
        collector.collect()
        baseline = collector.ledger.baseline_ms
        clock.advance(1800)
        collector.collect()
        truth = server.model.phase_truth(baseline, collector.ledger.watermark_ms)["runs"]
        host = server.url
        checked = 0
        for run_id, want in truth.items():
            raw = server.model.run_json(
                server.model.find_run(int(run_id)), clock.now_ms(), host, True
            )
            run = parse_run(raw, clock.now_ms())
            assert run is not None
            for phase in PHASES:
                got = sum(task.seconds(phase) for task in run.phases)
                assert math.isclose(got, want[phase], abs_tol=1.0), (run_id, phase)
            checked += 1
        assert checked > 50
    finally:
        server.stop()


def _task(key: str, **fields) -> dict:
    return {
        "task_key": key,
        "start_time": NOW,
        "setup_duration": 30_000,
        "execution_duration": 60_000,
        "cleanup_duration": 1_000,
        **fields,
    }


POOLED = {"spark_version": "15.4.x-scala2.12", "instance_pool_id": "pool-1", "num_workers": 2}
CLOUD = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2"}


@pytest.mark.parametrize(
    ("task", "job_clusters", "compute", "pool", "node"),
    [
        (_task("a", existing_cluster_id="0101-allpurp"), [], ALL_PURPOSE, "", ""),
        (_task("a", new_cluster=POOLED), [], POOL, "pool-1", ""),
        (
            _task("a", new_cluster={**CLOUD, "driver_instance_pool_id": "pool-d"}),
            [],
            POOL,
            "pool-d",
            "",
        ),
        (_task("a", new_cluster=CLOUD), [], ON_DEMAND, "", "Standard_DS3_v2"),
        (
            _task("a", job_cluster_key="jc"),
            [{"job_cluster_key": "jc", "new_cluster": POOLED}],
            POOL,
            "pool-1",
            "",
        ),
        (
            _task("a", job_cluster_key="jc"),
            [{"job_cluster_key": "jc", "new_cluster": CLOUD}],
            ON_DEMAND,
            "",
            "Standard_DS3_v2",
        ),
        # A job cluster the run does not describe: pool or not is not known.
        (_task("a", job_cluster_key="jc"), [], UNKNOWN, "", ""),
        (_task("a", environment_key="default"), [], SERVERLESS, "", ""),
        (_task("a", notebook_task={"notebook_path": "/x"}), [], SERVERLESS, "", ""),
        (_task("a", sql_task={"warehouse_id": "w"}), [], UNKNOWN, "", ""),
        (_task("a", pipeline_task={"pipeline_id": "p"}), [], UNKNOWN, "", ""),
        # Hostile: a spec that is not an object, ids that are not text or absurdly long.
        (_task("a", new_cluster="big"), [], UNKNOWN, "", ""),
        (
            _task("a", new_cluster={"instance_pool_id": 7, "node_type_id": "x" * 500}),
            [],
            ON_DEMAND,
            "",
            "",
        ),
        (
            _task("a", existing_cluster_id=["x"], new_cluster=CLOUD),
            [],
            ON_DEMAND,
            "",
            "Standard_DS3_v2",
        ),
    ],
)
def test_the_compute_of_a_task(task, job_clusters, compute, pool, node):
    (phases,) = run_phases({"tasks": [task], "job_clusters": job_clusters}, 0)
    assert (phases.compute, phases.pool_id, phases.node_type_id) == (compute, pool, node)
    assert compute in COMPUTE_KINDS
    assert (phases.setup_ms, phases.execution_ms, phases.cleanup_ms) == (30_000, 60_000, 1_000)


def test_orchestration_tasks_use_no_compute_and_hostile_durations_count_as_nothing():
    phases = run_phases(
        {
            "tasks": [
                _task("gate", condition_task={"op": "EQUAL_TO", "left": "1", "right": "1"}),
                _task("child", run_job_task={"job_id": 3}),
                _task("each", for_each_task={"inputs": "[1]"}),
                _task("work", setup_duration="soon", execution_duration=-5, cleanup_duration=1e30),
                _task("ok", setup_duration=True, execution_duration="7000"),
            ]
        },
        0,
    )
    # Durations that are not durations count as nothing; a task with none never ran.
    assert len(phases) == 1
    assert (phases[0].setup_ms, phases[0].execution_ms, phases[0].cleanup_ms) == (0, 7_000, 1_000)


def test_tasks_that_never_ran_have_no_phases_compute_or_start_up():
    never = {"setup_duration": 0, "execution_duration": 0, "cleanup_duration": 0}
    raw = {
        "job_clusters": [{"job_cluster_key": "jc", "new_cluster": POOLED}],
        "tasks": [
            _task("main", job_cluster_key="jc"),
            # The on-failure handler, excluded when all went well: it never ran.
            _task("on_failure", existing_cluster_id="0101-allpurp", **never),
            _task("after", new_cluster=CLOUD, **never),  # upstream failed
            _task("report", sql_task={"warehouse_id": "w"}),
        ],
    }
    phases = run_phases(raw, 5_000)
    assert [p.compute for p in phases] == [POOL, UNKNOWN]
    assert phases[0].queue_ms == 5_000
    # The SQL warehouse's task starts no cluster of the run.
    assert [(s.compute, s.setup_seconds) for s in start_ups(phases)] == [(POOL, 30.0)]


@pytest.mark.parametrize("field", ["tasks", "job_clusters", "repair_history"])
@pytest.mark.parametrize("value", [5, True, 1.5, "x", {"a": 1}])
def test_an_array_that_is_not_one_makes_the_run_untrusted_not_the_cycle_fail(field, value):
    raw = {
        "run_id": 1,
        "job_id": 1,
        "start_time": NOW,
        "end_time": NOW + MIN,
        "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"},
        field: value,
    }
    with pytest.raises(BadRun) as info:
        parse_run(raw, NOW + 2 * MIN)
    assert info.value.reason == "wrong_type"


def test_the_run_s_queue_goes_once_to_the_first_task_unless_tasks_report_their_own():
    tasks = [_task("b", start_time=NOW + 5_000), _task("a"), _task("c")]
    phases = run_phases({"tasks": tasks}, 42_000)
    assert [p.queue_ms for p in phases] == [0, 42_000, 0]
    own = [_task("a", queue_duration=3_000), _task("b", queue_duration=4_000)]
    assert [p.queue_ms for p in run_phases({"tasks": own}, 42_000)] == [3_000, 4_000]


def test_a_run_without_tasks_is_one_task_of_its_own_and_a_skipped_one_is_none():
    legacy = {
        "setup_duration": 20_000,
        "execution_duration": 100_000,
        "cleanup_duration": 500,
        "cluster_spec": {"existing_cluster_id": "0101-x"},
    }
    (phases,) = run_phases(legacy, 7_000)
    assert (phases.compute, phases.queue_ms, phases.setup_ms) == (ALL_PURPOSE, 7_000, 20_000)
    # A multi-task run listed without its tasks (or skipped) reports 0 for its phases.
    assert run_phases({"run_duration": 60_000}, 0) == ()
    assert run_phases({"queue_duration": 60_000}, 60_000) == ()  # ended while queued
    (unknown,) = run_phases({"execution_duration": 5_000}, 0)
    assert unknown.compute == UNKNOWN


def test_a_shared_job_cluster_is_one_start_up_and_each_own_cluster_attempt_is_one():
    phases = run_phases(
        {
            "job_clusters": [{"job_cluster_key": "jc", "new_cluster": POOLED}],
            "tasks": [
                _task("a", job_cluster_key="jc", setup_duration=40_000),
                _task("b", job_cluster_key="jc", setup_duration=1_000),
                _task("c", new_cluster=CLOUD, attempt_number=0, setup_duration=300_000),
                _task("c", new_cluster=CLOUD, attempt_number=1, setup_duration=250_000),
                _task("d", environment_key="default", setup_duration=9_000),
            ],
        },
        0,
    )
    got = sorted((s.compute, s.setup_seconds) for s in start_ups(phases))
    assert got == [(ON_DEMAND, 250.0), (ON_DEMAND, 300.0), (POOL, 40.0), (SERVERLESS, 9.0)]


def _counted_run(run_id: int, job_id: int, tasks: list[dict]) -> object:
    raw = {
        "run_id": run_id,
        "job_id": job_id,
        "run_name": f"job{job_id}",
        "start_time": NOW + MIN,
        "end_time": NOW + 2 * MIN,
        "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"},
        "tasks": tasks,
    }
    run = parse_run(raw, NOW + 3 * MIN)
    assert run is not None
    return run


def test_phase_series_beyond_max_series_fold_and_runs_keep_their_own_job():
    book = RunLedger.starting_at(NOW, 0, replace(RunLedger(0, 0).policy))
    # Two jobs and their task key, one phase set, one start-up, their runs by compute.
    room = 2 * (SERIES_PER_JOB + 3) + SERIES_PER_PHASE_SET + SERIES_PER_START_UP + 2
    book.policy = replace(book.policy, max_jobs=2, max_series=room)
    runs = [
        _counted_run(1, 1, [_task("a", new_cluster=POOLED)]),
        _counted_run(2, 2, [_task("a", existing_cluster_id="c1")]),
    ]
    book.apply(NOW + 3 * MIN, [], runs)
    owners = {key[0] for key in book.phases}
    assert owners == {"1", "__other__"}  # job 2's phases had no room
    assert book.runs_by_compute[("2", "job2", ALL_PURPOSE)] == 1  # its runs keep their job
    assert len(book.folded_phase_sets) == 1  # job 2's all-purpose phases
    assert book.folded_start_ups == {(ALL_PURPOSE, "", "")}  # and its start-up
    assert book.snapshot().folded_phase_sets == 2
    assert book.series_budget_used <= book.policy.max_series


def test_phases_never_make_a_job_fold_they_fold_first():
    book = RunLedger.starting_at(NOW, 0, RunLedger(0, 0).policy)
    jobs = 60
    book.policy = replace(book.policy, max_jobs=jobs, max_series=jobs * SERIES_PER_JOB + 1000)
    wide = [_task(f"t{i}", job_cluster_key="jc", new_cluster=POOLED) for i in range(3)]
    runs = [
        _counted_run(j, j, [*wide, _task("x", existing_cluster_id="c")]) for j in range(1, jobs + 1)
    ]
    book.apply(NOW + 3 * MIN, [], runs)
    assert not book.folded  # every job keeps its own series
    assert {job_id for job_id, _, _ in book.runs_total} == {str(j) for j in range(1, jobs + 1)}
    assert book.snapshot().folded_phase_sets > 0  # the phases folded instead
    assert book.core_series_used <= book.policy.max_series
    # The phases took what was left for them when they came: later jobs' task keys (4 x 3)
    # and runs by compute (2) can take the total past max_series by their own, no more.
    assert book.series_budget_used <= book.policy.max_series + jobs * (4 * 3 + 2)


def test_phases_survive_the_state_file_and_a_snapshot_never_changes_afterwards():
    book = RunLedger.starting_at(NOW, 0, RunLedger(0, 0).policy)
    book.apply(NOW + 3 * MIN, [], [_counted_run(1, 1, [_task("a", new_cluster=POOLED)])])
    before = book.snapshot()
    frozen = {k: (h.total, h.count) for k, h in before.phases.items()}
    restored = ledger_from_dict(json.loads(json.dumps(ledger_to_dict(book))))
    assert restored.phases == book.phases
    assert restored.start_ups == book.start_ups
    assert restored.runs_by_compute == book.runs_by_compute
    assert restored.known_phase_sets == book.known_phase_sets
    book.apply(NOW + 4 * MIN, [], [_counted_run(2, 1, [_task("a", new_cluster=POOLED)])])
    assert {k: (h.total, h.count) for k, h in before.phases.items()} == frozen
    assert book.snapshot().phases != before.phases


def test_a_task_that_ended_while_queued_is_no_start_up():
    queued = _task("a", new_cluster=CLOUD, queue_duration=90_000, setup_duration=0)
    queued.update(execution_duration=0, cleanup_duration=0)
    assert run_phases({"tasks": [queued]}, 0) == ()


def test_a_lowered_max_series_still_leaves_phases_room_and_folds_warn_once(caplog):
    book = RunLedger.starting_at(NOW, 0, RunLedger(0, 0).policy)
    book.policy = replace(book.policy, max_series=150_000)  # below max_jobs (5000) x 40
    book.apply(
        NOW + 3 * MIN, [], [_counted_run(j, j, [_task("a", new_cluster=POOLED)]) for j in (1, 2)]
    )
    assert {key[0] for key in book.phases} == {"1", "2"}
    # Start-ups past their cap fold into "__other__", counted, with one warning.
    book.policy = replace(book.policy, max_series=book.series_budget_used)
    nodes = [{**CLOUD, "node_type_id": f"Standard_D{n}"} for n in range(30)]
    runs = [_counted_run(10 + n, 1, [_task("a", new_cluster=node)]) for n, node in enumerate(nodes)]
    with caplog.at_level("WARNING"):
        book.apply(NOW + 4 * MIN, [], runs)
    assert len([r for r in caplog.records if "series reached" in r.message]) == 1
    assert book.start_ups[(ON_DEMAND, "__other__", "__other__")].count == 30
    assert len(book.folded_start_ups) == 30 and len(book.folded_phase_sets) == 1  # on_demand
    assert book.snapshot().folded_phase_sets == 31


def test_a_restart_remembers_that_the_workspace_folds_jobs():
    book = RunLedger.starting_at(NOW, 0, RunLedger(0, 0).policy)
    book.policy = replace(book.policy, max_jobs=1)
    book.apply(NOW + 3 * MIN, [], [_counted_run(1, 1, []), _counted_run(2, 2, [])])
    assert book.snapshot().folded_jobs == 1
    restored = ledger_from_dict(json.loads(json.dumps(ledger_to_dict(book))), book.policy)
    assert restored.snapshot().folded_jobs == 1 and restored.known_jobs == {"1"}
