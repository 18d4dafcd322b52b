"""The jobs collector against the simulator over loopback HTTP: every job's promise (trigger,
pause, schedule period, duration threshold, timeout, tags) as the simulator's truth says,
also for jobs that never ran; paging; a failed page keeps the snapshot; hostile input
skipped; Quartz schedules read with APScheduler; its own interval in the scheduler."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import pytest
from prometheus_client.core import Metric

from databricks_simulator import FaultRule, SimClock, SimConfig, SimServer, SimWorkspace
from databricks_simulator.jobsettings import listed_jobs
from exporter.auth import DatabricksAuth
from exporter.client import ApiError, DatabricksClient
from exporter.collectors import Context, registration
from exporter.collectors.jobs.collector import JobsCollector, JobsSnapshot
from exporter.collectors.jobs.families import job_families
from exporter.collectors.jobs.model import parse_job, tag_label
from exporter.collectors.jobs.quartz import Untranslatable, longest_gap, trigger
from exporter.config import Settings, WorkspaceConfig, load_settings
from exporter.health import WorkspaceHealth

CONFIG = SimConfig(seed=11, jobs=40, continuous_jobs=2, one_time_jobs=3, pools=1, idle_jobs=4)
DAY = 86_400.0


def _client(url: str, token: str) -> DatabricksClient:
    health = WorkspaceHealth()
    auth = DatabricksAuth(WorkspaceConfig(name="t", host=url, token=token), health)
    return DatabricksClient("t", url, auth, health, backoff_factor=0.01, max_retries=1)


def _world(config: SimConfig = CONFIG, server_class: type[SimServer] = SimServer) -> Any:
    clock = SimClock()
    clock.set(1_800_000_000.0)
    return server_class(SimWorkspace(config, clock))


@pytest.fixture
def world():
    with _world() as server:
        client = _client(server.url, server.token)
        yield server, client
        client.close()


def samples(snapshot: JobsSnapshot, name: str) -> dict[str, Any]:
    """{job_id: value} of one rendered family (info: {job_id: labels})."""
    family: Metric = next(f for f in job_families([("t", snapshot)]) if f.name == name)
    if name == "databricks_job_info":
        return {s.labels["job_id"]: s.labels for s in family.samples}
    return {s.labels.get("job_id", "-"): s.value for s in family.samples}


def test_every_job_s_promise_is_the_simulator_s_truth(world):
    server, client = world
    collector = JobsCollector(client, job_tags=("team", "cost_center"), clock=lambda: 1.8e9)
    truth = listed_jobs(server.model)
    assert collector.collect() == len(truth) == 37 + 4  # 40 jobs less 3 one-time, + 4 idle
    assert collector.snapshot is not None
    snap = collector.snapshot
    info = samples(snap, "databricks_job_info")
    threshold = samples(snap, "databricks_job_run_duration_threshold_seconds")
    timeout = samples(snap, "databricks_job_timeout_seconds")
    paused = samples(snap, "databricks_job_schedule_paused")
    interval = samples(snap, "databricks_job_schedule_interval_seconds")
    created = samples(snap, "databricks_job_created_timestamp_seconds")
    for job, promise in truth:
        key = str(job.job_id)
        assert info[key]["job_name"] == job.name
        assert info[key]["trigger"] == promise.trigger, job.name
        assert info[key]["tag_team"] == promise.tags.get("team", "")
        assert info[key]["tag_cost_center"] == promise.tags.get("cost_center", "")
        assert "tag_tier" not in info[key]  # not allowlisted: tags are user text
        assert threshold.get(key) == promise.threshold_seconds, job.name
        assert timeout.get(key) == promise.timeout_seconds, job.name
        expected = None if promise.paused is None else float(promise.paused)
        assert paused.get(key) == expected, job.name
        assert interval.get(key) == promise.interval_seconds, job.name
        assert created[key] == server.model.origin_ms / 1000
    # Every kind of promise is there, so the comparison above checks something.
    triggers = {p.trigger for _, p in truth}
    assert {"cron", "periodic", "continuous", "manual", "file_arrival"} <= triggers
    assert {p.paused for _, p in truth} == {True, False, None}
    assert len(threshold) > 5 and len(timeout) > 5 and len(interval) > 10
    assert any(p.trigger == "cron" and p.interval_seconds is None for _, p in truth)  # 15W
    assert samples(snap, "databricks_exporter_jobs_listed") == {"-": 41.0}


def test_jobs_that_never_ran_have_their_series(world):
    server, client = world
    collector = JobsCollector(client)
    collector.collect()
    assert collector.snapshot is not None
    idle = {str(j.job_id): p for j, p in listed_jobs(server.model) if j.kind == "idle"}
    assert len(idle) == 4
    assert {p.paused for p in idle.values()} == {True, False}  # quiet paused jobs too
    ran = {str(run.job_id) for run in server.model.runs_desc(0, server.model.clock.now_ms())}
    assert not set(idle) & ran
    info = samples(collector.snapshot, "databricks_job_info")
    paused = samples(collector.snapshot, "databricks_job_schedule_paused")
    interval = samples(collector.snapshot, "databricks_job_schedule_interval_seconds")
    for job_id, promise in idle.items():
        assert info[job_id]["trigger"] == "cron"
        assert paused[job_id] == float(promise.paused) and interval[job_id] > 0


def test_paging_past_100_jobs_and_max_jobs():
    with _world(SimConfig(seed=3, jobs=230, pools=1, idle_jobs=20)) as server:
        client = _client(server.url, server.token)
        collector = JobsCollector(client, max_jobs=200)
        assert collector.collect() == 250
        assert server.stats.requests["/api/2.2/jobs/list"] == 3  # 100 a page
        snap = collector.snapshot
        assert snap is not None and snap.listed == 250 and snap.folded == 50
        kept = [int(j.job_id) for j in snap.jobs]
        assert kept == sorted(kept) and len(kept) == 200  # the lowest ids: stable
        assert samples(snap, "databricks_exporter_jobs_listing_folded") == {"-": 50.0}
        client.close()


def test_max_series_bounds_the_jobs_collector_too():
    with _world(SimConfig(seed=3, jobs=230, pools=1)) as server:
        client = _client(server.url, server.token)
        ws = WorkspaceConfig(name="t", host=server.url, token=server.token)
        for max_series, most in ((700, 100), (250_000, 5000)):
            settings = Settings(workspaces=(ws,), max_series=max_series)
            collector = registration("jobs").factory(
                Context(client=client, config=ws, settings=settings, clock=server.model.clock.time)
            )
            assert isinstance(collector, JobsCollector) and collector.max_jobs == most
            collector.collect()
            snap = collector.snapshot
            assert snap is not None and snap.listed == 230 and len(snap.jobs) == min(most, 230)
        client.close()


def test_a_failing_page_keeps_the_last_snapshot(world):
    server, client = world
    collector = JobsCollector(client)
    collector.collect()
    before = collector.snapshot
    server.add_faults(FaultRule(path_prefix="/api/2.2/jobs/list", status=500, count=2))
    with pytest.raises(ApiError):
        collector.collect()
    assert collector.snapshot is before
    collector.collect()
    assert collector.snapshot == before


def test_a_failed_listing_is_recorded_by_the_workspace(world):
    from exporter.workspace import Workspace

    server, _ = world
    settings = Settings(
        workspaces=(WorkspaceConfig(name="t", host=server.url, token=server.token),),
        collectors=("jobs",),
        max_retries=0,
    )
    ws = Workspace(settings.workspaces[0], settings)
    try:
        assert ws.collect("jobs")
        server.add_faults(FaultRule(path_prefix="/api/2.2/jobs/list", status=403, count=1))
        assert not ws.collect("jobs")
        assert ws.collectors["jobs"].snapshot is not None
        assert ws.intervals == {"jobs": 600.0}
    finally:
        ws.close()


HOSTILE: list[Any] = [
    {"job_id": "not-a-number", "settings": {"name": "x"}},
    {"job_id": True},
    {"job_id": -3},
    {"job_id": 2**70},
    {"settings": {"name": "no id"}},
    "a string",
    {
        "job_id": 91,
        "created_time": 1e308,
        "settings": {
            "name": ["not", "text"],
            "timeout_seconds": "3600",
            "health": {
                "rules": [
                    {"metric": "RUN_DURATION_SECONDS", "op": "GREATER_THAN", "value": 1e300},
                    {"metric": "RUN_DURATION_SECONDS", "op": "LESS_THAN", "value": 5},
                    {"metric": "STREAMING_BACKLOG_BYTES", "op": "GREATER_THAN", "value": 9},
                    "not a rule",
                ]
            },
            "schedule": {"quartz_cron_expression": 42, "pause_status": "SLEEPING"},
            "tags": {"team": 7, "tier": None, "cost_center": "cc-1"},
        },
    },
    {
        "job_id": 92,
        "settings": {
            "name": "odd trigger",
            "trigger": {"teleport": {}, "pause_status": "PAUSED"},
            "timeout_seconds": float("inf"),
            "health": "healthy",
        },
    },
    {
        "job_id": 93,
        "settings": {
            "name": "bad periodic",
            "trigger": {"periodic": {"interval": 1e30, "unit": "HOURS"}},
        },
    },
    {
        "job_id": 94,
        "settings": {
            "name": "bad unit",
            "trigger": {"periodic": {"interval": 2, "unit": "FORTNIGHTS"}},
        },
    },
    {"job_id": 95, "settings": "not settings"},
    {"job_id": 96, "settings": {"name": "schedule of a list", "schedule": ["0 0 * * * ?"]}},
    {
        "job_id": 97,
        "settings": {
            "name": "W",
            "schedule": {"quartz_cron_expression": "0 0 12 15W * ?", "timezone_id": "UTC"},
        },
    },
    {
        "job_id": 98,
        "settings": {
            "name": "zone",
            "schedule": {"quartz_cron_expression": "0 0 12 * * ?", "timezone_id": "Mars/Olympus"},
        },
    },
]


class HostileServer(SimServer):
    """The simulator whose first jobs/list page also carries HOSTILE."""

    def _jobs_list(self, params: dict[str, str]) -> dict[str, Any]:
        body = super()._jobs_list(params)
        if not params.get("page_token"):
            body["jobs"] = [*HOSTILE, *body["jobs"]]
        return body


def test_hostile_jobs_are_skipped_or_their_bad_settings_ignored(caplog):
    caplog.set_level(logging.INFO, logger="exporter.collectors.jobs.collector")
    with _world(server_class=HostileServer) as server:
        client = _client(server.url, server.token)
        collector = JobsCollector(client, job_tags=("team", "cost_center"))
        real = len(listed_jobs(server.model))
        assert collector.collect() == real + 8  # 5 without a usable id, the string dropped
        collector.collect()  # a second time: the W is logged once
        snap = collector.snapshot
        assert snap is not None
        info = samples(snap, "databricks_job_info")
        assert info["91"]["job_name"] == "" and info["91"]["trigger"] == "cron"
        assert info["91"]["tag_team"] == "" and info["91"]["tag_cost_center"] == "cc-1"
        assert info["92"]["trigger"] == "unknown" and info["95"]["trigger"] == "manual"
        assert info["96"]["trigger"] == "unknown"
        for family in (
            "databricks_job_run_duration_threshold_seconds",
            "databricks_job_timeout_seconds",
            "databricks_job_schedule_interval_seconds",
            "databricks_job_created_timestamp_seconds",
        ):
            assert not {"91", "92", "93", "94", "97", "98"} & set(samples(snap, family)), family
        paused = samples(snap, "databricks_job_schedule_paused")
        assert "91" not in paused  # SLEEPING is no pause status
        assert paused["92"] == 1.0 and paused["93"] == 0.0
        untranslatable = [r for r in caplog.records if "has no interval" in r.getMessage()]
        assert len(untranslatable) == 2  # W and the unknown zone, each once
        client.close()


def test_the_tag_allowlist_is_a_bounded_list_of_sanitised_labels(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("job_tags: [team, cost-center, 'env.name']\njobs_interval: 5m\n")
    settings = load_settings(["--simulate", "--config", str(path)])
    assert settings.job_tags == ("team", "cost-center", "env.name")
    assert settings.jobs_interval == 300.0
    assert [tag_label(k) for k in settings.job_tags] == [
        "tag_team",
        "tag_cost_center",
        "tag_env_name",
    ]
    job = parse_job({"job_id": 5, "settings": {"tags": {"cost-center": "cc-9", "x": "y"}}})
    assert job.tags == (("cost-center", "cc-9"), ("x", "y"))


# Quartz expressions as Databricks' docs and UI write them, their timezone, and the longest
# gap between fire times from 2026-01-05 (a Monday) 00:00 UTC.
CRON_TABLE = [
    ("0 0 * * * ?", "UTC", 3600.0),  # every hour
    ("0 0/15 * * * ?", "UTC", 900.0),  # every 15 minutes
    ("0 */5 * * * ?", "UTC", 300.0),
    ("0 30 2 * * ?", "Europe/Amsterdam", DAY),  # daily (no DST change in the window)
    ("0 0 8 ? * MON-FRI", "America/New_York", 3 * DAY),  # weekdays: Friday to Monday
    ("0 0 8 ? * 2-6", "UTC", 3 * DAY),  # the same in numbers (1=SUN)
    ("0 0 9 ? * 1", "UTC", 7 * DAY),  # Sundays
    ("0 0 9 ? * SUN,SAT", "UTC", 6 * DAY),  # weekends: Sunday to Saturday
    ("0 0 9 ? * 1-7", "UTC", DAY),  # every day, in Quartz's numbers
    ("0 0 9 ? * SUN-SAT", "UTC", DAY),
    ("0 0 9 ? * FRI-MON", "UTC", 4 * DAY),  # over the week's end: Monday to Friday
    ("0 0 9 ? * MON/2", "UTC", 3 * DAY),  # Monday, Wednesday, Friday
    ("0 0 9 ? * mon-fri", "UTC", 3 * DAY),  # names in any case
    ("0 0 9 ? * L", "UTC", 7 * DAY),  # L alone in day of week: Saturday
    # Fewer than two fires within the 8 days: the gap to the first fire after them.
    ("0 15 10 ? * 6L", "UTC", 28 * DAY),  # the last Friday (Quartz 6=FRI): Jan 30, Feb 27
    ("0 15 10 ? * 2#1", "UTC", 28 * DAY),  # the first Monday: Jan 5 (10:15), Feb 2
    ("0 0 0 L * ?", "UTC", 28 * DAY),  # the last day of the month: Jan 31, Feb 28
    ("0 0 4 1 * ?", "UTC", 28 * DAY),  # the first of the month: Feb 1, Mar 1
    ("0 0 12 1 JAN-MAR ?", "UTC", 28 * DAY),
    ("0 0 12 1 OCT-DEC ?", "UTC", 31 * DAY),  # Oct 1, Nov 1
    ("0 0 12 1 1 ?", "UTC", 365 * DAY),  # yearly
    ("0 0 6 * * ? 2026", "UTC", DAY),  # with a year
    ("0 0 6 * * ? 2020", "UTC", None),  # a year gone: no fire at all
    ("1 2 3 * * ?", "Asia/Kolkata", DAY),
]


@pytest.mark.parametrize(("expression", "zone", "gap"), CRON_TABLE)
def test_quartz_schedules_are_read_with_apscheduler(expression: str, zone: str, gap: float | None):
    now = datetime(2026, 1, 5, tzinfo=timezone.utc)
    assert longest_gap(trigger(expression, zone), now) == gap


def test_a_daily_schedule_across_a_dst_change_has_its_longest_day():
    # Europe/Amsterdam falls back on 2026-10-25: that day lasts 25 hours.
    now = datetime(2026, 10, 20, tzinfo=timezone.utc)
    assert longest_gap(trigger("0 0 6 * * ?", "Europe/Amsterdam"), now) == DAY + 3600
    # And springs forward on 2026-03-29: every gap is at most a day.
    now = datetime(2026, 3, 25, tzinfo=timezone.utc)
    assert longest_gap(trigger("0 0 6 * * ?", "Europe/Amsterdam"), now) == DAY


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 12 15W * ?",  # the weekday nearest the 15th
        "0 0 12 LW * ?",
        "0 0 12 L-3 * ?",
        "0 0 12 * *",  # five fields: a Unix cron
        "0 0 12 ? * 8",
        "0 0 12 ? * 2#9",
        "0 0 12 ? * MON/9",
        "0 0 12 ? * 1-X",
        "0 0 12 5 * MON",  # both days
        "; rm -rf / ? * * *",
        "0 0 ? * * *",
    ],
)
def test_what_apscheduler_cannot_take_is_untranslatable(expression: str):
    with pytest.raises(Untranslatable):
        trigger(expression, "UTC")


def test_the_jobs_collector_runs_at_its_own_interval():
    from exporter.scheduling import schedule
    from exporter.workspace import Workspace

    settings = load_settings(["--simulate", "--interval", "30", "--jobs-interval", "900"], env={})
    ws = Workspace(settings.workspaces[0], settings)
    try:
        assert ws.intervals == {"runs": 30.0, "pools": 30.0, "pipelines": 30.0, "jobs": 900.0}
        scheduler = schedule([ws], settings.interval, renderer=None)  # type: ignore[arg-type]
        every = {
            j.id: j.trigger.interval.total_seconds()
            for j in scheduler.get_jobs()
            if j.id.count(":") == 1
        }
        assert every == {
            "simulated:runs": 30.0,
            "simulated:pools": 30.0,
            "simulated:pipelines": 30.0,
            "simulated:jobs": 900.0,
        }
        firsts = [j for j in scheduler.get_jobs() if j.id.endswith(":first")]
        assert len(firsts) == 4  # each collector's first collection at the start, as before
        assert registration("jobs").interval(settings) == 900.0
        assert registration("runs").interval(settings) == 30.0
    finally:
        ws.close()


class _Listing:
    """A client whose jobs/list answers what the test says (the shapes are the API's)."""

    workspace = "t"

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []

    def paginate(self, path: str, params: dict[str, Any], key: str) -> Any:
        return iter(self.jobs)


def _hourly(job_id: int, paused: bool | None) -> dict[str, Any]:
    settings: dict[str, Any] = {"name": f"job{job_id}"}
    if paused is not None:
        settings["schedule"] = {
            "quartz_cron_expression": "0 0 * * * ?",
            "timezone_id": "UTC",
            "pause_status": "PAUSED" if paused else "UNPAUSED",
        }
    return {"job_id": job_id, "created_time": 1_000_000, "settings": settings}


def test_live_since_follows_pauses_and_survives_a_restart_through_the_state_part():
    now = [2_000_000.0]
    listing = _Listing()
    collector = JobsCollector(listing, clock=lambda: now[0])  # type: ignore[arg-type]
    listing.jobs = [_hourly(1, False), _hourly(2, True), _hourly(3, None)]
    collector.collect()
    live = samples(collector.snapshot, "databricks_job_schedule_live_since_timestamp_seconds")
    assert live == {"1": 1_000.0}  # first seen live: since it was created; paused: none
    now[0] += 600
    listing.jobs = [_hourly(1, False), _hourly(2, False), _hourly(3, False)]
    collector.collect()
    live = samples(collector.snapshot, "databricks_job_schedule_live_since_timestamp_seconds")
    # Unpaused now (2), a schedule added now (3): live since this listing; 1 unchanged.
    assert live == {"1": 1_000.0, "2": 2_000_600.0, "3": 2_000_600.0}
    saved = collector.state()
    now[0] += 600
    listing.jobs = [_hourly(1, True), _hourly(2, False), _hourly(3, False), _hourly(4, True)]
    collector.collect()
    restarted = JobsCollector(listing, clock=lambda: now[0])  # type: ignore[arg-type]
    restarted.restore(saved)  # saved before 1 was paused and 4 was created
    listing.jobs = [_hourly(1, False), _hourly(2, False), _hourly(3, False), _hourly(4, False)]
    restarted.collect()
    live = samples(restarted.snapshot, "databricks_job_schedule_live_since_timestamp_seconds")
    assert live == {"1": 1_000.0, "2": 2_000_600.0, "3": 2_000_600.0, "4": 1_000.0}
    paused = samples(restarted.snapshot, "databricks_job_schedule_paused")
    assert paused == {"1": 0.0, "2": 0.0, "3": 0.0, "4": 0.0}


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"live_since": []},
        {"live_since": {"1": "x"}},
        {"live_since": {"1": float("nan")}},
        {"known": [1]},
        {"live_since": {"1": True}},
    ],
)
def test_a_damaged_jobs_part_is_refused(data):
    collector = JobsCollector(_Listing())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        collector.restore(data)
    assert collector.live_since == {} and collector.known == set()
