"""When collections run: one APScheduler job per workspace and collector, and a watch that keeps
them running when the host's wall clock steps.

APScheduler's interval jobs are timed on the wall clock: after the clock steps back an hour
(a VM restored, NTP correcting a clock that ran ahead), the next run is an hour away and nothing
is collected meanwhile, silently. ``ClockStepWatch`` compares the wall clock with the monotonic
clock every second; when they disagree by more than a few seconds it logs the step and moves
every job's next run by the step, so collection goes on at its interval, each job at its phase.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from exporter.exposition import Exposition
from exporter.logsetup import log_context
from exporter.workspace import Workspace

log = logging.getLogger(__name__)

STEP_SECONDS = 5.0  # a wall clock that gains or loses more than this in a second has stepped


# Worker threads for the collections: two per workspace (runs and pools at once) up to this;
# past it collections wait for a free worker (IO-bound: each mostly waits on the API).
MAX_WORKERS = 64
LOOKBACK_WORKERS = 4  # the look-back of at most this many workspaces is read at once
RENDER_PAUSE_SECONDS = 0.25  # a render waits this long for the rest of a burst of collections


class Due:
    """When a job's next run is due, kept by the job itself: a collection knows how late it
    started (APScheduler's events arrive after the job may have started), and a clock step
    moves it with the job (ClockStepWatch)."""

    def __init__(self, first: datetime, interval: float) -> None:
        self.next = first
        self.interval = timedelta(seconds=interval)
        self._lock = threading.Lock()

    def started(self, now: datetime) -> float:
        """Seconds late against the due time; the next due time is the first after now."""
        with self._lock:
            late = (now - self.next).total_seconds()
            if self.interval > timedelta(0):
                while self.next <= now:
                    self.next += self.interval
            return max(late, 0.0)

    def move(self, when: datetime) -> None:
        with self._lock:
            self.next = when


def collect_and_render(
    ws: Workspace,
    name: str,
    renderer: Renderer,
    due: Due | None = None,
    running: threading.Lock | None = None,
) -> None:
    """One collection; with ``running`` (one lock per workspace and collector, shared by its
    first run and its interval job), a run that finds the previous one still going returns at
    once: the first collection of a large workspace outlasting the interval job's offset must
    not run twice over (APScheduler's max_instances sees one job only)."""
    if running is not None and not running.acquire(blocking=False):
        log.debug("workspace %s: %s collection still running; this one skipped", ws.name, name)
        return
    try:
        if due is not None:
            ws.health.record_start_delay(name, due.started(datetime.now(timezone.utc)))
        with log_context(workspace=ws.name, collector=name):
            changed = ws.collect(name)
    finally:
        if running is not None:
            running.release()
    if changed:
        renderer.changed()


def backfill_and_render(
    ws: Workspace, budget_seconds: float, renderer: Renderer, name: str | None = None
) -> None:
    with log_context(workspace=ws.name, collector=name or "runs"):
        changed = ws.backfill(budget_seconds, name)
    if changed:
        renderer.changed()


class Renderer:
    """Renders /metrics after collections, once for a burst of them: each collection says a
    snapshot changed, and one thread renders a moment later what changed meanwhile (a hundred
    workspaces' collections make a few renders, not two hundred), while scrapes are served the
    previous render instead of rendering themselves."""

    def __init__(self, exposition: Exposition, pause: float = RENDER_PAUSE_SECONDS) -> None:
        self.exposition = exposition
        self.pause = pause
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="render", daemon=True)

    def start(self) -> Renderer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def changed(self) -> None:
        self.exposition.pending = True  # scrapes keep the last render until this one is done
        self._wake.set()

    def _run(self) -> None:
        last = 0.0  # how long the last render took
        while not self._stop.is_set():
            self._wake.wait()
            # Let the burst's other collections finish; and render at most a third of the
            # time, so a large page (100 workspaces: 7 MB) never keeps a core busy.
            if self._stop.wait(max(self.pause, 2 * last)):
                break
            self._wake.clear()
            started = time.monotonic()
            try:
                self.exposition.refresh()
            except Exception:  # the next change renders again; scrapes still get a page
                log.exception("rendering /metrics failed")
            finally:
                self.exposition.pending = self._wake.is_set()
                last = time.monotonic() - started


def schedule(
    workspaces: Sequence[Workspace], interval: float, renderer: Renderer
) -> BackgroundScheduler:
    """One job per workspace and collector; never overlapping, late runs coalesced.

    Every collection runs once at the start (so /readyz turns 200 after one cycle), then at its
    interval from an offset of its own, spread over the interval: a hundred workspaces' two
    hundred collections do not fall due in the same second and queue for the workers. The
    interval is ``interval``, or the collector's own (``Workspace.intervals``, from its
    registration's ``interval_setting``)."""
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
    now = datetime.now(timezone.utc)
    jobs = [(ws, name) for ws in workspaces for name in ws.collectors]
    for i, (ws, name) in enumerate(jobs):
        job_id = f"{ws.name}:{name}"
        # A collector with an interval of its own (the jobs' settings: jobs_interval) runs at
        # it; every other at ``interval``.
        every = float(getattr(ws, "intervals", {}).get(name, interval))
        running = threading.Lock()
        # The first collection now; then from an offset in (0, interval], one per job.
        scheduler.add_job(
            collect_and_render,
            "date",
            run_date=now,
            args=[ws, name, renderer, Due(now, 0), running],
            id=f"{job_id}:first",
            name=f"{job_id}:first",
            misfire_grace_time=None,
        )
        first = now + timedelta(seconds=every * (i + 1) / len(jobs))
        scheduler.add_job(
            collect_and_render,
            "interval",
            seconds=every,
            start_date=first,
            args=[ws, name, renderer, Due(first, every), running],
            id=job_id,
            name=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
    for ws in workspaces:
        for name in ws.background():
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
                args=[ws, 0.9 * period * share, renderer, name],
                executor="lookback",
                id=f"{ws.name}:{name}:lookback",
                name=f"{ws.name}:{name}:lookback",
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
            "the host's wall clock stepped %+.0f s; every collection is rescheduled by it",
            step,
        )
        now = datetime.now(timezone.utc)
        before = now - timedelta(seconds=step)  # what the wall clock would say without the step
        jobs: list[Any] = self.scheduler.get_jobs()
        for job in jobs:
            try:
                # Each job keeps its phase: due as long after now as it was after "before".
                remaining = (job.next_run_time - before).total_seconds()
                interval = getattr(job.trigger, "interval", None)
                if interval is not None and interval.total_seconds() > 0:
                    remaining %= interval.total_seconds()
                when = now + timedelta(seconds=max(remaining, 0.0))
                job.modify(next_run_time=when)
                for arg in job.args:
                    if isinstance(arg, Due):
                        arg.move(when)
            except Exception:  # a job removed meanwhile (shutdown)
                log.debug("cannot reschedule %s", job.id, exc_info=True)
        self.scheduler.wakeup()
