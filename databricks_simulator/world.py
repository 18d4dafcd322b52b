"""The simulated workspace's world: jobs and their runs, pools, as pure functions of (seed,
job, run number, clock), so listing and ground truth need no background thread and history of
any size costs no memory; the clock may be real, accelerated or set by hand."""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from databricks_simulator.pipelines import SimPipelines
from databricks_simulator.truth import GroundTruth
from databricks_simulator.wire import OUTCOME_WIRE

log = logging.getLogger(__name__)

RUN_ID_BASE = 500_000_000_000
TASK_KEYS = ("ingest", "transform", "publish")
JOB_WORDS = (
    "orders",
    "customers",
    "events",
    "inventory",
    "payments",
    "clickstream",
    "billing",
    "sessions",
    "ledger",
    "catalog",
    "shipments",
    "returns",
    "reviews",
    "ads",
)
JOB_KINDS = ("daily_load", "hourly_merge", "compaction", "ml_features", "dq_checks", "export")
MASK64 = (1 << 64) - 1


def _mix(*values: int) -> int:
    """splitmix64 over the values: a fast, stable hash."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & MASK64)) * 0xBF58476D1CE4E5B9 & MASK64
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & MASK64
        h ^= h >> 29
    return h


def _unit(*values: int) -> float:
    return _mix(*values) / float(MASK64)


class SimClock:
    """Wall time, optionally accelerated (``speed``) or frozen and moved by hand (``set``)."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        self._real0 = time.time()
        self._sim0 = self._real0 if start is None else start
        self.speed = speed
        self._fixed: float | None = None

    def time(self) -> float:
        if self._fixed is not None:
            return self._fixed
        return self._sim0 + (time.time() - self._real0) * self.speed

    def now_ms(self) -> int:
        return int(self.time() * 1000)

    @property
    def frozen(self) -> bool:
        return self._fixed is not None

    def set(self, t: float) -> None:
        self._fixed = t

    def advance(self, seconds: float) -> None:
        self._fixed = self.time() + seconds


POOL_NODE_TYPES = ("Standard_DS3_v2", "Standard_E8ds_v5", "Standard_F4s_v2")


@dataclass(frozen=True)
class SimConfig:
    seed: int = 7
    jobs: int = 12
    history_hours: float = 24.0
    period_seconds: tuple[float, float] = (120.0, 900.0)
    duration_seconds: tuple[float, float] = (20.0, 600.0)
    fail_rate: float = 0.08  # share of runs that do not simply succeed (see SimWorkspace.run)
    long_run_rate: float = 0.02  # runs that take 10x their job's longest duration
    multi_task_rate: float = 0.4
    pools: int = 3
    workspace_id: int = 1234567890123456
    # What run_page_url points at: a realistic, fixed workspace URL (not the loopback port).
    public_host: str = "https://adb-1234567890123456.7.azuredatabricks.net"
    latency_ms: float = 0.0
    # The Jobs API's awkward cases, off unless asked for (make demo turns them all on).
    one_time_jobs: int = 0  # the last N jobs submit runs (runs/submit: a new job_id per run)
    continuous_jobs: int = 0  # the first N jobs are continuous (back-to-back long runs)
    continuous_run_seconds: float = 4 * 3600.0
    wide_jobs: int = 0  # the N jobs after the continuous ones have 130 tasks (>100: paged)
    status_only_rate: float = 0.0  # runs answered with `status` only, without legacy `state`
    repair_rate: float = 0.0  # failed runs repaired to SUCCESS repair_delay_seconds later
    repair_delay_seconds: float = 120.0
    repair_seconds: float = 180.0  # a repair starts clusters again: minutes
    queue_rate: float = 0.2  # runs that spend their first 10% queued (queue_duration)
    pool_error_rate: float = 0.0  # pool-minutes with instances that failed to start
    pool_step_seconds: float = 60.0  # pool counts change at most this often
    # Runs appear in runs/list up to this many seconds after they start (each its own delay,
    # as a real workspace's listing lags); runs/get answers at once.
    listing_lag_seconds: float = 0.0
    # > 0: the history starts at a multiple of this many seconds, so a simulator restarted
    # within that span replays the same runs (make demo with --state-file restores).
    align_origin_seconds: float = 0.0
    # Lakeflow (DLT) pipelines (databricks_simulator.pipelines): none unless asked for.
    pipelines: int = 0
    pipeline_period_seconds: tuple[float, float] = (600.0, 1800.0)
    pipeline_fail_rate: float = 0.2
    # Jobs listed by jobs/list with a live schedule that never run (databricks_simulator.
    # jobsettings: not among SimWorkspace.jobs, so no run of theirs exists).
    idle_jobs: int = 0


