"""Exactly-once accounting of pipeline updates, and what the state file keeps of it.

An update is counted once, when first seen terminal (COMPLETED, FAILED or CANCELED), if it was
seen on its way first or was created after the baseline; the terminal updates a pipeline
already had when first seen only fill its last-update facts. Per pipeline the ledger remembers
the updates created since its ``horizon`` (every update created before it is settled), so a
listing of updates reads newest first only down to the horizon, and memory stays small.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.collectors.pipelines.model import ACTIVE, TERMINAL, Update
from exporter.health import Histogram
from exporter.text import valid_text

# Pipeline updates: a minute to a day.
UPDATE_DURATION_BUCKETS = (60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)
MAX_KNOWN = 1000  # updates remembered per pipeline beyond the horizon: a bound, never reached
# A pipeline missing from the listing keeps its books (and its counters) this long: a listing
# that misses it once (a permission flap, a page that shifted) must not reset its counters and
# count its updates again when it is back. Past it, it was deleted; a tombstone of its horizon
# stays, so a pipeline that comes back later is not counted over again either.
FORGET_AFTER_MS = 24 * 3600 * 1000
MAX_TOMBSTONES = 10_000
# A duration is observed only for an update seen on its way at most this long before the read
# that found it ended (the API has no end time): then it is at most that much too long.
MAX_END_ERROR_MS = 15 * 60 * 1000


@dataclass
class LastUpdate:
    update_id: str
    state: str
    created_ms: int
    error: str = ""  # a failed update's error, as the event log words it ("" until read)


@dataclass
class PipelineBook:
    """What the ledger remembers of one pipeline."""

    name: str
    horizon_ms: int = 0
    known: dict[str, int] = field(default_factory=dict)  # counted or settled: created_ms
    active: dict[str, tuple[int, str]] = field(default_factory=dict)  # created_ms, state
    latest: tuple[tuple[str, str], ...] = ()  # latest_updates as of the last full reading
    last: LastUpdate | None = None
    first_read: bool = True  # its updates never read yet (page down to the baseline)
    missing_since_ms: int = 0  # not in the listing since then (0: listed)
    seen_active_ms: dict[str, int] = field(default_factory=dict)  # listed on its way, when
    error_tries: int = 0  # event-log reads for the last failed update's error


@dataclass(frozen=True)
class PipelinesSnapshot:
    """What the families render for one workspace's pipelines; never changed."""

    pipelines: tuple[tuple[str, str, str, str], ...]  # id, name, state, health
    updates_total: Mapping[tuple[str, str, str], int]  # (id, name, state) -> updates
    durations: Mapping[tuple[str, str], Histogram]
    running: Mapping[tuple[str, str], int]
    last: Mapping[tuple[str, str], LastUpdate]
    baseline_ms: int


