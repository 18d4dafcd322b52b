"""Jobs: every job jobs/list shows (also those that never ran) and what its settings promise
(trigger, pause, schedule period, run duration threshold, timeout, tags), every
``jobs_interval``. The state file keeps since when each schedule has been unpaused."""

from __future__ import annotations

from typing import Any

from exporter.collectors import Context, Registration
from exporter.collectors.jobs.collector import JobsCollector, JobsSnapshot
from exporter.collectors.jobs.families import FAMILIES, job_families
from exporter.collectors.jobs.model import Job, parse_job, tag_label

# Series of one listed job: info, threshold, timeout, paused, period, created, live since.
SERIES_PER_LISTED_JOB = 7


def build(ctx: Context) -> JobsCollector:
    settings = ctx.settings
    # max_series bounds this collector too (its own share: the runs' estimate is apart).
    most = min(settings.max_jobs, max(settings.max_series // SERIES_PER_LISTED_JOB, 1))
    collector = JobsCollector(ctx.client, most, settings.job_tags, ctx.clock)
    ctx.restore(collector.restore, True)
    return collector


def save(collector: JobsCollector) -> dict[str, Any]:
    return collector.state()


COLLECTOR = Registration(
    name="jobs",
    factory=build,
    render=job_families,
    families=FAMILIES,
    order=40,
    interval_setting="jobs_interval",
    state_part="jobs",
    save=save,
)

__all__ = ["COLLECTOR", "Job", "JobsCollector", "JobsSnapshot", "parse_job", "tag_label"]
