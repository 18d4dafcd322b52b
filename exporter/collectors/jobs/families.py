"""The jobs' families (what each job promises), rendered from JobsSnapshot values."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import Metric

from exporter.catalogue import Family
from exporter.collectors.jobs.collector import JobFacts, JobsSnapshot
from exporter.families import SCHEDULED

JOB = ("workspace", "job_id", "job_name")

JOB_INFO = Family(
    "databricks_job_info",
    "info",
    "Every job jobs/list shows, run or not: how it is triggered (cron, periodic, file_arrival, "
    "table_update, job_completion, model, continuous, manual or unknown). Each tag key of "
    "job_tags adds a label tag_<key> (the key with characters outside [a-zA-Z0-9_] as _), "
    '"" for a job without that tag.' + SCHEDULED,
    (*JOB, "trigger"),
)
RUN_DURATION_THRESHOLD = Family(
    "databricks_job_run_duration_threshold_seconds",
    "gauge",
    "The job's own run duration threshold: its health rule RUN_DURATION_SECONDS "
    "GREATER_THAN (absent without one).",
    JOB,
)
TIMEOUT = Family(
    "databricks_job_timeout_seconds",
    "gauge",
    "The job's timeout_seconds: Databricks ends a run that lasts longer (absent without one).",
    JOB,
)
SCHEDULE_PAUSED = Family(
    "databricks_job_schedule_paused",
    "gauge",
    "1 if the job's schedule, trigger or continuous run is paused, else 0 (jobs that have one).",
    JOB,
)
SCHEDULE_INTERVAL = Family(
    "databricks_job_schedule_interval_seconds",
    "gauge",
    "The period the job's schedule promises: a cron schedule's longest gap between fire "
    "times over the next 8 days in its timezone, a periodic trigger's interval.",
    JOB,
)
CREATED = Family(
    "databricks_job_created_timestamp_seconds",
    "gauge",
    "When the job was created (Unix seconds).",
    JOB,
)
SCHEDULE_LIVE_SINCE = Family(
    "databricks_job_schedule_live_since_timestamp_seconds",
    "gauge",
    "Since when the job's schedule has been unpaused without a pause the exporter saw (Unix "
    "seconds): its created time when first listed unpaused, else the listing that saw it "
    "unpaused after a pause. Kept in --state-file across restarts.",
    JOB,
)
JOBS_LISTED = Family(
    "databricks_exporter_jobs_listed",
    "gauge",
    "Jobs the last jobs/list showed (all of them, also those beyond max_jobs).",
    ("workspace",),
)
JOBS_LEFT_OUT = Family(
    "databricks_exporter_jobs_listing_folded",
    "gauge",
    "Jobs listed beyond max_jobs (those of the highest job ids): they have no series of the "
    "jobs collector.",
    ("workspace",),
)

FAMILIES: tuple[Family, ...] = (
    JOB_INFO,
    RUN_DURATION_THRESHOLD,
    TIMEOUT,
    SCHEDULE_PAUSED,
    SCHEDULE_INTERVAL,
    CREATED,
    SCHEDULE_LIVE_SINCE,
    JOBS_LISTED,
    JOBS_LEFT_OUT,
)


# Each job's optional figures: (family, its value of a job, None for no sample).
JOB_FIGURES: tuple[tuple[Family, Callable[[JobFacts], float | None]], ...] = (
    (RUN_DURATION_THRESHOLD, lambda job: job.threshold),
    (TIMEOUT, lambda job: job.timeout),
    (SCHEDULE_PAUSED, lambda job: None if job.paused is None else float(job.paused)),
    (SCHEDULE_INTERVAL, lambda job: job.interval),
    (CREATED, lambda job: job.created),
    (SCHEDULE_LIVE_SINCE, lambda job: job.live_since),
)


def job_families(views: Sequence[tuple[str, JobsSnapshot]]) -> Iterator[Metric]:
    tag_labels = next((snap.tag_labels for _, snap in views), ())
    info = dataclasses.replace(JOB_INFO, labels=(*JOB_INFO.labels, *tag_labels)).gauge()
    for ws, snap in views:
        for job in snap.jobs:
            info.add_metric([ws, job.job_id, job.name, job.trigger, *job.tag_values], 1.0)
    yield info
    for declared, value_of in JOB_FIGURES:
        family = declared.gauge()
        for ws, snap in views:
            for job in snap.jobs:
                value = value_of(job)
                if value is not None:
                    family.add_metric([ws, job.job_id, job.name], value)
        yield family
    listed = JOBS_LISTED.gauge()
    left_out = JOBS_LEFT_OUT.gauge()
    for ws, snap in views:
        listed.add_metric([ws], float(snap.listed))
        left_out.add_metric([ws], float(snap.folded))
    yield from (listed, left_out)
