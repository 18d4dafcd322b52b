"""Prometheus families rendered from the collectors' snapshots (a custom collector).

Rendering never waits on the network and takes no lock that a collection holds while calling
an API; series of deleted pools or finished runs simply are not in the next snapshot.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.collectors.pools import PoolsSnapshot
from exporter.health import HealthSnapshot, Histogram
from exporter.outcomes import FAILED, results_of
from exporter.state import Run, RunsSnapshot
from exporter.workspace import Workspace

SCHEDULED = (
    " Collected on a schedule, not at scrape time; see"
    " databricks_exporter_last_success_timestamp_seconds for the data's age."
)

JOB = ["workspace", "job_id", "job_name"]
POOL = ["workspace", "pool_id", "pool_name"]


class SnapshotCollector(Collector):
    """The families that change only when a collection publishes a new snapshot.

    They are most of the exposition (every job's counters and histogram), so the server renders
    each (workspace, collector) part once per snapshot and reuses its text (exporter.exposition).
    ``collect`` yields every collector's families in FAMILIES order, each family holding
    the samples of every workspace in order: so the text of one family is the text of its
    first part's header followed by every part's samples, which is how the parts are joined.
    """

    def __init__(self, workspaces: Sequence[Workspace]):
        self._workspaces = workspaces

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on the data; skip the registry's describe-time collect

    def parts(self) -> tuple[Part, ...]:
        """(workspace, collector, snapshot) of every collector with a snapshot, in order.

        A different snapshot object means different text (a snapshot is never changed)."""
        return tuple(
            (ws.name, name, collector.snapshot)
            for name in FAMILIES
            for ws in self._workspaces
            if (collector := ws.collectors.get(name)) is not None and collector.snapshot is not None
        )

    def collect(self) -> Iterator[Metric]:
        parts = self.parts()
        for name in FAMILIES:
            views = [(ws, snapshot) for ws, collector, snapshot in parts if collector == name]
            if views:
                yield from FAMILIES[name](views)


Part = tuple[str, str, Any]  # workspace name, collector name, its snapshot


def runs_families(views: Sequence[tuple[str, RunsSnapshot]]) -> Iterator[Metric]:
    yield from job_families(views)
    yield from baseline_family(views)


# What each collector's snapshots render as, in exposition order. A new collector is its module,
# its name in exporter.collectors.COLLECTOR_NAMES, its line in Workspace and its line here.
FAMILIES: dict[str, Callable[[Sequence[tuple[str, Any]]], Iterator[Metric]]] = {
    "runs": lambda views: runs_families(views),
    "pools": lambda views: pool_families(views),
}


class LiveCollector(Collector):
    """The few families that change between collections: exporter health, active-run ages."""

    def __init__(self, workspaces: Sequence[Workspace], clock: Callable[[], float] = time.time):
        self._workspaces = workspaces
        self._clock = clock

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        yield from active_age_family(
            [
                (ws.name, ws.runs.snapshot)
                for ws in self._workspaces
                if ws.runs and ws.runs.snapshot
            ],
            now,
        )
        yield from health_families([(ws.name, ws.health.snapshot()) for ws in self._workspaces])


def build_registry(
    workspaces: Sequence[Workspace], clock: Callable[[], float] = time.time
) -> CollectorRegistry:
    """A registry with all our families, in exposition order: every series carries `workspace`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(workspaces))
    registry.register(LiveCollector(workspaces, clock))
    return registry


def counters(
    name: str, doc: str, labels: list[str], views: Sequence[tuple[str, Mapping[Any, int]]]
) -> CounterMetricFamily:
    """A counter family from per-workspace {label values tuple: count}."""
    family = CounterMetricFamily(name, doc, labels=labels)
    for ws, values in views:
        for key, value in values.items():
            family.add_metric([ws, *key], value)
    return family


def histograms(
    name: str, doc: str, labels: list[str], views: Sequence[tuple[str, Mapping[Any, Histogram]]]
) -> HistogramMetricFamily:
    """A histogram family from per-workspace {label values tuple: Histogram}."""
    family = HistogramMetricFamily(name, doc, labels=labels)
    for ws, values in views:
        for key, hist in values.items():
            family.add_metric([ws, *key], hist.buckets(), hist.total)
    return family


