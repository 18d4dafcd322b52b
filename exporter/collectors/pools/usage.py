"""What pools cost over time: instance-seconds integrated between collections, priced.

The pools API only says how many instances a pool has *now*. A gauge sampled by Prometheus
cannot say how many instance-hours sat idle over a month: ``sum_over_time`` is an estimate that
breaks across scrape gaps and restarts. So the exporter integrates the counts itself, by the
left-point rule: the counts seen at one collection are taken to hold until the next one, over
the time between the two answers. Time is Databricks' clock (the ``Date`` header of each
instance-pools/list answer; the exporter's clock for an answer without one), so a skewed
exporter clock does not stretch or shrink the integral.

An interval longer than ``max_gap_seconds`` (the exporter or the API was down) is not
integrated as if the last counts held: it is added to ``unobserved_seconds`` instead. The
totals, the last counts and the gap total are saved in ``--state-file``, so a restart within
the gap limit continues the integral and counters never reset.

Databricks charges no DBUs for instances idle in a pool, only the cloud provider's VM price;
idle cost is therefore ``idle instance-seconds x VM price per hour / 3600``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter.collectors.pools.model import Pool

if TYPE_CHECKING:
    from exporter.config import PriceTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Counts:
    """The instance counts of one pool at one collection, and what they are priced by."""

    idle: int
    used: int
    pending: int
    idle_above_min: int
    node_type_id: str

    @classmethod
    def of(cls, pool: Pool) -> Counts:
        return cls(
            idle=pool.idle,
            used=pool.used,
            pending=pool.pending_idle + pool.pending_used,
            idle_above_min=max(pool.idle - pool.min_idle, 0),
            node_type_id=pool.node_type_id,
        )


@dataclass(frozen=True)
class PoolTotals:
    """One pool's integrated counters (instance-seconds; cost in the table's currency)."""

    idle: float = 0.0
    used: float = 0.0
    pending: float = 0.0
    idle_above_min: float = 0.0
    idle_cost: float = 0.0

    def plus(self, counts: Counts, seconds: float, price: float | None) -> PoolTotals:
        return PoolTotals(
            idle=self.idle + counts.idle * seconds,
            used=self.used + counts.used * seconds,
            pending=self.pending + counts.pending * seconds,
            idle_above_min=self.idle_above_min + counts.idle_above_min * seconds,
            idle_cost=self.idle_cost + (counts.idle * seconds * price / 3600 if price else 0.0),
        )


@dataclass(frozen=True)
class UsageSnapshot:
    """What /metrics shows of the integration; immutable, replaced at each collection."""

    totals: tuple[tuple[str, PoolTotals], ...]  # (pool_id, totals), pools listed last time
    unobserved_seconds: float
    currency: str | None  # None: no price table, no cost series
    prices: tuple[tuple[str, float], ...]  # (pool_id, VM price per hour) of priced pools
    unpriced: tuple[str, ...]  # pool ids whose node type the price table lacks


class PoolUsage:
    """The integral for one workspace; ``observe`` is called with each successful listing."""

    def __init__(self, max_gap_seconds: float, prices: PriceTable | None = None) -> None:
        self.max_gap_ms = max_gap_seconds * 1000
        self.prices = prices
        self.last_ms: int | None = None
        self.last: dict[str, Counts] = {}
        self.totals: dict[str, PoolTotals] = {}
        self.unobserved_seconds = 0.0
        self._warned_unpriced: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def price(self, node_type_id: str) -> float | None:
        return self.prices.per_hour.get(node_type_id) if self.prices else None

    def observe(self, at_ms: int, pools: Iterable[Pool], workspace: str = "") -> UsageSnapshot:
        """Integrate the counts seen last time up to ``at_ms``, then remember these counts."""
        pools = list(pools)
        with self._lock:
            elapsed = at_ms - self.last_ms if self.last_ms is not None else None
            if elapsed is not None and elapsed > self.max_gap_ms:
                self.unobserved_seconds += elapsed / 1000
                log.warning(
                    "workspace %s: pools unobserved for %.0f s (more than %.0f s); that time is "
                    "not counted in the instance-seconds counters",
                    workspace,
                    elapsed / 1000,
                    self.max_gap_ms / 1000,
                )
            totals: dict[str, PoolTotals] = {}
            for pool in pools:
                before = self.last.get(pool.pool_id)
                total = self.totals.get(pool.pool_id, PoolTotals())
                if before is not None and elapsed is not None and 0 < elapsed <= self.max_gap_ms:
                    total = total.plus(before, elapsed / 1000, self.price(before.node_type_id))
                totals[pool.pool_id] = total
            # A pool no longer listed was deleted: its counters end with it.
            self.totals = totals
            self.last = {pool.pool_id: Counts.of(pool) for pool in pools}
            # A clock that went back: that interval is not integrated, the new time counts on.
            self.last_ms = at_ms
            return self._snapshot({p.pool_id: p for p in pools}, workspace)

    def _snapshot(self, pools: Mapping[str, Pool], workspace: str) -> UsageSnapshot:
        prices, unpriced = [], []
        for pool_id, pool in pools.items():
            price = self.price(pool.node_type_id)
            if price is not None:
                prices.append((pool_id, price))
            elif self.prices is not None:
                unpriced.append(pool_id)
                if (pool_id, pool.node_type_id) not in self._warned_unpriced:
                    self._warned_unpriced.add((pool_id, pool.node_type_id))
                    log.warning(
                        "workspace %s: pool %s (%s) has node type %s, which the price table "
                        "lacks; its idle cost is not counted (add it under prices.node_types)",
                        workspace,
                        pool.pool_name,
                        pool_id,
                        pool.node_type_id or "(none)",
                    )
        return UsageSnapshot(
            totals=tuple(self.totals.items()),
            unobserved_seconds=self.unobserved_seconds,
            currency=self.prices.currency if self.prices else None,
            prices=tuple(prices),
            unpriced=tuple(unpriced),
        )

    # --- state file ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "last_ms": self.last_ms,
                "last": {
                    pool_id: [c.idle, c.used, c.pending, c.idle_above_min, c.node_type_id]
                    for pool_id, c in self.last.items()
                },
                "totals": {
                    pool_id: [t.idle, t.used, t.pending, t.idle_above_min, t.idle_cost]
                    for pool_id, t in self.totals.items()
                },
                "unobserved_seconds": self.unobserved_seconds,
            }

    def restore(self, data: Any) -> None:
        """Continue from a saved integral; ValueError (nothing changed) when it is damaged."""
        if not isinstance(data, dict):
            raise ValueError("pools is not an object")
        last_ms = data.get("last_ms")
        if last_ms is not None and (
            isinstance(last_ms, bool) or not isinstance(last_ms, int) or last_ms < 0
        ):
            raise ValueError("pools.last_ms is not a time")
        last = {
            _text(pool_id): Counts(
                idle=_count(row[0]),
                used=_count(row[1]),
                pending=_count(row[2]),
                idle_above_min=_count(row[3]),
                node_type_id=_text(row[4]),
            )
            for pool_id, row in _rows(data.get("last"), 5)
        }
        totals = {
            _text(pool_id): PoolTotals(*(_seconds(v) for v in row))
            for pool_id, row in _rows(data.get("totals"), 5)
        }
        unobserved = _seconds(data.get("unobserved_seconds", 0.0))
        with self._lock:
            self.last_ms, self.last, self.totals = last_ms, last, totals
            self.unobserved_seconds = unobserved


def _rows(raw: Any, width: int) -> list[tuple[Any, list[Any]]]:
    if not isinstance(raw, dict):
        raise ValueError("a pools table is not an object")
    rows = list(raw.items())
    for _, row in rows:
        if not isinstance(row, list) or len(row) != width:
            raise ValueError(f"a pools row is not a list of {width}")
    return rows


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not text: {str(value)[:40]!r}")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not a count: {str(value)[:40]!r}")
    return value


def _seconds(value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise ValueError(f"not a non-negative number: {str(value)[:40]!r}")
    return float(value)
