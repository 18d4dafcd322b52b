"""Prometheus families rendered from the collectors' snapshots (a custom collector).

Rendering never waits on the network and takes no lock that a collection holds while calling
an API; series of deleted pools or finished runs simply are not in the next snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

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
        return []  # families depend on the data; skip the registry's describe-time collect

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
        return []

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
    success = GaugeMetricFamily(
        "databricks_exporter_collection_success",
        "1 if the collector's last collection succeeded, else 0.",
        labels=["workspace", "collector"],
    )
    last_success = GaugeMetricFamily(
        "databricks_exporter_last_success_timestamp_seconds",
        "When the collector last succeeded (Unix seconds): the age of the data served.",
        labels=["workspace", "collector"],
    )
    delay = GaugeMetricFamily(
        "databricks_exporter_collection_start_delay_seconds",
        "How late the collector's last collection started against its schedule: a process "
        "with more workspaces than it can serve starts them later and later.",
        labels=["workspace", "collector"],
    )
    duration = HistogramMetricFamily(
        "databricks_exporter_collection_duration_seconds",
        "Time one collection took, including retries.",
        labels=["workspace", "collector"],
    )
    requests = CounterMetricFamily(
        "databricks_exporter_api_requests",
        "Databricks API requests by endpoint and final HTTP status ('error': no response).",
        labels=["workspace", "endpoint", "status_code"],
    )
    retries = CounterMetricFamily(
        "databricks_exporter_api_retries",
        "Retried Databricks API requests by endpoint and reason "
        "(status code, timeout, connection_error).",
        labels=["workspace", "endpoint", "reason"],
    )
    tokens = CounterMetricFamily(
        "databricks_exporter_token_requests",
        "Azure AD token requests (new tokens and failed attempts), not cache hits.",
        labels=["workspace"],
    )
    for ws, health in views:
        for name, col in sorted(health.collectors.items()):
            if col.success is not None:
                success.add_metric([ws, name], 1.0 if col.success else 0.0)
            if col.last_success is not None:
                last_success.add_metric([ws, name], col.last_success)
            if col.start_delay is not None:
                delay.add_metric([ws, name], col.start_delay)
            duration.add_metric([ws, name], col.durations.buckets(), col.durations.total)
        for (endpoint, status), value in sorted(health.requests.items()):
            requests.add_metric([ws, endpoint, status], value)
        for (endpoint, reason), value in sorted(health.retries.items()):
            retries.add_metric([ws, endpoint, reason], value)
        tokens.add_metric([ws], health.token_requests)
    yield from (success, last_success, delay, duration, requests, retries, tokens)
    yield from state_write_families(views)


def state_write_families(views: Sequence[tuple[str, HealthSnapshot]]) -> Iterator[Metric]:
    """Only with --state-file: without one there is nothing to write."""
    errors = CounterMetricFamily(
        "databricks_exporter_state_write_errors",
        "Failed writes of the workspace's part of --state-file (a full or read-only disk): "
        "a restart then starts the pools' integrals from zero.",
        labels=["workspace"],
    )
    last = GaugeMetricFamily(
        "databricks_exporter_state_last_write_timestamp_seconds",
        "When the workspace's part of --state-file was last written (Unix seconds).",
        labels=["workspace"],
    )
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
