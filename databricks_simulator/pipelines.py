"""The simulator's Lakeflow (Delta Live Tables) pipelines: a world that is a function of time,
the Pipelines API 2.0's answers (GET /api/2.0/pipelines, .../{id}/updates, .../{id}/events)
and the ground truth the tests compare the exporter's counts with.

Each pipeline runs one update at a time, every ``period`` from the world's origin; an update
ends COMPLETED, FAILED or CANCELED after its duration. A pipeline whose last update failed is
IDLE (and UNHEALTHY) until its next update starts, as real pipelines are.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

PIPELINE_WORDS = ("orders", "clickstream", "inventory", "customers", "payments", "sensors")
# An update's states while it runs, by the share of its duration spent (UpdateInfoState).
RUNNING_STATES = (
    (0.05, "CREATED"),
    (0.15, "WAITING_FOR_RESOURCES"),
    (0.25, "INITIALIZING"),
    (0.35, "SETTING_UP_TABLES"),
    (1.0, "RUNNING"),
)
TERMINAL = ("COMPLETED", "FAILED", "CANCELED")
LATEST = 3  # latest_updates of a pipelines listing: the newest few
ERRORS = (
    "Update failed: table 'sales.orders_clean' violates expectation valid_amount (42 rows).",
    "Update failed: [CANNOT_RESOLVE_DATAFLOW_REFERENCE] Failed to read dataset 'bronze_events'.",
    "Update failed: the cluster could not be created (QUOTA_EXCEEDED in westeurope).",
)


def _mix(*values: int) -> int:
    digest = hashlib.blake2b(repr(values).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _unit(*values: int) -> float:
    return _mix(*values) / 2**64


def iso(ms: int) -> str:
    """What the Pipelines API writes a time as (UpdateStateInfo.creation_time, events)."""
    return (
        datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    )


@dataclass(frozen=True)
class SimUpdate:
    pipeline: int
    k: int
    created_ms: int
    duration_ms: int
    outcome: str  # COMPLETED, FAILED or CANCELED

    @property
    def end_ms(self) -> int:
        return self.created_ms + self.duration_ms

    @property
    def update_id(self) -> str:
        h = f"{_mix(self.pipeline, self.k, 11):016x}{_mix(self.pipeline, self.k, 12):016x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    def state(self, now: int) -> str:
        if now >= self.end_ms:
            return self.outcome
        share = (now - self.created_ms) / max(self.duration_ms, 1)
        return next(state for limit, state in RUNNING_STATES if share < limit)


class SimPipelines:
    """``count`` pipelines from ``origin_ms``; thread-safe for reads."""

    def __init__(
        self,
        count: int,
        origin_ms: int,
        seed: int,
        period_seconds: tuple[float, float] = (600.0, 1800.0),
        fail_rate: float = 0.2,
    ) -> None:
        self.count = count
        self.origin_ms = origin_ms
        self.seed = seed
        self.periods = [
            int(
                1000
                * (period_seconds[0] + (period_seconds[1] - period_seconds[0]) * _unit(seed, p))
            )
            for p in range(count)
        ]
        self.fail_rate = fail_rate

    def pipeline_id(self, p: int) -> str:
        h = f"{_mix(self.seed, p, 1):016x}{_mix(self.seed, p, 2):016x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    def name(self, p: int) -> str:
        return f"{PIPELINE_WORDS[p % len(PIPELINE_WORDS)]}_pipeline_{p}"

    def index(self, pipeline_id: str) -> int | None:
        return next((p for p in range(self.count) if self.pipeline_id(p) == pipeline_id), None)

    def update(self, p: int, k: int) -> SimUpdate:
        period = self.periods[p]
        created = self.origin_ms + k * period + int(period * 0.1 * _unit(self.seed, p, k, 3))
        duration = int(period * (0.2 + 0.5 * _unit(self.seed, p, k, 4)))
        roll = _unit(self.seed, p, k, 5)
        if roll < self.fail_rate:
            outcome = "FAILED"
        elif roll < self.fail_rate + 0.05:
            outcome = "CANCELED"
        else:
            outcome = "COMPLETED"
        return SimUpdate(p, k, created, duration, outcome)

    def updates_desc(self, p: int, now: int) -> list[SimUpdate]:
        """Every update created by ``now``, newest first."""
        last = (now - self.origin_ms) // self.periods[p] + 1
        updates = [self.update(p, k) for k in range(max(last, 0), -1, -1)]
        return [u for u in updates if u.created_ms <= now]

    def pipeline_json(self, p: int, now: int) -> dict[str, Any]:
        updates = self.updates_desc(p, now)
        active = bool(updates) and updates[0].end_ms > now
        last_terminal = next((u for u in updates if u.end_ms <= now), None)
        failed = last_terminal is not None and last_terminal.outcome == "FAILED"
        return {
            "pipeline_id": self.pipeline_id(p),
            "name": self.name(p),
            "state": "RUNNING" if active else "IDLE",  # IDLE even when the last update failed
            "health": "UNHEALTHY" if failed else "HEALTHY",
            "creator_user_name": "etl@example.com",
            "run_as_user_name": "etl@example.com",
            "latest_updates": [
                {
                    "update_id": u.update_id,
                    "state": u.state(now),
                    "creation_time": iso(u.created_ms),
                }
                for u in updates[:LATEST]
            ],
        }

    def update_json(self, u: SimUpdate, now: int) -> dict[str, Any]:
        return {
            "pipeline_id": self.pipeline_id(u.pipeline),
            "update_id": u.update_id,
            "state": u.state(now),
            "creation_time": u.created_ms,
            "cause": "JOB_TASK" if u.k % 2 else "API_CALL",
            "full_refresh": False,
        }

    def error_event(self, u: SimUpdate) -> dict[str, Any]:
        message = ERRORS[_mix(self.seed, u.pipeline, u.k, 6) % len(ERRORS)]
        return {
            "id": f"{u.update_id[:8]}-event",
            "event_type": "update_progress",
            "level": "ERROR",
            "timestamp": iso(u.end_ms),
            "message": "Update " + u.update_id[:6] + " is FAILED.",
            "origin": {
                "pipeline_id": self.pipeline_id(u.pipeline),
                "pipeline_name": self.name(u.pipeline),
                "update_id": u.update_id,
            },
            "error": {
                "fatal": True,
                "exceptions": [
                    {"class_name": "org.apache.spark.SparkException", "message": message}
                ],
            },
        }

    def error_message(self, u: SimUpdate) -> str:
        return self.error_event(u)["error"]["exceptions"][0]["message"]

    # --- ground truth --------------------------------------------------------------------

    def truth(self, after_ms: int, until_ms: int) -> Counter[tuple[str, str]]:
        """Updates that ended in (after_ms, until_ms], by (pipeline_id, outcome)."""
        out: Counter[tuple[str, str]] = Counter()
        for p in range(self.count):
            for u in self.updates_desc(p, until_ms):
                if after_ms < u.end_ms <= until_ms:
                    out[(self.pipeline_id(p), u.outcome)] += 1
        return out

    def durations(self, after_ms: int, until_ms: int) -> list[float]:
        return sorted(
            u.duration_ms / 1000
            for p in range(self.count)
            for u in self.updates_desc(p, until_ms)
            if after_ms < u.end_ms <= until_ms
        )


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode()


def _offset(token: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return int(text[1:]) if text.startswith("o") and text[1:].isdigit() else None


def page(
    items: list[Any], params: dict[str, str], default: int, most: int, prev: bool = True
) -> dict[str, Any]:
    """One page of ``items`` as the Pipelines API pages: max_results, page_token, and a
    next_page_token (no has_more) while more follow. Raises ValueError for bad parameters."""
    raw = params.get("max_results")
    limit = default if raw in (None, "") else int(raw)  # ValueError: not a number
    if not 1 <= limit <= most:
        raise ValueError(f"max_results must be between 1 and {most}")
    start = 0
    if params.get("page_token"):
        found = _offset(params["page_token"])
        if found is None:
            raise ValueError("invalid page token")
        start = found
    body: dict[str, Any] = {"items": items[start : start + limit]}
    if start + limit < len(items):
        body["next_page_token"] = _token(start + limit)
    if prev and start > 0:  # ListPipelinesResponse has no prev_page_token
        body["prev_page_token"] = _token(max(start - limit, 0))
    return body