def job_families(views: Sequence[tuple[str, RunsSnapshot]]) -> Iterator[Metric]:
    """One family at a time: at 5,000 jobs a family holds up to 100k samples, and the
    exposition formats (and empties) each before the next is built."""
    yield counters(
        "databricks_job_runs_total",
        "Job runs that ended since the exporter's baseline, by result_state." + SCHEDULED,
        [*JOB, "result_state"],
        [(ws, snap.runs_total) for ws, snap in views],
    )
    yield histograms(
        "databricks_job_run_duration_seconds",
        "Duration of counted job runs." + SCHEDULED,
        JOB,
        [(ws, snap.durations) for ws, snap in views],
    )
    yield from last_run_families(views)
    active = GaugeMetricFamily(
        "databricks_job_runs_active",
        "Runs of the job that are not terminal yet, by life_cycle_state." + SCHEDULED,
        labels=[*JOB, "life_cycle_state"],
    )
    for ws, snap in views:
        by_state: Counter[tuple[str, str, str]] = Counter(
            (run.job_id, run.job_name, run.life_cycle_state)
            for run in snap.active
            if not run.one_time
        )
        for (job_id, job_name, state), value in sorted(by_state.items()):
            active.add_metric([ws, job_id, job_name, state], value)
    yield active
    continuous = GaugeMetricFamily(
        "databricks_job_continuous",
        "1 for jobs with a continuous trigger (always one active run: never 'stuck')." + SCHEDULED,
        labels=JOB,
    )
    for ws, snap in views:
        jobs = {run.job for run in snap.active if run.continuous and not run.one_time}
        jobs |= {run.job for run in snap.last_runs.values() if run.continuous}
        for job_id, job_name in sorted(jobs):
            continuous.add_metric([ws, job_id, job_name], 1.0)
    yield continuous
    yield counters(
        "databricks_job_run_repairs",
        "Repairs of job runs that ended since the baseline, by the repair's result_state "
        "(a repaired run keeps its run_id and is counted once in databricks_job_runs_total)."
        + SCHEDULED,
        [*JOB, "result_state"],
        [(ws, snap.repairs_total) for ws, snap in views],
    )
    yield counters(
        "databricks_task_runs_total",
        "Task runs of counted job runs, by task_key and result_state." + SCHEDULED,
        [*JOB, "task_key", "result_state"],
        [(ws, snap.tasks_total) for ws, snap in views],
    )
    yield from one_time_families(views)


ONE_TIME = ["workspace", "run_name", "run_type"]


def one_time_families(views: Sequence[tuple[str, RunsSnapshot]]) -> Iterator[Metric]:
    """Runs of runs/submit and dbutils.notebook.run, by normalised run name, never by job_id."""
    yield counters(
        "databricks_one_time_runs_total",
        "One-time runs (SUBMIT_RUN, WORKFLOW_RUN) that ended since the baseline, by normalised "
        "run_name and result_state." + SCHEDULED,
        [*ONE_TIME, "result_state"],
        [(ws, snap.one_time_total) for ws, snap in views],
    )
    yield histograms(
        "databricks_one_time_run_duration_seconds",
        "Duration of counted one-time runs." + SCHEDULED,
        ONE_TIME,
        [(ws, snap.one_time_durations) for ws, snap in views],
    )
    active = GaugeMetricFamily(
        "databricks_one_time_runs_active",
        "One-time runs that are not terminal yet, by life_cycle_state." + SCHEDULED,
        labels=[*ONE_TIME, "life_cycle_state"],
    )
    for ws, snap in views:
        by_state: Counter[tuple[str, str, str]] = Counter(
            (*run.one_time_key, run.life_cycle_state) for run in snap.active if run.one_time
        )
        for (name, run_type, state), value in sorted(by_state.items()):
            active.add_metric([ws, name, run_type, state], value)
    yield active


