"""API requests per cycle against the floor, for a quiet and a busy workspace, with the
exporter's clock 2 minutes off Databricks' and runs appearing in listings up to 30 s late.

The floor of a cycle, from the simulator's ground truth (as first defined):
pages of the active list (25 runs a page, at least 1) + pages of the runs that started or ended
since the last cycle + one runs/get for each run that ended this cycle but started more than
30 minutes earlier (longer than any listing reaches back) + 1 instance-pools call.

That floor assumes a listing of exactly the runs that ended, which the API cannot give
(runs/list filters on start time only); `api_floor` is the fewest requests the API allows.

After the measured cycles the simulator stops starting runs and the exporter runs until every
run has ended: its counts must equal the truth exactly.

Usage: python bench/api_floor.py [--quick]
"""

from __future__ import annotations

import argparse
import bisect
import math
from dataclasses import replace

from common import (
    START,
    figures,
    large_workspace,
    median,
    read_lookback,
    runs_per_second,
    small_workspace,
)

from databricks_simulator import SimClock, SimConfig, SimServer, SimWorkspace
from exporter.client import RUNS_PER_PAGE
from exporter.collectors.runs.ledger import REACH_BACK_MS
from exporter.config import Settings, WorkspaceConfig
from exporter.workspace import Workspace

SKEW_S = 120.0  # the exporter's clock runs 2 minutes ahead of Databricks'
LAG_S = 30.0  # runs appear in listings up to 30 s after they start
INTERVAL = 60.0


def floor(model: SimWorkspace, before_ms: int, now_ms: int) -> int:
    """The fewest requests that can learn this cycle's runs (see the module docstring)."""
    active = changed = gets = 0
    for run in model.runs_desc(now_ms - model.max_duration_ms, now_ms):
        if now_ms >= run.start_ms + model.listing_lag_ms(run) and model.is_active(run, now_ms):
            active += 1
        started = before_ms < run.start_ms <= now_ms
        ended = before_ms < run.last_end_ms <= now_ms
        if ended and run.start_ms < before_ms - REACH_BACK_MS:
            gets += 1
        elif started or ended:
            changed += 1
    pages = max(1, math.ceil(active / RUNS_PER_PAGE)) + math.ceil(changed / RUNS_PER_PAGE)
    return pages + gets + 1


def api_floor(model: SimWorkspace, before_ms: int, now_ms: int) -> int:
    """The fewest requests the API allows: runs/list filters on start time only, so a run that
    ended this cycle is learnt by a runs/get or on a completed-list page of a start-time window
    [a, b], which holds every completed run that started in it (25 a page). Covering this
    cycle's ended runs with windows and gets is a 1-D optimum (dynamic programming over their
    start times), with perfect knowledge; plus the active-list pages and 1 pools call."""
    active, ended, completed = 0, [], []
    for run in model.runs_desc(now_ms - model.max_duration_ms - REACH_BACK_MS, now_ms):
        if now_ms < run.start_ms + model.listing_lag_ms(run):
            continue
        if model.is_active(run, now_ms):
            active += 1
            continue
        completed.append(run.start_ms)
        if before_ms < run.last_end_ms <= now_ms:
            ended.append(run.start_ms)
    completed.sort()
    ended.sort()
    best = [0] * (len(ended) + 1)  # best[j]: the cheapest cover of the first j ended runs
    for j in range(1, len(ended) + 1):
        best[j] = best[j - 1] + 1  # a runs/get
        for i in range(j - 1, -1, -1):  # one window over ended runs i..j-1
            inside = bisect.bisect_right(completed, ended[j - 1]) - bisect.bisect_left(
                completed, ended[i]
            )
            best[j] = min(best[j], best[i] + math.ceil(inside / RUNS_PER_PAGE))
    return max(1, math.ceil(active / RUNS_PER_PAGE)) + best[-1] + 1


