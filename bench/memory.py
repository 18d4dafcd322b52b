"""Figure 4: RSS of the exporter after 1 h and 24 h of simulated time at 10 runs/s, 5,000 jobs.

The simulator runs in a child process on a frozen clock that this process moves by the
collection interval; this process is the exporter (collectors, ledger, rendered /metrics in
OpenMetrics + gzip as Prometheus asks for it), so its RSS is the exporter's.

Usage: python bench/memory.py [--hours 24] [--jobs 5000] [--quick]
"""

from __future__ import annotations

import argparse
import resource
import time

from common import (
    figures,
    large_workspace,
    read_lookback,
    rss_mb,
    runs_per_second,
    simulator_process,
    workspace,
)
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS

from exporter.exposition import Exposition
from exporter.metrics import SnapshotCollector
from exporter.workspace import Workspace

RENDER_EVERY = 30  # cycles between two renders of /metrics (each takes seconds at 5,000 jobs)


def series(ws: Workspace) -> int:
    """Job and pool samples in /metrics (the families are built, not formatted)."""
    return sum(len(family.samples) for family in SnapshotCollector([ws]).collect())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--hours", type=float, default=24)
    p.add_argument("--interval", type=float, default=60)
    p.add_argument("--lookback-hours", type=float, default=1)
    p.add_argument("--quick", action="store_true", help="500 jobs, 2 h: a smoke run")
    args = p.parse_args()
    if args.quick:
        args.jobs, args.hours = 500, 2
    config = large_workspace(args.jobs)
    rate = runs_per_second(config)
    cycles = int(args.hours * 3600 / args.interval)
    hour = int(3600 / args.interval)
    marks: dict[str, tuple[float, int]] = {}  # label -> (RSS MB, series in /metrics)
    mark_hours = [h for h in (1, 6, 12) if h < args.hours]
    wall = time.perf_counter()
    with simulator_process(config) as sim:
        ws = workspace(
            sim.url,
            sim.token,
            sim.clock,
            lookback_hours=args.lookback_hours,
            interval=args.interval,
            max_requests_per_second=1e6,
        )
        exposition = Exposition([ws], sim.clock.time)
        assert ws.collect("runs") and ws.collect("pools")
        read_lookback(ws)  # the look-back, read between cycles
        marks["after the first collection"] = (rss_mb(), series(ws))
        requests_before = sim.requests_total()
        size = 0
        for cycle in range(1, cycles + 1):
            sim.advance(args.interval)
            assert ws.collect("runs") and ws.collect("pools")
            if cycle % RENDER_EVERY == 0:
                size = len(exposition.render(OPENMETRICS, gzip=True)[0])
            if cycle in [h * hour for h in mark_hours]:
                marks[f"after {cycle // hour} h"] = (rss_mb(), series(ws))
        marks[f"after {args.hours:g} h"] = (rss_mb(), series(ws))
        requests_per_cycle = (sim.requests_total() - requests_before) / cycles
        counted = sum(ws.collectors["runs"].ledger.runs_total.values())
        truth = sim.truth(ws.collectors["runs"].ledger.baseline_ms)
        ws.close()
    wall = time.perf_counter() - wall
    one_hour, one_hour_series = marks.get("after 1 h", marks["after the first collection"])
    end, end_series = marks[f"after {args.hours:g} h"]
    half, half_series = marks.get("after 12 h", (one_hour, one_hour_series))
    print("## Memory (RSS of the exporter)\n")
    print(
        f"{args.jobs} jobs, {rate:.1f} runs/s ({rate * 3600 * args.hours:,.0f} runs in "
        f"{args.hours:g} h), {cycles} collections every {args.interval:g} s on a simulated clock "
        f"({wall:.0f} s of wall time); look-back {args.lookback_hours:g} h; /metrics rendered "
        f"(OpenMetrics + gzip, {size / 2**20:.1f} MB compressed) every {RENDER_EVERY} cycles; "
        f"{requests_per_cycle:.1f} API requests per cycle; runs counted {counted:,}, simulator "
        f"truth {truth:,}: {'exact' if counted == truth else 'MISMATCH'}.\n"
    )
    print("| when | series in /metrics | RSS | RSS vs 1 h |")
    print("|---|---|---|---|")
    for label, (value, count) in marks.items():
        print(f"| {label} | {count:,} | {value:.1f} MB | {value / one_hour:.3f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    late = (
        f"; from 12 h to {args.hours:g} h: {(end / half - 1) * 100:+.1f}% with series "
        f"{(end_series / half_series - 1) * 100:+.1f}%"
        if "after 12 h" in marks
        else ""
    )
    print(
        f"\nGrowth from 1 h to {args.hours:g} h: {(end / one_hour - 1) * 100:+.1f}% while the "
        f"series grew {(end_series / one_hour_series - 1) * 100:+.1f}% (each job's rarer "
        f"result states appear over the day){late} (target < 5%). Peak RSS of the whole run "
        f"(renders included): {peak:.1f} MB (target < 150 MB)."
    )
    figures(
        {
            "counted": counted,
            "truth": truth,
            "exact": counted == truth,
            "marks": {label: {"rss_mb": mb, "series": n} for label, (mb, n) in marks.items()},
            "peak_rss_mb": peak,
            "requests_per_cycle": requests_per_cycle,
        }
    )


if __name__ == "__main__":
    main()
