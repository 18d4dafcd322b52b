"""Instance pools as instance-pools/list gives them: parsed and checked (``Pool``)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from exporter.text import valid_text

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
    autotermination_minutes: int | None = None  # idle_instance_autotermination_minutes


# More instances than any pool can hold: a count past this is not a count (1e307 would make the
# instance-seconds counters +Inf, 1e400 arrives as inf).
MAX_INSTANCES = 1_000_000


class BadPool(ValueError):
    """A pool object whose counts cannot be trusted; the pool is skipped, the others kept."""


def _count(value: Any, what: str = "a count") -> int:
    if isinstance(value, float) and not math.isfinite(value):
        raise BadPool(f"{what} is {value}")
    try:
        count = max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0
    except OverflowError:
        raise BadPool(f"{what} is {value}") from None
    if count > MAX_INSTANCES:
        raise BadPool(f"{what} is {str(value)[:20]}, more than {MAX_INSTANCES:,}")
    return count


def parse_pool(raw: dict[str, Any]) -> Pool | None:
    """A Pool from an API object, or None without an instance_pool_id.

    Raises BadPool for counts that are not finite or larger than any pool.
    """
    pool_id = raw.get("instance_pool_id")
    if not pool_id:
        return None
    stats: dict[str, Any] = raw["stats"] if isinstance(raw.get("stats"), dict) else {}
    max_capacity = raw.get("max_capacity")
    status: dict[str, Any] = raw["status"] if isinstance(raw.get("status"), dict) else {}
    errors = status.get("pending_instance_errors")
    errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    # The list is FIFO: the last item is the latest error.
    message = valid_text(errors[-1].get("message") or "") if errors else ""
    return Pool(
        pool_id=valid_text(pool_id),
        pool_name=valid_text(raw.get("instance_pool_name") or ""),
        node_type_id=valid_text(raw.get("node_type_id") or ""),
        state=valid_text(raw.get("state") or "UNKNOWN"),
        idle=_count(stats.get("idle_count"), "stats.idle_count"),
        used=_count(stats.get("used_count"), "stats.used_count"),
        pending_idle=_count(stats.get("pending_idle_count"), "stats.pending_idle_count"),
        pending_used=_count(stats.get("pending_used_count"), "stats.pending_used_count"),
        min_idle=_count(raw.get("min_idle_instances"), "min_idle_instances"),
        max_capacity=(
            _count(max_capacity, "max_capacity") if max_capacity not in (None, 0, "") else None
        ),
        pending_errors=len(errors),
        pending_error_message=" ".join(message.split())[:MAX_MESSAGE],
        autotermination_minutes=(
            _count(raw.get("idle_instance_autotermination_minutes"), "autotermination")
            if raw.get("idle_instance_autotermination_minutes") is not None
            else None
        ),
    )
