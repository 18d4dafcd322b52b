"""What every collector's families code renders with: counters and histograms of snapshots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from exporter.catalogue import Family
from exporter.health import Histogram

SCHEDULED = (
    " Collected on a schedule, not at scrape time; see"
    " databricks_exporter_last_success_timestamp_seconds for the data's age."
)


def counters(
    declared: Family, views: Sequence[tuple[str, Mapping[Any, int]]]
) -> CounterMetricFamily:
    """A counter family from per-workspace {label values tuple: count}."""
    family = declared.counter()
    for ws, values in views:
        for key, value in values.items():
            family.add_metric([ws, *key], value)
    return family


def histograms(
    declared: Family, views: Sequence[tuple[str, Mapping[Any, Histogram]]]
) -> HistogramMetricFamily:
    """A histogram family from per-workspace {label values tuple: Histogram}."""
    family = declared.histogram()
    for ws, values in views:
        for key, hist in values.items():
            family.add_metric([ws, *key], hist.buckets(), hist.total)
    return family
