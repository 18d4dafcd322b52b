"""The jobs' own promises against a real Prometheus (issue 27): the exporter watches the loopback
simulator, Prometheus scrapes it with the shipped rules, and each rule's expression is asked at
an instant and compared with the simulator's truth at that instant:

- DatabricksJobRunOverDurationThreshold: exactly the jobs whose oldest active run has been
  running longer than the job's own RUN_DURATION_SECONDS health rule;
- DatabricksScheduledJobNotSucceeding: the scheduled, unpaused job that never ran and is older
  than three of its periods, and never a paused one, however quiet.

The rules' ``for`` keeps the alerts themselves from firing in a test's time: the expressions
are what the alerts fire on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests
import yaml
from conftest import free_port
from test_prometheus_integration import PROMETHEUS, ROOT, Daemon, pytestmark, query, wait_until

from databricks_simulator.jobsettings import listed_jobs

__all__ = ["pytestmark"]

BORDER_SECONDS = 6.0  # ages this close to a threshold may differ by a scrape or a collection
# How old Prometheus' sample may be: a collection (1 s) and a scrape (1 s), late on 2 busy cores.
LAG_MS = 10_000


def rule_expr(name: str) -> str:
    rules = yaml.safe_load((ROOT / "alerts" / "databricks.rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                return str(rule["expr"])
    raise KeyError(name)


def over_threshold_truth(sim: Any, now_ms: int) -> tuple[set[str], set[str]]:
    """(jobs past their threshold, jobs too close to it to tell) at ``now_ms``."""
    model = sim.model
    thresholds = {
        str(job.job_id): promise.threshold_seconds
        for job, promise in listed_jobs(model)
        if promise.threshold_seconds is not None
    }
    oldest: dict[str, float] = {}
    for run in model.runs_desc(now_ms - model.max_duration_ms, now_ms):
        if not model.is_active(run, now_ms) or model.life_cycle(run, now_ms) == "QUEUED":
            continue
        age = (now_ms - run.start_ms - run.queue_ms) / 1000.0
        job_id = str(run.job_id)
        oldest[job_id] = max(oldest.get(job_id, 0.0), age)
    past, border = set(), set()
    for job_id, threshold in thresholds.items():
        age = oldest.get(job_id)
        if age is None:
            continue
        if abs(age - threshold) < BORDER_SECONDS:
            border.add(job_id)
        elif age > threshold:
            past.add(job_id)
    return past, border


def test_the_promise_rules_match_the_simulator_s_truth(tmp_path: Path, make_sim, exporter):
    # Runs of 20 s to 3 min, one every 1-2 min: at any instant some active runs are past their
    # job's threshold (set between its shortest and longest run) and some are not.
    sim = make_sim(
        jobs=30,
        history_hours=4,
        period_seconds=(60, 120),
        duration_seconds=(20, 180),
        fail_rate=0.05,
        queue_rate=0.2,
        idle_jobs=4,
    )
    config = tmp_path / "exporter.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "workspaces": [{"name": "demo", "host": sim.url, "token_env": "SIM_TOKEN"}],
                "lookback_hours": 8,
                "max_requests_per_second": 200,
            }
        )
    )
    proc = exporter(["--interval", "1", "--config", str(config)], {"SIM_TOKEN": sim.token})
    proc.wait_ready()
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ROOT / "alerts" / "databricks.rules.yml")],
                "scrape_configs": [
                    {
                        "job_name": "databricks-exporter",
                        "static_configs": [{"targets": [f"127.0.0.1:{proc.port}"]}],
                    }
                ],
            }
        )
    )
    assert PROMETHEUS is not None
    prom = Daemon(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "prometheus.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(url + "/-/ready", timeout=2).ok, 60, "Prometheus ready")
        wait_until(lambda: query(url, "databricks_job_info"), 60, "the jobs collector's series")
        wait_until(
            lambda: query(url, "databricks_exporter_lookback_progress_ratio == 1"),
            120,
            "the look-back read",
        )
        # Over the threshold: exactly the active runs past their job's own rule.
        over = rule_expr("DatabricksJobRunOverDurationThreshold")
        seen_past = seen_within = 0
        for _ in range(8):
            before = int(time.time() * 1000)
            got = {r["metric"]["job_id"] for r in query(url, over)}
            past, border = over_threshold_truth(sim, int(time.time() * 1000))
            # What Prometheus has is up to a collection and a scrape old: a run that started,
            # left the queue or ended in those seconds may be either way.
            earlier, border_before = over_threshold_truth(sim, before - LAG_MS)
            border |= border_before | (past ^ earlier)
            assert got - border == past - border, (sorted(got), sorted(past), sorted(border))
            seen_past += len(past - border)
            seen_within += len(got)
            time.sleep(3)
        assert seen_past > 0 and seen_within > 0  # the comparison had something to compare

        # Not succeeding: the idle, live-scheduled job old enough; never a paused one.
        idle = [(job, promise) for job, promise in listed_jobs(sim.model) if job.kind == "idle"]
        paused = {str(job.job_id) for job, promise in idle if promise.paused}
        created_s = sim.model.origin_ms / 1000.0
        due = {
            str(job.job_id)
            for job, promise in idle
            if not promise.paused
            and promise.interval_seconds
            and time.time() - created_s > 3 * promise.interval_seconds
        }
        assert paused and due  # a quiet paused job and a quiet live one (the hourly: 4 h old)
        not_succeeding = {
            r["metric"]["job_id"]
            for r in query(url, rule_expr("DatabricksScheduledJobNotSucceeding"))
        }
        assert due <= not_succeeding, (due, not_succeeding)
        assert not paused & not_succeeding
        # The jobs that run succeed every minute or two: none of them is "not succeeding".
        assert not_succeeding <= {str(job.job_id) for job, _ in idle}
    finally:
        prom.stop()
