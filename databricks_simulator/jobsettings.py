"""What each simulated job's settings say (JobSettings of jobs/list): its trigger (a Quartz cron
schedule with its timezone_id, some paused; a periodic, file-arrival or table-update trigger;
continuous), a RUN_DURATION_SECONDS health rule between its shortest and longest run (so some
runs pass it), a timeout, tags; some jobs have none of these. Each is a pure function of the
config's seed and the job, and ``Promise`` is the ground truth the exporter must report.

Idle jobs (``SimConfig.idle_jobs``) are listed with a schedule and never run (every other one's
schedule is paused): they are not among the workspace's ``jobs`` (so runs are untouched), only
in jobs/list.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from databricks_simulator.world import JOB_WORDS, SimJob, _unit

if TYPE_CHECKING:
    from databricks_simulator.world import SimConfig, SimWorkspace

IDLE_JOB_BASE = 900_000  # idle jobs' ids: far from the others' (1000 + 7 x index)
# Quartz expressions, their timezones and the longest gap between fire times (seconds). The
# zones keep no daylight saving time, so the gap does not move with the date.
SCHEDULES: tuple[tuple[str, str, float | None], ...] = (
    ("0 0 * * * ?", "UTC", 3600.0),  # hourly
    ("0 0/15 * * * ?", "UTC", 900.0),  # every 15 minutes
    ("0 30 2 * * ?", "Asia/Kolkata", 86_400.0),  # daily at 02:30
    ("0 0 6 ? * MON-FRI", "Asia/Tokyo", 3 * 86_400.0),  # weekdays: Friday to Monday
    ("0 0 9 ? * 2", "UTC", 7 * 86_400.0),  # Mondays (Quartz: 1=SUN)
    ("0 15 */4 * * ?", "Asia/Singapore", 4 * 3600.0),  # every 4 hours
    ("0 0 12 15W * ?", "UTC", None),  # the weekday nearest the 15th: no translation
)
PERIODS = ((1, "HOURS", 3600.0), (6, "HOURS", 6 * 3600.0), (1, "DAYS", 86_400.0))
TEAMS = ("data-platform", "finance-bi", "ml", "growth")
TIERS = ("gold", "silver", "bronze")


@dataclass(frozen=True)
class Promise:
    """What a job's settings promise, as the exporter must report it."""

    trigger: str  # cron, periodic, file_arrival, table_update, continuous, manual
    paused: bool | None = None  # None: nothing to pause
    interval_seconds: float | None = None
    threshold_seconds: float | None = None
    timeout_seconds: float | None = None
    tags: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # the JobSettings JSON


def _trigger(seed: int, job: SimJob, idle: bool) -> tuple[Promise, dict[str, Any]]:
    u = _unit(seed, job.index, 40)
    paused = _unit(seed, job.index, 41) < 0.25 and not idle
    if idle:  # every other idle job's schedule is paused: quiet, and must never alert for it
        paused = (job.job_id - IDLE_JOB_BASE) % 2 == 1
    status = {"pause_status": "PAUSED" if paused else "UNPAUSED"}
    if job.kind == "continuous":
        return Promise("continuous", False), {"continuous": {"pause_status": "UNPAUSED"}}
    if idle or u < 0.45:
        expression, zone, gap = SCHEDULES[int(_unit(seed, job.index, 42) * len(SCHEDULES))]
        if idle:
            expression, zone, gap = SCHEDULES[job.index % 6]
        schedule: dict[str, Any] = {"quartz_cron_expression": expression, "timezone_id": zone}
        if _unit(seed, job.index, 43) < 0.8 or paused:  # pause_status left out: UNPAUSED
            schedule.update(status)
        return Promise("cron", paused, gap), {"schedule": schedule}
    if u < 0.65:
        n, unit, period = PERIODS[int(_unit(seed, job.index, 44) * len(PERIODS))]
        trigger = {"periodic": {"interval": n, "unit": unit}, **status}
        return Promise("periodic", paused, period), {"trigger": trigger}
    if u < 0.72:
        url = f"abfss://landing@contoso.dfs.core.windows.net/{job.name}/"
        return Promise("file_arrival", paused), {
            "trigger": {"file_arrival": {"url": url}, **status}
        }
    if u < 0.78:
        tables = [f"main.sales.{JOB_WORDS[job.index % len(JOB_WORDS)]}"]
        return Promise("table_update", paused), {
            "trigger": {"table_update": {"table_names": tables}, **status}
        }
    return Promise("manual"), {}


@functools.lru_cache(maxsize=1 << 16)
def promise(config: SimConfig, job: SimJob, idle: bool = False) -> Promise:
    """The settings of one job and what they promise (the same object each time: every
    jobs/list page of a 5,000-job workspace looks them all up)."""
    seed = config.seed
    base, settings = _trigger(seed, job, idle)
    lo, hi = job.min_ms // 1000, job.max_ms // 1000
    threshold = timeout = None
    if _unit(seed, job.index, 45) < 0.6 and job.kind != "continuous":
        # Between the job's shortest and longest run: some of its runs pass it.
        threshold = float(max(1, int(lo + (hi - lo) * (0.3 + 0.4 * _unit(seed, job.index, 46)))))
        rule = {"metric": "RUN_DURATION_SECONDS", "op": "GREATER_THAN", "value": int(threshold)}
        settings["health"] = {"rules": [rule]}
    if _unit(seed, job.index, 47) < 0.5:
        timeout = float(max(60, hi * 3))
    settings["timeout_seconds"] = int(timeout or 0)  # 0: no timeout, as the API says it
    tags: dict[str, str] = {}
    u = _unit(seed, job.index, 48)
    if u < 0.7:
        tags["team"] = TEAMS[job.index % len(TEAMS)]
        if u < 0.5:
            tags["tier"] = TIERS[job.index % len(TIERS)]
            tags["cost_center"] = f"cc-{1000 + job.index % 17}"
        settings["tags"] = dict(tags)
    settings = {
        "name": job.name,
        **settings,
        "max_concurrent_runs": 1,
        "format": "MULTI_TASK",
    }
    return Promise(
        base.trigger,
        base.paused,
        base.interval_seconds,
        threshold,
        timeout,
        tags,
        settings,
    )


def idle_job(config: SimConfig, i: int) -> SimJob:
    """The i-th idle job: listed with a live schedule, never run."""
    index = config.jobs + i
    word = JOB_WORDS[i % len(JOB_WORDS)]
    return SimJob(
        index=index,
        job_id=IDLE_JOB_BASE + i,
        name=f"{word}_idle_{i}",
        period_ms=3_600_000,
        offset_ms=0,
        min_ms=60_000,
        max_ms=600_000,
        tasks=("main",),
        kind="idle",
    )


def listed_jobs(model: SimWorkspace) -> list[tuple[SimJob, Promise]]:
    """Every job jobs/list shows (not deleted, not one-time), idle ones last, with its promise."""
    config = model.config
    jobs = [
        (job, promise(config, job))
        for job in model.jobs
        if job.kind in ("job", "continuous") and job.index not in model.deleted_jobs
    ]
    idle = [idle_job(config, i) for i in range(config.idle_jobs)]
    return jobs + [(job, promise(config, job, idle=True)) for job in idle]
