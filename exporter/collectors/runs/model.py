"""Job runs as the Jobs API gives them: parsed, checked, made plain values (``Run``).

Counting rules (README, "Counting rules"): a run is counted exactly once, when first seen
terminal, if its end time is after the baseline. Runs that ended before the baseline only fill
the last-run facts. A repair keeps the run_id: it is counted in repairs_total, never as a second
run, and moves the last-run facts to the repaired outcome. One-time runs (runs/submit) are
counted by their normalised run name, never by their ephemeral job_id.

The ledger is plain data; the collector feeds it parsed runs after a successful fetch, so a
failed collection changes nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.collectors.runs.phases import TaskPhases, run_phases
from exporter.ids import normalise_run_id
from exporter.outcomes import (
    ACTIVE_LIFE_CYCLES,
    CONTINUOUS_TRIGGERS,
    ONE_TIME_RUN_TYPES,
    QUEUED_LIFE_CYCLES,
    TERMINAL_LIFE_CYCLES,
    is_failure,
    life_cycle_of,
    result_state_of,
)
from exporter.text import valid_text

log = logging.getLogger(__name__)

OTHER_JOB = "__other__"  # where jobs (and one-time run names) beyond their cap are folded
# Batch jobs: half a minute to a day.
RUN_DURATION_BUCKETS = (
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    43200.0,
    86400.0,
)
# end - start - queue beyond the run's own durations: it waited (for a repair). Erring low costs
# one runs/get of a run that was active at startup, no more.
PAUSE_MS = 1_000

JobKey = tuple[str, str]  # (job_id, job_name)
OneTimeKey = tuple[str, str]  # (run_name, run_type)


@dataclass(frozen=True)
class TaskResult:
    task_key: str
    result_state: str


@dataclass(frozen=True)
class Attempt:
    """One item of a run's repair_history: the original attempt or a repair."""

    end_ms: int
    result_state: str


@dataclass(frozen=True)
class Run:
    """The fields of a Jobs API run that the exporter uses, normalised."""

    run_id: int | str
    job_id: str
    job_name: str
    life_cycle_state: str
    result_state: str
    start_ms: int
    end_ms: int
    duration_seconds: float
    run_page_url: str
    tasks: tuple[TaskResult, ...] = ()
    run_type: str = "JOB_RUN"
    trigger: str = ""
    queue_ms: int = 0  # time spent queued, not running
    end_reported: bool = True  # end_ms came from the API (not inferred)
    more_tasks: bool = False  # the listing cut the tasks at 100 (has_more)
    original: Attempt | None = None  # from repair_history (runs/get include_history)
    repairs: tuple[Attempt, ...] = ()
    reopened: bool = False  # counted before and active again: being repaired
    inherited: bool = False  # already active when a fresh ledger started: maybe a repair
    paused: bool = False  # its times show a pause (or cannot show one): perhaps repaired
    # Seen active, never counted, started inside a listing still to be read (or read while it
    # ran): its original attempt, if it ended before this watermark, was not counted either.
    uncounted_since: int = 0
    # Each task's phases and compute (exporter.collectors.runs.phases); observed when counted.
    phases: tuple[TaskPhases, ...] = ()

    @property
    def terminal(self) -> bool:
        return is_terminal(self.life_cycle_state, self.end_ms)

    @property
    def failed(self) -> bool:
        return is_failure(self.result_state)

    @property
    def one_time(self) -> bool:
        """A runs/submit or dbutils.notebook.run run: its job_id exists for this run only."""
        return self.run_type in ONE_TIME_RUN_TYPES

    @property
    def continuous(self) -> bool:
        return self.trigger in CONTINUOUS_TRIGGERS

    @property
    def queued(self) -> bool:
        return self.life_cycle_state in QUEUED_LIFE_CYCLES

    @property
    def running_since_ms(self) -> int:
        """When the run left the queue (its start time counts from submission)."""
        return self.start_ms + self.queue_ms if self.start_ms > 0 else 0

    @property
    def job(self) -> JobKey:
        return (self.job_id, self.job_name)

    @property
    def one_time_key(self) -> OneTimeKey:
        return (self.job_name, self.run_type)


def is_terminal(life_cycle: str, end_ms: int) -> bool:
    """Whether a run in ``life_cycle`` that ended at ``end_ms`` (0: not reported) is over."""
    if life_cycle in TERMINAL_LIFE_CYCLES:
        return True
    # An unknown life-cycle state with an end time is over, whatever the API calls it.
    return life_cycle not in ACTIVE_LIFE_CYCLES and end_ms > 0


