"""What run phases cost the runs cycle (issue 27): requests and CPU per cycle with the phases and
compute of every task observed, against the same collector with them off (baseline: phases not
parsed), in the same run, on the same simulator (its own process, so its CPU is not counted).

Usage: python bench/phases_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import START, figures, large_workspace, median, simulator_process, workspace

import exporter.collectors.runs.model as model


def cycles(config: Any, n: int, phases: bool) -> dict[str, float]:
    parse = model.run_phases
    if not phases:
        model.run_phases = lambda raw, queue_ms: ()  # type: ignore[assignment]
    try:
        with simulator_process(config, START) as sim:
            ws = workspace(sim.url, sim.token, sim.clock, lookback_hours=0.1)
            assert ws.collect("runs")
            costs, cpu = [], []
            for _ in range(n):
                sim.advance(60)
                before = sim.requests_total()
                t = time.process_time()
                assert ws.collect("runs")
                cpu.append(time.process_time() - t)
                costs.append(sim.requests_total() - before)
            ledger = ws.collectors["runs"].ledger  # type: ignore[attr-defined]
            counted = sum(ledger.runs_total.values())
            tasks = sum(h.count for k, h in ledger.phases.items() if k[2] == "setup")
            ws.close()
    finally:
        model.run_phases = parse
    return {
        "requests": median(costs),
        "cpu_ms": median(cpu) * 1000,
        "counted": counted,
        "tasks_observed": tasks,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    jobs, n = (300, 4) if args.quick else (5000, 10)
    config = large_workspace(jobs=jobs)
    off = cycles(config, n, phases=False)
    on = cycles(config, n, phases=True)
    print("## What run phases cost the runs cycle\n")
    print(
        f"{jobs:,} jobs ({'quick' if args.quick else '10 runs/s'}), {n} cycles of 60 s; "
        "baseline: the same collector with the phases not parsed, on the same simulator in "
        "the same run.\n"
    )
    print("| | requests/cycle (median) | CPU/cycle (median) | runs counted | tasks observed |")
    print("|---|---|---|---|---|")
    for name, row in (("phases off (baseline)", off), ("phases on", on)):
        print(
            f"| {name} | {row['requests']:g} | {row['cpu_ms']:.0f} ms | {row['counted']:,} | "
            f"{row['tasks_observed']:,} |"
        )
    ratio = on["cpu_ms"] / off["cpu_ms"] if off["cpu_ms"] else 1.0
    print(f"\nRequests: {on['requests'] / off['requests']:.2f}x the baseline; CPU: {ratio:.2f}x.\n")
    figures({"off": off, "on": on, "cpu_ratio": ratio})


if __name__ == "__main__":
    main()
