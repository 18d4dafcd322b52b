"""A simulated Azure Databricks workspace over HTTP on loopback.

Runs are a pure function of (seed, job, run number, clock): job j starts its k-th run at
``origin + offset_j + k * period_j``, with a duration and outcome drawn from a hash of
(seed, j, k). Listing, ground truth and fault injection need no background thread, history
of any size costs no memory, and the clock may be real, accelerated or set by hand.

Shapes and limits follow the real Jobs API 2.2 and Instance Pools API 2.0: runs/list
``limit`` 1..25 (400 past it), opaque page tokens, active_only / completed_only,
start_time_from / start_time_to, expand_tasks, runs/get, jobs/list, instance-pools list/get,
bearer-token check, 429 with Retry-After and 5xx injection, latency.

Control endpoints for tests and benchmarks live under ``/sim/`` (truth, stop, faults, stats,
clock).
"""

from __future__ import annotations

import base64
import bisect
import email.utils
import heapq
import json
import logging
import math
import random
import secrets
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from exporter.client import RateLimiter
from exporter.simulator_pipelines import SimPipelines
from exporter.simulator_pipelines import page as pipeline_page

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
    # Lakeflow (DLT) pipelines (exporter.simulator_pipelines): none unless asked for.
    pipelines: int = 0
    pipeline_period_seconds: tuple[float, float] = (600.0, 1800.0)
    pipeline_fail_rate: float = 0.2


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


# result_state label (what the exporter must report) -> how the API words it:
# (legacy life_cycle_state, legacy result_state or None, termination code, termination type,
#  the label a client that reads only `status` must derive).
OUTCOME_WIRE: dict[str, tuple[str, str | None, str, str, str]] = {
    "SUCCESS": ("TERMINATED", "SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS"),
    "SUCCESS_WITH_FAILURES": (
        "TERMINATED",
        "SUCCESS_WITH_FAILURES",
        "SUCCESS_WITH_FAILURES",
        "SUCCESS",
        "SUCCESS_WITH_FAILURES",
    ),
    "FAILED": ("TERMINATED", "FAILED", "RUN_EXECUTION_ERROR", "CLIENT_ERROR", "FAILED"),
    "TIMEDOUT": ("TERMINATED", "TIMEDOUT", "CANCELED", "CLIENT_ERROR", "TIMEDOUT"),
    "CANCELED": ("TERMINATED", "CANCELED", "USER_CANCELED", "SUCCESS", "CANCELED"),
    "INTERNAL_ERROR": (
        "INTERNAL_ERROR",
        None,
        "INTERNAL_ERROR",
        "INTERNAL_ERROR",
        "INTERNAL_ERROR",
    ),
    "SKIPPED": ("SKIPPED", None, "SKIPPED", "SUCCESS", "SKIPPED"),
    "MAXIMUM_CONCURRENT_RUNS_REACHED": (
        "SKIPPED",
        "MAXIMUM_CONCURRENT_RUNS_REACHED",
        "MAX_CONCURRENT_RUNS_EXCEEDED",
        "CLIENT_ERROR",
        "MAXIMUM_CONCURRENT_RUNS_REACHED",
    ),
    "EXCLUDED": ("TERMINATED", "EXCLUDED", "SKIPPED", "SUCCESS", "SKIPPED"),
    "DISABLED": ("TERMINATED", "DISABLED", "DISABLED", "CLIENT_ERROR", "DISABLED"),
    "UPSTREAM_FAILED": ("TERMINATED", "UPSTREAM_FAILED", "SKIPPED", "CLIENT_ERROR", "SKIPPED"),
    "UPSTREAM_CANCELED": ("TERMINATED", "UPSTREAM_CANCELED", "SKIPPED", "SUCCESS", "SKIPPED"),
}
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


@dataclass
class FaultRule:
    """Answer the next ``count`` matching requests with a failure instead of the API."""

    path_prefix: str = "/api/"
    status: int = 503
    count: int = 1
    retry_after: float | None = None
    # json | html | truncated | empty | reset (connection reset, no response) | trickle (a
    # complete answer sent a byte every `delay` seconds, as a stalled proxy does) | date (the
    # usual answer, with `date` as its Date header: a proxy's or a server's wrong clock)
    body: str = "json"
    delay: float = 0.0
    date: str = ""


