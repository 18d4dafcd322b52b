"""`make bench` in its quick form: every script runs, and what it reports about correctness holds
(counts equal the simulator's truth under load, catch-up succeeds). Times are not asserted; the
figures are read from the JSON the benchmarks write beside their Markdown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench"


def test_quick_benchmarks_run_and_report_exact_counts(tmp_path):
    out = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FAILED" not in out.read_text() and "MISMATCH" not in out.read_text()
    figures = json.loads(out.with_suffix(".json").read_text())
    assert figures["quick"] is True
    api = figures["api_cost"]["sizes"]
    assert len(api) == 2 and all(row["exact"] for row in api)
    small, large = (row["requests_median"] for row in api)
    baseline_small, baseline_large = (row["baseline_requests"] for row in api)
    assert baseline_large > 5 * baseline_small  # the baseline grows with history...
    assert large < 2 * small  # ...the exporter does not
    assert figures["api_cost"]["tokens_per_hour"] < 2
    memory = figures["memory"]
    assert memory["exact"] and memory["counted"] == memory["truth"] > 0
    catch_up = figures["catch_up"]["exporter"]
    assert catch_up["ok"] and catch_up["exact"] and catch_up["throttled"] == 0
    detection = figures["detection"]["intervals"]
    assert [row["on_time"] for row in detection] == [True, True]
    assert [row["jobs"] for row in figures["scrape_latency"]["sizes"]] == [100, 1000]
    quiet, busy = figures["api_floor"]["loads"]
    assert quiet["exact"] and busy["exact"]  # skewed clock, late listings
    assert busy["ratio"] <= 1.3  # requests within 1.3x of the floor
    # Within 1.3x of the fewest requests the API allows, in both loads (a quiet cycle cannot
    # reach the first floor: it assumes a listing by end time).
    assert quiet["api_ratio"] <= 1.3 and busy["api_ratio"] <= 1.3
    assert quiet["floor"] <= quiet["api_floor"] <= quiet["cost"]
    renders = figures["renders_and_pools"]["renders"]
    # One part per workspace and collector per interval; the baseline re-rendered everything.
    assert [(r["runs"], r["pools"], r["full"]) for r in renders] == [(1, 1, 2), (3, 3, 6)]
    pools = figures["renders_and_pools"]["pool_integral"]
    assert len(pools) == 6 and all(row["max_pool_error"] < 0.01 for row in pools)
    assert [row["unobserved"] > 0 for row in pools] == [False] * 3 + [True] * 3
    many = figures["workspaces"]
    assert many["interval"] == 5
    rows = many["sizes"]
    assert [(row["workspaces"], row["mix"]) for row in rows] == [
        (1, "quiet"),
        (3, "quiet"),
        (3, "busy"),
    ]
    for row in rows:
        n = row["workspaces"]
        # Ready, every workspace's collectors report a start delay at every scrape, and every
        # scrape is answered; SIGTERM stops the process cleanly.
        assert row["ready_s"] > 0 and row["scrapes"] > 0 and row["scrape_failures"] == 0
        assert row["workspaces_with_delay"] == n
        assert row["delay_samples"] == 2 * n * row["scrapes"]
        assert row["collections_seen"] >= 2 * n
        assert row["exit_code"] == 0
        assert row["cpu_per_interval_s"] >= 0 and row["max_start_delay_s"] >= 0
        assert 0 < row["peak_rss_mb"] < 512
    # Threads are bounded: workers for two collections per workspace, not one per request.
    assert all(row["max_threads"] < 60 for row in rows)
    assert rows[1]["max_threads"] - rows[0]["max_threads"] <= 3 * 2
    ready = figures["time_to_ready"]
    rows = ready["sizes"]
    assert [row["runs"] for row in rows] == [1_000, 10_000]
    for row in rows:
        # Ready after the first cycle's few requests; before, after the whole look-back.
        assert row["counting_after_first_cycle"] and row["lookback_done"]
        assert row["first_requests"] < 20 < row["before_requests"]
        assert row["jobs_with_last_run"] == 70
    demo = ready["demo"]["demo"]
    assert demo["first_job_series_s"] == demo["first_job_series_s"]  # measured (not NaN)
    assert demo["every_last_run_s"] == demo["every_last_run_s"]
    web = {row["case"]: row for row in figures["web_overhead"]["rows"]}
    assert len(web) == 6 and all(row["p50_s"] > 0 for row in web.values())
    flood = web["basic auth, 16 threads flooding wrong passwords"]
    assert flood["new_credentials_tries"] != 0 and flood["healthz_p99_s"] > 0
    jobs = figures["jobs_cost"]  # 1,000 jobs: 10 pages a collection, 6 collections an hour
    assert jobs["listed"] == jobs["jobs"] and jobs["requests_per_collection"] == 10
    assert jobs["requests_per_hour"] == 60 and jobs["baseline_requests_per_hour"] == 600
    phases = figures["phases_cost"]  # phases cost the runs cycle no request
    assert phases["on"]["requests"] == phases["off"]["requests"] > 0
    assert phases["on"]["counted"] == phases["off"]["counted"] > 0
    assert (
        phases["on"]["tasks_observed"] > phases["on"]["counted"]
        and not phases["off"]["tasks_observed"]
    )