class BadRun(ValueError):
    """A run object that cannot be trusted; ``reason`` is the label of runs_skipped_total."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


NUMBER_FIELDS = (
    "start_time",
    "end_time",
    "queue_duration",
    "run_duration",
    "setup_duration",
    "execution_duration",
    "cleanup_duration",
)
ARRAY_FIELDS = ("tasks", "job_clusters", "repair_history")
FUTURE_SLACK_MS = 86_400_000  # a day of clock skew; later than that is not a real time


def _check_numbers(raw: Mapping[str, Any], observed_ms: int) -> None:
    for key in NUMBER_FIELDS:
        value = raw.get(key)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            number = value
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise BadRun("non_finite", f"{key} is {value}")
            number = int(value)
        elif isinstance(value, str) and value.strip().isdigit():
            number = int(value)
        else:
            raise BadRun("wrong_type", f"{key} is {type(value).__name__}")
        if number is not None and number < 0:
            raise BadRun("impossible_time", f"{key} is negative")
        if key in ("start_time", "end_time") and number and number > observed_ms + FUTURE_SLACK_MS:
            raise BadRun("impossible_time", f"{key} is in the future")
        if key not in ("start_time", "end_time") and number and number > FUTURE_SLACK_MS * 366:
            raise BadRun("impossible_time", f"{key} is longer than a year")


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _str(value: Any) -> str:
    return valid_text(value)


def _reported_duration_ms(raw: Mapping[str, Any]) -> int:
    """The run's own duration as the API reports it (0 when it does not)."""
    total = _int(raw.get("run_duration"))
    if total <= 0:
        total = sum(
            _int(raw.get(k)) for k in ("setup_duration", "execution_duration", "cleanup_duration")
        )
    return total


def run_duration_seconds(
    raw: Mapping[str, Any], start_ms: int, end_ms: int, queue_ms: int = 0
) -> float:
    """run_duration, else setup+execution+cleanup, else end-start-queue (all ms in the API)."""
    total = _reported_duration_ms(raw)
    if total <= 0 and end_ms > 0 and start_ms > 0:
        total = end_ms - start_ms - queue_ms
    return max(total, 0) / 1000.0


def _history(raw: Mapping[str, Any]) -> tuple[Attempt | None, tuple[Attempt, ...]]:
    """The original attempt and the repairs, when runs/get was asked for the history."""
    original, repairs = None, []
    for item in raw.get("repair_history") or ():
        if not isinstance(item, dict):
            continue
        attempt = Attempt(_int(item.get("end_time")), result_state_of(item))
        if _str(item.get("type")).upper() == "REPAIR":
            repairs.append(attempt)
        elif original is None:
            original = attempt
    return original, tuple(repairs)


def parse_run(raw: Mapping[str, Any], observed_ms: int) -> Run | None:
    """A Run from an API object, or None when it has no run_id (it cannot be deduplicated).

    Raises BadRun for a run that cannot be trusted (an id of the wrong type, times that are not
    numbers, not finite, negative or far in the future): the caller skips and counts it.
    """
    if raw.get("run_id") is None:
        return None
    run_id = normalise_run_id(raw.get("run_id"))
    if run_id is None:
        raise BadRun("bad_run_id", f"run_id is {type(raw.get('run_id')).__name__}")
    _check_numbers(raw, observed_ms)
    for key in ARRAY_FIELDS:
        if raw.get(key) is not None and not isinstance(raw.get(key), list):
            raise BadRun("wrong_type", f"{key} is {type(raw.get(key)).__name__}")
    life_cycle = life_cycle_of(raw)
    start_ms = _int(raw.get("start_time"))
    end_ms = _int(raw.get("end_time"))
    queue_ms = max(_int(raw.get("queue_duration")), 0)
    original, repairs = _history(raw)
    end_ms = max([end_ms, *(a.end_ms for a in repairs)])
    end_reported = end_ms > 0
    duration = run_duration_seconds(raw, start_ms, end_ms, queue_ms)
    if end_ms <= 0 and life_cycle in TERMINAL_LIFE_CYCLES:
        # The API sometimes reports a finished run with end_time 0: use what we know.
        end_ms = start_ms + int(duration * 1000) if duration > 0 and start_ms > 0 else observed_ms
    # A repaired run's end_time is its last repair's; its durations leave out the wait between.
    reported_ms = _reported_duration_ms(raw)
    paused = reported_ms <= 0 or end_ms - start_ms - queue_ms - reported_ms > PAUSE_MS
    tasks = tuple(
        TaskResult(_str(t.get("task_key")), result_state_of(t))
        for t in (raw.get("tasks") or [])
        if isinstance(t, dict)
    )
    return Run(
        run_id=run_id,
        job_id=_str(raw.get("job_id")),
        job_name=_str(raw.get("run_name")),
        life_cycle_state=life_cycle,
        result_state=result_state_of(raw, life_cycle),
        start_ms=start_ms,
        end_ms=end_ms,
        duration_seconds=duration,
        run_page_url=_str(raw.get("run_page_url")),
        tasks=tasks,
        run_type=_str(raw.get("run_type")).upper() or "JOB_RUN",
        trigger=_str(raw.get("trigger")).upper(),
        queue_ms=queue_ms,
        end_reported=end_reported,
        more_tasks=raw.get("has_more") is True,
        original=original,
        repairs=repairs,
        paused=paused,
        # Observed when counted, so only a terminal run's.
        phases=run_phases(raw, queue_ms) if is_terminal(life_cycle, end_ms) else (),
    )