@dataclass(frozen=True)
class SimJob:
    index: int
    job_id: int
    name: str
    period_ms: int
    offset_ms: int
    min_ms: int
    max_ms: int
    tasks: tuple[str, ...]
    kind: str = "job"  # job | continuous | submit | workflow
    # What its tasks run on (see COMPUTE_PLANS); pool and node type index when it has them.
    compute: str = "pool"
    pool: int = 0
    node_type: str = "Standard_DS3_v2"


# Other failure codes a FAILED run may carry (all FAILED for the exporter).
FAILURE_CODES = (
    ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
    ("DRIVER_ERROR", "CLIENT_ERROR"),
    ("CLUSTER_ERROR", "CLIENT_ERROR"),
    ("LIBRARY_INSTALLATION_ERROR", "CLIENT_ERROR"),
    ("CLOUD_FAILURE", "CLOUD_FAILURE"),
    ("STORAGE_ACCESS_ERROR", "CLIENT_ERROR"),
    ("UNAUTHORIZED_ERROR", "CLIENT_ERROR"),
    ("REPOSITORY_CHECKOUT_FAILED", "CLIENT_ERROR"),
    ("RESOURCE_NOT_FOUND", "CLIENT_ERROR"),
    ("INVALID_RUN_CONFIGURATION", "CLIENT_ERROR"),
    ("MAX_SPARK_CONTEXTS_EXCEEDED", "CLIENT_ERROR"),
    ("WORKSPACE_RUN_LIMIT_EXCEEDED", "CLIENT_ERROR"),
    ("CLUSTER_REQUEST_LIMIT_EXCEEDED", "CLIENT_ERROR"),
    ("INVALID_CLUSTER_REQUEST", "CLIENT_ERROR"),
    ("FEATURE_DISABLED", "CLIENT_ERROR"),
    ("BUDGET_POLICY_LIMIT_EXCEEDED", "CLIENT_ERROR"),
    ("BREAKING_CHANGE", "INTERNAL_ERROR"),
)
# How the share fail_rate of runs that do not simply succeed splits (cumulative).
OUTCOME_MIX = (
    (0.45, "FAILED"),
    (0.55, "TIMEDOUT"),
    (0.63, "CANCELED"),
    (0.68, "SKIPPED"),
    (0.72, "MAXIMUM_CONCURRENT_RUNS_REACHED"),
    (0.76, "EXCLUDED"),
    (0.79, "DISABLED"),
    (0.84, "UPSTREAM_FAILED"),
    (0.87, "UPSTREAM_CANCELED"),
    (0.93, "INTERNAL_ERROR"),
    (1.00, "SUCCESS_WITH_FAILURES"),
)
SKIPPED_OUTCOMES = frozenset(
    {"SKIPPED", "MAXIMUM_CONCURRENT_RUNS_REACHED", "EXCLUDED", "DISABLED", "UPSTREAM_CANCELED"}
)
# Jobs' compute (cumulative shares): a job cluster from a pool, a job cluster from the cloud, an
# all-purpose cluster (existing_cluster_id), serverless, or a mix (its first task on an
# all-purpose cluster, its last a SQL task on a warehouse, the others on a pool's job cluster).
# Any ten jobs in a row have every kind.
COMPUTE_PLANS = (
    "pool",
    "on_demand",
    "pool",
    "all_purpose",
    "on_demand",
    "serverless",
    "pool",
    "mixed",
    "on_demand",
    "pool",
)
# How long each kind takes to give a task a cluster (ms): (least, most).
SETUP_MS = {
    "pool": (15_000, 45_000),
    "on_demand": (180_000, 420_000),
    "all_purpose": (200, 2_000),
    "serverless": (5_000, 20_000),
    "unknown": (1_000, 5_000),  # a SQL warehouse's
}
JOB_CLUSTER_KEY = "job_cluster"
# Task results of tasks that never started (every phase 0).
NEVER_RAN = frozenset({"UPSTREAM_FAILED", "UPSTREAM_CANCELED", "SKIPPED", "EXCLUDED"})
SPARK_VERSION = "15.4.x-scala2.12"
WIDE_TASKS = 130
TASK_PAGE = 100  # the API's cap on tasks per run in a listing or a runs/get page
ONE_TIME_JOB_BASE = 800_000_000_000