@dataclass
class PipelineLedger:
    baseline_ms: int
    books: dict[str, PipelineBook] = field(default_factory=dict)
    updates_total: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    durations: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    fresh: bool = True  # no cycle applied yet: the baseline moves to the first answer's time
    tombstones: dict[str, int] = field(default_factory=dict)  # forgotten pipeline: horizon

    def needs_updates(self, pipeline_id: str, latest: tuple[tuple[str, str], ...]) -> bool:
        """Whether the pipeline's updates must be read: its latest_updates changed since the
        last reading, or it is new. An unchanged listing costs no request."""
        book = self.books.get(pipeline_id)
        return book is None or book.first_read or book.latest != latest

    def _book(self, pipeline_id: str, name: str) -> PipelineBook:
        """The pipeline's books; new ones settle what a forgotten pipeline had (its tombstone)."""
        book = self.books.get(pipeline_id)
        if book is None:
            book = self.books[pipeline_id] = PipelineBook(name)
            book.horizon_ms = self.tombstones.pop(pipeline_id, 0)
        return book

    def listed(
        self, pipeline_id: str, name: str, latest: tuple[tuple[str, str], ...], at_ms: int
    ) -> None:
        """The listing shows the pipeline: it is back if it was missing, its updates on their
        way are seen on their way now, and a pipeline whose updates cannot be read yet gets
        its books from the listing (the updates on their way there are counted when they end,
        as if they had been read)."""
        book = self._book(pipeline_id, name)
        book.missing_since_ms = 0
        for update_id, state in latest:
            if not state:  # on its way
                book.seen_active_ms[update_id] = at_ms
                if book.first_read and update_id not in book.known:
                    book.active.setdefault(update_id, (book.horizon_ms, "RUNNING"))

    def apply(
        self,
        pipeline_id: str,
        name: str,
        latest: tuple[tuple[str, str], ...],
        updates: list[Update],
        observed_ms: int,
        complete: bool,
    ) -> list[Update]:
        """Fold one reading of a pipeline's updates in (newest first, down to its horizon;
        ``complete`` when the listing ended before it). Returns the updates newly counted."""
        book = self._book(pipeline_id, name)
        first_sight = book.first_read
        book.name = name
        book.missing_since_ms = 0
        counted = []
        for update in updates:
            if update.created_ms < book.horizon_ms or update.update_id in book.known:
                continue
            if update.state in ACTIVE:
                book.active[update.update_id] = (update.created_ms, update.state)
                continue
            if not update.terminal:
                continue  # a state this exporter does not know: neither on its way nor ended
            was_active = book.active.pop(update.update_id, None) is not None
            seen_ms = book.seen_active_ms.pop(update.update_id, None)
            book.known[update.update_id] = update.created_ms
            if was_active or update.created_ms > self.baseline_ms:
                self.updates_total[(pipeline_id, name, update.state)] += 1
                if seen_ms is not None and observed_ms - seen_ms <= MAX_END_ERROR_MS:
                    seconds = max(observed_ms - update.created_ms, 0) / 1000.0
                    key = (pipeline_id, name)
                    hist = self.durations.setdefault(key, Histogram(UPDATE_DURATION_BUCKETS))
                    hist.observe(seconds)
                counted.append(update)
            if book.last is None or update.created_ms >= book.last.created_ms:
                book.last = LastUpdate(update.update_id, update.state, update.created_ms)
                book.error_tries = 0
        listed = {u.update_id for u in updates}
        for update_id, (created_ms, _) in list(book.active.items()):
            # Listed down to the horizon and not there: gone (deleted with its history). A
            # first reading has the newest page, where every update on its way is: one the
            # listing showed (its creation time unknown) and that is not there is gone too.
            if update_id not in listed and (
                complete or first_sight or created_ms >= _oldest(updates)
            ):
                del book.active[update_id]
                book.seen_active_ms.pop(update_id, None)
        if first_sight and not complete and updates:
            book.horizon_ms = max(book.horizon_ms, _oldest(updates))  # older: were settled
        book.first_read = False
        self._move_horizon(book)
        # What /updates confirmed of latest_updates: a listing ahead of /updates (an update
        # it shows that /updates does not have yet, or ended there only) is read again.
        # latest_updates is newest first; the newest is never settled away from /updates.
        states = {u.update_id: (u.state if u.terminal else "") for u in updates}
        newest = latest[0] if latest else None
        confirmed = (
            newest is None
            or states.get(newest[0], "?") == newest[1]
            or (newest[0] in book.known and newest[1] != "")
        )
        book.latest = latest if confirmed else ()
        return counted

    def _move_horizon(self, book: PipelineBook) -> None:
        """Every update created before the oldest active one (or, with none active, before
        the newest settled one) is settled: forget what is older."""
        if book.active:
            horizon = min(created for created, _ in book.active.values())
        elif book.known:
            horizon = max(book.known.values())
        else:
            return
        book.horizon_ms = max(book.horizon_ms, horizon)
        book.known = {u: c for u, c in book.known.items() if c >= book.horizon_ms}
        if len(book.known) > MAX_KNOWN:
            kept = sorted(book.known.items(), key=lambda item: item[1])[-MAX_KNOWN:]
            book.known = dict(kept)
            book.horizon_ms = max(book.horizon_ms, kept[0][1])

    def forget_missing(self, listed: set[str], now_ms: int) -> None:
        """Pipelines not listed for FORGET_AFTER_MS (deleted) leave the ledger and the metrics,
        a tombstone of their horizon staying; one missing for less keeps its books."""
        for pipeline_id, book in list(self.books.items()):
            if pipeline_id in listed:
                continue
            if not book.missing_since_ms:
                book.missing_since_ms = now_ms
                continue
            if now_ms - book.missing_since_ms < FORGET_AFTER_MS:
                continue
            del self.books[pipeline_id]
            for key in [k for k in self.updates_total if k[0] == pipeline_id]:
                del self.updates_total[key]
            for hist_key in [k for k in self.durations if k[0] == pipeline_id]:
                del self.durations[hist_key]
            # Every update it had is settled: created before the newest it knew, or that one.
            self.tombstones[pipeline_id] = max([book.horizon_ms, *book.known.values()]) + 1
            while len(self.tombstones) > MAX_TOMBSTONES:
                del self.tombstones[next(iter(self.tombstones))]

    def snapshot(self, pipelines: tuple[tuple[str, str, str, str], ...]) -> PipelinesSnapshot:
        books = self.books
        return PipelinesSnapshot(
            pipelines=pipelines,
            updates_total=dict(self.updates_total),
            durations={key: hist.copy() for key, hist in self.durations.items()},
            running={
                (pid, book.name): sum(1 for _, state in book.active.values() if state in ACTIVE)
                for pid, book in books.items()
                if not book.missing_since_ms
            },
            last={(pid, b.name): replace_last(b.last) for pid, b in books.items() if b.last},
            baseline_ms=self.baseline_ms,
        )


def replace_last(last: LastUpdate) -> LastUpdate:
    return LastUpdate(last.update_id, last.state, last.created_ms, last.error)


