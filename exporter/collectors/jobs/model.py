"""A job's settings as GET /api/2.2/jobs/list gives them (BaseJob, JobSettings), read for what
the job promises: how it is triggered, whether that is paused, its schedule's period, its run
duration threshold and timeout, its tags. Hostile input is skipped or ignored, never trusted:
a job without a usable job_id is skipped (BadJob), a setting of the wrong type or out of
bounds is as if absent."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.ids import normalise_run_id
from exporter.text import valid_text

# Which of a job's settings triggers it, in the order they are looked for; "manual": none,
# "unknown": a trigger of a kind this exporter does not know.
TRIGGERS = (
    "continuous",
    "cron",
    "periodic",
    "file_arrival",
    "table_update",
    "job_completion",
    "model",
    "manual",
    "unknown",
)
# trigger.<key> -> the trigger label (``table`` is table_update's older name).
_TRIGGER_KEYS = (
    ("periodic", "periodic"),
    ("file_arrival", "file_arrival"),
    ("table_update", "table_update"),
    ("table", "table_update"),
    ("job_completion", "job_completion"),
    ("model", "model"),
)
PAUSE_STATUSES = frozenset({"PAUSED", "UNPAUSED"})
PERIOD_UNITS = {"MINUTES": 60, "HOURS": 3600, "DAYS": 86_400, "WEEKS": 604_800}
MAX_SECONDS = 366 * 86_400 * 10  # ten years: a longer threshold, timeout or period is not one
MAX_TIME_MS = 253402300799_000  # 9999-12-31: a later created_time is not a time
MAX_NAME = 200  # characters of a job name kept as a label value
MAX_TAG_VALUE = 256  # characters of a tag value (Databricks' own limit)
MAX_ZONE = 64  # characters of a timezone_id


_LABEL_RE = re.compile(r"[^a-zA-Z0-9_]")


def tag_label(key: str) -> str:
    """The label a tag key of job_tags is shown as: ``tag_`` and the key with every character
    outside [a-zA-Z0-9_] made ``_`` (kube-state-metrics' --metric-labels-allowlist)."""
    return "tag_" + _LABEL_RE.sub("_", key)


class BadJob(ValueError):
    """A job object that cannot be trusted (no usable job_id); it is skipped."""


@dataclass(frozen=True)
class Cron:
    expression: str
    timezone_id: str


@dataclass(frozen=True)
class Job:
    job_id: str
    name: str
    trigger: str  # one of TRIGGERS
    paused: bool | None  # None: nothing to pause (manual) or a pause status not understood
    cron: Cron | None  # the schedule, for trigger "cron"
    period_seconds: float | None  # a periodic trigger's interval x unit
    duration_threshold_seconds: float | None  # health rule RUN_DURATION_SECONDS GREATER_THAN
    timeout_seconds: float | None  # > 0 only
    created_seconds: float | None
    tags: tuple[tuple[str, str], ...]  # (key, value), sorted, both text


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, dict) else None


def _seconds(value: Any, maximum: float = MAX_SECONDS) -> float | None:
    """A whole, positive, bounded number of seconds; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value != int(value) or not 0 < value <= maximum:
        return None
    return float(value)


def _paused(section: Mapping[str, Any]) -> bool | None:
    """A schedule's, trigger's or continuous' pause_status: missing is UNPAUSED (the API's
    default); a value that is neither is not understood (None)."""
    status = section.get("pause_status", "UNPAUSED")
    if status is None:
        status = "UNPAUSED"
    if not isinstance(status, str) or status.upper() not in PAUSE_STATUSES:
        return None
    return status.upper() == "PAUSED"


def _cron(schedule: Mapping[str, Any]) -> Cron | None:
    expression = schedule.get("quartz_cron_expression")
    zone = schedule.get("timezone_id", "UTC")
    if not isinstance(expression, str) or not expression.strip() or len(expression) > 200:
        return None
    if not isinstance(zone, str) or not zone.strip() or len(zone) > MAX_ZONE:
        return None
    return Cron(" ".join(expression.split()), zone.strip())


def _period(periodic: Mapping[str, Any]) -> float | None:
    unit = periodic.get("unit")
    interval = _seconds(periodic.get("interval"), MAX_SECONDS)
    if not isinstance(unit, str) or unit not in PERIOD_UNITS or interval is None:
        return None
    period = interval * PERIOD_UNITS[unit]
    return period if period <= MAX_SECONDS else None


def _threshold(settings: Mapping[str, Any]) -> float | None:
    """The strictest RUN_DURATION_SECONDS GREATER_THAN rule of the job's health rules."""
    health = _mapping(settings.get("health"))
    rules = health.get("rules") if health is not None else None
    values = []
    for rule in rules if isinstance(rules, list) else []:
        if (
            isinstance(rule, dict)
            and rule.get("metric") == "RUN_DURATION_SECONDS"
            and rule.get("op") == "GREATER_THAN"
        ):
            value = _seconds(rule.get("value"))
            if value is not None:
                values.append(value)
    return min(values) if values else None


def _tags(settings: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """String tags only; a tag whose key or value is not text is ignored."""
    tags = _mapping(settings.get("tags"))
    kept = []
    for key, value in (tags or {}).items():
        if isinstance(key, str) and isinstance(value, str) and len(key) <= 127:
            kept.append((valid_text(key), valid_text(value)[:MAX_TAG_VALUE]))
    return tuple(sorted(kept))


def _trigger(settings: Mapping[str, Any]) -> tuple[str, bool | None, Cron | None, float | None]:
    """(trigger label, paused, cron, period) of a job's settings."""
    continuous = _mapping(settings.get("continuous"))
    if continuous is not None:
        return "continuous", _paused(continuous), None, None
    schedule = _mapping(settings.get("schedule"))
    if schedule is not None:
        return "cron", _paused(schedule), _cron(schedule), None
    trigger = _mapping(settings.get("trigger"))
    if trigger is not None:
        for key, label in _TRIGGER_KEYS:
            section = _mapping(trigger.get(key))
            if section is not None:
                period = _period(section) if label == "periodic" else None
                return label, _paused(trigger), None, period
        return "unknown", _paused(trigger), None, None
    if any(settings.get(key) is not None for key in ("continuous", "schedule", "trigger")):
        return "unknown", None, None, None  # one of them, of the wrong type
    return "manual", None, None, None


def parse_job(raw: Mapping[str, Any]) -> Job:
    """A Job from a BaseJob object; BadJob without a usable job_id."""
    job_id = normalise_run_id(raw.get("job_id"))
    if job_id is None or isinstance(job_id, str):  # job ids are numbers
        raise BadJob(f"job_id is not an id: {str(raw.get('job_id'))[:40]!r}")
    if not 0 < job_id < 1 << 63:
        raise BadJob(f"job_id is not an id: {job_id}")
    settings = _mapping(raw.get("settings")) or {}
    name = settings.get("name")
    trigger, paused, cron, period = _trigger(settings)
    created = _seconds(raw.get("created_time"), MAX_TIME_MS)
    return Job(
        job_id=str(job_id),
        name=valid_text(name)[:MAX_NAME] if isinstance(name, str) else "",
        trigger=trigger,
        paused=paused,
        cron=cron,
        period_seconds=period,
        duration_threshold_seconds=_threshold(settings),
        timeout_seconds=_seconds(settings.get("timeout_seconds")),
        created_seconds=created / 1000.0 if created is not None else None,
        tags=_tags(settings),
    )
