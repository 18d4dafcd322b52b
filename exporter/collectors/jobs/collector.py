"""The jobs' settings: GET /api/2.2/jobs/list, 100 jobs a page, every ``jobs_interval``. Each
collection replaces the snapshot whole (a deleted job's series go with it); a failed listing
changes nothing (the client's ApiError goes to the Workspace wrapper)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.client import DatabricksClient
from exporter.collectors.jobs.model import BadJob, Job, parse_job, tag_label
from exporter.collectors.jobs.quartz import Intervals, Untranslatable

log = logging.getLogger(__name__)

JOBS_LIST = "/api/2.2/jobs/list"
JOBS_PAGE = 100  # the API refuses more


@dataclass(frozen=True)
class JobFacts:
    """One job's series, as rendered."""

    job_id: str
    name: str
    trigger: str
    tag_values: tuple[str, ...]  # in the order of the snapshot's tag_labels
    threshold: float | None
    timeout: float | None
    paused: bool | None
    interval: float | None
    created: float | None
    live_since: float | None = None  # since when its schedule has been unpaused (seconds)


@dataclass(frozen=True)
class JobsSnapshot:
    jobs: tuple[JobFacts, ...]
    listed: int  # jobs the listing showed
    folded: int  # of those, beyond max_jobs: no series
    tag_labels: tuple[str, ...] = ()


class JobsCollector:
    """Lists every job and keeps what its settings promise; ``snapshot`` is what renders."""

    name = "jobs"

    def __init__(
        self,
        client: DatabricksClient,
        max_jobs: int = 5000,
        job_tags: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.max_jobs = max_jobs
        self.job_tags = tuple(job_tags)
        self.tag_labels = tuple(tag_label(k) for k in self.job_tags)
        self.clock = clock
        self.intervals = Intervals()
        self.snapshot: JobsSnapshot | None = None
        self._untranslatable: set[str] = set()  # cron expressions logged once
        self._over_cap_logged = False
        # Since when each job's schedule has been live (unpaused), as far as seen: its created
        # time when first listed live, the listing that saw it live after a pause (or after it
        # had nothing to pause); and the jobs listed before. Kept in the state file.
        self.live_since: dict[str, float] = {}
        self.known: set[str] = set()

    def collect(self) -> int:
        """One listing; returns the jobs listed. Raises ApiError when a page fails (the
        snapshot is kept)."""
        jobs: dict[str, Job] = {}
        skipped = 0
        for raw in self.client.paginate(JOBS_LIST, {"limit": JOBS_PAGE}, "jobs"):
            job = self._parse(raw)
            if job is None:
                skipped += 1
            elif job.job_id not in jobs:  # pages may overlap while jobs are created
                jobs[job.job_id] = job
        ordered = sorted(jobs.values(), key=lambda j: int(j.job_id))
        kept, folded = ordered[: self.max_jobs], len(ordered) - min(len(ordered), self.max_jobs)
        if folded and not self._over_cap_logged:
            self._over_cap_logged = True
            log.warning(
                "workspace %s: %d jobs listed, more than max_jobs (%d): the %d of the highest "
                "job ids have no databricks_job_* series of the jobs collector (raise max_jobs "
                "to see them; see databricks_exporter_jobs_listing_folded)",
                self.client.workspace,
                len(ordered),
                self.max_jobs,
                folded,
            )
        now = self.clock()
        self._follow_pauses(kept, now)
        snapshot = JobsSnapshot(
            jobs=tuple(self._facts(job, now) for job in kept),
            listed=len(ordered),
            folded=folded,
            tag_labels=self.tag_labels,
        )
        if snapshot != self.snapshot:  # an unchanged snapshot keeps its rendered text
            self.snapshot = snapshot
        return len(ordered)

    def _follow_pauses(self, jobs: Sequence[Job], now: float) -> None:
        """Move each job's live-since on: an unpaused schedule seen paused (or absent) before
        has been live since this listing; one first seen live, since the job was created."""
        live: dict[str, float] = {}
        for job in jobs:
            if job.paused is not False:
                continue
            since = self.live_since.get(job.job_id)
            if since is None:
                first_seen = job.job_id not in self.known
                since = (job.created_seconds or now) if first_seen else now
            live[job.job_id] = min(since, now)
        self.live_since = live
        self.known = {job.job_id for job in jobs}

    def state(self) -> dict[str, Any]:
        """What the state file keeps: a restart goes on knowing what was paused."""
        return {"live_since": dict(self.live_since), "known": sorted(self.known)}

    def restore(self, data: Any) -> None:
        """The saved part (``state``); ValueError when it cannot be trusted."""
        if not isinstance(data, dict):
            raise ValueError("the jobs part is not an object")
        live, known = data.get("live_since", {}), data.get("known", [])
        if not isinstance(live, dict) or not isinstance(known, list):
            raise ValueError("live_since is not an object or known not a list")
        restored: dict[str, float] = {}
        for job_id, since in live.items():
            if (
                not isinstance(job_id, str)
                or isinstance(since, bool)
                or not isinstance(since, int | float)
                or not math.isfinite(since)
            ):
                raise ValueError(f"a live_since entry is not a job id and a time: {job_id!r}")
            restored[job_id] = float(since)
        if not all(isinstance(job_id, str) for job_id in known):
            raise ValueError("a known job id is not text")
        self.live_since, self.known = restored, set(known) | set(restored)

    def _facts(self, job: Job, now: float) -> JobFacts:
        tags = dict(job.tags)
        return JobFacts(
            job_id=job.job_id,
            name=job.name,
            trigger=job.trigger,
            tag_values=tuple(tags.get(key, "") for key in self.job_tags),
            threshold=job.duration_threshold_seconds,
            timeout=job.timeout_seconds,
            paused=job.paused,
            interval=self._interval(job, now),
            created=job.created_seconds,
            live_since=self.live_since.get(job.job_id),
        )

    def _interval(self, job: Job, now: float) -> float | None:
        if job.trigger == "periodic":
            return job.period_seconds
        if job.cron is None:
            return None
        try:
            return self.intervals.interval(job.cron.expression, job.cron.timezone_id, now)
        except Untranslatable as exc:
            key = f"{job.cron.expression} {job.cron.timezone_id}"
            if key not in self._untranslatable and len(self._untranslatable) < 1000:
                self._untranslatable.add(key)
                log.info(
                    "workspace %s: job %s (%s): schedule %r (%s) has no interval here: %s",
                    self.client.workspace,
                    job.name,
                    job.job_id,
                    job.cron.expression,
                    job.cron.timezone_id,
                    exc,
                )
            return None

    def _parse(self, raw: dict[str, Any]) -> Job | None:
        try:
            return parse_job(raw)
        except BadJob as exc:
            log.warning("workspace %s: skipped a job: %s", self.client.workspace, exc)
            return None
