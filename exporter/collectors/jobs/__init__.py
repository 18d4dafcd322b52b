"""Jobs: every job jobs/list shows (also those that never ran) and what its settings promise
(trigger, pause, schedule period, run duration threshold, timeout, tags), every
``jobs_interval``. Nothing is kept in the state file: each listing is the whole truth."""

from __future__ import annotations

from exporter.collectors import Context, Registration
from exporter.collectors.jobs.collector import JobsCollector, JobsSnapshot
from exporter.collectors.jobs.families import FAMILIES, job_families
from exporter.collectors.jobs.model import Job, parse_job, tag_label

# Series of one listed job: info, threshold, timeout, paused, schedule period, created time.
SERIES_PER_LISTED_JOB = 6


def build(ctx: Context) -> JobsCollector:
    settings = ctx.settings
    # max_series bounds this collector too (its own share: the runs' estimate is apart).
    most = min(settings.max_jobs, max(settings.max_series // SERIES_PER_LISTED_JOB, 1))
    return JobsCollector(ctx.client, most, settings.job_tags, ctx.clock)


COLLECTOR = Registration(
    name="jobs",
    factory=build,
    render=job_families,
    families=FAMILIES,
    order=40,
    interval_setting="jobs_interval",
)

__all__ = ["COLLECTOR", "Job", "JobsCollector", "JobsSnapshot", "parse_job", "tag_label"]
