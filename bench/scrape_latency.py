"""/metrics render time with 100, 1,000 and 5,000 jobs (histograms, task counters, pools), against
prometheus-client's plain generate_latest over the same series as a floor.

Usage: python bench/scrape_latency.py [--renders 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from exporter.collectors.pools import Pool
from exporter.health import Histogram as PlainHistogram
from exporter.health import WorkspaceHealth
from exporter.metrics import build_registry
from exporter.state import RUN_DURATION_BUCKETS, Run, RunsSnapshot

RESULTS = ("SUCCESS", "FAILED", "TIMEDOUT")
TASKS = ("ingest", "transform", "publish")
NOW = 1_800_000_000.0


def snapshot(jobs: int) -> RunsSnapshot:
    runs_total, tasks_total, durations, last_runs, last_success = {}, {}, {}, {}, {}
    active = []
    for j in range(jobs):
        job_id, name = str(1000 + j), f"job_{j:05d}_daily_load"
        hist = PlainHistogram(RUN_DURATION_BUCKETS)
        for k in range(20):
            hist.observe(30.0 + 97 * ((j * 31 + k) % 50))
        durations[(job_id, name)] = hist
        for r in RESULTS:
            runs_total[(job_id, name, r)] = 10 + j % 7
            for t in TASKS:
                tasks_total[(job_id, name, t, r)] = 10 + j % 5
        last = Run(
            j,
            job_id,
            name,
            "TERMINATED",
            RESULTS[j % 3],
            1,
            int(NOW * 1000),
            120.0,
            f"https://adb-1.2.azuredatabricks.net/?o=1#job/{job_id}/run/{j}",
        )
        last_runs[job_id] = last
        last_success[job_id] = int(NOW * 1000)
        if j % 10 == 0:
            active.append(
                Run(
                    j + 10**9, job_id, name, "RUNNING", "NONE", int(NOW * 1000) - 60_000, 0, 0.0, ""
                )
            )
    return RunsSnapshot(
        runs_total, tasks_total, durations, last_runs, last_success, tuple(active), 0, 0
    )


def pools(n: int = 20) -> tuple[Pool, ...]:
    return tuple(
        Pool(f"p{i}", f"pool-{i}", "Standard_DS3_v2", "ACTIVE", 1, 2, 0, 0, 1, 10) for i in range(n)
    )


def exporter_registry(jobs: int) -> CollectorRegistry:
    ws = SimpleNamespace(
        name="bench",
        runs=SimpleNamespace(snapshot=snapshot(jobs)),
        pools=SimpleNamespace(snapshot=pools()),
        health=WorkspaceHealth(),
    )
    return build_registry([ws], clock=lambda: NOW)  # type: ignore[list-item]


def floor_registry(jobs: int) -> CollectorRegistry:
    """The same series in prometheus-client's own metric objects."""
    reg = CollectorRegistry()
    job = ["workspace", "job_id", "job_name"]
    runs = Counter("databricks_job_runs", "h", [*job, "result_state"], registry=reg)
    tasks = Counter("databricks_task_runs", "h", [*job, "task_key", "result_state"], registry=reg)
    hist = Histogram(
        "databricks_job_run_duration_seconds", "h", job, buckets=RUN_DURATION_BUCKETS, registry=reg
    )
    gauges = [
        Gauge(n, "h", job, registry=reg)
        for n in (
            "databricks_job_last_run_duration_seconds",
            "databricks_job_last_run_failed",
            "databricks_job_last_run_end_timestamp_seconds",
            "databricks_job_last_success_timestamp_seconds",
        )
    ]
    info = Gauge(
        "databricks_job_last_run_info",
        "h",
        [*job, "run_id", "result_state", "run_page_url"],
        registry=reg,
    )
    snap = snapshot(jobs)
    for (job_id, name, r), v in snap.runs_total.items():
        runs.labels("bench", job_id, name, r).inc(v)
    for (job_id, name, t, r), v in snap.tasks_total.items():
        tasks.labels("bench", job_id, name, t, r).inc(v)
    for (job_id, name), _h in snap.durations.items():
        child = hist.labels("bench", job_id, name)
        for k in range(20):
            child.observe(30.0 + 97 * ((int(job_id) * 31 + k) % 50))
    for job_id, run in snap.last_runs.items():
        for g in gauges:
            g.labels("bench", job_id, run.job_name).set(1.0)
        info.labels(
            "bench", job_id, run.job_name, str(run.run_id), run.result_state, run.run_page_url
        ).set(1)
    return reg


def timings(reg: CollectorRegistry, renders: int) -> tuple[float, float, int]:
    samples, size = [], 0
    for _ in range(renders):
        t = time.perf_counter()
        size = len(generate_latest(reg))
        samples.append(time.perf_counter() - t)
    samples.sort()
    return (
        statistics.median(samples),
        samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        size,
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--renders", type=int, default=30)
    args = p.parse_args()
    print("| jobs | exporter p50 | exporter p99 | floor p50 | floor p99 | ratio p50 | bytes |")
    print("|---|---|---|---|---|---|---|")
    for jobs in (100, 1000, 5000):
        e50, e99, size = timings(exporter_registry(jobs), args.renders)
        f50, f99, _ = timings(floor_registry(jobs), args.renders)
        print(
            f"| {jobs} | {e50 * 1000:.1f} ms | {e99 * 1000:.1f} ms | {f50 * 1000:.1f} ms | "
            f"{f99 * 1000:.1f} ms | {e50 / f50:.2f} | {size} |"
        )


if __name__ == "__main__":
    main()
