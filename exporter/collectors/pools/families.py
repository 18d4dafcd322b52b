"""The pools' families, rendered from PoolsSnapshot values."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from exporter.catalogue import Family
from exporter.collectors.pools.collector import PoolsSnapshot
from exporter.families import SCHEDULED

POOL = ["workspace", "pool_id", "pool_name"]

FAMILIES: tuple[Family, ...] = ()


def pool_families(views: Sequence[tuple[str, PoolsSnapshot]]) -> Iterator[Metric]:
    gauges = {
        "idle": (
            "databricks_instance_pool_idle_instances",
            "Running instances not used by a cluster.",
        ),
        "used": ("databricks_instance_pool_used_instances", "Running instances used by clusters."),
        "pending_idle": (
            "databricks_instance_pool_pending_idle_instances",
            "Starting instances not yet assigned to a cluster.",
        ),
        "pending_used": (
            "databricks_instance_pool_pending_used_instances",
            "Starting instances assigned to a cluster.",
        ),
        "min_idle": (
            "databricks_instance_pool_min_idle_instances",
            "Configured minimum of idle instances.",
        ),
    }
    families = {
        key: GaugeMetricFamily(name, doc + SCHEDULED, labels=POOL)
        for key, (name, doc) in gauges.items()
    }
    max_capacity = GaugeMetricFamily(
        "databricks_instance_pool_max_capacity",
        "Configured maximum of instances (absent when unlimited).",
        labels=POOL,
    )
    info = GaugeMetricFamily(
        "databricks_instance_pool_info",
        "Facts about the pool: node type and state.",
        labels=[*POOL, "node_type_id", "state"],
    )
    errors = GaugeMetricFamily(
        "databricks_instance_pool_pending_instance_errors",
        "Instances that failed to start (status.pending_instance_errors: cloud quota, capacity)."
        + SCHEDULED,
        labels=POOL,
    )
    error_info = GaugeMetricFamily(
        "databricks_instance_pool_pending_instance_error_info",
        "The latest error of an instance that failed to start, as Databricks words it.",
        labels=[*POOL, "message"],
    )
    autotermination = GaugeMetricFamily(
        "databricks_instance_pool_idle_autotermination_seconds",
        "How long an idle instance above min_idle_instances waits before it is terminated "
        "(idle_instance_autotermination_minutes x 60).",
        labels=POOL,
    )
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


# PoolTotals field -> help; the family is databricks_instance_pool_<field>_instance_seconds.
USAGE = {
    "idle": "Instance-seconds of idle instances (running, not used by a cluster).",
    "used": "Instance-seconds of instances used by clusters.",
    "pending": "Instance-seconds of instances starting (pending idle or used).",
    "idle_above_min": "Instance-seconds of idle instances beyond min_idle_instances (the part a "
    "shorter idle_instance_autotermination_minutes can save).",
}


def usage_families(views: Sequence[tuple[str, PoolsSnapshot]]) -> Iterator[Metric]:
    """The pools' integrated counters (exporter.poolusage): instance-seconds and idle cost."""
    integrated = (
        " Integrated by the exporter between collections (left-point rule, Databricks' clock);"
        " kept across restarts with --state-file."
    )
    counters = {
        key: CounterMetricFamily(
            f"databricks_instance_pool_{key}_instance_seconds", doc + integrated, labels=POOL
        )
        for key, doc in USAGE.items()
    }
    cost = CounterMetricFamily(
        "databricks_instance_pool_idle_cost",
        "VM cost of idle instances, in the price table's currency (idle instances cost the "
        "cloud provider's VM price and no DBUs)." + integrated,
        labels=[*POOL, "currency"],
    )
    price = GaugeMetricFamily(
        "databricks_instance_pool_vm_price_per_hour",
        "The price table's VM price per hour for the pool's node type.",
        labels=[*POOL, "currency"],
    )
    unpriced = GaugeMetricFamily(
        "databricks_instance_pool_unpriced",
        "1 for a pool whose node type the price table lacks: its idle cost is not counted.",
        labels=[*POOL, "node_type_id"],
    )
    unobserved = CounterMetricFamily(
        "databricks_exporter_pool_unobserved_seconds",
        "Seconds between pool collections too far apart to integrate (exporter or API down); "
        "not counted in the instance-seconds counters.",
        labels=["workspace"],
    )
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
