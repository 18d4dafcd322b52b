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
            if needed and not self._read_updates(pipeline, latest, now_ms) and self.ledger.fresh:
                # The first cycle settles what each pipeline has: one that could not be
                # read would later miss the updates it had on their way now.
                self.ledger.books.clear()
                raise ApiError(
                    f"workspace {self.client.workspace}: the updates of pipeline "
                    f"{pipeline.pipeline_id} could not be read; the first cycle is repeated"
                )
        # Pipelines no longer listed were deleted; one listed but not readable is kept.
        listed = {r.get("pipeline_id") for r in raws}
        self.ledger.forget_missing({p for p in listed if isinstance(p, str)})
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
        horizon = book.horizon_ms if book is not None else None
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
                if horizon is None and len(updates) >= UPDATES_PAGE:
                    complete = False  # first sight: the newest page tells all there is to know
                    break
                if horizon is not None and update.created_ms < horizon:
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
            last.error = self._error(pipeline, last.update_id)
            log.warning(
                "workspace %s: pipeline %s (%s) update %s FAILED: %s",
                self.client.workspace,
                pipeline.name,
                pipeline.pipeline_id,
                last.update_id,
                last.error or "(no error in the event log)",
            )
        return True

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
