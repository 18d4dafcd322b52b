"""The runs' families, rendered from RunsSnapshot values."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import Metric

from exporter.catalogue import Family
from exporter.collectors.runs.ledger import RunsSnapshot
from exporter.collectors.runs.model import Run
from exporter.collectors.runs.phases import COMPUTE_KINDS
from exporter.families import SCHEDULED, counters, histograms
from exporter.outcomes import FAILED, results_of

JOB = ("workspace", "job_id", "job_name")
ONE_TIME = ("workspace", "run_name", "run_type")

JOB_RUNS = Family(
    "databricks_job_runs_total",
    "counter",
    "Job runs that ended since the exporter's baseline, by result_state." + SCHEDULED,
    (*JOB, "result_state"),
)
JOB_RUN_DURATION = Family(
    "databricks_job_run_duration_seconds",
    "histogram",
    "Duration of counted job runs." + SCHEDULED,
    JOB,
)
JOB_LAST_RUN_DURATION = Family(
    "databricks_job_last_run_duration_seconds",
    "gauge",
    "Duration of the job's last terminal run.",
    JOB,
)
JOB_LAST_RUN_FAILED = Family(
    "databricks_job_last_run_failed",
    "gauge",
    "1 if the job's last terminal run (or its last repair) failed ("
    + ", ".join(results_of(FAILED))
    + "), else 0.",
    JOB,
)
JOB_LAST_RUN_END = Family(
    "databricks_job_last_run_end_timestamp_seconds",
    "gauge",
    "End time of the job's last terminal run (Unix seconds).",
    JOB,
)
JOB_LAST_SUCCESS = Family(
    "databricks_job_last_success_timestamp_seconds",
    "gauge",
    "End time of the job's last successful run (Unix seconds).",
    JOB,
)
JOB_LAST_RUN_INFO = Family(
    "databricks_job_last_run_info",
    "info",
    "The job's last terminal run: run_id, result_state and run page URL.",
    (*JOB, "run_id", "result_state", "run_page_url"),
)
JOB_RUNS_ACTIVE = Family(
    "databricks_job_runs_active",
    "gauge",
    "Runs of the job that are not terminal yet, by life_cycle_state." + SCHEDULED,
    (*JOB, "life_cycle_state"),
)
JOB_ACTIVE_RUN_MAX_AGE = Family(
    "databricks_job_active_run_max_age_seconds",
    "gauge",
    "Running time of the job's oldest active run (now minus the time it left the queue; "
    "queued runs are not counted).",
    JOB,
)
JOB_CONTINUOUS = Family(
    "databricks_job_continuous",
    "info",
    "1 for jobs with a continuous trigger (always one active run: never 'stuck')." + SCHEDULED,
    JOB,
)
JOB_RUN_REPAIRS = Family(
    "databricks_job_run_repairs_total",
    "counter",
    "Repairs of job runs that ended since the baseline, by the repair's result_state "
    "(a repaired run keeps its run_id and is counted once in databricks_job_runs_total)."
    + SCHEDULED,
    (*JOB, "result_state"),
)
TASK_RUNS = Family(
    "databricks_task_runs_total",
    "counter",
    "Task runs of counted job runs, by task_key and result_state." + SCHEDULED,
    (*JOB, "task_key", "result_state"),
)
ONE_TIME_RUNS = Family(
    "databricks_one_time_runs_total",
    "counter",
    "One-time runs (SUBMIT_RUN, WORKFLOW_RUN) that ended since the baseline, by normalised "
    "run_name and result_state." + SCHEDULED,
    (*ONE_TIME, "result_state"),
)
ONE_TIME_RUN_DURATION = Family(
    "databricks_one_time_run_duration_seconds",
    "histogram",
    "Duration of counted one-time runs." + SCHEDULED,
    ONE_TIME,
)
ONE_TIME_RUNS_ACTIVE = Family(
    "databricks_one_time_runs_active",
    "gauge",
    "One-time runs that are not terminal yet, by life_cycle_state." + SCHEDULED,
    (*ONE_TIME, "life_cycle_state"),
)
_COMPUTE = " compute: " + ", ".join(COMPUTE_KINDS) + " (README, 'Run phases and compute')."
JOB_RUN_PHASE = Family(
    "databricks_job_run_phase_seconds",
    "histogram",
    "Queue, setup, execution and cleanup time of the tasks of counted job runs, one "
    "observation per task and phase, by the compute the task ran on (tasks in parallel are "
    "not merged: the sum is compute time, not wall time)." + _COMPUTE + SCHEDULED,
    (*JOB, "phase", "compute"),
)
ONE_TIME_RUN_PHASE = Family(
    "databricks_one_time_run_phase_seconds",
    "histogram",
    "Queue, setup, execution and cleanup time of the tasks of counted one-time runs, as "
    "databricks_job_run_phase_seconds." + SCHEDULED,
    (*ONE_TIME, "phase", "compute"),
)
JOB_RUNS_BY_COMPUTE = Family(
    "databricks_job_runs_by_compute_total",
    "counter",
    "Counted job runs by the compute their tasks ran on (a run with tasks on two kinds "
    "counts once under each)." + _COMPUTE + SCHEDULED,
    (*JOB, "compute"),
)
CLUSTER_SETUP = Family(
    "databricks_cluster_setup_seconds",
    "histogram",
    "Start-up time of the clusters counted runs used (a job cluster once per run: its "
    "tasks' longest setup), by compute, pool_id (compute=pool) and node_type_id "
    "(compute=on_demand; a pool's node type is in databricks_instance_pool_info)." + SCHEDULED,
    ("workspace", "compute", "pool_id", "node_type_id"),
)
BASELINE = Family(
    "databricks_exporter_baseline_timestamp_seconds",
    "gauge",
    "Runs that ended after this time (Unix seconds) are counted in databricks_job_runs_total.",
    ("workspace",),
)
JOBS_FOLDED = Family(
    "databricks_exporter_jobs_folded",
    "gauge",
    'Distinct jobs beyond max_jobs, reported together as job_id="__other__".',
    ("workspace",),
)
ONE_TIME_NAMES_FOLDED = Family(
    "databricks_exporter_one_time_run_names_folded",
    "gauge",
    'Distinct one-time run names beyond their cap, reported together as run_name="__other__".',
    ("workspace",),
)
TASK_KEYS_FOLDED = Family(
    "databricks_exporter_task_keys_folded",
    "gauge",
    'Distinct (job, task_key) pairs beyond max_series, reported as task_key="__other__".',
    ("workspace",),
)
RUNS_VANISHED = Family(
    "databricks_exporter_runs_vanished_total",
    "counter",
    "Active runs that disappeared before they ended (job or run deleted); not counted.",
    ("workspace",),
)
LOOKBACK_PROGRESS = Family(
    "databricks_exporter_lookback_progress_ratio",
    "gauge",
    "Share of --lookback-hours read for the last-run facts (0 to 1), in the background after "
    "the first cycle; never counted in databricks_job_runs_total.",
    ("workspace",),
)
PHASES_FOLDED = Family(
    "databricks_exporter_run_phases_folded",
    "gauge",
    "Distinct (job or one-time run name, compute) pairs beyond max_series whose phase "
    'histograms are reported as job_id="__other__" (or run_name), and (compute, pool_id, '
    'node_type_id) start-ups reported as pool_id="__other__".',
    ("workspace",),
)
LOOKBACK_START = Family(
    "databricks_exporter_lookback_start_timestamp_seconds",
    "gauge",
    "Start of the look-back (Unix seconds): once databricks_exporter_lookback_progress_ratio "
    "is 1, the last-run facts (each job's last run and last success) cover the runs that "
    "started after it.",
    ("workspace",),
)
RUNS_SKIPPED = Family(
    "databricks_exporter_runs_skipped_total",
    "counter",
    "Run objects skipped because they cannot be trusted, by reason (each time one is listed).",
    ("workspace", "reason"),
)

FAMILIES: tuple[Family, ...] = (
    JOB_RUNS,
    JOB_RUN_DURATION,
    JOB_LAST_RUN_DURATION,
    JOB_LAST_RUN_FAILED,
    JOB_LAST_RUN_END,
    JOB_LAST_SUCCESS,
    JOB_LAST_RUN_INFO,
    JOB_RUNS_ACTIVE,
    JOB_CONTINUOUS,
    JOB_RUN_REPAIRS,
    TASK_RUNS,
    JOB_RUN_PHASE,
    JOB_RUNS_BY_COMPUTE,
    CLUSTER_SETUP,
    ONE_TIME_RUNS,
    ONE_TIME_RUN_DURATION,
    ONE_TIME_RUN_PHASE,
    ONE_TIME_RUNS_ACTIVE,
    JOB_ACTIVE_RUN_MAX_AGE,
    BASELINE,
    JOBS_FOLDED,
    ONE_TIME_NAMES_FOLDED,
    TASK_KEYS_FOLDED,
    RUNS_VANISHED,
    LOOKBACK_PROGRESS,
    PHASES_FOLDED,
    LOOKBACK_START,
    RUNS_SKIPPED,
)
LIVE = (JOB_ACTIVE_RUN_MAX_AGE,)  # rendered at every scrape (active_age_family)


def runs_families(views: Sequence[tuple[str, RunsSnapshot]]) -> Iterator[Metric]:
    yield from job_families(views)
    yield from baseline_family(views)


def job_families(views: Sequence[tuple[str, RunsSnapshot]]) -> Iterator[Metric]:
    """One family at a time: at 5,000 jobs a family holds up to 100k samples, and the
    exposition formats (and empties) each before the next is built."""
    yield counters(JOB_RUNS, [(ws, snap.runs_total) for ws, snap in views])
    yield histograms(JOB_RUN_DURATION, [(ws, snap.durations) for ws, snap in views])
    yield from last_run_families(views)
    active = JOB_RUNS_ACTIVE.gauge()
    for ws, snap in views:
        by_state: Counter[tuple[str, str, str]] = Counter(
            (run.job_id, run.job_name, run.life_cycle_state)
            for run in snap.active
            if not run.one_time
        )
        for (job_id, job_name, state), value in sorted(by_state.items()):
            active.add_metric([ws, job_id, job_name, state], value)
    yield active
    continuous = JOB_CONTINUOUS.gauge()
    for ws, snap in views:
        jobs = {run.job for run in snap.active if run.continuous and not run.one_time}
        jobs |= {run.job for run in snap.last_runs.values() if run.continuous}
        for job_id, job_name in sorted(jobs):
            continuous.add_metric([ws, job_id, job_name], 1.0)
    yield continuous
    yield counters(JOB_RUN_REPAIRS, [(ws, snap.repairs_total) for ws, snap in views])
    yield counters(TASK_RUNS, [(ws, snap.tasks_total) for ws, snap in views])
    yield histograms(JOB_RUN_PHASE, [(ws, snap.phases) for ws, snap in views])
    yield counters(JOB_RUNS_BY_COMPUTE, [(ws, snap.runs_by_compute) for ws, snap in views])
    yield histograms(CLUSTER_SETUP, [(ws, snap.start_ups) for ws, snap in views])
    yield from one_time_families(views)


def one_time_families(views: Sequence[tuple[str, RunsSnapshot]]) -> Iterator[Metric]:
    """Runs of runs/submit and dbutils.notebook.run, by normalised run name, never by job_id."""
    yield counters(ONE_TIME_RUNS, [(ws, snap.one_time_total) for ws, snap in views])
    yield histograms(ONE_TIME_RUN_DURATION, [(ws, snap.one_time_durations) for ws, snap in views])
    yield histograms(ONE_TIME_RUN_PHASE, [(ws, snap.one_time_phases) for ws, snap in views])
    active = ONE_TIME_RUNS_ACTIVE.gauge()
    for ws, snap in views:
        by_state: Counter[tuple[str, str, str]] = Counter(
            (*run.one_time_key, run.life_cycle_state) for run in snap.active if run.one_time
        )
        for (name, run_type, state), value in sorted(by_state.items()):
            active.add_metric([ws, name, run_type, state], value)
    yield active


def last_run_families(views: Sequence[tuple[str, RunsSnapshot]]) -> Iterator[Metric]:
    gauges: list[tuple[Family, Callable[[Run, int | None], float | None]]] = [
        (JOB_LAST_RUN_DURATION, lambda run, _: run.duration_seconds),
        (JOB_LAST_RUN_FAILED, lambda run, _: 1.0 if run.failed else 0.0),
        (JOB_LAST_RUN_END, lambda run, _: run.end_ms / 1000.0),
        (
            JOB_LAST_SUCCESS,
            lambda _, success_ms: success_ms / 1000.0 if success_ms else None,
        ),
    ]
    for declared, value_of in gauges:
        family = declared.gauge()
        for ws, snap in views:
            for job_id, run in snap.last_runs.items():
                value = value_of(run, snap.last_success_ms.get(job_id))
                if value is not None:
                    family.add_metric([ws, job_id, run.job_name], value)
        yield family
    info = JOB_LAST_RUN_INFO.gauge()
    for ws, snap in views:
        for job_id, run in snap.last_runs.items():
            info.add_metric(
                [ws, job_id, run.job_name, str(run.run_id), run.result_state, run.run_page_url],
                1.0,
            )
    yield info


def active_age_family(views: Sequence[tuple[str, RunsSnapshot]], now: float) -> Iterator[Metric]:
    max_age = JOB_ACTIVE_RUN_MAX_AGE.gauge()
    for ws, snap in views:
        oldest: dict[tuple[str, str], int] = {}
        for run in snap.active:
            since = run.running_since_ms
            if since > 0 and not run.queued and not run.one_time:
                oldest[run.job] = min(oldest.get(run.job, since), since)
        for (job_id, job_name), start_ms in sorted(oldest.items()):
            max_age.add_metric([ws, job_id, job_name], max(now - start_ms / 1000.0, 0.0))
    yield max_age


# Per-workspace figures of the runs ledger: (family, value of a snapshot).
LEDGER_FIGURES: list[tuple[Family, Callable[[RunsSnapshot], float]]] = [
    (BASELINE, lambda snap: snap.baseline_ms / 1000.0),
    (JOBS_FOLDED, lambda snap: snap.folded_jobs),
    (ONE_TIME_NAMES_FOLDED, lambda snap: snap.folded_one_time_names),
    (TASK_KEYS_FOLDED, lambda snap: snap.folded_task_keys),
    (RUNS_VANISHED, lambda snap: snap.vanished_runs),
    (LOOKBACK_PROGRESS, lambda snap: snap.backfill_progress),
    (PHASES_FOLDED, lambda snap: snap.folded_phase_sets),
    (LOOKBACK_START, lambda snap: snap.lookback_start_ms / 1000.0),
]


def baseline_family(views: Sequence[tuple[str, RunsSnapshot]]) -> Iterator[Metric]:
    for declared, value_of in LEDGER_FIGURES:
        family = declared.scalar()
        for ws, snap in views:
            family.add_metric([ws], value_of(snap))
        yield family
    yield counters(
        RUNS_SKIPPED,
        [
            (ws, {(reason,): n for reason, n in sorted(snap.skipped_runs.items())})
            for ws, snap in views
        ],
    )
