"""Figure 6: detection latency, from a run's end in the workspace to its count in /metrics.

On a simulated clock the exporter collects every ``interval`` seconds; a run that ended at
``end`` and was first counted by the collection that started at ``T`` is in /metrics after
``T - end`` plus the wall time of that collection and of rendering /metrics. The bound
(the baseline) is one interval: a run ends at worst just after a collection started.
Prometheus adds up to one scrape interval on top; that is its own setting.

Usage: python bench/detection.py [--hours 1] [--quick]
"""

from __future__ import annotations

import argparse
import time

from common import START, figures, median, percentile, read_lookback, small_workspace, workspace
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS

from databricks_simulator import SimClock, SimServer, SimWorkspace
from exporter.exposition import Exposition


def latencies(interval: float, hours: float) -> tuple[list[float], bool]:
    clock = SimClock()
    clock.set(START)
    with SimServer(SimWorkspace(small_workspace(history_hours=2), clock)) as server:
        model = server.model
        ws = workspace(server.url, server.token, clock, lookback_hours=0.1, interval=interval)
        exposition = Exposition([ws], clock.time)
        assert ws.collect("runs")
        read_lookback(ws)  # the look-back, read between cycles
        exposition.render(OPENMETRICS, gzip=True)  # as Prometheus scrapes: refresh renders this
        previous = clock.now_ms()
        out: list[float] = []
        on_time = True
        for _ in range(int(hours * 3600 / interval)):
            clock.advance(interval)
            now = clock.now_ms()
            before = sum(ws.collectors["runs"].ledger.runs_total.values())
            t0 = time.perf_counter()
            assert ws.collect("runs")
            exposition.refresh()
            wall = time.perf_counter() - t0
            ended = [
                r.end_ms
                for r in model.runs_desc(previous - model.max_duration_ms, now)
                if previous < r.end_ms <= now
            ]
            counted = sum(ws.collectors["runs"].ledger.runs_total.values()) - before
            on_time = on_time and counted == len(ended)
            out.extend((now - end) / 1000 + wall for end in ended)
            previous = now
        ws.close()
    return out, on_time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--hours", type=float, default=1)
    p.add_argument("--quick", action="store_true", help="5 simulated minutes: a smoke run")
    args = p.parse_args()
    hours = 1 / 12 if args.quick else args.hours
    print("## Detection latency (run end to its count in /metrics)\n")
    print(
        f"70 jobs (~23k runs/day), {hours * 60:.0f} simulated minutes per interval, the default "
        "client-side limit of 10 requests/s; latency = time from "
        "the run's end to the start of the collection that counted it + that collection's and "
        "the /metrics render's wall time. Bound: one interval.\n"
    )
    print(
        "| interval | runs | p50 | p99 | max | p99 vs bound | every run counted at the first "
        "collection after its end |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = []
    for interval in (60.0, 15.0):
        values, on_time = latencies(interval, hours)
        r = {
            "interval_s": interval,
            "runs": len(values),
            "p50_s": median(values),
            "p99_s": percentile(values, 99),
            "max_s": max(values),
            "on_time": on_time,
        }
        rows.append(r)
        print(
            f"| {interval:g} s | {r['runs']:,} | {r['p50_s']:.1f} s | {r['p99_s']:.1f} s "
            f"| {r['max_s']:.1f} s | {r['p99_s'] / interval:.2f} | {'yes' if on_time else 'NO'} |"
        )
    figures({"intervals": rows})


if __name__ == "__main__":
    main()