def measure(config: SimConfig, cycles: int) -> dict[str, float]:
    clock = SimClock()
    clock.set(START)
    with SimServer(SimWorkspace(config, clock)) as server:
        ws_config = WorkspaceConfig(name="bench", host=server.url, token=server.token)
        settings = Settings(
            workspaces=(ws_config,),
            lookback_hours=1,
            max_requests_per_second=1e6,
            collectors=("runs", "pools"),  # the figures as before (pipelines: their own test)
        )
        ws = Workspace(ws_config, settings, clock=lambda: clock.time() + SKEW_S, elapsed=clock.time)
        assert ws.collect("runs") and ws.collect("pools")
        read_lookback(ws)  # the look-back, read between cycles
        ratios, costs, floors, api_floors, api_ratios = [], [], [], [], []
        for _ in range(cycles):
            before_ms = clock.now_ms()
            clock.advance(INTERVAL)
            requests = server.requests_total()
            assert ws.collect("runs") and ws.collect("pools")
            cost = server.requests_total() - requests
            least = floor(server.model, before_ms, clock.now_ms())
            costs.append(cost)
            floors.append(least)
            ratios.append(cost / least)
            reachable = api_floor(server.model, before_ms, clock.now_ms())
            api_floors.append(reachable)
            api_ratios.append(cost / reachable)
        server.model.stop_ms = clock.now_ms()  # let every run end, then check the counts
        while server.model.active_count():
            clock.advance(INTERVAL)
            assert ws.collect("runs")
        for _ in range(2):
            clock.advance(INTERVAL)
            assert ws.collect("runs")
        assert "runs" in ws.collectors
        counted = sum(ws.collectors["runs"].ledger.runs_total.values()) + sum(
            ws.collectors["runs"].ledger.one_time_total.values()
        )
        truth = server.model.truth(ws.collectors["runs"].ledger.baseline_ms)["total"]
        ws.close()
    return {
        "cost": median(costs),
        "floor": median(floors),
        "ratio": median(ratios),
        "worst": max(ratios),
        "api_floor": median(api_floors),
        "api_ratio": median(api_ratios),
        "api_worst": max(api_ratios),
        "counted": counted,
        "exact": counted == truth,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    quiet = replace(small_workspace(history_hours=2), listing_lag_seconds=LAG_S)
    busy = replace(large_workspace(jobs=500 if args.quick else 5000), listing_lag_seconds=LAG_S)
    cycles = 4 if args.quick else 20
    print("## API cost against the floor\n")
    print(
        f"Requests per {INTERVAL:g} s cycle (runs + pools) against the floor computed from the "
        "simulator's truth (active-list pages + pages of runs that started or ended since the "
        "last cycle + runs/get for runs that started more than 30 minutes before it + 1 pools "
        f"call), over {cycles} cycles, the exporter's clock {SKEW_S:g} s ahead of Databricks' "
        f"and runs listed up to {LAG_S:g} s late. API floor: the fewest requests the API "
        "allows (runs/list filters on start time only, so a run that ended is learnt by a "
        "runs/get or on a page of completed runs of a start-time window; the best cover, with "
        "perfect knowledge, + active pages + 1 pools call). Exact: after the cycles no new run "
        "starts, and once every run has ended the counts equal the truth.\n"
    )
    print(
        "| load | runs/s | requests/cycle | floor/cycle | ratio (median) | worst cycle "
        "| API floor/cycle | ratio to it (median) | worst cycle | exact |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    loads = []
    for name, config in (("quiet (70 jobs)", quiet), ("busy", busy)):
        r = measure(config, cycles)
        loads.append({"load": name, "runs_per_second": runs_per_second(config), **r})
        print(
            f"| {name} | {runs_per_second(config):.2f} | {r['cost']:g} | {r['floor']:g} "
            f"| {r['ratio']:.2f}x | {r['worst']:.2f}x | {r['api_floor']:g} "
            f"| {r['api_ratio']:.2f}x | {r['api_worst']:.2f}x "
            f"| {'yes' if r['exact'] else 'MISMATCH'} ({r['counted']:,.0f}) |"
        )
    figures({"loads": loads})


if __name__ == "__main__":
    main()