def _oldest(updates: list[Update]) -> int:
    return min((u.created_ms for u in updates), default=0)


# --- the state file's ``pipelines`` part ----------------------------------------------------


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} is not an integer >= 0: {str(value)[:40]!r}")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not text: {str(value)[:40]!r}")
    return valid_text(value)


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return value


def to_dict(ledger: PipelineLedger) -> dict[str, Any]:
    return {
        "baseline_ms": ledger.baseline_ms,
        "books": {
            pid: {
                "name": b.name,
                "horizon_ms": b.horizon_ms,
                "known": b.known,
                "active": {u: [c, s] for u, (c, s) in b.active.items()},
                "latest": [list(item) for item in b.latest],
                "last": None
                if b.last is None
                else [b.last.update_id, b.last.state, b.last.created_ms, b.last.error],
                "first_read": b.first_read,
                "missing_since_ms": b.missing_since_ms,
            }
            for pid, b in ledger.books.items()
        },
        "tombstones": ledger.tombstones,
        "updates_total": [[*key, n] for key, n in ledger.updates_total.items()],
        "durations": [
            [*key, list(h.bounds), h.counts, h.total, h.count]
            for key, h in ledger.durations.items()
        ],
    }


def _book(data: Any) -> PipelineBook:
    if not isinstance(data, dict):
        raise ValueError("a pipeline is not an object")
    known = data.get("known", {})
    active = data.get("active", {})
    if not isinstance(known, dict) or not isinstance(active, dict):
        raise ValueError("known/active are not objects")
    last = data.get("last")
    book = PipelineBook(
        name=_str(data.get("name"), "name"),
        horizon_ms=_int(data.get("horizon_ms"), "horizon_ms"),
        known={_str(u, "update_id"): _int(c, "created") for u, c in known.items()},
        latest=tuple(
            (_str(item[0], "update_id"), _str(item[1], "state"))
            for item in (_list(i, "latest item") for i in _list(data.get("latest", []), "latest"))
            if len(item) == 2
        ),
        # Written before these were kept: a saved book was read, and listed.
        first_read=data.get("first_read", False) is True,
        missing_since_ms=_int(data.get("missing_since_ms", 0), "missing_since_ms"),
    )
    for update_id, row in active.items():
        row = _list(row, "active update")
        if len(row) != 2:
            raise ValueError("an active update is not [created, state]")
        book.active[_str(update_id, "update_id")] = (_int(row[0], "c"), _str(row[1], "s"))
    if last is not None:
        last = _list(last, "last")
        if len(last) != 4:
            raise ValueError("last is not [update_id, state, created, error]")
        book.last = LastUpdate(
            _str(last[0], "update_id"),
            _str(last[1], "state"),
            _int(last[2], "created"),
            _str(last[3], "error"),
        )
    return book


def from_dict(data: Any) -> PipelineLedger:
    """A ledger from its saved form, every field checked (ValueError otherwise)."""
    if not isinstance(data, dict):
        raise ValueError("pipelines is not an object")
    books = data.get("books")
    if not isinstance(books, dict):
        raise ValueError("books is not an object")
    ledger = PipelineLedger(baseline_ms=_int(data.get("baseline_ms"), "baseline_ms"), fresh=False)
    ledger.books = {_str(pid, "pipeline_id"): _book(b) for pid, b in books.items()}
    tombstones = data.get("tombstones", {})
    if not isinstance(tombstones, dict):
        raise ValueError("tombstones is not an object")
    ledger.tombstones = {
        _str(p, "pipeline_id"): _int(h, "tombstone") for p, h in tombstones.items()
    }
    for row in _list(data.get("updates_total", []), "updates_total"):
        row = _list(row, "counter row")
        if len(row) != 4 or row[2] not in TERMINAL:
            raise ValueError("an updates_total row is not [id, name, state, n]")
        key = (_str(row[0], "id"), _str(row[1], "name"), _str(row[2], "state"))
        ledger.updates_total[key] = _int(row[3], "count")
    for row in _list(data.get("durations", []), "durations"):
        row = _list(row, "histogram")
        if len(row) != 6:
            raise ValueError("a histogram is not [id, name, bounds, counts, sum, count]")
        bounds = tuple(float(b) for b in _list(row[2], "bounds"))
        counts = [_int(c, "bucket") for c in _list(row[3], "counts")]
        count = _int(row[5], "count")
        if (
            len(counts) != len(bounds)
            or counts != sorted(counts)
            or (counts and counts[-1] > count)
        ):
            raise ValueError("a histogram is not cumulative")
        total = row[4]
        if isinstance(total, bool) or not isinstance(total, int | float) or total < 0:
            raise ValueError("a histogram's sum is not a number")
        key2 = (_str(row[0], "id"), _str(row[1], "name"))
        ledger.durations[key2] = Histogram(bounds, counts, float(total), count)
    return ledger
