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

from exporter.client import RUNS_LIST, RUNS_PAGE_LIMIT, ApiError, DatabricksClient, RateLimiter
from exporter.state import BadRun, Run, RunLedger, RunsSnapshot, parse_run

log = logging.getLogger(__name__)


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

    def backfill(self, budget_seconds: float) -> int:
        """Read the look-back for up to ``budget_seconds``, newest first, between cycles.

        Each page moves the last-run facts and the read-down-to time on, so a failure, the
        budget or a cycle that starts stops it where it is and the next call goes on from
        there (a restart too, with --state-file). Returns the pages read; errors are logged.
        """
        deadline = time.monotonic() + budget_seconds
        pages = 0
        while time.monotonic() < deadline and not self.busy.is_set():
            window = self.ledger.backfill_window()
            if window is None or self.client.closed:
                break
            if self._backfill_limiter is not None:
                self._backfill_limiter.acquire()
            params = {
                "limit": RUNS_PAGE_LIMIT,
                "completed_only": True,
                "start_time_from": window[0],
                "start_time_to": window[1],
            }
            try:
                page, date_ms = self.client.get_dated(RUNS_LIST, params)
            except ApiError as exc:
                log.warning("%s (history for the last-run facts: tried again later)", exc)
                break
            raw = page.get("runs") or []
            raws = [r for r in raw if isinstance(r, dict)] if isinstance(raw, list) else []
            with self.lock:
                runs = self._parse(raws, date_ms or self._local_time())
                starts = [r.start_ms for r in runs if r.start_ms > 0]
                more = page.get("has_more") is True and bool(starts)
                # Down to the oldest start of this page: runs that share it are listed again
                # next page, never skipped (start_time_to is inclusive); one ms lower when a
                # whole page shares one start time.
                oldest = min(starts) if starts else window[0]
                read_to = (oldest if oldest < window[1] else oldest - 1) if more else None
                self.ledger.apply_history(runs, read_to)
            pages += 1
        if pages:
            with self.lock:  # once per call: a snapshot of 5,000 jobs is not free
                self.snapshot = self.ledger.snapshot()
            log.debug(
                "workspace %s: %d page(s) of history read (%.0f%% of the look-back)",
                self.client.workspace,
                pages,
                self.ledger.backfill_progress * 100,
            )
        return pages

    def _cycle(self) -> int:
        # Active first, then completed: a run that ends between the two calls is in the second.
        dates: list[int | None] = []
        raw_active = list(self.client.iter_runs(active_only=True, dates=dates))
        # The cycle's time is Databricks' (the Date of the first answer), so an exporter clock
        # that is minutes off neither loses runs nor widens the listings to cover for it.
        cycle_start = dates[0] if dates and dates[0] is not None else self._local_time()
        self.ledger.rebase(cycle_start)  # a fresh ledger counts from Databricks' clock too
        active = self._parse(raw_active, cycle_start)
        del raw_active
        listed_active = {r.run_id for r in active}
        left = [r.start_ms for r in self.ledger.active.values() if r.run_id not in listed_active]
        completed = self._parse(
            self.client.iter_runs(
                completed_only=True,
                start_time_from=self.ledger.completed_list_from(left, self._after_gap),
                expand_tasks=True,
            ),
            cycle_start,
        )
        terminal = [r for r in completed if r.terminal] + [r for r in active if r.terminal]
        ended = {r.run_id for r in terminal}
        still_active = [
            r for r in [*active, *completed] if not r.terminal and r.run_id not in ended
        ]
        listed = {r.run_id for r in active} | {r.run_id for r in completed}
        vanished: list[int | str] = []
        for run_id in [rid for rid in self.ledger.active if rid not in listed]:
            ok, raw = self._get_run(run_id)
            if not ok:
                still_active.append(self.ledger.active[run_id])  # asked again next cycle
                continue
            if raw is None:
                vanished.append(run_id)
                continue
            run = self._parse_one(raw, cycle_start)
            if run is None:
                still_active.append(self.ledger.active[run_id])  # untrustworthy now: ask again
            elif run.terminal:
                terminal.append(run)
            else:
                still_active.append(run)
        # Listings carry at most 100 tasks per run and no repair history: runs/get has both.
        for i, run in enumerate(terminal):
            if self.ledger.needs_details(run):
                _, raw = self._get_run(run.run_id)
                full = self._parse_one(raw, cycle_start) if raw is not None else None
                if full is not None and full.terminal:
                    terminal[i] = full
        counted = self.ledger.apply(cycle_start, still_active, terminal, vanished)
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
