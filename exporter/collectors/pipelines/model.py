"""Lakeflow (Delta Live Tables) pipelines and their updates as the Pipelines API 2.0 gives
them (PipelineStateInfo, UpdateStateInfo, UpdateInfo): parsed and checked."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.text import valid_text

# UpdateInfoState: the three an update ends in, and those of an update still on its way.
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELED"})
ACTIVE = frozenset(
    {
        "CREATED",
        "QUEUED",
        "WAITING_FOR_RESOURCES",
        "INITIALIZING",
        "RESETTING",
        "SETTING_UP_TABLES",
        "RUNNING",
        "STOPPING",
    }
)
MAX_ID = 64  # characters of an id; a longer one is not an id
MAX_TIME_MS = 253402300799_000  # 9999-12-31: a later creation_time is not a time


class BadObject(ValueError):
    """A pipeline or update object that cannot be trusted; it is skipped, the rest kept."""


@dataclass(frozen=True)
class LatestUpdate:
    """One item of a listing's latest_updates (newest first)."""

    update_id: str
    state: str


@dataclass(frozen=True)
class Pipeline:
    pipeline_id: str
    name: str
    state: str  # PipelineState: IDLE, RUNNING, FAILED, ... (as Databricks words it)
    health: str  # HEALTHY, UNHEALTHY, or "" when not given
    latest: tuple[LatestUpdate, ...]


@dataclass(frozen=True)
class Update:
    update_id: str
    state: str
    created_ms: int

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def _id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID:
        raise BadObject(f"{what} is not an id: {str(value)[:40]!r}")
    return valid_text(value.strip())


def _state(value: Any) -> str:
    return valid_text(value).strip().upper()[:40] if isinstance(value, str) else ""


def parse_pipeline(raw: Mapping[str, Any]) -> Pipeline:
    """A Pipeline from a PipelineStateInfo object; BadObject without a usable pipeline_id."""
    latest = []
    items = raw.get("latest_updates")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("update_id"), str):
            latest.append(LatestUpdate(valid_text(item["update_id"]), _state(item.get("state"))))
    return Pipeline(
        pipeline_id=_id(raw.get("pipeline_id"), "pipeline_id"),
        name=valid_text(raw.get("name") or "")[:200],
        state=_state(raw.get("state")) or "UNKNOWN",
        health=_state(raw.get("health")),
        latest=tuple(latest),
    )


def parse_update(raw: Mapping[str, Any]) -> Update:
    """An Update from an UpdateInfo object; BadObject without an id or a creation time."""
    created = raw.get("creation_time")
    if isinstance(created, bool) or not isinstance(created, int | float):
        raise BadObject(f"creation_time is not a time: {str(created)[:40]!r}")
    if not math.isfinite(created) or not 0 < created <= MAX_TIME_MS:
        raise BadObject(f"creation_time is not a time: {str(created)[:40]!r}")
    return Update(
        update_id=_id(raw.get("update_id"), "update_id"),
        state=_state(raw.get("state")) or "UNKNOWN",
        created_ms=int(created),
    )


def error_of(event: Mapping[str, Any]) -> str:
    """What an ERROR event of the pipeline's event log says: its exception's message, else
    its own message."""
    error = event.get("error")
    exceptions = error.get("exceptions") if isinstance(error, dict) else None
    if isinstance(exceptions, list):
        for item in exceptions:
            if isinstance(item, dict) and isinstance(item.get("message"), str) and item["message"]:
                return valid_text(item["message"])
    message = event.get("message")
    return valid_text(message) if isinstance(message, str) else ""
