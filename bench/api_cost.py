"""Figures 1 and 2: API cost per steady-state cycle against history size, and token requests.

The exporter's requests and runs read per 60 s cycle with 1k, 10k and 100k runs in its
look-back, against the naive design measured on the same simulator: re-page the whole
look-back every cycle. Token requests per hour through the exporter's token cache against one
token per API call. Simulated clock: a cycle takes as long as the requests do.

Usage: python bench/api_cost.py [--cycles 30] [--quick]
"""

from __future__ import annotations

import argparse
import time

from azure.core.credentials import AccessToken
from common import (
    START,
    figures,
    median,
    read_lookback,
    runs_per_second,
    small_workspace,
    workspace,
)

from databricks_simulator import SimClock, SimServer, SimWorkspace
from exporter.auth import DATABRICKS_SCOPE, CachedToken


def api_cost(history: int, cycles: int, interval: float) -> dict[str, float]:
    rate = runs_per_second(small_workspace())
    lookback_hours = history / rate / 3600
    clock = SimClock()
    clock.set(START)
    config = small_workspace(history_hours=lookback_hours + 1)
    with SimServer(SimWorkspace(config, clock)) as server:
        ws = workspace(
            server.url,
            server.token,
            clock,
            lookback_hours=lookback_hours,
            interval=interval,
            max_requests_per_second=1e6,  # requests are counted here, not timed
        )
        t0 = time.perf_counter()
        assert ws.collect("runs") and ws.collect("pools")
        first = {"requests": server.requests_total(), "seconds": time.perf_counter() - t0}
        read_lookback(ws)  # between cycles in the exporter; all at once here
        first["lookback_requests"] = server.requests_total() - first["requests"]
        requests, runs = [], []
        for _ in range(cycles):
            clock.advance(interval)
            before, served = server.requests_total(), server.stats.runs_served
            assert ws.collect("runs") and ws.collect("pools")
            requests.append(server.requests_total() - before)
            runs.append(server.stats.runs_served - served)
        counted = sum(ws.collectors["runs"].ledger.runs_total.values())
        truth = server.model.truth(ws.collectors["runs"].ledger.baseline_ms)["total"]
        naive_requests, naive_runs = [], []
        for _ in range(2):  # the naive design: every cycle re-pages the look-back
            clock.advance(interval)
            before, served = server.requests_total(), server.stats.runs_served
            for _run in ws.client.iter_runs(
                completed_only=True,
                expand_tasks=True,
                start_time_from=clock.now_ms() - int(lookback_hours * 3600_000),
            ):
                pass
            for _run in ws.client.iter_runs(active_only=True):
                pass
            ws.client.list_pools()
            naive_requests.append(server.requests_total() - before)
            naive_runs.append(server.stats.runs_served - served)
        ws.close()
    return {
        "lookback_hours": lookback_hours,
        "first_requests": first["requests"],
        "first_seconds": first["seconds"],
        "lookback_requests": first["lookback_requests"],
        "median": median(requests),
        "max": max(requests),
        "runs": median(runs),
        "naive": median(naive_requests),
        "naive_runs": median(naive_runs),
        "exact": counted == truth,
        "counted": counted,
    }


def tokens_per_hour(
    hours: float, interval: float, lifetime: float, requests_per_cycle: float
) -> tuple[float, float]:
    """Token requests per hour through CachedToken vs one per API call (simulated clock)."""
    now = [START]
    issued: list[float] = []

    class Credential:
        def get_token(self, *scopes: str, **kw: object) -> AccessToken:
            issued.append(now[0])
            return AccessToken(f"t{len(issued)}", int(now[0] + lifetime))

    cached = CachedToken(Credential(), DATABRICKS_SCOPE, lambda: None, clock=lambda: now[0])
    calls = 0
    end = now[0] + hours * 3600
    while now[0] < end:
        for _ in range(round(requests_per_cycle)):
            cached.get()
            calls += 1
        now[0] += interval
    return len(issued) / hours, calls / hours


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cycles", type=int, default=30)
    p.add_argument("--interval", type=float, default=60)
    p.add_argument("--quick", action="store_true", help="1k and 10k runs, 5 cycles: a smoke run")
    args = p.parse_args()
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    cycles = 5 if args.quick else args.cycles
    results = [api_cost(n, cycles, args.interval) for n in sizes]
    rate = runs_per_second(small_workspace())
    print("## API cost per steady-state cycle\n")
    print(
        f"70 jobs, {rate * 86400:,.0f} runs/day; look-back sized to hold the history; "
        f"{cycles} cycles of {args.interval:g} s on a simulated clock; baseline: a collector "
        "that re-pages the look-back every cycle, measured on the same simulator.\n"
    )
    print(
        "| runs in look-back | exporter requests/cycle (median, max) | exporter runs read/cycle "
        "| baseline requests/cycle | baseline runs read/cycle | fewer requests | first "
        "cycle (ready) | look-back, read after it | counted = truth |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['naive_runs']:,.0f} | {r['median']:g} ({r['max']:g}) | {r['runs']:g} "
            f"| {r['naive']:,g} | {r['naive_runs']:,.0f} | {r['naive'] / r['median']:.0f}x "
            f"| {r['first_requests']:,} requests, {r['first_seconds']:.2f} s "
            f"| {r['lookback_requests']:,} requests "
            f"| {'yes' if r['exact'] else 'NO'} ({r['counted']:,}) |"
        )
    tok, naive_tok = tokens_per_hour(24, args.interval, 3600, results[-1]["median"])
    print("\n## Azure AD token requests\n")
    print(
        f"1 h tokens, refreshed 5 min before expiry, {results[-1]['median']:g} API requests per "
        f"{args.interval:g} s cycle, over 24 simulated hours.\n"
    )
    print("| exporter tokens/hour | baseline: a token per API call | fewer |")
    print("|---|---|---|")
    print(f"| {tok:.2f} | {naive_tok:,.0f} | {naive_tok / tok:.0f}x |")
    figures(
        {
            "sizes": [
                {
                    "runs_in_lookback": r["naive_runs"],
                    "requests_median": r["median"],
                    "requests_max": r["max"],
                    "baseline_requests": r["naive"],
                    "counted": r["counted"],
                    "exact": bool(r["exact"]),
                }
                for r in results
            ],
            "tokens_per_hour": tok,
            "baseline_tokens_per_hour": naive_tok,
        }
    )


if __name__ == "__main__":
    main()