def last_run_families(views: Sequence[tuple[str, RunsSnapshot]]) -> Iterator[Metric]:
    gauges: list[tuple[str, str, Callable[[Run, int | None], float | None]]] = [
        (
            "databricks_job_last_run_duration_seconds",
            "Duration of the job's last terminal run.",
            lambda run, _: run.duration_seconds,
        ),
        (
            "databricks_job_last_run_failed",
            "1 if the job's last terminal run (or its last repair) failed ("
            + ", ".join(results_of(FAILED))
            + "), else 0.",
            lambda run, _: 1.0 if run.failed else 0.0,
        ),
        (
            "databricks_job_last_run_end_timestamp_seconds",
            "End time of the job's last terminal run (Unix seconds).",
            lambda run, _: run.end_ms / 1000.0,
        ),
        (
            "databricks_job_last_success_timestamp_seconds",
            "End time of the job's last successful run (Unix seconds).",
            lambda _, success_ms: success_ms / 1000.0 if success_ms else None,
        ),
    ]
    for name, doc, value_of in gauges:
        family = GaugeMetricFamily(name, doc, labels=JOB)
        for ws, snap in views:
            for job_id, run in snap.last_runs.items():
                value = value_of(run, snap.last_success_ms.get(job_id))
                if value is not None:
                    family.add_metric([ws, job_id, run.job_name], value)
        yield family
    info = GaugeMetricFamily(
        "databricks_job_last_run_info",
        "The job's last terminal run: run_id, result_state and run page URL.",
        labels=[*JOB, "run_id", "result_state", "run_page_url"],
    )
    for ws, snap in views:
        for job_id, run in snap.last_runs.items():
            info.add_metric(
                [ws, job_id, run.job_name, str(run.run_id), run.result_state, run.run_page_url],
                1.0,
            )
    yield info


def active_age_family(views: Sequence[tuple[str, RunsSnapshot]], now: float) -> Iterator[Metric]:
    max_age = GaugeMetricFamily(
        "databricks_job_active_run_max_age_seconds",
        "Running time of the job's oldest active run (now minus the time it left the queue; "
        "queued runs are not counted).",
        labels=JOB,
    )
    for ws, snap in views:
        oldest: dict[tuple[str, str], int] = {}
        for run in snap.active:
            since = run.running_since_ms
            if since > 0 and not run.queued and not run.one_time:
                oldest[run.job] = min(oldest.get(run.job, since), since)
        for (job_id, job_name), start_ms in sorted(oldest.items()):
            max_age.add_metric([ws, job_id, job_name], max(now - start_ms / 1000.0, 0.0))
    yield max_age


def pool_families(views: Sequence[tuple[str, PoolsSnapshot]]) -> Iterator[Metric]:
    gauges = {
        "idle": (
            "databricks_instance_pool_idle_instances",
            "Running instances not used by a cluster.",
        ),
        "used": ("databricks_instance_pool_used_instances", "Running instances used by clusters."),
        "pending_idle": (
            "databricks_instance_pool_pending_idle_instances",
            "Starting instances not yet assigned to a cluster.",
        ),
        "pending_used": (
            "databricks_instance_pool_pending_used_instances",
            "Starting instances assigned to a cluster.",
        ),
        "min_idle": (
            "databricks_instance_pool_min_idle_instances",
            "Configured minimum of idle instances.",
        ),
    }
    families = {
        key: GaugeMetricFamily(name, doc + SCHEDULED, labels=POOL)
        for key, (name, doc) in gauges.items()
    }
    max_capacity = GaugeMetricFamily(
        "databricks_instance_pool_max_capacity",
        "Configured maximum of instances (absent when unlimited).",
        labels=POOL,
    )
    info = GaugeMetricFamily(
        "databricks_instance_pool_info",
        "Facts about the pool: node type and state.",
        labels=[*POOL, "node_type_id", "state"],
    )
    errors = GaugeMetricFamily(
        "databricks_instance_pool_pending_instance_errors",
        "Instances that failed to start (status.pending_instance_errors: cloud quota, capacity)."
        + SCHEDULED,
        labels=POOL,
    )
    error_info = GaugeMetricFamily(
        "databricks_instance_pool_pending_instance_error_info",
        "The latest error of an instance that failed to start, as Databricks words it.",
        labels=[*POOL, "message"],
    )
    autotermination = GaugeMetricFamily(
        "databricks_instance_pool_idle_autotermination_seconds",
        "How long an idle instance above min_idle_instances waits before it is terminated "
        "(idle_instance_autotermination_minutes x 60).",
        labels=POOL,
    )
    for ws, snapshot in views:
        for pool in snapshot.pools:
            labels = [ws, pool.pool_id, pool.pool_name]
            if pool.autotermination_minutes is not None:
                autotermination.add_metric(labels, 60.0 * pool.autotermination_minutes)
            for key, family in families.items():
                family.add_metric(labels, float(getattr(pool, key)))
            if pool.max_capacity is not None:
                max_capacity.add_metric(labels, float(pool.max_capacity))
            info.add_metric([*labels, pool.node_type_id, pool.state], 1.0)
            errors.add_metric(labels, float(pool.pending_errors))
            if pool.pending_errors:
                error_info.add_metric([*labels, pool.pending_error_message], 1.0)
    yield from families.values()
    yield max_capacity
    yield info
    yield errors
    yield error_info
    yield autotermination
    yield from usage_families(views)