@dataclass
class SimStats:
    requests: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    runs_served: int = 0  # run objects in runs/list and runs/get answers (what a client reads)


class SimWorkspace:
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
            ran = run.duration_ms - run.queue_ms + (run.repair_ms if run.repaired(now) else 0)
            if len(run.job.tasks) > 1:
                body["run_duration"] = ran
            else:
                setup = ran // 10
                cleanup = ran // 50
                body["setup_duration"] = setup
                body["cleanup_duration"] = cleanup
                body["execution_duration"] = ran - setup - cleanup
        tasks = self._tasks_json(run, now, host) if expand_tasks else []
        if tasks:  # the API leaves out empty arrays
            body["tasks"] = tasks
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
            }
            if state is not None:
                task["state"] = state
            tasks.append(task)
        return tasks

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

    def pool_truth(self, from_ms: int, to_ms: int) -> dict[str, dict[str, float]]:
        """Instance-seconds per pool in [from_ms, to_ms): what the exporter's counters integrate."""
        step_ms = int(self.config.pool_step_seconds * 1000)
        out: dict[str, dict[str, float]] = {}
        for p in range(self.config.pools):
            pool_id = f"0101-120000-pool{p:02d}"
            if pool_id in self.deleted_pools:
                continue
            sums = dict.fromkeys(("idle", "used", "pending", "idle_above_min"), 0.0)
            t = from_ms
            while t < to_ms:
                step = t // step_ms
                end = min(to_ms, (step + 1) * step_ms)
                seconds = (end - t) / 1000.0
                used, idle, pending_used, pending_idle = self.pool_state(p, step)
                sums["idle"] += idle * seconds
                sums["used"] += used * seconds
                sums["pending"] += (pending_used + pending_idle) * seconds
                sums["idle_above_min"] += max(idle - p % 3, 0) * seconds
                t = end
            out[pool_id] = sums
        return out

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

    # --- ground truth ----------------------------------------------------------------------

    def truth(self, after_ms: int, until_ms: int | None = None) -> dict[str, Any]:
        """Counts the exporter must report: runs that ended in (after_ms, until_ms].

        Runs of deleted jobs are left out (the exporter may have counted some before the job
        went); repairs are counted apart, by the end of the repair; one-time runs by their
        normalised run name.
        """
        until = self.clock.now_ms() if until_ms is None else until_ms
        runs: Counter[tuple[str, str, str]] = Counter()
        tasks: Counter[tuple[str, str, str, str]] = Counter()
        repairs: Counter[tuple[str, str, str]] = Counter()
        one_time: Counter[tuple[str, str, str]] = Counter()
        for job in self.jobs:
            if job.index in self.deleted_jobs:
                continue
            k_lo = self._k_at_or_after(job, after_ms - self.max_duration_ms)
            k_hi = self._last_k(job, until)
            for k in range(k_lo, k_hi + 1):
                run = self.run(job, k)
                if after_ms < run.repair_end_ms <= until:
                    repairs[(str(job.job_id), job.name, "SUCCESS")] += 1
                if not after_ms < run.end_ms <= until:
                    continue
                if job.kind in ("submit", "workflow"):
                    one_time[(run.normalised_name, run.run_type, run.label)] += 1
                    continue
                runs[(str(job.job_id), job.name, run.label)] += 1
                for key, result in self.task_results(run):
                    label = OUTCOME_WIRE[result][4] if run.status_only else result
                    tasks[(str(job.job_id), job.name, key, label)] += 1
        return {
            "until_ms": until,
            "total": sum(runs.values()),
            "runs": [
                {"job_id": a, "job_name": b, "result_state": c, "count": n}
                for (a, b, c), n in sorted(runs.items())
            ],
            "tasks": [
                {"job_id": a, "job_name": b, "task_key": c, "result_state": d, "count": n}
                for (a, b, c, d), n in sorted(tasks.items())
            ],
            "repairs": [
                {"job_id": a, "job_name": b, "result_state": c, "count": n}
                for (a, b, c), n in sorted(repairs.items())
            ],
            "one_time": [
                {"run_name": a, "run_type": b, "result_state": c, "count": n}
                for (a, b, c), n in sorted(one_time.items())
            ],
        }

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


class ApiFailure(Exception):
    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


