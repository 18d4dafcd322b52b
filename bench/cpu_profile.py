"""Where the exporter's CPU goes: cProfile over busy collection cycles and a /metrics render.

5,000 jobs at 10 runs/s (the simulator in its own process, so only the exporter is profiled),
10 collection cycles of 60 s, then one render of /metrics as Prometheus asks for it. Prints the
top functions by cumulative CPU time. This is how the hot paths fixed so far were found: the
per-scrape render (now once per collection), requests re-reading the environment on every
request (now once), and a whole listing held as raw JSON (now parsed page by page).

Usage: python bench/cpu_profile.py [--cycles 10] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from common import large_workspace, read_lookback, simulator_process, workspace
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS

from exporter.exposition import Exposition


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cycles", type=int, default=10)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    with simulator_process(large_workspace()) as sim:
        ws = workspace(sim.url, sim.token, sim.clock, lookback_hours=0.2, max_requests_per_second=0)
        exposition = Exposition([ws], sim.clock.time)
        assert ws.collect("runs") and ws.collect("pools")
        read_lookback(ws)  # the look-back, read between cycles
        before = sim.requests_total()
        profile = cProfile.Profile(time.process_time)  # CPU time: waiting on the API is not cost
        cpu = time.process_time()
        profile.enable()
        for _ in range(args.cycles):
            sim.advance(60)
            assert ws.collect("runs") and ws.collect("pools")
        collect_cpu = time.process_time() - cpu
        requests = sim.requests_total() - before
        exposition.render(OPENMETRICS, gzip=True)
        profile.disable()
        render_cpu = time.process_time() - cpu - collect_cpu
        ws.close()
    print(
        f"{args.cycles} cycles: {requests} requests, {collect_cpu:.2f} s CPU "
        f"({collect_cpu / requests * 1000:.2f} ms per request, profiler included); "
        f"one render: {render_cpu:.2f} s CPU\n"
    )
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
