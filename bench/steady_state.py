"""Steady-state cost of the exporter against the loopback simulator, on a simulated clock.

Figures, each against a baseline measured in the same run:
- API requests per cycle with N runs of history, vs a naive collector that re-pages the look-back;
- Azure AD token requests per hour, vs one token per API call;
- RSS of this process after an hour of simulated cycles, vs right after the first collection.

Usage: python bench/steady_state.py [--jobs 70] [--history-hours 24] [--cycles 60]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time

import psutil
from azure.core.credentials import AccessToken

from exporter.auth import DATABRICKS_SCOPE, CachedToken
from exporter.config import Settings, WorkspaceConfig
from exporter.simulator import SimClock, SimConfig, SimServer, SimWorkspace
from exporter.workspace import Workspace


def rss_mb() -> float:
    gc.collect()
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def api_cost(
    jobs: int, history_hours: float, lookback_hours: float, cycles: int, interval: float
) -> dict[str, float]:
    clock = SimClock()
    clock.set(1_800_000_000.0)
    # A run per job every 3-6 minutes, lasting 1-20 minutes (a few longer).
    config = SimConfig(
        seed=1,
        jobs=jobs,
        history_hours=history_hours,
        period_seconds=(180, 360),
        duration_seconds=(60, 1200),
        long_run_rate=0.01,
    )
    with SimServer(SimWorkspace(config, clock)) as server:
        history = server.model.history_size()
        ws_config = WorkspaceConfig(name="bench", host=server.url, token=server.token)
        settings = Settings(
            workspaces=(ws_config,),
            lookback_hours=lookback_hours,
            interval=interval,
            max_requests_per_second=1e6,  # request counts are measured here, not time
        )
        ws = Workspace(ws_config, settings, clock=clock.time)
        t0 = time.perf_counter()
        assert ws.collect("runs") and ws.collect("pools")
        first_cycle_requests = server.requests_total()
        first_cycle_seconds = time.perf_counter() - t0
        rss_start = rss_mb()
        per_cycle = []
        for _ in range(cycles):
            clock.advance(interval)
            before = server.requests_total()
            assert ws.collect("runs") and ws.collect("pools")
            per_cycle.append(server.requests_total() - before)
        rss_end = rss_mb()
        counted = sum(ws.runs.ledger.runs_total.values())
        truth = sum(r["count"] for r in server.model.truth(ws.runs.ledger.baseline_ms)["runs"])
        # The naive design: re-page the whole look-back every cycle.
        naive = []
        for _ in range(3):
            clock.advance(interval)
            before = server.requests_total()
            ws.client.list_runs(
                completed_only=True,
                expand_tasks=True,
                start_time_from=clock.now_ms() - int(lookback_hours * 3600_000),
            )
            ws.client.list_runs(active_only=True)
            ws.client.list_pools()
            naive.append(server.requests_total() - before)
        ws.close()
    return {
        "history": history,
        "first_cycle_requests": first_cycle_requests,
        "first_cycle_seconds": first_cycle_seconds,
        "median": statistics.median(per_cycle),
        "max": max(per_cycle),
        "naive": statistics.median(naive),
        "counted": counted,
        "truth": truth,
        "rss_start": rss_start,
        "rss_end": rss_end,
    }


def tokens_per_hour(
    hours: float, interval: float, lifetime: float, requests_per_cycle: float
) -> tuple[float, float]:
    """Token requests per hour through CachedToken vs one per API call (simulated clock)."""
    now = [1_800_000_000.0]
    issued = []

    class Credential:
        def get_token(self, *scopes: str, **kw: object) -> AccessToken:
            issued.append(now[0])
            return AccessToken(f"t{len(issued)}", int(now[0] + lifetime))

    counted = []
    cached = CachedToken(
        Credential(), DATABRICKS_SCOPE, lambda: counted.append(1), clock=lambda: now[0]
    )
    calls = 0
    end = now[0] + hours * 3600
    while now[0] < end:
        for _ in range(int(requests_per_cycle)):
            cached.get()
            calls += 1
        now[0] += interval
    return len(issued) / hours, calls / hours


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=70)
    p.add_argument("--history-hours", type=float, default=24)
    p.add_argument("--lookback-hours", type=float, default=24)
    p.add_argument("--cycles", type=int, default=60)
    p.add_argument("--interval", type=float, default=60)
    args = p.parse_args()
    r = api_cost(args.jobs, args.history_hours, args.lookback_hours, args.cycles, args.interval)
    tok, naive_tok = tokens_per_hour(24, args.interval, 3600, r["median"])
    print(
        f"# steady state: {platform.node()} {platform.python_version()} {time.strftime('%Y-%m-%d')}"
    )
    print(
        f"history: {r['history']} runs in {args.history_hours:g} h, {args.jobs} jobs; "
        f"look-back {args.lookback_hours:g} h; {args.cycles} cycles of {args.interval:g} s "
        "(simulated clock)"
    )
    print(
        f"first cycle (look-back): {r['first_cycle_requests']} requests, "
        f"{r['first_cycle_seconds']:.1f} s"
    )
    print("| figure | exporter | naive baseline | ratio |")
    print("|---|---|---|---|")
    print(
        f"| API requests per steady-state cycle (median) | {r['median']:g} (max {r['max']}) "
        f"| {r['naive']:g} | {r['naive'] / r['median']:.0f}x fewer |"
    )
    print(
        f"| Azure AD token requests per hour (1 h tokens) | {tok:.2f} | {naive_tok:.0f} "
        f"| {naive_tok / tok:.0f}x fewer |"
    )
    print(
        f"| RSS after {args.cycles} cycles vs after first collection | {r['rss_end']:.1f} MB "
        f"| {r['rss_start']:.1f} MB | {r['rss_end'] / r['rss_start']:.3f} |"
    )
    print(
        f"runs counted {r['counted']}, simulator truth {r['truth']}: "
        f"{'exact' if r['counted'] == r['truth'] else 'MISMATCH'}"
    )


if __name__ == "__main__":
    main()
