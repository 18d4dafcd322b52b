"""The jobs collector's API cost: requests an hour to list the settings of 5,000 jobs at its own
interval (jobs_interval, 10 minutes), measured over one simulated hour, against the same
listing at the shared interval (60 s), measured over the same simulator's first 10 simulated
minutes and counted six times (an hour of it would take half a minute here).

Usage: python bench/jobs_cost.py [--jobs 5000] [--quick]
"""

from __future__ import annotations

import argparse
import time

from common import START, figures, workspace

from databricks_simulator import SimClock, SimConfig, SimServer, SimWorkspace
from exporter.config import DEFAULT_INTERVAL, DEFAULT_JOBS_INTERVAL


def measured(jobs: int, interval: float, span: float = 3600.0) -> dict[str, float]:
    """Requests, collections and seconds a collection of the jobs collector over ``span``
    simulated seconds, and the requests an hour they make."""
    clock = SimClock()
    clock.set(START)
    config = SimConfig(seed=3, jobs=jobs, history_hours=0.1, pools=1)
    with SimServer(SimWorkspace(config, clock)) as server:
        ws = workspace(
            server.url,
            server.token,
            clock,
            collectors=("jobs",),
            jobs_interval=interval,
            max_requests_per_second=1e6,  # requests are counted here, not timed
        )
        collections, seconds = 0, []
        end = clock.time() + span
        while clock.time() < end:
            t0 = time.perf_counter()
            assert ws.collect("jobs")
            seconds.append(time.perf_counter() - t0)
            collections += 1
            clock.advance(ws.intervals["jobs"])
        snapshot = ws.collectors["jobs"].snapshot
        listed = snapshot.listed if snapshot is not None else 0
        requests = server.stats.requests["/api/2.2/jobs/list"]
        ws.close()
    return {
        "interval": interval,
        "collections": collections * 3600 / span,
        "requests_per_hour": requests * 3600 / span,
        "pages": requests / collections,
        "listed": listed,
        "seconds": sorted(seconds)[len(seconds) // 2],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--quick", action="store_true", help="1,000 jobs: a smoke run")
    args = p.parse_args()
    jobs = 1000 if args.quick else args.jobs
    own = measured(jobs, DEFAULT_JOBS_INTERVAL)
    shared = measured(jobs, DEFAULT_INTERVAL, span=600.0)
    print("## The jobs collector's API cost\n")
    print(
        f"{jobs:,} jobs listed with their settings (`GET /api/2.2/jobs/list`, 100 a page) over "
        "one simulated hour; baseline: the same listing at the shared interval, measured on "
        "the same simulator over 10 simulated minutes (x 6).\n"
    )
    print(
        "| interval | collections/hour | requests/collection | requests/hour "
        "| collection (median) | fewer requests |"
    )
    print("|---|---|---|---|---|---|")
    for row in (own, shared):
        print(
            f"| {row['interval']:g} s | {row['collections']:g} | {row['pages']:g} "
            f"| {row['requests_per_hour']:,g} | {row['seconds']:.2f} s "
            f"| {shared['requests_per_hour'] / row['requests_per_hour']:.0f}x |"
        )
    figures(
        {
            "jobs": jobs,
            "listed": own["listed"],
            "requests_per_hour": own["requests_per_hour"],
            "baseline_requests_per_hour": shared["requests_per_hour"],
            "requests_per_collection": own["pages"],
            "collection_seconds": own["seconds"],
        }
    )


if __name__ == "__main__":
    main()
