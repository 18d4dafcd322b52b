"""Instance pools: one instance-pools/list call per cycle, a snapshot of every pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exporter.client import DatabricksClient


@dataclass(frozen=True)
class Pool:
    pool_id: str
    pool_name: str
    node_type_id: str
    state: str
    idle: int
    used: int
    pending_idle: int
    pending_used: int
    min_idle: int
    max_capacity: int | None  # None: unlimited


def _count(value: Any) -> int:
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0


def parse_pool(raw: dict[str, Any]) -> Pool | None:
    """A Pool from an API object, or None without an instance_pool_id."""
    pool_id = raw.get("instance_pool_id")
    if not pool_id:
        return None
    stats: dict[str, Any] = raw["stats"] if isinstance(raw.get("stats"), dict) else {}
    max_capacity = raw.get("max_capacity")
    return Pool(
        pool_id=str(pool_id),
        pool_name=str(raw.get("instance_pool_name") or ""),
        node_type_id=str(raw.get("node_type_id") or ""),
        state=str(raw.get("state") or "UNKNOWN"),
        idle=_count(stats.get("idle_count")),
        used=_count(stats.get("used_count")),
        pending_idle=_count(stats.get("pending_idle_count")),
        pending_used=_count(stats.get("pending_used_count")),
        min_idle=_count(raw.get("min_idle_instances")),
        max_capacity=_count(max_capacity) if max_capacity not in (None, 0, "") else None,
    )


class PoolsCollector:
    """Replaces its snapshot each cycle, so deleted pools disappear from the metrics."""

    name = "pools"

    def __init__(self, client: DatabricksClient) -> None:
        self.client = client
        self.snapshot: tuple[Pool, ...] | None = None

    def collect(self) -> int:
        pools = [p for p in map(parse_pool, self.client.list_pools()) if p is not None]
        snapshot = tuple(pools)
        if snapshot != self.snapshot:  # an unchanged snapshot keeps its rendered /metrics text
            self.snapshot = snapshot
        return len(pools)
