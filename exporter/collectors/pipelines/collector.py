"""Lakeflow pipelines: one GET /api/2.0/pipelines listing a cycle (100 pipelines a page) and,
only for a pipeline whose latest_updates changed since the last cycle, its updates newest
first down to what the ledger already settled; a newly failed update's error from the
pipeline's event log (one request)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from exporter.client import ApiError, DatabricksClient
from exporter.collectors.pipelines.ledger import PipelineLedger, PipelinesSnapshot
from exporter.collectors.pipelines.model import (
    TERMINAL,
    BadObject,
    Pipeline,
    Update,
    error_of,
    parse_pipeline,
    parse_update,
)
from exporter.redact import redact

log = logging.getLogger(__name__)

PIPELINES = "/api/2.0/pipelines"
PIPELINES_PAGE = 100  # the API refuses more
UPDATES_PAGE = 25
EVENTS_PAGE = 25
MAX_MESSAGE = 200  # characters of an error message kept as a label value
MAX_ERROR_TRIES = 3  # event-log reads for one failed update's error


def updates_path(pipeline_id: str) -> str:
    return f"{PIPELINES}/{pipeline_id}/updates"


def events_path(pipeline_id: str) -> str:
    return f"{PIPELINES}/{pipeline_id}/events"


class PipelinesCollector:
    """Keeps a PipelineLedger up to date; ``snapshot`` is what the metrics render."""

    name = "pipelines"

    def __init__(
        self,
        client: DatabricksClient,
        ledger: PipelineLedger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.clock = clock
        self.snapshot: PipelinesSnapshot | None = None

    def collect(self) -> int:
        """One cycle; returns the pipelines listed. Raises ApiError when the listing fails
        (nothing changes then); a pipeline whose updates cannot be read is read next cycle."""
        dates: list[int | None] = []
        raws = list(
            self.client.paginate(
                PIPELINES, {"max_results": PIPELINES_PAGE}, "statuses", dates, more=None
            )
        )
        now_ms = next((d for d in dates if d is not None), None) or int(self.clock() * 1000)
        if self.ledger.fresh:
            self.ledger.baseline_ms = now_ms
        pipelines = [p for p in map(self._parse, raws) if p is not None]
        for pipeline in pipelines:
            # An update's way through CREATED ... RUNNING changes no count: only a new update
            # or one that ended is worth reading the updates for.
            latest = tuple(
                (u.update_id, u.state if u.state in TERMINAL else "") for u in pipeline.latest
            )
            needed = self.ledger.needs_updates(pipeline.pipeline_id, latest)
            # What the listing says first: the updates on its way are seen on their way now,
            # also for a pipeline whose updates cannot be read this cycle (one unreadable
            # pipeline neither blinds the others nor loses its own updates on their way).
            self.ledger.listed(pipeline.pipeline_id, pipeline.name, latest, now_ms)
            if needed:
                self._read_updates(pipeline, latest, now_ms)
            else:
                self._retry_error(pipeline)
        # Pipelines no longer listed were deleted (after a day: see FORGET_AFTER_MS).
        listed = {r.get("pipeline_id") for r in raws}
        self.ledger.forget_missing({p for p in listed if isinstance(p, str)}, now_ms)
        self.ledger.fresh = False
        facts = tuple((p.pipeline_id, p.name, p.state, p.health) for p in pipelines)
        snapshot = self.ledger.snapshot(facts)
        if snapshot != self.snapshot:  # an unchanged snapshot keeps its rendered text
            self.snapshot = snapshot
        return len(pipelines)

    def _read_updates(
        self, pipeline: Pipeline, latest: tuple[tuple[str, str], ...], now_ms: int
    ) -> bool:
        """Read and fold in a pipeline's updates; False (logged) when they cannot be read."""
        book = self.ledger.books.get(pipeline.pipeline_id)
        first = book is None or book.first_read
        horizon = book.horizon_ms if book is not None else 0
        baseline = self.ledger.baseline_ms
        dates: list[int | None] = []
        updates: list[Update] = []
        complete = True
        try:
            listing = self.client.paginate(
                updates_path(pipeline.pipeline_id),
                {"max_results": UPDATES_PAGE},
                "updates",
                dates,
                more=None,
            )
            for raw in listing:
                update = self._parse_update(pipeline, raw)
                if update is None:
                    continue
                updates.append(update)
                if first and len(updates) >= UPDATES_PAGE and update.created_ms <= baseline:
                    # First sight: down to the baseline (a pipeline first seen after it, e.g.
                    # created while the exporter was down, may have ended many since), then
                    # the newest page tells all there is to know of what is older.
                    complete = False
                    break
                if not first and update.created_ms < horizon:
                    complete = False  # older ones are settled
                    break
        except ApiError as exc:
            if self.client.closed:
                raise
            log.warning("%s (pipeline %s: read again next cycle)", exc, pipeline.pipeline_id)
            return False
        observed = next((d for d in dates if d is not None), None) or now_ms
        before = book.last.update_id if book is not None and book.last else None
        counted = self.ledger.apply(
            pipeline.pipeline_id, pipeline.name, latest, updates, observed, complete
        )
        for update in counted:
            log.info(
                "workspace %s: pipeline %s (%s) update %s ended %s",
                self.client.workspace,
                pipeline.name,
                pipeline.pipeline_id,
                update.update_id,
                update.state,
            )
        last = self.ledger.books[pipeline.pipeline_id].last
        if last is not None and last.state == "FAILED" and last.update_id != before:
            self._read_error(pipeline)
            log.warning(
                "workspace %s: pipeline %s (%s) update %s FAILED: %s",
                self.client.workspace,
                pipeline.name,
                pipeline.pipeline_id,
                last.update_id,
                last.error or "(no error in the event log)",
            )
        return True

    def _read_error(self, pipeline: Pipeline) -> None:
        book = self.ledger.books[pipeline.pipeline_id]
        if book.last is not None:
            book.error_tries += 1
            book.last.error = self._error(pipeline, book.last.update_id)

    def _retry_error(self, pipeline: Pipeline) -> None:
        """A failed update whose error the event log did not give yet (an error answer, or
        events not written yet) is asked again, a few times at most."""
        book = self.ledger.books.get(pipeline.pipeline_id)
        last = book.last if book is not None else None
        if (
            book is not None
            and last is not None
            and last.state == "FAILED"
            and not last.error
            and book.error_tries < MAX_ERROR_TRIES
        ):
            self._read_error(pipeline)

    def _error(self, pipeline: Pipeline, update_id: str) -> str:
        """The failed update's error from the event log's newest ERROR events, or ""."""
        try:
            page = self.client.get(
                events_path(pipeline.pipeline_id),
                {"filter": "level='ERROR'", "max_results": EVENTS_PAGE},
            )
        except ApiError as exc:
            log.warning("%s (the error of update %s is not shown)", exc, update_id)
            return ""
        events = page.get("events")
        for event in events if isinstance(events, list) else []:
            origin = event.get("origin") if isinstance(event, dict) else None
            if isinstance(origin, dict) and origin.get("update_id") == update_id:
                message = " ".join(redact(error_of(event)).split())
                return message[:MAX_MESSAGE]
        return ""

    def _parse(self, raw: dict[str, Any]) -> Pipeline | None:
        try:
            return parse_pipeline(raw)
        except BadObject as exc:
            log.warning("workspace %s: skipped a pipeline: %s", self.client.workspace, exc)
            return None

    def _parse_update(self, pipeline: Pipeline, raw: dict[str, Any]) -> Update | None:
        try:
            return parse_update(raw)
        except BadObject as exc:
            log.warning(
                "workspace %s: pipeline %s: skipped an update: %s",
                self.client.workspace,
                pipeline.pipeline_id,
                exc,
            )
            return None