# PoolTotals field -> help; the family is databricks_instance_pool_<field>_instance_seconds.
USAGE = {
    "idle": "Instance-seconds of idle instances (running, not used by a cluster).",
    "used": "Instance-seconds of instances used by clusters.",
    "pending": "Instance-seconds of instances starting (pending idle or used).",
    "idle_above_min": "Instance-seconds of idle instances beyond min_idle_instances (the part a "
    "shorter idle_instance_autotermination_minutes can save).",
}


def usage_families(views: Sequence[tuple[str, PoolsSnapshot]]) -> Iterator[Metric]:
    """The pools' integrated counters (exporter.poolusage): instance-seconds and idle cost."""
    integrated = (
        " Integrated by the exporter between collections (left-point rule, Databricks' clock);"
        " kept across restarts with --state-file."
    )
    counters = {
        key: CounterMetricFamily(
            f"databricks_instance_pool_{key}_instance_seconds", doc + integrated, labels=POOL
        )
        for key, doc in USAGE.items()
    }
    cost = CounterMetricFamily(
        "databricks_instance_pool_idle_cost",
        "VM cost of idle instances, in the price table's currency (idle instances cost the "
        "cloud provider's VM price and no DBUs)." + integrated,
        labels=[*POOL, "currency"],
    )
    price = GaugeMetricFamily(
        "databricks_instance_pool_vm_price_per_hour",
        "The price table's VM price per hour for the pool's node type.",
        labels=[*POOL, "currency"],
    )
    unpriced = GaugeMetricFamily(
        "databricks_instance_pool_unpriced",
        "1 for a pool whose node type the price table lacks: its idle cost is not counted.",
        labels=[*POOL, "node_type_id"],
    )
    unobserved = CounterMetricFamily(
        "databricks_exporter_pool_unobserved_seconds",
        "Seconds between pool collections too far apart to integrate (exporter or API down); "
        "not counted in the instance-seconds counters.",
        labels=["workspace"],
    )
    for ws, snapshot in views:
        usage = snapshot.usage
        if usage is None:
            continue
        pools = {pool.pool_id: pool for pool in snapshot.pools}
        prices = dict(usage.prices)
        for pool_id, totals in usage.totals:
            pool = pools.get(pool_id)
            if pool is None:
                continue
            labels = [ws, pool_id, pool.pool_name]
            for key, family in counters.items():
                family.add_metric(labels, getattr(totals, key))
            if usage.currency is not None and pool_id in prices:
                cost.add_metric([*labels, usage.currency], totals.idle_cost)
                price.add_metric([*labels, usage.currency], prices[pool_id])
        for pool_id in usage.unpriced:
            if pool_id in pools:
                pool = pools[pool_id]
                unpriced.add_metric([ws, pool_id, pool.pool_name, pool.node_type_id], 1.0)
        unobserved.add_metric([ws], usage.unobserved_seconds)
    yield from counters.values()
    yield cost
    yield price
    yield unpriced
    yield unobserved


def health_families(views: Sequence[tuple[str, HealthSnapshot]]) -> Iterator[Metric]:
    success = GaugeMetricFamily(
        "databricks_exporter_collection_success",
        "1 if the collector's last collection succeeded, else 0.",
        labels=["workspace", "collector"],
    )
    last_success = GaugeMetricFamily(
        "databricks_exporter_last_success_timestamp_seconds",
        "When the collector last succeeded (Unix seconds): the age of the data served.",
        labels=["workspace", "collector"],
    )
    delay = GaugeMetricFamily(
        "databricks_exporter_collection_start_delay_seconds",
        "How late the collector's last collection started against its schedule: a process "
        "with more workspaces than it can serve starts them later and later.",
        labels=["workspace", "collector"],
    )
    duration = HistogramMetricFamily(
        "databricks_exporter_collection_duration_seconds",
        "Time one collection took, including retries.",
        labels=["workspace", "collector"],
    )
    requests = CounterMetricFamily(
        "databricks_exporter_api_requests",
        "Databricks API requests by endpoint and final HTTP status ('error': no response).",
        labels=["workspace", "endpoint", "status_code"],
    )
    retries = CounterMetricFamily(
        "databricks_exporter_api_retries",
        "Retried Databricks API requests by endpoint and reason "
        "(status code, timeout, connection_error).",
        labels=["workspace", "endpoint", "reason"],
    )
    tokens = CounterMetricFamily(
        "databricks_exporter_token_requests",
        "Azure AD token requests (new tokens and failed attempts), not cache hits.",
        labels=["workspace"],
    )
    for ws, health in views:
        for name, col in sorted(health.collectors.items()):
            if col.success is not None:
                success.add_metric([ws, name], 1.0 if col.success else 0.0)
            if col.last_success is not None:
                last_success.add_metric([ws, name], col.last_success)
            if col.start_delay is not None:
                delay.add_metric([ws, name], col.start_delay)
            duration.add_metric([ws, name], col.durations.buckets(), col.durations.total)
        for (endpoint, status), value in sorted(health.requests.items()):
            requests.add_metric([ws, endpoint, status], value)
        for (endpoint, reason), value in sorted(health.retries.items()):
            retries.add_metric([ws, endpoint, reason], value)
        tokens.add_metric([ws], health.token_requests)
    yield from (success, last_success, delay, duration, requests, retries, tokens)
    yield from state_write_families(views)


