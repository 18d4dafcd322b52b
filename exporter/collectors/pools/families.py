"""The pools' families, rendered from PoolsSnapshot values."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import Metric

from exporter.catalogue import Family
from exporter.collectors.pools.collector import PoolsSnapshot
from exporter.families import SCHEDULED

POOL = ("workspace", "pool_id", "pool_name")
INTEGRATED = (
    " Integrated by the exporter between collections (left-point rule, Databricks' clock);"
    " kept across restarts with --state-file."
)


def _gauge(name: str, doc: str, labels: tuple[str, ...] = POOL) -> Family:
    return Family(name, "gauge", doc, labels)


# Pool field -> its gauge.
COUNTS = {
    "idle": _gauge(
        "databricks_instance_pool_idle_instances",
        "Running instances not used by a cluster." + SCHEDULED,
    ),
    "used": _gauge(
        "databricks_instance_pool_used_instances", "Running instances used by clusters." + SCHEDULED
    ),
    "pending_idle": _gauge(
        "databricks_instance_pool_pending_idle_instances",
        "Starting instances not yet assigned to a cluster." + SCHEDULED,
    ),
    "pending_used": _gauge(
        "databricks_instance_pool_pending_used_instances",
        "Starting instances assigned to a cluster." + SCHEDULED,
    ),
    "min_idle": _gauge(
        "databricks_instance_pool_min_idle_instances",
        "Configured minimum of idle instances." + SCHEDULED,
    ),
}
MAX_CAPACITY = _gauge(
    "databricks_instance_pool_max_capacity",
    "Configured maximum of instances (absent when unlimited).",
)
POOL_INFO = Family(
    "databricks_instance_pool_info",
    "info",
    "Facts about the pool: node type and state.",
    (*POOL, "node_type_id", "state"),
)
PENDING_ERRORS = _gauge(
    "databricks_instance_pool_pending_instance_errors",
    "Instances that failed to start (status.pending_instance_errors: cloud quota, capacity)."
    + SCHEDULED,
)
PENDING_ERROR_INFO = Family(
    "databricks_instance_pool_pending_instance_error_info",
    "info",
    "The latest error of an instance that failed to start, as Databricks words it.",
    (*POOL, "message"),
)
AUTOTERMINATION = _gauge(
    "databricks_instance_pool_idle_autotermination_seconds",
    "How long an idle instance above min_idle_instances waits before it is terminated "
    "(idle_instance_autotermination_minutes x 60).",
)
# PoolTotals field -> its counter.
USAGE = {
    key: Family(
        f"databricks_instance_pool_{key}_instance_seconds_total", "counter", doc + INTEGRATED, POOL
    )
    for key, doc in {
        "idle": "Instance-seconds of idle instances (running, not used by a cluster).",
        "used": "Instance-seconds of instances used by clusters.",
        "pending": "Instance-seconds of instances starting (pending idle or used).",
        "idle_above_min": "Instance-seconds of idle instances beyond min_idle_instances (the "
        "part a shorter idle_instance_autotermination_minutes can save).",
    }.items()
}
IDLE_COST = Family(
    "databricks_instance_pool_idle_cost_total",
    "counter",
    "VM cost of idle instances, in the price table's currency (idle instances cost the "
    "cloud provider's VM price and no DBUs)." + INTEGRATED,
    (*POOL, "currency"),
)
VM_PRICE = _gauge(
    "databricks_instance_pool_vm_price_per_hour",
    "The price table's VM price per hour for the pool's node type.",
    (*POOL, "currency"),
)
UNPRICED = Family(
    "databricks_instance_pool_unpriced",
    "info",
    "1 for a pool whose node type the price table lacks: its idle cost is not counted.",
    (*POOL, "node_type_id"),
)
UNOBSERVED = Family(
    "databricks_exporter_pool_unobserved_seconds_total",
    "counter",
    "Seconds between pool collections too far apart to integrate (exporter or API down); "
    "not counted in the instance-seconds counters.",
    ("workspace",),
)

FAMILIES: tuple[Family, ...] = (
    *COUNTS.values(),
    MAX_CAPACITY,
    POOL_INFO,
    PENDING_ERRORS,
    PENDING_ERROR_INFO,
    AUTOTERMINATION,
    *USAGE.values(),
    IDLE_COST,
    VM_PRICE,
    UNPRICED,
    UNOBSERVED,
)


def pool_families(views: Sequence[tuple[str, PoolsSnapshot]]) -> Iterator[Metric]:
    families = {key: declared.gauge() for key, declared in COUNTS.items()}
    max_capacity = MAX_CAPACITY.gauge()
    info = POOL_INFO.gauge()
    errors = PENDING_ERRORS.gauge()
    error_info = PENDING_ERROR_INFO.gauge()
    autotermination = AUTOTERMINATION.gauge()
    for ws, snapshot in views:
        for pool in snapshot.pools:
            labels = [ws, pool.pool_id, pool.pool_name]
            if pool.autotermination_minutes is not None:
                autotermination.add_metric(labels, 60.0 * pool.autotermination_minutes)
            for key, family in families.items():
                family.add_metric(labels, float(getattr(pool, key)))
            if pool.max_capacity is not None:
                max_capacity.add_metric(labels, float(pool.max_capacity))
            info.add_metric([*labels, pool.node_type_id, pool.state], 1.0)
            errors.add_metric(labels, float(pool.pending_errors))
            if pool.pending_errors:
                error_info.add_metric([*labels, pool.pending_error_message], 1.0)
    yield from families.values()
    yield max_capacity
    yield info
    yield errors
    yield error_info
    yield autotermination
    yield from usage_families(views)


def usage_families(views: Sequence[tuple[str, PoolsSnapshot]]) -> Iterator[Metric]:
    """The pools' integrated counters (exporter.collectors.pools.usage): instance-seconds and
    idle cost."""
    counters = {key: declared.counter() for key, declared in USAGE.items()}
    cost = IDLE_COST.counter()
    price = VM_PRICE.gauge()
    unpriced = UNPRICED.gauge()
    unobserved = UNOBSERVED.counter()
    for ws, snapshot in views:
        usage = snapshot.usage
        if usage is None:
            continue
        pools = {pool.pool_id: pool for pool in snapshot.pools}
        prices = dict(usage.prices)
        for pool_id, totals in usage.totals:
            pool = pools.get(pool_id)
            if pool is None:
                continue
            labels = [ws, pool_id, pool.pool_name]
            for key, family in counters.items():
                family.add_metric(labels, getattr(totals, key))
            if usage.currency is not None and pool_id in prices:
                cost.add_metric([*labels, usage.currency], totals.idle_cost)
                price.add_metric([*labels, usage.currency], prices[pool_id])
        for pool_id in usage.unpriced:
            if pool_id in pools:
                pool = pools[pool_id]
                unpriced.add_metric([ws, pool_id, pool.pool_name, pool.node_type_id], 1.0)
        unobserved.add_metric([ws], usage.unobserved_seconds)
    yield from counters.values()
    yield cost
    yield price
    yield unpriced
    yield unobserved
