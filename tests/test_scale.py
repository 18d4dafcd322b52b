"""Scale: ready in one cycle whatever the history; the look-back read later, never counted."""

from __future__ import annotations

import itertools
import time

from conftest import assert_counts_match_truth, drain, select, sim_env, wait_for


def test_a_large_lookback_is_ready_and_counting_in_one_interval_and_fills_last_runs_later(
    make_sim, exporter
):
    # 200 jobs with a run every 60-120 s: about 190,000 runs in the 24 h look-back.
    server = make_sim(
        jobs=200,
        history_hours=24,
        period_seconds=(60.0, 120.0),
        duration_seconds=(0.5, 3.0),
        long_run_rate=0.0,
        fail_rate=0.1,
    )
    assert server.model.history_size() > 150_000
    started = time.monotonic()
    proc = exporter(["--interval", "2", "--lookback-hours", "24"], sim_env(server))
    proc.wait_ready(timeout=60)
    ready_after = time.monotonic() - started
    samples = proc.samples()
    (progress,) = select(samples, "databricks_exporter_lookback_progress_ratio").values()
    assert progress < 1.0  # ready before the history was read
    # The history (about 7,600 pages) was not read before /readyz: a handful of requests.
    listed = sum(
        v
        for k, v in select(samples, "databricks_exporter_api_requests_total").items()
        if dict(k)["endpoint"].endswith("runs/list")
    )
    assert listed < 50, listed
    # Runs that ended since the baseline are counted from the first cycles on.
    wait_for(
        lambda: sum(select(proc.samples(), "databricks_job_runs_total").values()) > 0,
        10,
        "the first counted runs",
    )
    # The look-back completes in the background: every job gets its last run.
    wait_for(
        lambda: (
            select(proc.samples(), "databricks_exporter_lookback_progress_ratio")
            == {frozenset({("workspace", "default")}): 1.0}
        ),
        300,
        "the look-back to be read",
    )
    last = select(proc.samples(), "databricks_job_last_run_end_timestamp_seconds")
    assert len(last) == 200
    # Far fewer requests than the ~7,600 pages of the history: jobs/list, then one page a job.
    listed = sum(
        v
        for k, v in select(proc.samples(), "databricks_exporter_api_requests_total").items()
        if dict(k)["endpoint"].endswith(("runs/list", "jobs/list"))
    )
    assert listed < 1_000, listed
    wait_for(
        lambda: sum(select(proc.samples(), "databricks_job_runs_total").values()) >= 10,
        30,
        "ten counted runs",
    )
    drain(server, proc)
    assert_counts_match_truth(proc, server)  # the history counted nothing
    assert ready_after < 60


def test_three_shards_over_nine_workspaces_collect_each_workspace_exactly_once(
    make_sim, exporter, tmp_path
):
    server = make_sim()
    config = tmp_path / "workspaces.yaml"
    names = [f"ws-{i}" for i in range(9)]
    config.write_text(
        "workspaces:\n"
        + "".join(f"  - {{name: {n}, host: '{server.url}', token_env: SIM_TOKEN}}\n" for n in names)
    )
    env = {"SIM_TOKEN": server.token}
    shards = [
        exporter(
            ["--config", str(config), "--interval", "1", "--shard", str(i), "--total-shards", "3"],
            env,
        )
        for i in range(3)
    ]
    served = []
    for proc in shards:
        proc.wait_ready()
        success = select(proc.samples(), "databricks_exporter_collection_success")
        served.append({dict(k)["workspace"] for k in success})
    assert all(served)  # these nine names spread over all three shards
    assert sorted(n for s in served for n in s) == names  # each exactly once
    # The same families everywhere: dashboards and rules need no change.
    families = [{name for name, _ in proc.samples()} for proc in shards]
    assert families[0] == families[1] == families[2]
    # The assignment is a pure function of the name: a restart keeps it.
    again = exporter(
        ["--config", str(config), "--interval", "1", "--shard", "1", "--total-shards", "3"], env
    )
    again.wait_ready()
    success = select(again.samples(), "databricks_exporter_collection_success")
    assert {dict(k)["workspace"] for k in success} == served[1]


