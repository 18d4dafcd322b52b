"""Instance pools: one instance-pools/list call per cycle, a snapshot of every pool."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from exporter.client import DatabricksClient

log = logging.getLogger(__name__)


MAX_MESSAGE = 200  # characters of an error message kept as a label value


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
    pending_errors: int = 0  # status.pending_instance_errors: instances that failed to start
    pending_error_message: str = ""  # the latest of those errors, as Databricks words it


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
    status: dict[str, Any] = raw["status"] if isinstance(raw.get("status"), dict) else {}
    errors = status.get("pending_instance_errors")
    errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    # The list is FIFO: the last item is the latest error.
    message = str(errors[-1].get("message") or "") if errors else ""
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
        pending_errors=len(errors),
        pending_error_message=" ".join(message.split())[:MAX_MESSAGE],
    )


class PoolsCollector:
    """Replaces its snapshot each cycle, so deleted pools disappear from the metrics."""

    name = "pools"

    def __init__(self, client: DatabricksClient) -> None:
        self.client = client
        self.snapshot: tuple[Pool, ...] | None = None

    def collect(self) -> int:
        pools = [p for p in map(parse_pool, self.client.list_pools()) if p is not None]
        before = {p.pool_id: p.pending_error_message for p in self.snapshot or ()}
        for pool in pools:
            message = pool.pending_error_message
            if message and before.get(pool.pool_id) != message:
                log.warning(
                    "workspace %s: pool %s (%s) cannot start %d instance(s): %s",
                    self.client.workspace,
                    pool.pool_name,
                    pool.pool_id,
                    pool.pending_errors,
                    message,
                )
        snapshot = tuple(pools)
        if snapshot != self.snapshot:  # an unchanged snapshot keeps its rendered /metrics text
            self.snapshot = snapshot
        return len(pools)
