"""Job runs, incrementally: active runs, runs completed since the watermark, and the few
previously active runs that left the active list without showing up as completed.

The cost of a cycle grows with the runs that started or ended since the last cycle, never with
the workspace's history. Cycles are timed on Databricks' clock (the answers' Date header).

The look-back (``--lookback-hours``) is read apart from the cycles (``backfill``), newest first,
a few pages at a time, only between cycles and at half the workspace's request rate: it fills
the last-run facts of jobs that have not run since the start and never counts a run, so the
first cycle counts and is ready at once, whatever the history's size.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from exporter.client import (
    JOBS_PAGE_LIMIT,
    RUNS_LIST,
    RUNS_PAGE_LIMIT,
    ApiError,
    DatabricksClient,
    PageLimit,
    RateLimiter,
)
from exporter.collectors.runs.ledger import OWED_MS, RunLedger, RunsSnapshot
from exporter.collectors.runs.model import BadRun, Run, parse_run

log = logging.getLogger(__name__)

PROBE_PAGES = 10  # look-back pages read before the rest's cost is estimated
PENDING_PAGES = 100  # pages of a cut listing read per cycle (10 s at 10 requests a second)


def _now_ms() -> int:
    return int(time.time() * 1000)


class RunsCollector:
    """Keeps a RunLedger up to date; ``snapshot`` is what the metrics render."""

    name = "runs"

    def __init__(
        self,
        client: DatabricksClient,
        ledger: RunLedger,
        clock_ms: Callable[[], int] = _now_ms,
        backfill_rate: float = 0.0,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.clock_ms = clock_ms
        # The ledger changes under this lock (a cycle, a page of history); never held while a
        # cycle waits on the API... except by the cycle itself, which nothing else may slow.
        self.lock = threading.Lock()
        self.busy = threading.Event()  # a cycle runs: the history waits
        self._backfill_limiter = RateLimiter(backfill_rate) if backfill_rate > 0 else None
        self._start_to: int | None = None  # where this process began reading the look-back
        self._history_pages = 0
        self._jobs_to_ask: list[str] | None = None  # asked one by one (see backfill)
        self.snapshot: RunsSnapshot | None = None
        self._warned_no_date = False
        # Whether time went by unwatched before the next cycle: at start with a restored
        # ledger, and after a failed cycle.
        self._after_gap = not ledger.fresh

    def collect(self) -> int:
        """One cycle; returns the runs newly counted. Raises ApiError, changes nothing."""
        self.busy.set()
        try:
            with self.lock:
                counted = self._cycle()
        except BaseException:
            self._after_gap = True
            raise
        finally:
            self.busy.clear()
        self._after_gap = False
        return counted

    def background_pending(self) -> bool:
        """Whether some of the look-back is still to be read."""
        return self.ledger.backfill_window() is not None

    def background(self, budget_seconds: float) -> int:
        """Between cycles (Workspace.backfill): some of the look-back."""
        return self.backfill(budget_seconds)

    def backfill(self, budget_seconds: float) -> int:
        """Read the look-back for up to ``budget_seconds``, newest first, between cycles.

        Each page moves the last-run facts and the read-down-to time on, so a failure, the
        budget or a cycle that starts stops it where it is and the next call goes on from
        there (a restart too, with --state-file). After a few pages the rest is estimated: when
        asking each job for its latest runs (jobs/list, 100 a page, then one runs/list page of
        that job's runs per job) costs fewer requests than paging the rest of the history, that
        is what it does. Returns the requests made; errors are logged.
        """
        deadline = time.monotonic() + budget_seconds
        requests = 0
        # Not before this process's first cycle: a restored ledger's counters are shown only
        # once that cycle has counted the runs since they were saved, never lower.
        while self.snapshot is not None and time.monotonic() < deadline and not self.busy.is_set():
            window = self.ledger.backfill_window()
            if window is None or self.client.closed:
                break
            if self._start_to is None:
                self._start_to = window[1]
            per_job = self._jobs_to_ask is not None
            if per_job and not self._jobs_to_ask:
                with self.lock:
                    self.ledger.apply_history([], None)  # every job asked: done
                break
            params: dict[str, Any] = {
                "limit": RUNS_PAGE_LIMIT,  # per job too: its last success is most likely on it
                "completed_only": True,
                "start_time_from": window[0],
                "start_time_to": window[1],
            }
            if self._jobs_to_ask:
                params["job_id"] = self._jobs_to_ask[-1]
            page = self._history_page(params)
            requests += 1
            if page is None:
                break
            raws, more, date_ms = page
            with self.lock:
                runs = self._parse(raws, date_ms or self._local_time())
                if self._jobs_to_ask:
                    self._jobs_to_ask.pop()
                    self.ledger.apply_history(runs, window[1])
                    continue
                starts = [r.start_ms for r in runs if r.start_ms > 0]
                more = more and bool(starts)
                # Down to the oldest start of this page: runs that share it are listed again
                # next page, never skipped (start_time_to is inclusive); one ms lower when a
                # whole page shares one start time.
                oldest = min(starts) if starts else window[0]
                read_to = (oldest if oldest < window[1] else oldest - 1) if more else None
                self.ledger.apply_history(runs, read_to)
            self._history_pages += 1
            if self._history_pages == PROBE_PAGES and read_to is not None:
                requests += self._choose_per_job(window[0], read_to)
        if requests:
            with self.lock:  # once per call: a snapshot of 5,000 jobs is not free
                self.snapshot = self.ledger.snapshot()
            log.debug(
                "workspace %s: %d request(s) for the look-back (%.0f%% read)",
                self.client.workspace,
                requests,
                self.ledger.backfill_progress * 100,
            )
        return requests

    def _history_page(
        self, params: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], bool, Any] | None:
        """(runs, has_more, Date) of one runs/list page of the look-back, or None (logged)."""
        if self._backfill_limiter is not None:
            self._backfill_limiter.acquire()
        try:
            page, date_ms = self.client.get_dated(RUNS_LIST, params)
        except ApiError as exc:
            log.warning("%s (look-back for the last-run facts: tried again later)", exc)
            return None
        raw = page.get("runs") or []
        raws = [r for r in raw if isinstance(r, dict)] if isinstance(raw, list) else []
        return raws, page.get("has_more") is True, date_ms

    def _choose_per_job(self, from_ms: int, read_to: int) -> int:
        """After PROBE_PAGES pages: ask every job for its latest runs, one by one, if that
        is cheaper than the pages left (estimated from the pages so far). Returns requests."""
        assert self._start_to is not None
        covered = self._start_to - read_to
        if covered <= 0:
            return 0
        pages_left = self._history_pages * (read_to - from_ms) / covered
        if pages_left <= PROBE_PAGES:
            return 0
        try:
            job_ids = self.client.list_job_ids()
        except ApiError as exc:
            log.info("%s (the look-back is paged instead)", exc)
            return 1
        listing = -(-len(job_ids) // JOBS_PAGE_LIMIT) or 1
        # Every job, not only those without a last run yet: a long run that started before
        # the pages read may have ended after the last run they showed (by end time).
        if len(job_ids) < pages_left:
            log.info(
                "workspace %s: %d job(s) asked for their latest runs one by one instead of "
                "paging about %.0f more pages of the look-back",
                self.client.workspace,
                len(job_ids),
                pages_left,
            )
            self._jobs_to_ask = job_ids
        return listing

    def _cycle(self) -> int:
        # Active first, then completed: a run that ends between the two calls is in the second.
        dates: list[int | None] = []
        server_clock = getattr(self.client, "server_clock", None)
        sent = server_clock.elapsed_now() if server_clock is not None else 0.0
        raw_active = list(self.client.iter_runs(active_only=True, dates=dates))
        # The cycle's time is Databricks' (the Date of the first answer), so an exporter clock
        # that is minutes off neither loses runs nor widens the listings to cover for it.
        cycle_start = dates[0] if dates and dates[0] is not None else self._local_time()
        fresh = self.ledger.fresh
        if fresh:
            # A fresh ledger's baseline is Databricks' time too, but its first Date is not
            # trusted yet (one an hour ahead, from a proxy, would lose an hour of runs): the
            # first listing starts from the earlier of it and this host's clock, and the
            # baseline moves to the first answer's time once a later answer confirms it.
            cycle_start = min(cycle_start, self.clock_ms())
            self.ledger.rebase(cycle_start)
        active = self._parse(raw_active, cycle_start)
        del raw_active
        listed_active = {r.run_id for r in active}
        # A run owed its details (over, listed as active) is asked for by runs/get, which it
        # needs anyway: reaching the listing back to its start would only read it again.
        left = [
            r.start_ms
            for r in self.ledger.active.values()
            if r.run_id not in listed_active and not r.terminal
        ]
        list_from = self.ledger.completed_list_from(left, self._after_gap)
        completed, cut_at = self._completed(cycle_start, list_from)
        confirmed = server_clock.time_at(sent) if fresh and server_clock is not None else None
        if confirmed is not None:
            self.ledger.rebase(confirmed)
            cycle_start = confirmed
        # A listing cut earlier goes on: a page budget per cycle, newest part first.
        window = self.ledger.pending[0] if self.ledger.pending else None
        backlog: list[Run] = []
        backlog_to: int | None = None
        if window is not None:
            backlog, backlog_to = self._completed(cycle_start, window[0], window, PENDING_PAGES)
        completed += [r for r in backlog if not r.terminal]
        terminal = [r for r in completed if r.terminal] + [r for r in active if r.terminal]
        backlog = [r for r in backlog if r.terminal]
        ended = {r.run_id for r in [*terminal, *backlog]}
        still_active = [
            r for r in [*active, *completed] if not r.terminal and r.run_id not in ended
        ]
        listed = {r.run_id for r in active} | {r.run_id for r in [*completed, *backlog]}
        vanished: list[int | str] = []
        fetched: list[Run] = []  # from runs/get: its tasks and repair history are all there
        for run_id in [rid for rid in self.ledger.active if rid not in listed]:
            tracked = self.ledger.active[run_id]
            ok, raw = self._get_run(run_id)
            if raw is None and ok:
                vanished.append(run_id)
                continue
            run = self._parse_one(raw, cycle_start) if raw is not None else None
            if run is not None:
                (fetched if run.terminal else still_active).append(run)
            elif self.ledger.owed_too_long(tracked, cycle_start):
                fetched.append(self._given_up(tracked))
            else:  # failed or untrustworthy now: asked again next cycle
                still_active.append(tracked)
        # Listings carry at most 100 tasks per run and no repair history: runs/get has both.
        terminal, owed = self._detailed(terminal, cycle_start, self.ledger.watermark_ms)
        terminal += fetched
        if window is not None:
            backlog, owed_backlog = self._detailed(backlog, cycle_start, window[2])
            owed += owed_backlog
        still_active = [self.ledger.tag_uncounted(run) for run in still_active] + owed
        # Before apply: its pruning must keep what the listings still to read may list again.
        if window is not None:
            self.ledger.pending_done(window, backlog_to)
        if cut_at is not None:
            self.ledger.defer(list_from, cut_at, self.ledger.watermark_ms)
        counted = self.ledger.apply(
            cycle_start,
            still_active,
            terminal,
            vanished,
            backlog=[(run, window[2]) for run in backlog] if window is not None else (),
        )
        snapshot = self.ledger.snapshot()
        if snapshot != self.snapshot:  # an unchanged snapshot keeps its rendered /metrics text
            self.snapshot = snapshot
        log.debug(
            "workspace %s: %d active, %d terminal listed, %d newly counted",
            self.client.workspace,
            len(still_active),
            len(terminal),
            counted,
        )
        return counted

    def _detailed(
        self, runs: list[Run], observed_ms: int, watermark_before: int
    ) -> tuple[list[Run], list[Run]]:
        """(The runs to count, from runs/get where the ledger needs what a listing lacks; the
        runs owed their details: kept uncounted and asked again next cycle).

        A run is owed when its runs/get fails, or says it runs again (a repair started since
        the listing): that one is in flight, and counted whole when it ends. A run that is gone,
        whose runs/get answer cannot be trusted, or that was owed for OWED_MS, counts as
        listed."""
        ready: list[Run] = []
        owed: list[Run] = []
        for run in runs:
            if not self.ledger.needs_details(run):
                ready.append(run)
                continue
            ok, raw = self._get_run(run.run_id)
            full = self._parse_one(raw, observed_ms) if raw is not None else None
            if full is not None and full.terminal:
                ready.append(full)
            elif full is not None:  # running again: in flight until it ends
                owed.append(self.ledger.owe_details(full, watermark_before))
            elif ok:  # gone, or an answer that cannot be trusted
                ready.append(run)
            elif self.ledger.owed_too_long(run, observed_ms):
                ready.append(self._given_up(run))
            else:
                owed.append(self.ledger.owe_details(run, watermark_before))
        return ready, owed

    def _given_up(self, run: Run) -> Run:
        log.warning(
            "workspace %s: run %s: runs/get failed for over %d minutes; counted as its listing "
            "shows it (tasks past the 100th, or a repair history, are not known)",
            self.client.workspace,
            run.run_id,
            OWED_MS // 60_000,
        )
        return run

    def _completed(
        self,
        observed_ms: int,
        from_ms: int,
        window: tuple[int, int, int] | None = None,
        max_pages: int | None = None,
    ) -> tuple[list[Run], int | None]:
        """The completed runs that started from ``from_ms`` (up to the window's end), and where
        the listing was cut (the oldest start read; None when it was read to the end).

        A listing cut past its page limit, or by a page that failed after others were read,
        keeps what it read: the rest is read in later cycles (RunLedger.defer), so no limit
        makes a cycle repeat the same unbounded work forever. A pending window's first page
        failing changes nothing (it is tried again next cycle); this cycle's own listing
        failing at its first page fails the cycle, as before.
        """
        runs: list[Run] = []
        cut: ApiError | None = None
        listing = self.client.iter_runs(
            completed_only=True,
            start_time_from=from_ms,
            start_time_to=window[1] if window is not None else None,
            expand_tasks=True,
            max_pages=max_pages,
        )
        try:
            for raw in listing:
                runs.extend(self._parse([raw], observed_ms))
        except ApiError as exc:
            if self.client.closed or (not runs and window is None):
                raise
            cut = exc
        if cut is None:
            return runs, None
        starts = [r.start_ms for r in runs if r.start_ms > 0]
        end = window[1] if window is not None else observed_ms
        oldest = min(starts) if starts else end
        if not isinstance(cut, PageLimit) or window is None:
            log.warning(
                "workspace %s: completed-runs listing cut after %d runs (%s); the runs that "
                "started from %s to %s are listed in the next cycles",
                self.client.workspace,
                len(runs),
                cut,
                from_ms,
                oldest,
            )
        return runs, oldest

    def _local_time(self) -> int:
        if not self._warned_no_date:
            self._warned_no_date = True
            log.warning(
                "workspace %s: Databricks' answers carry no Date header; the exporter's clock "
                "times the cycles (keep it in sync, e.g. NTP)",
                self.client.workspace,
            )
        return self.clock_ms()

    def _get_run(self, run_id: int | str) -> tuple[bool, dict[str, Any] | None]:
        """(True, the run or None when gone), or (False, None) after a logged failure.

        An error about one run never fails the cycle: the run stays where it was and is asked
        for again next cycle, so nothing is lost and nothing is counted twice.
        """
        try:
            raw = self.client.get_run(run_id)
        except ApiError as exc:
            if self.client.closed:
                raise
            log.warning("%s (run %s: kept, asked again next cycle)", exc, run_id)
            return False, None
        return True, raw

    def _parse_one(self, raw: dict[str, Any], observed_ms: int) -> Run | None:
        """One runs/get answer parsed, or None when it cannot be trusted (skipped, counted)."""
        parsed = self._parse([raw], observed_ms)
        return parsed[0] if parsed else None

    def _parse(self, raws: Iterable[dict[str, Any]], observed_ms: int) -> list[Run]:
        """Parsed runs; one that cannot be trusted is skipped and counted, never fatal."""
        runs = []
        for raw in raws:
            try:
                run = parse_run(raw, observed_ms)
            except BadRun as exc:
                self.ledger.skipped_runs[exc.reason] += 1
                log.warning(
                    "workspace %s: skipped run %.64r: %s (databricks_exporter_runs_skipped_total)",
                    self.client.workspace,
                    raw.get("run_id"),
                    exc,
                )
                continue
            if run is None:
                self.ledger.skipped_runs["no_run_id"] += 1
                log.warning("workspace %s: skipped a run without run_id", self.client.workspace)
            else:
                runs.append(run)
        return runs
