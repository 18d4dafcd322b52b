"""Figure 5: catching up after a 1 h outage (36k new runs) under the client-side rate limit.

The simulated workspace answers 429 (Retry-After: 1) beyond 10 requests a second (bursts of
20). The exporter, limited to 10 requests a second (its default), collects once after the
outage; its time is compared with the bound that limit sets (requests / 10 per second). The
baseline is the same catch-up without the client-side limit, relying on 429s and Retry-After.

Usage: python bench/catch_up.py [--jobs 5000] [--quick]
"""

from __future__ import annotations

import argparse
import time

from common import START, figures, large_workspace, read_lookback, runs_per_second, workspace

from databricks_simulator import SimClock, SimServer, SimWorkspace, TokenBucket

LIMIT = 10.0  # requests a second: the client's default and the simulated workspace's limit


def catch_up(jobs: int, client_limit: float, outage: float) -> dict[str, float]:
    clock = SimClock()
    clock.set(START)
    with SimServer(SimWorkspace(large_workspace(jobs), clock)) as server:
        ws = workspace(
            server.url,
            server.token,
            clock,
            lookback_hours=0.05,
            max_requests_per_second=client_limit,
        )
        assert ws.collect("runs")
        read_lookback(ws)  # the look-back, read between cycles
        clock.advance(60)
        assert ws.collect("runs")
        clock.advance(outage)  # the exporter was down; the workspace went on running jobs
        server.rate_limiter = TokenBucket(LIMIT, burst=2 * int(LIMIT))
        before = server.requests_total()
        throttled_before = server.stats.faults["429"]
        t0 = time.perf_counter()
        ok = ws.collect("runs")
        seconds = time.perf_counter() - t0
        requests = server.requests_total() - before
        throttled = server.stats.faults["429"] - throttled_before
        ended = server.model.truth(int((START + 60) * 1000), clock.now_ms())["total"]
        counted = sum(ws.collectors["runs"].ledger.runs_total.values())
        truth = server.model.truth(ws.collectors["runs"].ledger.baseline_ms)["total"]
        ws.close()
    return {
        "ok": ok,
        "seconds": seconds,
        "requests": requests,
        "throttled": throttled,
        "ended": ended,
        "exact": counted == truth,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--outage-hours", type=float, default=1)
    p.add_argument("--quick", action="store_true", help="200 jobs: a smoke run")
    args = p.parse_args()
    jobs = 200 if args.quick else args.jobs
    outage = args.outage_hours * 3600
    limited = catch_up(jobs, LIMIT, outage)
    unlimited = catch_up(jobs, 0.0, outage)
    rate = runs_per_second(large_workspace(jobs))
    print("## Catch-up after an outage\n")
    print(
        f"{jobs:,} jobs at {rate:.1f} runs/s; the exporter is down for {args.outage_hours:g} h "
        f"({limited['ended']:,} runs end meanwhile), then collects once. The workspace answers "
        f"429 beyond {LIMIT:g} requests/s (bursts of {2 * int(LIMIT)}). Bound: answered "
        f"requests / {LIMIT:g} per second.\n"
    )
    print(
        "| client | requests | time | bound | share of the allowed rate used | 429s "
        "| collection | counted = truth |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, r in ((f"exporter ({LIMIT:g} req/s)", limited), ("baseline: no limit", unlimited)):
        bound = (r["requests"] - r["throttled"]) / LIMIT  # the answered requests at the limit
        print(
            f"| {label} | {r['requests']:,} | {r['seconds']:.1f} s | {bound:.1f} s "
            f"| {bound / r['seconds'] * 100:.0f}% | {r['throttled']:,} "
            f"| {'ok' if r['ok'] else 'FAILED'} | {'yes' if r['exact'] else 'NO'} |"
        )
    figures({"exporter": limited, "baseline": unlimited, "limit_per_second": LIMIT})


if __name__ == "__main__":
    main()
