"""The runs' families, rendered from RunsSnapshot values."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from exporter.catalogue import Family
from exporter.collectors.runs.ledger import RunsSnapshot
from exporter.collectors.runs.model import Run
from exporter.families import SCHEDULED, counters, histograms
from exporter.outcomes import FAILED, results_of

JOB = ["workspace", "job_id", "job_name"]

FAMILIES: tuple[Family, ...] = ()


def runs_families(views: Sequence[tuple[str, RunsSnapshot]]) -> Iterator[Metric]:
    yield from job_families(views)
    yield from baseline_family(views)


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