def test_shard_assignment_is_stable_and_even():
    from collections import Counter

    from exporter.config import shard_of

    # Fixed values: a change of hash would move every workspace to another shard.
    assert [shard_of(f"ws-{i}", 3) for i in range(9)] == [1, 0, 0, 2, 2, 1, 1, 0, 2]
    spread = Counter(shard_of(f"workspace-{i}", 4) for i in range(4000))
    assert set(spread) == {0, 1, 2, 3} and min(spread.values()) > 900


def test_a_lookback_past_max_pages_no_longer_wedges_counting(make_sim, exporter, tmp_path):
    # The reproduction of the wedge: max_pages 5 (125 runs a listing) and a look-back of
    # thousands of runs. Before, every cycle failed at the page limit and counted nothing.
    server = make_sim(jobs=40, history_hours=1, period_seconds=(5.0, 15.0))
    assert server.model.history_size() > 5_000
    config = tmp_path / "ws.yaml"
    config.write_text(
        "max_pages: 5\nlookback_hours: 1\n"
        f"workspaces:\n  - name: ws\n    host: {server.url}\n    token_env: SIM_TOKEN\n"
    )
    proc = exporter(["--config", str(config), "--interval", "1"], {"SIM_TOKEN": server.token})
    proc.wait_ready()
    time.sleep(3)
    success = select(proc.samples(), "databricks_exporter_collection_success")
    assert success[frozenset({("workspace", "ws"), ("collector", "runs")})] == 1.0
    drain(server, proc)
    assert_counts_match_truth(proc, server)
    wait_for(
        lambda: (
            select(proc.samples(), "databricks_exporter_lookback_progress_ratio")
            == {frozenset({("workspace", "ws")}): 1.0}
        ),
        60,
        "the look-back",
    )
    # Even a cycle's own listing past 5 pages is kept and its rest read next cycles.
    assert "listed in the next cycles" in proc.output()


def test_collections_run_once_at_start_then_spread_over_the_interval():
    from datetime import datetime, timedelta, timezone

    from exporter.scheduling import Due, schedule

    class Ws:
        def __init__(self, i: int) -> None:
            self.name = f"ws-{i}"
            self.collectors = {"runs": None, "pools": None}

        def background(self) -> list[str]:
            return ["runs"]

    workspaces = [Ws(i) for i in range(50)]
    scheduler = schedule(workspaces, 60.0, renderer=None)  # type: ignore[arg-type]
    now = datetime.now(timezone.utc)
    jobs = scheduler.get_jobs()  # not started: next run times as scheduled
    first = [j for j in jobs if j.id.endswith(":first")]
    interval = [j for j in jobs if j.id.count(":") == 1]
    assert len(first) == len(interval) == 100
    assert all(abs((j.trigger.run_date - now).total_seconds()) < 5 for j in first)
    offsets = sorted((j.trigger.start_date - now).total_seconds() for j in interval)
    assert 0 < offsets[0] < 2 and 58 < offsets[-1] <= 61  # spread over the whole interval
    assert max(b - a for a, b in itertools.pairwise(offsets)) < 2  # evenly: 0.6 s apart
    # A collection knows how late it started, whatever APScheduler's events say.
    due = Due(now, 60)
    assert due.started(now + timedelta(seconds=3)) == 3.0
    assert due.next == now + timedelta(seconds=60)
    assert due.started(now + timedelta(seconds=200)) == 140.0  # coalesced: late by 140 s
    assert due.next == now + timedelta(seconds=240)


def test_a_first_collection_longer_than_the_offset_is_not_run_twice_over():
    import threading

    from exporter.scheduling import collect_and_render

    calls, inside, release = [], threading.Event(), threading.Event()

    class Health:
        def record_start_delay(self, name: str, late: float) -> None:
            pass

    class Ws:
        name = "slow"
        health = Health()

        def collect(self, name: str) -> bool:
            calls.append(name)
            inside.set()
            assert release.wait(10)
            return False

    running = threading.Lock()
    first = threading.Thread(target=collect_and_render, args=(Ws(), "runs", None, None, running))
    first.start()
    assert inside.wait(10)
    collect_and_render(Ws(), "runs", None, None, running)  # type: ignore[arg-type]
    release.set()
    first.join(10)
    assert calls == ["runs"]  # the interval job's run found the first still going
    collect_and_render(Ws(), "runs", None, None, running)  # type: ignore[arg-type]
    assert calls == ["runs", "runs"]
