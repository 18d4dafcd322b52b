"""Every metric family declared once: name, type, help, labels, unit.

Each collector declares its families in its own folder (``families.py``: ``FAMILIES``) and the
exporter's own health families are here; ``catalogue()`` is all of them. The families code
renders from these declarations, ``describe()`` answers from them (so prometheus-client refuses
a name declared twice at start), the README's metrics table is checked against them, and the
mixin imports the names it queries from them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from exporter.collectors import registrations

KINDS: dict[str, type[Metric]] = {
    "counter": CounterMetricFamily,
    "gauge": GaugeMetricFamily,
    "info": GaugeMetricFamily,  # a gauge of value 1 whose labels are the facts
    "histogram": HistogramMetricFamily,
}
UNITS = ("seconds", "ratio")


@dataclass(frozen=True)
class Family:
    """One family: ``name`` as queried and in the README (a counter's with ``_total``, a
    histogram's without ``_bucket``), ``labels`` in the order its samples carry them (always
    ``workspace`` first), ``unit`` the base unit the name ends with ("" for counts)."""

    name: str
    type: str  # counter, gauge, info (a gauge = 1) or histogram
    help: str
    labels: tuple[str, ...]
    unit: str = ""
    per_workspace: bool = True  # False: the process's own (build info), no workspace label

    def __post_init__(self) -> None:
        if self.type not in KINDS:
            raise ValueError(f"{self.name}: unknown type {self.type!r}")
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"{self.name}: a counter's name ends with _total")
        if self.per_workspace and (not self.labels or self.labels[0] != "workspace"):
            raise ValueError(f"{self.name}: the first label is workspace")
        if not self.per_workspace and "workspace" in self.labels:
            raise ValueError(f"{self.name}: a family of the process has no workspace label")
        if not self.unit:
            base = self.name.removesuffix("_total")
            unit = next((u for u in UNITS if base.endswith("_" + u)), "")
            object.__setattr__(self, "unit", unit)

    def metric(self) -> Metric:
        """An empty prometheus-client family of this declaration, to add samples to."""
        kind = KINDS[self.type]
        return kind(self.name, self.help, labels=list(self.labels))  # type: ignore[call-arg]

    def gauge(self) -> GaugeMetricFamily:
        family = self.metric()
        assert isinstance(family, GaugeMetricFamily), self.name
        return family

    def counter(self) -> CounterMetricFamily:
        family = self.metric()
        assert isinstance(family, CounterMetricFamily), self.name
        return family

    def histogram(self) -> HistogramMetricFamily:
        family = self.metric()
        assert isinstance(family, HistogramMetricFamily), self.name
        return family

    def scalar(self) -> GaugeMetricFamily | CounterMetricFamily:
        """A gauge's or a counter's family: one value per sample."""
        family = self.metric()
        assert isinstance(family, GaugeMetricFamily | CounterMetricFamily), self.name
        return family


COLLECTOR = ("workspace", "collector")

# The exporter's own families, about each workspace's collections and API use.
COLLECTION_SUCCESS = Family(
    "databricks_exporter_collection_success",
    "gauge",
    "1 if the collector's last collection succeeded, else 0.",
    COLLECTOR,
)
LAST_SUCCESS = Family(
    "databricks_exporter_last_success_timestamp_seconds",
    "gauge",
    "When the collector last succeeded (Unix seconds): the age of the data served.",
    COLLECTOR,
)
START_DELAY = Family(
    "databricks_exporter_collection_start_delay_seconds",
    "gauge",
    "How late the collector's last collection started against its schedule: a process "
    "with more workspaces than it can serve starts them later and later.",
    COLLECTOR,
)
COLLECTION_INTERVAL = Family(
    "databricks_exporter_collection_interval_seconds",
    "gauge",
    "Seconds between the collector's collections (interval, or its own: jobs_interval); "
    "its data is stale when its last success is much older than this.",
    COLLECTOR,
)
COLLECTION_DURATION = Family(
    "databricks_exporter_collection_duration_seconds",
    "histogram",
    "Time one collection took, including retries.",
    COLLECTOR,
)
API_REQUESTS = Family(
    "databricks_exporter_api_requests_total",
    "counter",
    "Databricks API requests by endpoint and final HTTP status ('error': no response).",
    ("workspace", "endpoint", "status_code"),
)
API_RETRIES = Family(
    "databricks_exporter_api_retries_total",
    "counter",
    "Retried Databricks API requests by endpoint and reason "
    "(status code, timeout, connection_error).",
    ("workspace", "endpoint", "reason"),
)
TOKEN_REQUESTS = Family(
    "databricks_exporter_token_requests_total",
    "counter",
    "Azure AD token requests (new tokens and failed attempts), not cache hits.",
    ("workspace",),
)
STATE_WRITE_ERRORS = Family(
    "databricks_exporter_state_write_errors_total",
    "counter",
    "Failed writes of the workspace's part of --state-file (a full or read-only disk): "
    "a restart then starts the pools' integrals from zero.",
    ("workspace",),
)
STATE_LAST_WRITE = Family(
    "databricks_exporter_state_last_write_timestamp_seconds",
    "gauge",
    "When the workspace's part of --state-file was last written (Unix seconds).",
    ("workspace",),
)
HEALTH: tuple[Family, ...] = (
    COLLECTION_SUCCESS,
    LAST_SUCCESS,
    START_DELAY,
    COLLECTION_INTERVAL,
    COLLECTION_DURATION,
    API_REQUESTS,
    API_RETRIES,
    TOKEN_REQUESTS,
    STATE_WRITE_ERRORS,
    STATE_LAST_WRITE,
)


# The process's own, beside prometheus-client's process_* and python_info (exporter.selfmetrics).
BUILD_INFO = Family(
    "databricks_exporter_build_info",
    "info",
    "Always 1; the labels say which exporter and Python run here.",
    ("version", "python_version", "python_implementation"),
    per_workspace=False,
)
WEB_CONFIG_RELOAD = Family(
    "databricks_exporter_web_config_last_reload_successful",
    "gauge",
    "1 if the web config file (and its certificates) last loaded, 0 if a change did not load "
    "and the previous one stays in force.",
    (),
    per_workspace=False,
)
PROCESS: tuple[Family, ...] = (BUILD_INFO, WEB_CONFIG_RELOAD)


def catalogue() -> tuple[Family, ...]:
    """Every family: each registered collector's, then the exporter's own. ValueError for a
    name declared twice."""
    families = [f for r in registrations() for f in r.families] + list(HEALTH) + list(PROCESS)
    names = [f.name for f in families]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"families declared twice: {', '.join(twice)}")
    return tuple(families)


def family(name: str) -> Family:
    """The declaration of one family (KeyError when none is declared by that name)."""
    for found in catalogue():
        if found.name == name:
            return found
    raise KeyError(name)


def describe(families: tuple[Family, ...]) -> Iterator[Metric]:
    """What a prometheus-client collector's ``describe()`` answers: empty families."""
    return (f.metric() for f in families)
