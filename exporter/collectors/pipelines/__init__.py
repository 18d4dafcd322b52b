"""Lakeflow (Delta Live Tables) pipelines: their state and health, and their updates counted
exactly once by outcome, kept in the state file's ``pipelines`` part."""

from __future__ import annotations

from typing import Any

from exporter.collectors import Context, Registration
from exporter.collectors.pipelines.collector import PipelinesCollector
from exporter.collectors.pipelines.families import FAMILIES, pipeline_families
from exporter.collectors.pipelines.ledger import PipelineLedger, from_dict, to_dict


def build(ctx: Context) -> PipelinesCollector:
    ledger = ctx.restore(from_dict, True) or PipelineLedger(int(ctx.clock() * 1000))
    return PipelinesCollector(ctx.client, ledger, ctx.clock)


def save(collector: PipelinesCollector) -> dict[str, Any]:
    return to_dict(collector.ledger)


COLLECTOR = Registration(
    name="pipelines",
    factory=build,
    render=pipeline_families,
    families=FAMILIES,
    order=30,
    state_part="pipelines",
    save=save,
)

__all__ = ["COLLECTOR", "PipelineLedger", "PipelinesCollector"]
