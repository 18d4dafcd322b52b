"""Renders per interval by collector, and the pool integral against the simulator's truth.

1. Renders: workspaces of `jobs` jobs each, collected every 60 s (runs and pools, as the
   scheduler does, each followed by refresh()). The exporter formats only the changed
   (workspace, collector) parts; the baseline, measured in the same run, is one cache for all
   parts, re-rendered after every collection that changed a snapshot (what the exporter did
   before the per-part cache).
2. Pool integral: a simulated day of pools that change every minute, sampled every 60 s at a
   phase that does not line up with the changes (as in a real workspace), integrated by the
   left-point rule; the error against the simulator's exact integral, and the same with a
   10-minute outage (reported as unobserved time, compared with the truth over observed time).

Usage: python bench/renders_and_pools.py [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from common import START, figures, read_lookback, workspace

from databricks_simulator import SimClock, SimConfig, SimServer, SimWorkspace
from exporter.exposition import Exposition

ACCEPT = "application/openmetrics-text;version=1.0.0"


def renders(workspaces: int, jobs: int, intervals: int) -> dict[str, float]:
    clock = SimClock()
    clock.set(START)
    config = SimConfig(seed=3, jobs=jobs, history_hours=2, period_seconds=(300, 900), pools=8)
    servers = [SimServer(SimWorkspace(config, clock)).start() for _ in range(workspaces)]
    try:
        wss = [
            workspace(s.url, s.token, clock, lookback_hours=1, max_requests_per_second=1e6)
            for s in servers
        ]
        for i, ws in enumerate(wss):
            ws.name = f"{ws.name}-{i}"
        for ws in wss:
            assert ws.collect("runs") and ws.collect("pools")
            read_lookback(ws)  # the look-back, read between cycles
        exposition = Exposition(wss, clock.time)
        exposition.render(ACCEPT, gzip=True)
        baseline = Exposition(wss, clock.time)
        baseline.render(ACCEPT, gzip=True)
        start = Counter(exposition.renders)
        part_cpu = full_cpu = 0.0
        full_renders = 0
        for _ in range(intervals):
            clock.advance(60)
            for ws in wss:
                for name in ("runs", "pools"):
                    before = ws.collectors[name].snapshot
                    assert ws.collect(name)
                    t = time.process_time()
                    exposition.refresh()
                    part_cpu += time.process_time() - t
                    if ws.collectors[name].snapshot is not before:
                        t = time.process_time()
                        # One cache for all parts: everything is formatted again.
                        Exposition(wss, clock.time).render(ACCEPT, gzip=True)
                        full_cpu += time.process_time() - t
                        full_renders += 1
        done = exposition.renders - start
        for ws in wss:
            ws.close()
    finally:
        for s in servers:
            s.stop()
    return {
        "runs": done["runs"] / intervals,
        "pools": done["pools"] / intervals,
        "full": full_renders / intervals,
        "cpu": part_cpu / intervals,
        "baseline_cpu": full_cpu / intervals,
    }


def pool_integral(outage: bool, phase_seconds: float) -> dict[str, float]:
    """Sample every 60 s at `phase_seconds` past each pool change, for a simulated day."""
    clock = SimClock()
    day0 = (int(START) // 86_400) * 86_400.0
    clock.set(day0 + phase_seconds)
    model = SimWorkspace(SimConfig(seed=9, jobs=1, pools=6), clock)
    with SimServer(model) as server:
        ws = workspace(server.url, server.token, clock, max_requests_per_second=1e6)
        pools = ws.collectors["pools"]
        first_ms = clock.now_ms()
        down = (12 * 60, 12 * 60 + 10) if outage else (-1, -1)  # minutes of the day
        unseen = Counter[str]()
        last_ok_ms = first_ms
        for minute in range(24 * 60 + 1):
            now_ms = clock.now_ms()
            if down[0] < minute <= down[1]:
                clock.advance(60)
                continue
            ok = ws.collect("pools")
            assert ok
            if now_ms - last_ok_ms > 60_000:  # the gap this sample ends: not integrated
                for pool_id, sums in model.pool_truth(last_ok_ms, now_ms).items():
                    unseen[pool_id] += sums["idle"]
            last_ok_ms = now_ms
            clock.advance(60)
        end_ms = last_ok_ms
        truth = model.pool_truth(first_ms, end_ms)
        snapshot = pools.snapshot
        assert snapshot is not None and snapshot.usage is not None
        exported = dict(snapshot.usage.totals)
        errors = [
            abs(exported[p].idle - (t["idle"] - unseen[p])) / (t["idle"] - unseen[p])
            for p, t in truth.items()
            if t["idle"] - unseen[p] > 0
        ]
        total_truth = sum(t["idle"] for t in truth.values())
        total_seen = sum(t["idle"] - unseen[p] for p, t in truth.items())
        total = sum(exported[p].idle for p in truth)
        ws.close()
    return {
        "max_pool_error": max(errors),
        "total_error": abs(total - total_seen) / total_seen,
        "unobserved": snapshot.usage.unobserved_seconds,
        "missing_share": (total_truth - total) / total_truth,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    jobs, intervals = (100, 3) if args.quick else (2000, 10)
    print("## Renders per interval by collector\n")
    print(
        f"{jobs:,} jobs and 8 pools per workspace, collected every 60 s for {intervals} "
        "intervals; OpenMetrics + gzip (Prometheus' headers). Baseline: one cache for all "
        "parts, re-rendered after each collection that changed a snapshot, measured in the "
        "same run. CPU is the render time per interval (process time).\n"
    )
    print(
        "| workspaces | runs parts rendered | pools parts rendered | baseline full renders "
        "| render CPU | baseline CPU | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    data: dict[str, list[dict[str, Any]]] = {"renders": [], "pool_integral": []}
    for n in (1, 3):
        r = renders(n, jobs, intervals)
        data["renders"].append({"workspaces": n, **r})
        print(
            f"| {n} | {r['runs']:.1f} | {r['pools']:.1f} | {r['full']:.1f} "
            f"| {r['cpu'] * 1000:,.0f} ms | {r['baseline_cpu'] * 1000:,.0f} ms "
            f"| {r['cpu'] / r['baseline_cpu']:.2f}x |"
        )
    print("\n## Pool integral against the simulator's truth\n")
    print(
        "6 pools whose counts change every minute, over a simulated day, collected every 60 s "
        "at a phase past each change (real pools do not change on the exporter's beat). "
        "Error: |exported - truth| / truth over the observed time, idle instance-seconds.\n"
    )
    print("| case | phase | worst pool | all pools | unobserved | missing of the whole day |")
    print("|---|---|---|---|---|---|")
    for outage in (False, True):
        for phase in (0.0, 30.0, 59.0):
            r = pool_integral(outage, phase)
            data["pool_integral"].append({"outage": outage, "phase_s": phase, **r})
            case = "10-minute outage" if outage else "no outage"
            print(
                f"| {case} | {phase:.0f} s | {r['max_pool_error']:.3%} | {r['total_error']:.3%} "
                f"| {r['unobserved']:.0f} s | {r['missing_share']:.2%} |"
            )
    figures(data)


if __name__ == "__main__":
    main()
