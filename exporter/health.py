"""The exporter's own health figures per workspace: API requests, retries, tokens, collections.

Plain counters behind one lock, updated by the client, auth and scheduler threads and copied
by the metrics module at scrape time. The lock is never held while calling an API.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

COLLECTION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass
class Histogram:
    """Cumulative histogram data (what Prometheus' client keeps, as plain numbers)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative buckets in the shape HistogramMetricFamily takes, +Inf last."""
        out = [(_fmt(b), float(c)) for b, c in zip(self.bounds, self.counts, strict=True)]
        out.append(("+Inf", float(self.count)))
        return out

    def copy(self) -> Histogram:
        return Histogram(self.bounds, list(self.counts), self.total, self.count)


def _fmt(bound: float) -> str:
    return repr(float(bound))


@dataclass(frozen=True)
class StateWrites:
    """Writes of this workspace's part of --state-file: failures, and the last that worked."""

    errors: int = 0
    last_success: float | None = None


@dataclass
class CollectorHealth:
    success: bool | None = None
    last_success: float | None = None
    start_delay: float | None = None  # how late the last collection started, seconds
    interval: float | None = None  # seconds between its collections, as scheduled
    durations: Histogram = field(default_factory=lambda: Histogram(COLLECTION_BUCKETS))


class WorkspaceHealth:
    """Counters of one workspace's API traffic and collections."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._retries: Counter[tuple[str, str]] = Counter()
        self._token_requests = 0
        self._state_writes: StateWrites | None = None  # None: no --state-file
        self._collectors: dict[str, CollectorHealth] = {}

    def count_request(self, endpoint: str, status_code: str) -> None:
        with self._lock:
            self._requests[(endpoint, status_code)] += 1

    def count_retry(self, endpoint: str, reason: str) -> None:
        with self._lock:
            self._retries[(endpoint, reason)] += 1

    def count_token_request(self) -> None:
        with self._lock:
            self._token_requests += 1

    def expect_state_writes(self) -> None:
        """A --state-file is written: its error counter is shown from the start, at 0."""
        with self._lock:
            self._state_writes = self._state_writes or StateWrites()

    def record_state_write(self, ok: bool, now: float) -> None:
        with self._lock:
            writes = self._state_writes or StateWrites()
            self._state_writes = StateWrites(
                errors=writes.errors + (0 if ok else 1),
                last_success=now if ok else writes.last_success,
            )

    def set_interval(self, collector: str, seconds: float) -> None:
        with self._lock:
            self._collectors.setdefault(collector, CollectorHealth()).interval = seconds

    def record_start_delay(self, collector: str, seconds: float) -> None:
        with self._lock:
            self._collectors.setdefault(collector, CollectorHealth()).start_delay = seconds

    def record_collection(self, collector: str, ok: bool, duration: float, now: float) -> None:
        with self._lock:
            health = self._collectors.setdefault(collector, CollectorHealth())
            health.success = ok
            health.durations.observe(duration)
            if ok:
                health.last_success = now

    def snapshot(self) -> HealthSnapshot:
        with self._lock:
            return HealthSnapshot(
                requests=dict(self._requests),
                retries=dict(self._retries),
                token_requests=self._token_requests,
                state_writes=self._state_writes,
                collectors={
                    name: CollectorHealth(
                        h.success, h.last_success, h.start_delay, h.interval, h.durations.copy()
                    )
                    for name, h in self._collectors.items()
                },
            )


@dataclass(frozen=True)
class HealthSnapshot:
    requests: dict[tuple[str, str], int]
    retries: dict[tuple[str, str], int]
    token_requests: int
    collectors: dict[str, CollectorHealth]
    state_writes: StateWrites | None = None
