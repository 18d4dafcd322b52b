"""Prometheus families rendered from the collectors' snapshots (a custom collector).

Rendering never waits on the network and takes no lock that a collection holds while calling
an API; series of deleted pools or finished runs simply are not in the next snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.core import (
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.catalogue import (
    API_REQUESTS,
    API_RETRIES,
    COLLECTION_DURATION,
    COLLECTION_INTERVAL,
    COLLECTION_SUCCESS,
    HEALTH,
    LAST_SUCCESS,
    START_DELAY,
    STATE_LAST_WRITE,
    STATE_WRITE_ERRORS,
    TOKEN_REQUESTS,
    catalogue,
    describe,
)
from exporter.collectors import registration, registrations
from exporter.health import HealthSnapshot
from exporter.workspace import Workspace


class SnapshotCollector(Collector):
    """The families that change only when a collection publishes a new snapshot.

    They are most of the exposition (every job's counters and histogram), so the server renders
    each (workspace, collector) part once per snapshot and reuses its text (exporter.exposition).
    ``collect`` yields every collector's families in the registry's order, each family holding
    the samples of every workspace in order: so the text of one family is the text of its
    first part's header followed by every part's samples, which is how the parts are joined.
    """

    def __init__(self, workspaces: Sequence[Workspace]):
        self._workspaces = workspaces

    def describe(self) -> Iterable[Metric]:
        """Every collector's families but those rendered live (exporter.catalogue): a name
        declared twice fails when the registry is built, at start."""
        catalogue()  # every family once
        return describe(
            tuple(f for r in registrations() for f in r.families if f not in r.live_families)
        )

    def parts(self) -> tuple[Part, ...]:
        """(workspace, collector, snapshot) of every collector with a snapshot, in order.

        A different snapshot object means different text (a snapshot is never changed)."""
        return tuple(
            (ws.name, found.name, collector.snapshot)
            for found in registrations()
            for ws in self._workspaces
            if (collector := ws.collectors.get(found.name)) is not None
            and collector.snapshot is not None
        )

    def collect(self) -> Iterator[Metric]:
        parts = self.parts()
        for found in registrations():
            views = [(ws, snap) for ws, collector, snap in parts if collector == found.name]
            if views:
                yield from found.render(views)


Part = tuple[str, str, Any]  # workspace name, collector name, its snapshot


def render_part(collector: str, workspace: str, snapshot: Any) -> Iterator[Metric]:
    """One (workspace, collector) part's families."""
    return registration(collector).render([(workspace, snapshot)])


class LiveCollector(Collector):
    """The few families that change between collections: exporter health, active-run ages."""

    def __init__(self, workspaces: Sequence[Workspace], clock: Callable[[], float] = time.time):
        self._workspaces = workspaces
        self._clock = clock

    def describe(self) -> Iterable[Metric]:
        return describe((*(f for r in registrations() for f in r.live_families), *HEALTH))

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        for found in registrations():
            if found.live is None:
                continue
            views = [
                (ws.name, collector.snapshot)
                for ws in self._workspaces
                if (collector := ws.collectors.get(found.name)) is not None
                and collector.snapshot is not None
            ]
            if views:
                yield from found.live(views, now)
        yield from health_families([(ws.name, ws.health.snapshot()) for ws in self._workspaces])


def build_registry(
    workspaces: Sequence[Workspace], clock: Callable[[], float] = time.time
) -> CollectorRegistry:
    """A registry with all our families, in exposition order: every series carries `workspace`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(workspaces))
    registry.register(LiveCollector(workspaces, clock))
    return registry


def health_families(views: Sequence[tuple[str, HealthSnapshot]]) -> Iterator[Metric]:
    success = COLLECTION_SUCCESS.gauge()
    last_success = LAST_SUCCESS.gauge()
    delay = START_DELAY.gauge()
    every = COLLECTION_INTERVAL.gauge()
    duration = COLLECTION_DURATION.histogram()
    requests = API_REQUESTS.counter()
    retries = API_RETRIES.counter()
    tokens = TOKEN_REQUESTS.counter()
    for ws, health in views:
        for name, col in sorted(health.collectors.items()):
            if col.success is not None:
                success.add_metric([ws, name], 1.0 if col.success else 0.0)
            if col.last_success is not None:
                last_success.add_metric([ws, name], col.last_success)
            if col.start_delay is not None:
                delay.add_metric([ws, name], col.start_delay)
            if col.interval is not None:
                every.add_metric([ws, name], col.interval)
            duration.add_metric([ws, name], col.durations.buckets(), col.durations.total)
        for (endpoint, status), value in sorted(health.requests.items()):
            requests.add_metric([ws, endpoint, status], value)
        for (endpoint, reason), value in sorted(health.retries.items()):
            retries.add_metric([ws, endpoint, reason], value)
        tokens.add_metric([ws], health.token_requests)
    yield from (success, last_success, delay, every, duration, requests, retries, tokens)
    yield from state_write_families(views)


def state_write_families(views: Sequence[tuple[str, HealthSnapshot]]) -> Iterator[Metric]:
    """Only with --state-file: without one there is nothing to write."""
    errors = STATE_WRITE_ERRORS.counter()
    last = STATE_LAST_WRITE.gauge()
    for ws, health in views:
        if health.state_writes is None:
            continue
        errors.add_metric([ws], health.state_writes.errors)
        if health.state_writes.last_success is not None:
            last.add_metric([ws], health.state_writes.last_success)
    if errors.samples:
        yield errors
    if last.samples:
        yield last
