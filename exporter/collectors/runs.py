"""Job runs, incrementally: active runs, runs completed since the watermark, and the few
previously active runs that left the active list without showing up as completed.

The cost of a cycle grows with the runs that started or ended since the last cycle, never with
the workspace's history. Cycles are timed on Databricks' clock (the answers' Date header).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from exporter.client import ApiError, DatabricksClient
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
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.clock_ms = clock_ms
        self.snapshot: RunsSnapshot | None = None
        self._warned_no_date = False
        # Whether time went by unwatched before the next cycle: at start with a restored
        # ledger, and after a failed cycle.
        self._after_gap = not ledger.fresh

    def collect(self) -> int:
        """One cycle; returns the runs newly counted. Raises ApiError, changes nothing."""
        try:
            counted = self._cycle()
        except BaseException:
            self._after_gap = True
            raise
        self._after_gap = False
        return counted

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