@dataclass(frozen=True)
class SimRun:
    job: SimJob
    k: int
    run_id: int
    start_ms: int
    duration_ms: int
    outcome: str  # the result_state label of the original attempt (OUTCOME_WIRE key)
    status_only: bool = False  # answered with `status` only (no legacy `state`)
    queue_ms: int = 0
    repair_start_ms: int = 0  # 0: never repaired
    repair_ms: int = 0

    @property
    def end_ms(self) -> int:
        """End of the original attempt."""
        return self.start_ms + self.duration_ms

    @property
    def repair_end_ms(self) -> int:
        return self.repair_start_ms + self.repair_ms if self.repair_start_ms else 0

    @property
    def last_end_ms(self) -> int:
        """When the run is finally over (after its repair, if any)."""
        return self.repair_end_ms or self.end_ms

    def done(self, now: int) -> bool:
        """Terminal at ``now`` (between the original end and a repair's start too)."""
        if now < self.end_ms:
            return False
        return not (self.repair_start_ms and self.repair_start_ms <= now < self.repair_end_ms)

    def end_time(self, now: int) -> int:
        """end_time as runs/list shows it at ``now`` (0 while active)."""
        if not self.done(now):
            return 0
        return self.repair_end_ms if self.repaired(now) else self.end_ms

    def repaired(self, now: int) -> bool:
        return bool(self.repair_start_ms) and now >= self.repair_end_ms

    @property
    def job_id(self) -> int:
        """One-time runs get a job of their own, as runs/submit does."""
        if self.job.kind in ("submit", "workflow"):
            return ONE_TIME_JOB_BASE + self.run_id
        return self.job.job_id

    @property
    def run_name(self) -> str:
        if self.job.kind == "submit" and self.job.index % 2:
            # Azure Data Factory's notebook activity: factory, pipeline, activity, pipeline run.
            return f"ADF_contoso-adf_{self.job.name}_notebook_{_guid(self.run_id)}"
        return self.job.name

    @property
    def normalised_name(self) -> str:
        """The name the exporter reports one-time runs by (the ADF run id becomes "*")."""
        if self.job.kind == "submit" and self.job.index % 2:
            return f"ADF_contoso-adf_{self.job.name}_notebook_*"
        return self.job.name

    @property
    def run_type(self) -> str:
        return {"submit": "SUBMIT_RUN", "workflow": "WORKFLOW_RUN"}.get(self.job.kind, "JOB_RUN")

    @property
    def label(self) -> str:
        """The result_state the exporter must report for the original attempt."""
        return OUTCOME_WIRE[self.outcome][4] if self.status_only else self.outcome