def state_write_families(views: Sequence[tuple[str, HealthSnapshot]]) -> Iterator[Metric]:
    """Only with --state-file: without one there is nothing to write."""
    errors = CounterMetricFamily(
        "databricks_exporter_state_write_errors",
        "Failed writes of the workspace's part of --state-file (a full or read-only disk): "
        "a restart then starts the pools' integrals from zero.",
        labels=["workspace"],
    )
    last = GaugeMetricFamily(
        "databricks_exporter_state_last_write_timestamp_seconds",
        "When the workspace's part of --state-file was last written (Unix seconds).",
        labels=["workspace"],
    )
    for ws, health in views:
        if health.state_writes is None:
            continue
        errors.add_metric([ws], health.state_writes.errors)
        if health.state_writes.last_success is not None:
            last.add_metric([ws], health.state_writes.last_success)
    if errors.samples:
        yield errors
    if last.samples:
        yield last


# Per-workspace figures of the runs ledger: (family type, name, help, value of a snapshot).
LEDGER_FIGURES: list[tuple[type, str, str, Callable[[RunsSnapshot], float]]] = [
    (
        GaugeMetricFamily,
        "databricks_exporter_baseline_timestamp_seconds",
        "Runs that ended after this time (Unix seconds) are counted in databricks_job_runs_total.",
        lambda snap: snap.baseline_ms / 1000.0,
    ),
    (
        GaugeMetricFamily,
        "databricks_exporter_jobs_folded",
        'Distinct jobs beyond max_jobs, reported together as job_id="__other__".',
        lambda snap: snap.folded_jobs,
    ),
    (
        GaugeMetricFamily,
        "databricks_exporter_one_time_run_names_folded",
        'Distinct one-time run names beyond their cap, reported together as run_name="__other__".',
        lambda snap: snap.folded_one_time_names,
    ),
    (
        GaugeMetricFamily,
        "databricks_exporter_task_keys_folded",
        'Distinct (job, task_key) pairs beyond max_series, reported as task_key="__other__".',
        lambda snap: snap.folded_task_keys,
    ),
    (
        CounterMetricFamily,
        "databricks_exporter_runs_vanished",
        "Active runs that disappeared before they ended (job or run deleted); not counted.",
        lambda snap: snap.vanished_runs,
    ),
    (
        GaugeMetricFamily,
        "databricks_exporter_lookback_progress_ratio",
        "Share of --lookback-hours read for the last-run facts (0 to 1), in the background after "
        "the first cycle; never counted in databricks_job_runs_total.",
        lambda snap: snap.backfill_progress,
    ),
]


def baseline_family(views: Sequence[tuple[str, RunsSnapshot]]) -> Iterator[Metric]:
    for kind, name, doc, value_of in LEDGER_FIGURES:
        family = kind(name, doc, labels=["workspace"])
        for ws, snap in views:
            family.add_metric([ws], value_of(snap))
        yield family
    yield counters(
        "databricks_exporter_runs_skipped",
        "Run objects skipped because they cannot be trusted, by reason (each time one is listed).",
        ["workspace", "reason"],
        [
            (ws, {(reason,): n for reason, n in sorted(snap.skipped_runs.items())})
            for ws, snap in views
        ],
    )