def _bool(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "false")
    if value not in ("true", "false"):
        raise ApiFailure(400, "INVALID_PARAMETER_VALUE", f"Invalid value for {name}: {value!r}")
    return value == "true"


def _page_limit(params: dict[str, str], most: int, zero_means: int) -> int:
    """A listing's ``limit`` (default 20) as the API checks it: 400 past ``most``."""
    limit = _int_param(params, "limit", 20)
    assert limit is not None
    if limit < 0 or limit > most:
        raise ApiFailure(
            400, "INVALID_PARAMETER_VALUE", f"The limit field must be between 1 and {most}."
        )
    return limit or zero_means


def _int_param(params: dict[str, str], name: str, default: int | None = None) -> int | None:
    if name not in params:
        return default
    try:
        return int(params[name])
    except ValueError:
        raise ApiFailure(400, "INVALID_PARAMETER_VALUE", f"Invalid value for {name}") from None


def _listed(
    run: SimRun, now: int, active_only: bool, completed_only: bool, lag_ms: int = 0
) -> bool:
    """Whether runs/list shows the run yet, and its active_only / completed_only filters let
    it through."""
    if now < run.start_ms + lag_ms:
        return False
    done = run.done(now)
    return not (active_only and done) and not (completed_only and not done)


def _encode_cursor(run: SimRun) -> str:
    raw = json.dumps([run.start_ms, run.run_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_offset(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        return int(json.loads(base64.urlsafe_b64decode(padded))["o"])
    except Exception:
        raise ApiFailure(400, "INVALID_PARAMETER_VALUE", "Invalid page token") from None


def _decode_cursor(token: str) -> tuple[int, int]:
    try:
        padded = token + "=" * (-len(token) % 4)
        start, run_id = json.loads(base64.urlsafe_b64decode(padded))
        return int(start), int(run_id)
    except Exception:
        raise ApiFailure(400, "INVALID_PARAMETER_VALUE", "Invalid page token") from None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("simulator: connection from %s ended abruptly", client_address)


class SimServer:
    """The simulated workspace served over HTTP on 127.0.0.1; ``url`` and ``token`` to use it."""

    def __init__(
        self, model: SimWorkspace | None = None, port: int = 0, token: str | None = None
    ) -> None:
        self.model = model or SimWorkspace()
        self.token = token or "dapi-sim-" + secrets.token_hex(16)
        self.tokens = {self.token}
        self.stats = SimStats()
        self.faults: list[FaultRule] = []
        self.fault_rate = 0.0
        # Run objects added to the first page of every runs/list answer (hostile-input tests).
        self.extra_runs: list[Any] = []
        self.trickled_bytes = 0  # bytes sent by `trickle` faults
        # Requests a second the workspace accepts before answering 429 (None: no limit).
        self.rate_limiter: RateLimiter | None = None
        self._listings: dict[tuple[Any, ...], tuple[list[tuple[int, int]], list[SimRun]]] = {}
        self._rng = random.Random(self.model.config.seed)
        self._lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", port), _make_handler(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="simulator", daemon=True
        )

    def start(self) -> SimServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_faults(self, *rules: FaultRule) -> None:
        with self._lock:
            self.faults.extend(rules)

    def take_fault(self, path: str) -> FaultRule | None:
        with self._lock:
            limiter = self.rate_limiter
            if limiter is not None and path.startswith("/api/") and limiter.try_acquire() > 0:
                self.stats.faults["429"] += 1
                return FaultRule(status=429, retry_after=1)
            for rule in self.faults:
                if rule.count > 0 and path.startswith(rule.path_prefix):
                    rule.count -= 1
                    self.stats.faults[str(rule.status)] += 1
                    return rule
            self.faults = [r for r in self.faults if r.count > 0]
            if (
                self.fault_rate
                and path.startswith("/api/")
                and self._rng.random() < self.fault_rate
            ):
                status = self._rng.choice((429, 500, 503))
                self.stats.faults[str(status)] += 1
                return FaultRule(status=status, retry_after=0 if status == 429 else None)
        return None

    def count(self, path: str) -> None:
        with self._lock:
            self.stats.requests[path] += 1

    def _served(self, runs: int) -> None:
        with self._lock:
            self.stats.runs_served += runs

    def requests_total(self) -> int:
        with self._lock:
            return sum(self.stats.requests.values())

    # --- API endpoints ---------------------------------------------------------------------

    def api(self, path: str, params: dict[str, str], now: int | None = None) -> dict[str, Any]:
        m = self.model
        now = m.clock.now_ms() if now is None else now
        if path in ("/api/2.2/jobs/runs/list", "/api/2.1/jobs/runs/list"):
            return self._runs_list(params, now)
        if path in ("/api/2.2/jobs/runs/get", "/api/2.1/jobs/runs/get"):
            return self._runs_get(params, now)
        if path == "/api/2.0/instance-pools/list":
            return {"instance_pools": m.pools_json(now)}
        if path in ("/api/2.2/jobs/list", "/api/2.1/jobs/list"):
            return self._jobs_list(params)
        if path == "/api/2.0/pipelines" or path.startswith("/api/2.0/pipelines/"):
            return self._pipelines(path, params, now)
        raise ApiFailure(404, "ENDPOINT_NOT_FOUND", f"No API found for 'GET {path}'")

    def _pipelines(self, path: str, params: dict[str, str], now: int) -> dict[str, Any]:
        """GET /api/2.0/pipelines, /pipelines/{id}/updates and /pipelines/{id}/events."""
        world = self.model.pipelines
        parts = path.split("/")[4:]  # after /api/2.0/pipelines
        try:
            if not parts:
                statuses = [world.pipeline_json(p, now) for p in range(world.count)]
                body = pipeline_page(statuses, params, 25, 100, prev=False)
                return {"statuses": body.pop("items"), **body} if statuses else body_of(body)
            p = world.index(parts[0])
            if p is None or len(parts) != 2 or parts[1] not in ("updates", "events"):
                raise ApiFailure(
                    404, "RESOURCE_DOES_NOT_EXIST", f"Pipeline {parts[0][:40]} does not exist."
                )
            updates = world.updates_desc(p, now)
            if parts[1] == "updates":
                body = pipeline_page([world.update_json(u, now) for u in updates], params, 25, 100)
                return {"updates": body.pop("items"), **body}
            errors = [world.error_event(u) for u in updates if u.state(now) == "FAILED"]
            body = pipeline_page(errors, params, 25, 250)
            return {"events": body.pop("items"), **body}
        except ValueError as exc:
            raise ApiFailure(400, "INVALID_PARAMETER_VALUE", str(exc)) from None

    def _runs_get(self, params: dict[str, str], now: int) -> dict[str, Any]:
        m = self.model
        run_id = _int_param(params, "run_id")
        run = m.find_run(run_id) if run_id is not None else None
        if run is None:
            # What Databricks answers for a run that is gone with its job (not a 404).
            raise ApiFailure(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
        history = _bool(params, "include_history")
        body = m.run_json(run, now, m.config.public_host, expand_tasks=True, history=history)
        # Arrays of more than 100 items come 100 a page; later pages carry only those arrays.
        offset = _decode_offset(params["page_token"]) if params.get("page_token") else 0
        tasks = body.get("tasks") or []
        if offset:
            body = {"tasks": tasks[offset : offset + TASK_PAGE]}
        else:
            body["tasks"] = tasks[:TASK_PAGE]
        if len(tasks) > offset + TASK_PAGE:
            body["next_page_token"] = _encode_offset(offset + TASK_PAGE)
        if not body["tasks"]:
            del body["tasks"]
        self._served(1)
        return body

    def _jobs_list(self, params: dict[str, str]) -> dict[str, Any]:
        """Jobs that exist (a runs/submit run's job is not listed), 100 a page at most."""
        m = self.model
        limit = _page_limit(params, most=100, zero_means=20)
        offset = _decode_offset(params["page_token"]) if params.get("page_token") else 0
        listed = [
            j for j in m.jobs if j.kind in ("job", "continuous") and j.index not in m.deleted_jobs
        ]
        page = listed[offset : offset + limit]
        body: dict[str, Any] = {
            "jobs": [
                {
                    "job_id": j.job_id,
                    "creator_user_name": "simulator@example.com",
                    "created_time": m.origin_ms,
                    "settings": {"name": j.name},
                }
                for j in page
            ],
            "has_more": len(listed) > offset + limit,
        }
        if body["has_more"]:
            body["next_page_token"] = _encode_offset(offset + limit)
        return body

    def _runs_list(self, params: dict[str, str], now: int) -> dict[str, Any]:
        m = self.model
        limit = _page_limit(params, most=25, zero_means=25)
        active_only = _bool(params, "active_only")
        completed_only = _bool(params, "completed_only")
        if active_only and completed_only:
            raise ApiFailure(
                400,
                "INVALID_PARAMETER_VALUE",
                "active_only and completed_only cannot both be true.",
            )
        expand = _bool(params, "expand_tasks")
        lo = _int_param(params, "start_time_from", 0) or 0
        hi = _int_param(params, "start_time_to", now) or now
        job_id = _int_param(params, "job_id")
        if active_only:
            lo = max(lo, now - m.max_duration_ms)
        cursor = _decode_cursor(params["page_token"]) if params.get("page_token") else None
        if m.clock.frozen:
            page, more = self._cached_page(
                lo, hi, job_id, active_only, completed_only, now, cursor, limit
            )
        else:
            page, more = [], False
            for run in m.runs_desc(lo, hi, cursor, job_id):
                if not _listed(run, now, active_only, completed_only, m.listing_lag_ms(run)):
                    continue
                if len(page) == limit:
                    more = True
                    break
                page.append(run)
        self._served(len(page))
        runs = [m.run_json(r, now, m.config.public_host, expand) for r in page]
        for listed in runs:
            if len(listed.get("tasks") or ()) > TASK_PAGE:
                listed["tasks"] = listed["tasks"][:TASK_PAGE]  # runs/get pages the rest
                listed["has_more"] = True
        if cursor is None and self.extra_runs:
            runs = [*self.extra_runs, *runs]
        body: dict[str, Any] = {"runs": runs, "has_more": more}
        if more:
            body["next_page_token"] = _encode_cursor(page[-1])
        if cursor is not None:
            body["prev_page_token"] = params["page_token"]
        if not runs:
            del body["runs"]  # the real API omits empty lists
        return body

    def _cached_page(
        self,
        lo: int,
        hi: int,
        job_id: int | None,
        active_only: bool,
        completed_only: bool,
        now: int,
        cursor: tuple[int, int] | None,
        limit: int,
    ) -> tuple[list[SimRun], bool]:
        """On a frozen clock every page of a listing is cut from one sorted list (benchmarks)."""
        key = (lo, hi, job_id, active_only, completed_only, now)
        with self._lock:
            hit = self._listings.get(key)
        if hit is None:
            runs = [
                r
                for r in self.model.runs_desc(lo, hi, None, job_id)
                if _listed(r, now, active_only, completed_only, self.model.listing_lag_ms(r))
            ]
            hit = ([(-r.start_ms, -r.run_id) for r in runs], runs)
            with self._lock:
                self._listings[key] = hit
                while len(self._listings) > 8:
                    self._listings.pop(next(iter(self._listings)))
        keys, runs = hit
        start = bisect.bisect_right(keys, (-cursor[0], -cursor[1])) if cursor else 0
        return runs[start : start + limit], start + limit < len(runs)

    def control(
        self, method: str, path: str, payload: dict[str, Any], params: dict[str, str]
    ) -> Any:
        m = self.model
        if path == "/sim/truth":
            after = _int_param(params, "after_ms", 0) or 0
            return m.truth(after, _int_param(params, "until_ms"))
        if path == "/sim/truth/pools":
            until = _int_param(params, "until_ms") or m.clock.now_ms()
            return m.pool_truth(_int_param(params, "from_ms", 0) or 0, until)
        if path == "/sim/stats":
            with self._lock:
                requests = dict(self.stats.requests)
                faults = dict(self.stats.faults)
            return {
                "requests": requests,
                "faults": faults,
                "runs_served": self.stats.runs_served,
                "now_ms": m.clock.now_ms(),
                "active": m.active_count(),
                "history": m.history_size(),
                "stop_ms": m.stop_ms,
            }
        if path == "/sim/clock" and method == "POST":
            # Moves a frozen clock from another process (benchmarks run the simulator apart).
            if not m.clock.frozen:
                raise ApiFailure(400, "INVALID_STATE", "the simulator's clock is not frozen")
            if "set" in payload:
                m.clock.set(float(payload["set"]))
            m.clock.advance(float(payload.get("advance", 0)))
            return {"now_ms": m.clock.now_ms()}
        if path == "/sim/stop" and method == "POST":
            m.stop_ms = m.clock.now_ms()
            return {"stop_ms": m.stop_ms}
        if path == "/sim/faults" and method == "POST":
            self.add_faults(*(FaultRule(**rule) for rule in payload.get("rules", [])))
            if "rate" in payload:
                self.fault_rate = float(payload["rate"])
            return {"queued": len(self.faults), "rate": self.fault_rate}
        if path == "/sim/jobs/delete" and method == "POST":
            return {"deleted": m.delete_job(int(payload.get("job_id", 0)))}
        if path == "/sim/pools/delete" and method == "POST":
            m.deleted_pools.add(str(payload.get("pool_id")))
            return {"deleted": sorted(m.deleted_pools)}
        raise ApiFailure(404, "ENDPOINT_NOT_FOUND", f"No simulator control at {method} {path}")


def _make_handler(server: SimServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes
        _now = 0.0  # the simulated time of the request being answered
        _date = ""  # a Date header other than the clock's (FaultRule body "date")

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("simulator: " + format, *args)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def date_time_string(self, timestamp: float | None = None) -> str:
            # The Date header is the simulated clock's, read once per request with the body.
            return self._date or email.utils.formatdate(self._now, usegmt=True)

        def _handle(self, method: str) -> None:
            self._now = server.model.clock.time()
            self._date = ""
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                if parts.path.startswith("/sim/"):
                    payload = json.loads(raw or b"{}")
                    self._json(200, server.control(method, parts.path, payload, params))
                    return
                server.count(parts.path)
                if server.model.config.latency_ms:
                    time.sleep(server.model.config.latency_ms / 1000.0)
                if self.headers.get("Authorization", "") not in {
                    f"Bearer {t}" for t in server.tokens
                }:
                    raise ApiFailure(401, "UNAUTHENTICATED", "Invalid access token.")
                fault = server.take_fault(parts.path)
                if fault is not None and fault.body == "date":
                    self._date, fault = fault.date, None
                if fault is not None:
                    self._fault(fault)
                    return
                if method != "GET":
                    raise ApiFailure(405, "METHOD_NOT_ALLOWED", f"{method} not allowed")
                self._json(200, server.api(parts.path, params, int(self._now * 1000)))
            except ApiFailure as exc:
                self._json(exc.status, {"error_code": exc.error_code, "message": exc.message})
            except (ConnectionError, BrokenPipeError):
                pass

        def _fault(self, rule: FaultRule) -> None:
            if rule.body == "trickle":
                self._trickle(rule.delay or 1.0)
                return
            if rule.delay:
                time.sleep(rule.delay)
            if rule.body == "reset":
                # SO_LINGER 0: close() sends RST, as a load balancer dropping the connection does.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()
                return
            headers = {}
            if rule.retry_after is not None:
                headers["Retry-After"] = str(int(rule.retry_after))
            if rule.body == "html":
                data = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                self._send(rule.status, data, "text/html", headers)
            elif rule.body == "truncated":
                self._send(
                    rule.status, b'{"runs": [{"run_id": 1, "sta', "application/json", headers
                )
            elif rule.body == "empty":
                self._send(rule.status, b"", "application/json", headers)
            else:
                code = {429: "REQUEST_LIMIT_EXCEEDED", 503: "TEMPORARILY_UNAVAILABLE"}.get(
                    rule.status, "INTERNAL_ERROR"
                )
                data = json.dumps(
                    {"error_code": code, "message": f"simulated {rule.status}"}
                ).encode()
                self._send(rule.status, data, "application/json", headers)

        def _trickle(self, interval: float) -> None:
            data = json.dumps({"runs": [], "instance_pools": [], "has_more": False}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.flush()
            try:
                for i in range(len(data)):
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    server.trickled_bytes += 1
                    time.sleep(interval)
            except OSError:
                self.close_connection = True  # the client hung up: what a deadline does

        def _json(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body).encode(), "application/json", {})

        def _send(
            self, status: int, data: bytes, content_type: str, headers: dict[str, str]
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def body_of(page: dict[str, Any]) -> dict[str, Any]:
    """A Pipelines listing without items: no ``statuses`` at all, as the API answers."""
    page.pop("items", None)
    return page