def _guid(n: int) -> str:
    h = f"{_mix(n, 99):016x}{_mix(n, 98):016x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class SimWorkspace(GroundTruth):
    """The model: jobs, runs, pools, ground truth. Thread-safe for reads."""

    def __init__(self, config: SimConfig | None = None, clock: SimClock | None = None) -> None:
        self.config = config or SimConfig()
        self.clock = clock or SimClock()
        self.origin_ms = self.clock.now_ms() - int(self.config.history_hours * 3600 * 1000)
        if self.config.align_origin_seconds > 0:
            align = int(self.config.align_origin_seconds * 1000)
            self.origin_ms -= self.origin_ms % align
        self.stop_ms: int | None = None
        self.jobs = [self._make_job(j) for j in range(self.config.jobs)]
        repair_span = int(self.config.repair_delay_seconds * 1000) if self.config.repair_rate else 0
        self.max_duration_ms = max(
            (job.max_ms * 10 + repair_span + job.min_ms for job in self.jobs), default=0
        )
        self.pipelines = SimPipelines(
            self.config.pipelines,
            self.origin_ms,
            self.config.seed,
            self.config.pipeline_period_seconds,
            self.config.pipeline_fail_rate,
        )
        self.deleted_pools: set[str] = set()
        self.deleted_jobs: dict[int, int] = {}  # job index -> when it was deleted (ms)

    # --- model -----------------------------------------------------------------------------

    def _kind(self, j: int) -> str:
        c = self.config
        if j < c.continuous_jobs:
            return "continuous"
        if j >= c.jobs - c.one_time_jobs:
            return "workflow" if (c.jobs - j) % 3 == 0 else "submit"
        return "job"

    def _make_job(self, j: int) -> SimJob:
        c = self.config
        seed = c.seed
        lo, hi = c.period_seconds
        period = lo + (hi - lo) * _unit(seed, j, 1)
        dlo, dhi = c.duration_seconds
        d1 = dlo + (dhi - dlo) * _unit(seed, j, 2)
        d2 = dlo + (dhi - dlo) * _unit(seed, j, 3)
        name = (
            f"{JOB_WORDS[j % len(JOB_WORDS)]}_{JOB_KINDS[(j // len(JOB_WORDS)) % len(JOB_KINDS)]}"
        )
        if j >= len(JOB_WORDS) * len(JOB_KINDS):
            name += f"_{j}"
        tasks: tuple[str, ...] = TASK_KEYS if _unit(seed, j, 4) < c.multi_task_rate else ("main",)
        kind = self._kind(j)
        if kind == "continuous":
            # Back to back: each run lasts until the next one starts.
            period = d1 = d2 = c.continuous_run_seconds
            name += "_stream"
        if c.continuous_jobs <= j < c.continuous_jobs + c.wide_jobs and kind == "job":
            tasks = tuple(f"t{i:03d}" for i in range(WIDE_TASKS))
        compute = COMPUTE_PLANS[(j + seed) % len(COMPUTE_PLANS)]
        if compute in ("pool", "mixed") and c.pools <= 0:
            compute = "on_demand"
        if compute == "mixed" and len(tasks) < 3:
            tasks = TASK_KEYS
        return SimJob(
            index=j,
            job_id=1000 + j * 7 + (_mix(seed, j) % 7),
            name=name,
            period_ms=max(int(period * 1000), 1),
            offset_ms=int(period * 1000 * _unit(seed, j, 5)),
            min_ms=max(int(min(d1, d2) * 1000), 1),
            max_ms=max(int(max(d1, d2) * 1000), 1),
            tasks=tasks,
            kind=kind,
            compute=compute,
            pool=_mix(seed, j, 7) % max(c.pools, 1),
            node_type=POOL_NODE_TYPES[_mix(seed, j, 8) % len(POOL_NODE_TYPES)],
        )

    def run(self, job: SimJob, k: int) -> SimRun:
        c = self.config
        seed = c.seed
        span = job.max_ms - job.min_ms
        duration = job.min_ms + int(span * _unit(seed, job.index, k, 10))
        if _unit(seed, job.index, k, 11) < c.long_run_rate and job.kind != "continuous":
            duration = job.max_ms * 10
        u = _unit(seed, job.index, k, 12)
        outcome = "SUCCESS"
        if u < c.fail_rate:
            share = u / c.fail_rate
            outcome = next(name for bound, name in OUTCOME_MIX if share < bound)
        if outcome in SKIPPED_OUTCOMES:
            duration = min(duration, 1000)
        if job.kind == "continuous":
            duration = max(job.period_ms - 1, 1)
        queue_ms = 0
        if _unit(seed, job.index, k, 14) < c.queue_rate and outcome not in SKIPPED_OUTCOMES:
            queue_ms = duration // 10
        start = self.origin_ms + job.offset_ms + k * job.period_ms
        repair_start = repair_ms = 0
        if (
            outcome in ("FAILED", "TIMEDOUT")
            and job.kind == "job"
            and _unit(seed, job.index, k, 15) < c.repair_rate
        ):
            repair_start = start + duration + int(c.repair_delay_seconds * 1000)
            repair_ms = max(int(c.repair_seconds * 1000), 1)
        return SimRun(
            job=job,
            k=k,
            run_id=RUN_ID_BASE + k * len(self.jobs) + job.index,
            start_ms=start,
            duration_ms=duration,
            outcome=outcome,
            status_only=_unit(seed, job.index, k, 16) < c.status_only_rate,
            queue_ms=queue_ms,
            repair_start_ms=repair_start,
            repair_ms=repair_ms,
        )

    def _last_k(self, job: SimJob, now: int) -> int:
        """Number of the job's last run that has started by now (may be -1)."""
        latest = now if self.stop_ms is None else min(now, self.stop_ms)
        deleted = self.deleted_jobs.get(job.index)
        if deleted is not None:
            latest = min(latest, deleted)
        return (latest - self.origin_ms - job.offset_ms) // job.period_ms

    def _k_at_or_after(self, job: SimJob, start_ms: int) -> int:
        return max(0, -(-(start_ms - self.origin_ms - job.offset_ms) // job.period_ms))

    def find_run(self, run_id: int) -> SimRun | None:
        rel = run_id - RUN_ID_BASE
        if rel < 0 or not self.jobs:
            return None
        k, j = divmod(rel, len(self.jobs))
        if j in self.deleted_jobs:
            return None  # deleting a job deletes its runs
        run = self.run(self.jobs[j], k)
        return run if k <= self._last_k(self.jobs[j], self.clock.now_ms()) else None

    def _job_runs_desc(
        self, job: SimJob, hi_start: int, lo_start: int
    ) -> Iterator[tuple[int, int, SimRun]]:
        k = self._last_k(job, self.clock.now_ms())
        k = min(k, (hi_start - self.origin_ms - job.offset_ms) // job.period_ms)
        k_lo = self._k_at_or_after(job, lo_start)
        while k >= k_lo:
            run = self.run(job, k)
            yield (-run.start_ms, -run.run_id, run)
            k -= 1

    def runs_desc(
        self,
        lo_start: int,
        hi_start: int,
        cursor: tuple[int, int] | None = None,
        job_id: int | None = None,
    ) -> Iterator[SimRun]:
        """Runs started in [lo_start, hi_start], newest first, strictly after the cursor."""
        jobs = [
            j
            for j in self.jobs
            if (job_id is None or j.job_id == job_id) and j.index not in self.deleted_jobs
        ]
        if cursor is not None:
            hi_start = min(hi_start, cursor[0])
        streams = [self._job_runs_desc(job, hi_start, lo_start) for job in jobs]
        for _, _, run in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
            if cursor is not None and (run.start_ms, run.run_id) >= cursor:
                continue
            yield run

    def is_active(self, run: SimRun, now: int) -> bool:
        return run.start_ms <= now and not run.done(now)

    def life_cycle(self, run: SimRun, now: int) -> str:
        if run.done(now):
            return OUTCOME_WIRE[self._result(run, now)][0]
        if run.repair_start_ms and now >= run.repair_start_ms:
            return "RUNNING"  # being repaired
        elapsed = now - run.start_ms
        if elapsed < run.queue_ms:
            return "QUEUED"
        if elapsed < run.duration_ms * 0.1:
            return "PENDING"
        if elapsed > run.duration_ms * 0.97:
            return "TERMINATING"
        return "RUNNING"

    @staticmethod
    def _result(run: SimRun, now: int) -> str:
        return "SUCCESS" if run.repaired(now) else run.outcome

    def task_results(self, run: SimRun, now: int | None = None) -> list[tuple[str, str]]:
        """(task_key, result_state label) of a finished run's tasks (after repairs at ``now``)."""
        keys = run.job.tasks
        outcome = run.outcome if now is None else self._result(run, now)
        if outcome in SKIPPED_OUTCOMES:
            return []
        if outcome == "SUCCESS_WITH_FAILURES":
            # An inner task failed; the leaves (run "all done") succeeded.
            return [
                (key, "FAILED" if i == 0 and len(keys) > 1 else "SUCCESS")
                for i, key in enumerate(keys)
            ]
        if outcome in ("FAILED", "TIMEDOUT"):
            bad = _mix(self.config.seed, run.job.index, run.k, 13) % len(keys)
            return [
                (key, "SUCCESS" if i < bad else outcome if i == bad else "UPSTREAM_FAILED")
                for i, key in enumerate(keys)
            ]
        if outcome in ("CANCELED", "UPSTREAM_FAILED"):
            return [
                (key, "CANCELED" if outcome == "CANCELED" else "UPSTREAM_FAILED") for key in keys
            ]
        if outcome == "INTERNAL_ERROR":
            return [(key, "INTERNAL_ERROR") for key in keys]
        return [(key, "SUCCESS") for key in keys]

    # --- API shapes ------------------------------------------------------------------------

    def _state_json(
        self, outcome: str | None, life_cycle: str, status_only: bool, message: str = ""
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(legacy state or None, status) of a run or task in ``life_cycle`` (terminal: outcome)."""
        status: dict[str, Any] = {"state": life_cycle}
        state: dict[str, Any] = {"life_cycle_state": life_cycle, "state_message": message}
        if outcome is not None:
            legacy_life, legacy_result, code, kind, _ = OUTCOME_WIRE[outcome]
            status["state"] = "TERMINATED"
            status["termination_details"] = {"code": code, "type": kind, "message": message}
            state["life_cycle_state"] = legacy_life
            if legacy_result:
                state["result_state"] = legacy_result
            state["user_cancelled_or_timedout"] = outcome in ("CANCELED", "TIMEDOUT")
        return (None if status_only else state), status

    def run_json(
        self,
        run: SimRun,
        now: int,
        host: str,
        expand_tasks: bool,
        history: bool = False,
    ) -> dict[str, Any]:
        done = run.done(now)
        life_cycle = self.life_cycle(run, now)
        result = self._result(run, now) if done else None
        url = f"{host}/?o={self.config.workspace_id}#job/{run.job_id}/run/{run.run_id}"
        message = ""
        if result == "FAILED":
            message = "Task failed with error: java.lang.RuntimeException: boom"
        elif result == "INTERNAL_ERROR":
            message = "Unexpected failure while waiting for the cluster to be ready"
        state, status = self._state_json(result, life_cycle, run.status_only, message)
        if result == "FAILED":
            code, kind = FAILURE_CODES[_mix(self.config.seed, run.run_id, 17) % len(FAILURE_CODES)]
            status["termination_details"].update(code=code, type=kind)
        if not done and life_cycle == "QUEUED":
            status["queue_details"] = {
                "code": "MAX_CONCURRENT_RUNS_REACHED",
                "message": "Queued: the job's maximum concurrent runs is reached.",
            }
        trigger = {"continuous": "CONTINUOUS", "submit": "ONE_TIME", "workflow": "ONE_TIME"}
        body: dict[str, Any] = {
            "job_id": run.job_id,
            "run_id": run.run_id,
            "number_in_job": run.run_id,
            "original_attempt_run_id": run.run_id,
            "run_name": run.run_name,
            "creator_user_name": "etl@contoso.com",
            "status": status,
            "start_time": run.start_ms,
            "end_time": run.end_time(now),
            "setup_duration": 0,
            "execution_duration": 0,
            "cleanup_duration": 0,
            "trigger": trigger.get(run.job.kind, "PERIODIC"),
            "run_type": run.run_type,
            "attempt_number": 0,
            "run_page_url": url,
        }
        if state is not None:
            body["state"] = state
        if run.queue_ms and now - run.start_ms >= run.queue_ms:
            body["queue_duration"] = run.queue_ms
        if done:
            if len(run.job.tasks) > 1:
                body["run_duration"] = self.ran_ms(run, now)
            else:  # a single-task run reports its task's phases itself too
                _, setup, execution, cleanup = self.task_phases(run, now)[0]
                body["setup_duration"] = setup
                body["cleanup_duration"] = cleanup
                body["execution_duration"] = execution
        if len(run.job.tasks) == 1 and self._cluster_of(run.job, 0):
            body["cluster_spec"] = self._cluster_of(run.job, 0)
        tasks = self._tasks_json(run, now, host) if expand_tasks else []
        if tasks:  # the API leaves out empty arrays
            body["tasks"] = tasks
            if any("job_cluster_key" in task for task in tasks):
                body["job_clusters"] = [self._job_cluster_json(run.job)]
        if history and run.repair_start_ms and now >= run.repair_start_ms:
            body["repair_history"] = self._history_json(run, now)
        return body

    def _history_json(self, run: SimRun, now: int) -> list[dict[str, Any]]:
        original_state, original_status = self._state_json(run.outcome, "", run.status_only)
        original: dict[str, Any] = {
            "type": "ORIGINAL",
            "start_time": run.start_ms,
            "end_time": run.end_ms,
            "status": original_status,
        }
        repair: dict[str, Any] = {
            "type": "REPAIR",
            "id": run.run_id + 1,
            "start_time": run.repair_start_ms,
            "end_time": run.repair_end_ms if run.repaired(now) else 0,
        }
        if original_state is not None:
            original["state"] = original_state
        if run.repaired(now):
            repair_state, repair_status = self._state_json("SUCCESS", "", run.status_only)
            repair["status"] = repair_status
            if repair_state is not None:
                repair["state"] = repair_state
        else:
            repair["status"] = {"state": "RUNNING"}
        return [original, repair]

    def _tasks_json(self, run: SimRun, now: int, host: str) -> list[dict[str, Any]]:
        done = run.done(now)
        results = dict(self.task_results(run, now)) if done else {}
        tasks = []
        url_prefix = f"{host}/?o={self.config.workspace_id}#job/{run.job_id}/run"
        for i, key in enumerate(run.job.tasks):
            if done and key not in results:
                continue
            task_run_id = run.run_id * 1000 + i + 1
            result = results.get(key) if done else None
            life = OUTCOME_WIRE[result][0] if result else "RUNNING"
            state, status = self._state_json(result, life, run.status_only)
            task: dict[str, Any] = {
                "task_key": key,
                "run_id": task_run_id,
                "status": status,
                "start_time": run.start_ms,
                "end_time": run.end_time(now),
                "attempt_number": 0,
                "run_page_url": f"{url_prefix}/{task_run_id}",
                **self._cluster_of(run.job, i),
            }
            if self.task_compute(run.job, i) == "unknown":
                task["sql_task"] = {"warehouse_id": "5f1e2d3c4b5a6978", "file": {"path": key}}
            else:
                path = f"/Workspace/etl/{run.job.name}/{key}"
                task["notebook_task"] = {"notebook_path": path, "source": "WORKSPACE"}
            if done:
                _, setup, execution, cleanup = self.task_phases(run, now)[i]
                task.update(
                    setup_duration=setup, execution_duration=execution, cleanup_duration=cleanup
                )
            if state is not None:
                task["state"] = state
            if self.task_compute(run.job, i) in ("pool", "on_demand", "all_purpose") and (
                now - run.start_ms >= run.queue_ms
            ):
                task["cluster_instance"] = {"cluster_id": self._cluster_id(run, i)}
            tasks.append(task)
        return tasks

    # --- compute and phases ----------------------------------------------------------------

    def task_compute(self, job: SimJob, i: int) -> str:
        """What the job's i-th task runs on: pool, on_demand, all_purpose or serverless."""
        if job.compute == "mixed":
            return "all_purpose" if i == 0 else "unknown" if i == len(job.tasks) - 1 else "pool"
        return job.compute

    def _new_cluster(self, job: SimJob) -> dict[str, Any]:
        cluster: dict[str, Any] = {"spark_version": SPARK_VERSION, "num_workers": 2}
        if self.task_compute(job, 1) == "pool":
            pool_id = f"0101-120000-pool{job.pool:02d}"
            cluster.update(instance_pool_id=pool_id, driver_instance_pool_id=pool_id)
        else:
            cluster["node_type_id"] = job.node_type
        return cluster

    def _job_cluster_json(self, job: SimJob) -> dict[str, Any]:
        return {"job_cluster_key": JOB_CLUSTER_KEY, "new_cluster": self._new_cluster(job)}

    def _cluster_of(self, job: SimJob, i: int) -> dict[str, Any]:
        """The task's compute fields: a single-task job's cluster is its own new_cluster,
        a multi-task job's tasks share a job cluster."""
        compute = self.task_compute(job, i)
        if compute == "all_purpose":
            return {"existing_cluster_id": f"0101-093000-allpurp{job.index % 3}"}
        if compute == "serverless":
            return {"environment_key": "default"} if i % 2 else {}
        if compute == "unknown":
            return {}
        if len(job.tasks) == 1:
            return {"new_cluster": self._new_cluster(job)}
        return {"job_cluster_key": JOB_CLUSTER_KEY}

    def _cluster_id(self, run: SimRun, i: int) -> str:
        own = self._cluster_of(run.job, i)
        if "existing_cluster_id" in own:
            return str(own["existing_cluster_id"])
        return f"0101-{run.run_id % 1_000_000:06d}-job{0 if 'job_cluster_key' in own else i}"

    def ran_ms(self, run: SimRun, now: int) -> int:
        """How long the run ran (its repair too, once repaired at ``now``), queue excluded."""
        return run.duration_ms - run.queue_ms + (run.repair_ms if run.repaired(now) else 0)

    def task_phases(self, run: SimRun, now: int) -> list[tuple[str, int, int, int]]:
        """(compute, setup, execution, cleanup) ms of each task of a finished run: the tasks
        run side by side for the whole run; the tasks of a job cluster share its start-up."""
        ran = self.ran_ms(run, now)
        results = dict(self.task_results(run, now))
        out = []
        for i, key in enumerate(run.job.tasks):
            compute = self.task_compute(run.job, i)
            if len(run.job.tasks) > 1 and results.get(key) in NEVER_RAN:
                out.append((compute, 0, 0, 0))  # skipped for its upstream: it never started
                continue
            least, most = SETUP_MS[compute]
            shared = "job_cluster_key" in self._cluster_of(run.job, i)
            draw = _unit(self.config.seed, run.run_id, 0 if shared else i + 1, 20)
            setup = min(least + int((most - least) * draw), ran * 2 // 5)
            cleanup = ran // 50 if compute in ("pool", "on_demand") else 0
            out.append((compute, setup, ran - setup - cleanup, cleanup))
        return out

    def listing_lag_ms(self, run: SimRun) -> int:
        """How long after its start the run shows up in runs/list (0..listing_lag_seconds)."""
        if not self.config.listing_lag_seconds:
            return 0
        return int(_unit(self.config.seed, run.run_id, 31) * self.config.listing_lag_seconds * 1000)

    def pool_state(self, p: int, step: int) -> tuple[int, int, int, int]:
        """(used, idle, pending_used, pending_idle) of pool p during one pool step.

        A working day in UTC: clusters take instances from 07:00 to 19:00 and give them back
        as the day ends; what they give back waits idle in the pool (the cost issue 13 is
        about) on top of min_idle_instances. Constant within a step, so its integral is exact.
        """
        seed, step_s = self.config.seed, self.config.pool_step_seconds
        cap = 10 * (p + 1) if p else 40
        hour = (step * step_s / 3600.0) % 24
        load = 0.1 + 0.8 * max(0.0, math.sin(math.pi * (hour - 7) / 12))
        used = min(cap, int(cap * load * (0.8 + 0.4 * _unit(seed, p, step, 1))))
        released = 0.2 + 0.8 * max(0.0, math.sin(math.pi * (hour - 16) / 6))  # after work
        extra = int(released * (p + 2) * 2 * _unit(seed, p, step, 2))
        idle = min(p % 3 + extra, cap - used)
        return used, idle, _mix(seed, p, step, 3) % 3, _mix(seed, p, step, 4) % 2

    def pools_json(self, now_ms: int | None = None) -> list[dict[str, Any]]:
        now_ms = self.clock.now_ms() if now_ms is None else now_ms
        minute = now_ms // 60_000
        step = now_ms // int(self.config.pool_step_seconds * 1000)
        pools = []
        for p in range(self.config.pools):
            pool_id = f"0101-120000-pool{p:02d}"
            if pool_id in self.deleted_pools:
                continue
            max_capacity = None if p == 0 else 10 * (p + 1)
            used, idle, pending_used, pending_idle = self.pool_state(p, step)
            pool: dict[str, Any] = {
                "instance_pool_id": pool_id,
                "instance_pool_name": f"{('etl', 'ml', 'adhoc', 'streaming')[p % 4]}-pool-{p}",
                "node_type_id": POOL_NODE_TYPES[p % len(POOL_NODE_TYPES)],
                "min_idle_instances": p % 3,
                "idle_instance_autotermination_minutes": 30,
                "enable_elastic_disk": True,
                "state": "ACTIVE",
                "default_tags": {"Vendor": "Databricks", "DatabricksInstancePoolId": pool_id},
                "azure_attributes": {"availability": "ON_DEMAND_AZURE"},
                "stats": {
                    "used_count": used,
                    "idle_count": idle,
                    "pending_used_count": pending_used,
                    "pending_idle_count": pending_idle,
                },
            }
            if max_capacity is not None:
                pool["max_capacity"] = max_capacity
            errors = self.pool_errors(p, minute)
            if errors:
                pool["status"] = {"pending_instance_errors": errors}
            pools.append(pool)
        return pools

    def pool_errors(self, p: int, minute: int) -> list[dict[str, Any]]:
        """Instances that failed to start in this minute (Azure quota or capacity)."""
        if _unit(self.config.seed, p, minute, 5) >= self.config.pool_error_rate:
            return []
        n = 1 + _mix(self.config.seed, p, minute, 6) % 3
        region_message = (
            "Azure error code: QuotaExceeded. Operation could not be completed as it results in "
            "exceeding approved standardDSv2Family Cores quota. Location: westeurope, "
            "Current Limit: 350, Current Usage: 348, Additional Required: 4."
        )
        return [
            {"instance_id": f"{minute:x}{p:02d}{i:02d}a1b2c3d4e5f6", "message": region_message}
            for i in range(n)
        ]

    def delete_job(self, job_id: int) -> list[int]:
        """Delete a job with its runs, as jobs/delete does; runs/get of them answers 400."""
        for job in self.jobs:
            if job.job_id == job_id:
                self.deleted_jobs.setdefault(job.index, self.clock.now_ms())
        return sorted(self.jobs[j].job_id for j in self.deleted_jobs)

    def active_count(self) -> int:
        now = self.clock.now_ms()
        return sum(
            1 for r in self.runs_desc(now - self.max_duration_ms, now) if self.is_active(r, now)
        )

    def history_size(self) -> int:
        now = self.clock.now_ms()
        return sum(max(self._last_k(job, now) + 1, 0) for job in self.jobs)
