"""Figure 3: /metrics scrape latency with 100, 1,000 and 5,000 jobs, over HTTP on loopback.

Every job has 3 result states, 3 tasks x 3 results, a duration histogram and last-run gauges;
20 pools. Scrapes send what Prometheus 2.42 sends (OpenMetrics preferred, gzip). The floor is
prometheus-client's own metric objects over the same series, served by its own WSGI app on the
same HTTP server: what a plain prometheus-client exporter would answer.

Usage: python bench/scrape_latency.py [--scrapes 30] [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from types import SimpleNamespace

import requests
from common import figures, median, percentile
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from exporter.collectors.pools import Pool, PoolsSnapshot
from exporter.collectors.runs.ledger import RunsSnapshot
from exporter.collectors.runs.model import RUN_DURATION_BUCKETS, Run
from exporter.exposition import Exposition
from exporter.health import Histogram as PlainHistogram
from exporter.health import WorkspaceHealth
from exporter.server import MetricsServer, make_app

RESULTS = ("SUCCESS", "FAILED", "TIMEDOUT")
TASKS = ("ingest", "transform", "publish")
NOW = 1_800_000_000.0
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


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


def pools(n: int = 20) -> PoolsSnapshot:
    return PoolsSnapshot(
        tuple(
            Pool(f"p{i}", f"pool-{i}", "Standard_DS3_v2", "ACTIVE", 1, 2, 0, 0, 1, 10)
            for i in range(n)
        )
    )


def exporter_exposition(jobs: int) -> Exposition:
    runs = SimpleNamespace(snapshot=snapshot(jobs))
    ws = SimpleNamespace(
        name="bench",
        runs=runs,
        collectors={"runs": runs, "pools": SimpleNamespace(snapshot=pools())},
        health=WorkspaceHealth(),
    )
    return Exposition([ws], clock=lambda: NOW)  # type: ignore[list-item]


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


def scrapes(app: Callable[..., object], count: int) -> tuple[list[float], int]:
    server = MetricsServer(app, ["127.0.0.1:0"])  # type: ignore[arg-type]
    server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    samples, size = [], 0
    try:
        with requests.Session() as session:
            for _ in range(count):
                t = time.perf_counter()
                response = session.get(url, headers=PROMETHEUS_HEADERS, stream=True, timeout=60)
                body = response.raw.read(decode_content=False)
                samples.append(time.perf_counter() - t)
                assert response.status_code == 200 and body
                size = len(body)
    finally:
        server.shutdown()
    return samples, size


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scrapes", type=int, default=30)
    p.add_argument("--quick", action="store_true", help="100 and 1,000 jobs, 5 scrapes")
    args = p.parse_args()
    sizes = (100, 1000) if args.quick else (100, 1000, 5000)
    count = 5 if args.quick else args.scrapes
    print("## Scrape latency (/metrics over HTTP on loopback)\n")
    print(
        f"{count} scrapes per size, with Prometheus 2.42's headers (OpenMetrics, gzip); floor: "
        "prometheus-client's own metric objects over the same series and its WSGI app, on the "
        "same HTTP server. The exporter renders the snapshot families once per collection "
        "(column 'render per collection', off the scrape path) and the live families per scrape.\n"
    )
    print(
        "| jobs | lines | exporter p50 | exporter p99 | floor p50 | floor p99 | p99 vs floor "
        "| render per collection | body (gzip) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for jobs in sizes:
        exposition = exporter_exposition(jobs)
        app = make_app(exposition, lambda: True)
        t = time.perf_counter()
        exposition.render(PROMETHEUS_HEADERS["Accept"], gzip=True)  # what refresh() does
        render = time.perf_counter() - t
        series = exposition.render(PROMETHEUS_HEADERS["Accept"])[0].count(b"\n")
        exporter, size = scrapes(app, count)
        floor, _ = scrapes(make_wsgi_app(floor_registry(jobs)), count)
        r = {
            "jobs": jobs,
            "lines": series,
            "p50_s": median(exporter),
            "p99_s": percentile(exporter, 99),
            "floor_p50_s": median(floor),
            "floor_p99_s": percentile(floor, 99),
            "render_s": render,
            "gzip_bytes": size,
        }
        rows.append(r)
        print(
            f"| {jobs:,} | {series:,} | {ms(r['p50_s'])} | {ms(r['p99_s'])} "
            f"| {ms(r['floor_p50_s'])} | {ms(r['floor_p99_s'])} "
            f"| {r['p99_s'] / r['floor_p99_s']:.3f}x | {ms(render)} "
            f"| {size / 1024:,.0f} KiB |"
        )
    figures({"sizes": rows})


if __name__ == "__main__":
    main()
