"""The pipelines' families, rendered from PipelinesSnapshot values."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import Metric

from exporter.catalogue import Family
from exporter.collectors.pipelines.ledger import PipelinesSnapshot
from exporter.families import SCHEDULED, counters, histograms

PIPELINE = ("workspace", "pipeline_id", "pipeline_name")

PIPELINE_INFO = Family(
    "databricks_pipeline_info",
    "info",
    "The pipeline's state (IDLE, RUNNING, FAILED, ...) and health, as the pipelines listing "
    "says (a pipeline is IDLE after a failed update too)." + SCHEDULED,
    (*PIPELINE, "state", "health"),
)
UPDATES = Family(
    "databricks_pipeline_updates_total",
    "counter",
    "Pipeline updates that ended since the exporter's baseline, by state (COMPLETED, FAILED, "
    "CANCELED), each counted once." + SCHEDULED,
    (*PIPELINE, "state"),
)
UPDATE_DURATION = Family(
    "databricks_pipeline_update_duration_seconds",
    "histogram",
    "Duration of counted updates seen on their way at most 15 minutes before the collection "
    "that saw them ended: from creation_time to that collection (the API gives no end time: "
    "at most one interval long)." + SCHEDULED,
    PIPELINE,
)
UPDATES_RUNNING = Family(
    "databricks_pipeline_updates_running",
    "gauge",
    "Updates of the pipeline on their way (created, waiting for resources, initializing, "
    "setting up tables, running, stopping)." + SCHEDULED,
    PIPELINE,
)
LAST_UPDATE_FAILED = Family(
    "databricks_pipeline_last_update_failed",
    "gauge",
    "1 if the pipeline's last ended update FAILED, else 0 (whatever the pipeline's state).",
    PIPELINE,
)
LAST_UPDATE_START = Family(
    "databricks_pipeline_last_update_start_timestamp_seconds",
    "gauge",
    "When the pipeline's last ended update was created (Unix seconds): its age is time() "
    "minus this.",
    PIPELINE,
)
LAST_UPDATE_ERROR = Family(
    "databricks_pipeline_last_update_error_info",
    "info",
    "The pipeline's last update failed: its update_id and its error, as the event log words "
    "it (first 200 characters).",
    (*PIPELINE, "update_id", "message"),
)
BASELINE = Family(
    "databricks_exporter_pipelines_baseline_timestamp_seconds",
    "gauge",
    "Pipeline updates that ended after this time (Unix seconds) are counted in "
    "databricks_pipeline_updates_total.",
    ("workspace",),
)

FAMILIES: tuple[Family, ...] = (
    PIPELINE_INFO,
    UPDATES,
    UPDATE_DURATION,
    UPDATES_RUNNING,
    LAST_UPDATE_FAILED,
    LAST_UPDATE_START,
    LAST_UPDATE_ERROR,
    BASELINE,
)


def pipeline_families(views: Sequence[tuple[str, PipelinesSnapshot]]) -> Iterator[Metric]:
    info = PIPELINE_INFO.gauge()
    for ws, snap in views:
        for pipeline_id, name, state, health in snap.pipelines:
            info.add_metric([ws, pipeline_id, name, state, health], 1.0)
    yield info
    yield counters(UPDATES, [(ws, snap.updates_total) for ws, snap in views])
    yield histograms(UPDATE_DURATION, [(ws, snap.durations) for ws, snap in views])
    running = UPDATES_RUNNING.gauge()
    failed = LAST_UPDATE_FAILED.gauge()
    start = LAST_UPDATE_START.gauge()
    error = LAST_UPDATE_ERROR.gauge()
    baseline = BASELINE.gauge()
    for ws, snap in views:
        for (pipeline_id, name), value in sorted(snap.running.items()):
            running.add_metric([ws, pipeline_id, name], float(value))
        for (pipeline_id, name), last in sorted(snap.last.items()):
            labels = [ws, pipeline_id, name]
            failed.add_metric(labels, 1.0 if last.state == "FAILED" else 0.0)
            start.add_metric(labels, last.created_ms / 1000.0)
            if last.state == "FAILED":
                error.add_metric([*labels, last.update_id, last.error], 1.0)
        baseline.add_metric([ws], snap.baseline_ms / 1000.0)
    yield from (running, failed, start, error, baseline)
