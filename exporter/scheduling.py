"""When collections run: one APScheduler job per workspace and collector, and a watch that keeps
them running when the host's wall clock steps.

APScheduler's interval jobs are timed on the wall clock: after the clock steps back an hour
(a VM restored, NTP correcting a clock that ran ahead), the next run is an hour away and nothing
is collected meanwhile, silently. ``ClockStepWatch`` compares the wall clock with the monotonic
clock every second; when they disagree by more than a few seconds it logs the step and moves
every job's next run to now, so collection goes on at its interval from the new time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from exporter.exposition import Exposition
from exporter.workspace import Workspace

log = logging.getLogger(__name__)

STEP_SECONDS = 5.0  # a wall clock that gains or loses more than this in a second has stepped


# Worker threads for the collections: two per workspace (runs and pools at once) up to this;
# past it collections wait for a free worker (IO-bound: each mostly waits on the API).
MAX_WORKERS = 64
LOOKBACK_WORKERS = 4  # the look-back of at most this many workspaces is read at once


class StartTimes:
    """When each job was due (APScheduler's submitted event), so a collection knows how late it
    started: the figure that says whether one process is enough for its workspaces."""

    def __init__(self) -> None:
        self._due: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def submitted(self, event: JobSubmissionEvent) -> None:
        if event.scheduled_run_times:
            with self._lock:
                self._due[event.job_id] = event.scheduled_run_times[-1]

    def delay(self, job_id: str) -> float:
        with self._lock:
            due = self._due.get(job_id)
        if due is None:
            return 0.0
        return max((datetime.now(timezone.utc) - due).total_seconds(), 0.0)


def collect_and_render(
    ws: Workspace, name: str, exposition: Exposition, starts: StartTimes | None = None
) -> None:
    if starts is not None:
        ws.health.record_start_delay(name, starts.delay(f"{ws.name}:{name}"))
    if ws.collect(name):
        exposition.refresh()


def backfill_and_render(ws: Workspace, budget_seconds: float, exposition: Exposition) -> None:
    if ws.backfill(budget_seconds):
        exposition.refresh()


def schedule(
    workspaces: Sequence[Workspace], interval: float, exposition: Exposition
) -> BackgroundScheduler:
    """One job per workspace and collector; never overlapping, late runs coalesced.

    After each collection the exposition is rendered for the new snapshot, so scrapes find it
    ready instead of paying for it."""
    scheduler = BackgroundScheduler(
        executors={
            "default": ThreadPoolExecutor(
                max_workers=min(max(2, 2 * len(workspaces)), MAX_WORKERS)
            ),
            # The look-back apart: however many workspaces read theirs, cycles never wait.
            "lookback": ThreadPoolExecutor(max_workers=min(len(workspaces), LOOKBACK_WORKERS) or 1),
        },
        timezone=timezone.utc,
    )
    starts = StartTimes()
    scheduler.add_listener(starts.submitted, EVENT_JOB_SUBMITTED)
    now = datetime.now(timezone.utc)
    for ws in workspaces:
        for name in ws.collectors:
            scheduler.add_job(
                collect_and_render,
                "interval",
                seconds=interval,
                args=[ws, name, exposition, starts],
                id=f"{ws.name}:{name}",
                name=f"{ws.name}:{name}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=now,
            )
        if "runs" in ws.collectors:
            # The look-back, between cycles, at half the request rate: each call reads until a
            # cycle starts or its period ends (RunsCollector.backfill), then the state is saved
            # and the page rendered. A ledger with nothing left to read returns at once.
            period = min(interval, 30.0)
            # A fair share of the look-back workers, ending before the next call is due: with
            # more workspaces than workers each reads for less, and none is skipped.
            share = min(1.0, LOOKBACK_WORKERS / len(workspaces))
            scheduler.add_job(
                backfill_and_render,
                "interval",
                seconds=period,
                args=[ws, 0.9 * period * share, exposition],
                executor="lookback",
                id=f"{ws.name}:runs:lookback",
                name=f"{ws.name}:runs:lookback",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=now + timedelta(seconds=min(period / 4, 2.0)),
            )
    return scheduler


class ClockStepWatch:
    """A daemon thread that reschedules every job to now after a wall-clock step."""

    def __init__(
        self,
        scheduler: BackgroundScheduler,
        period: float = 1.0,
        threshold: float = STEP_SECONDS,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scheduler = scheduler
        self.period = period
        self.threshold = threshold
        self._wall = wall
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clock-step-watch", daemon=True)
        self.steps = 0

    def start(self) -> ClockStepWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        offset = self._wall() - self._monotonic()
        while not self._stop.wait(self.period):
            now = self._wall() - self._monotonic()
            step, offset = now - offset, now
            if abs(step) > self.threshold:
                self._rescheduled(step)

    def _rescheduled(self, step: float) -> None:
        self.steps += 1
        log.warning(
            "the host's wall clock stepped %+.0f s; every collection is rescheduled from now",
            step,
        )
        now = datetime.now(timezone.utc)
        jobs: list[Any] = self.scheduler.get_jobs()
        for job in jobs:
            try:
                job.modify(next_run_time=now)
            except Exception:  # a job removed meanwhile (shutdown)
                log.debug("cannot reschedule %s", job.id, exc_info=True)
        self.scheduler.wakeup()
