"""Instance pools: one instance-pools/list call per cycle, and the pools' instance-seconds
integral (idle cost), kept in the state file's ``pools`` part."""

from __future__ import annotations

from typing import Any

from exporter.collectors import Context, Registration
from exporter.collectors.pools.collector import PoolsCollector, PoolsSnapshot
from exporter.collectors.pools.families import FAMILIES, pool_families
from exporter.collectors.pools.model import Pool, parse_pool
from exporter.collectors.pools.usage import PoolUsage


def build(ctx: Context) -> PoolsCollector:
    settings = ctx.settings
    gap = settings.max_pool_gap_seconds or 5 * settings.interval
    usage = PoolUsage(gap, ctx.config.prices or settings.prices)
    # An integral older than what was served cannot be continued without its counters going
    # back, nor the time since integrated again: not restored after a failed write.
    ctx.restore(usage.restore, False)
    return PoolsCollector(ctx.client, usage, ctx.clock)


def save(collector: PoolsCollector) -> dict[str, Any] | None:
    return collector.usage.to_dict() if collector.usage is not None else None


COLLECTOR = Registration(
    name="pools",
    factory=build,
    render=pool_families,
    families=FAMILIES,
    order=20,
    state_part="pools",
    save=save,
)

__all__ = ["COLLECTOR", "Pool", "PoolUsage", "PoolsCollector", "PoolsSnapshot", "parse_pool"]
