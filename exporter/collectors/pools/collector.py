"""Instance pools: one instance-pools/list call per cycle, a snapshot of every pool.

Each listing also moves the pools' instance-seconds integral on (``usage``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.client import DatabricksClient
from exporter.collectors.pools.model import BadPool, Pool, parse_pool
from exporter.collectors.pools.usage import PoolUsage, UsageSnapshot
from exporter.text import valid_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolsSnapshot:
    pools: tuple[Pool, ...]
    usage: UsageSnapshot | None = None  # None: no integral kept (tests, benchmarks)


class PoolsCollector:
    """Replaces its snapshot each cycle, so deleted pools disappear from the metrics."""

    name = "pools"

    def __init__(
        self,
        client: DatabricksClient,
        usage: PoolUsage | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.usage = usage
        self.clock = clock
        self.snapshot: PoolsSnapshot | None = None

    def collect(self) -> int:
        raw, date_ms = self.client.list_pools_dated()
        pools = [p for p in map(self._parse, raw) if p is not None]
        before = {p.pool_id: p.pending_error_message for p in self.pools}
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
        usage = None
        if self.usage is not None:
            # Databricks' clock, so a skewed exporter clock does not stretch the integral.
            at_ms = date_ms if date_ms is not None else int(self.clock() * 1000)
            usage = self.usage.observe(at_ms, pools, self.client.workspace)
        snapshot = PoolsSnapshot(tuple(pools), usage)
        if snapshot != self.snapshot:  # an unchanged snapshot keeps its rendered /metrics text
            self.snapshot = snapshot
        return len(pools)

    def _parse(self, raw: dict[str, Any]) -> Pool | None:
        """One pool, or None (logged) when its counts cannot be trusted: the others are kept."""
        try:
            return parse_pool(raw)
        except BadPool as exc:
            log.warning(
                "workspace %s: skipped pool %.64r: %s",
                self.client.workspace,
                valid_text(raw.get("instance_pool_id")),
                exc,
            )
            return None

    @property
    def pools(self) -> tuple[Pool, ...]:
        return self.snapshot.pools if self.snapshot else ()
