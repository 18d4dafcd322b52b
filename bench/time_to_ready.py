"""Time to ready against the size of the look-back: the first cycle reads no history now; before,
it paged the whole look-back before anything was counted or /readyz was 200.

Both are measured in one run on the same simulated workspace (70 jobs, simulated clock): the
requests of the first cycle, and the pages of the look-back (which the first cycle used to read
and which are now read after it, in the background). Time is what those requests take at the
client's default rate limit (10 requests a second; the look-back now at half of it), since the
rate limit, not the CPU, sets the pace against a real workspace. A look-back of more than
max_pages (20,000 pages, 500,000 runs) never finished before: the cycle failed and started again.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

import requests
from common import START, figures, runs_per_second, small_workspace, workspace

from databricks_simulator import SimClock, SimServer, SimWorkspace
from exporter.client import ApiError
from exporter.config import DEFAULT_MAX_PAGES, DEFAULT_MAX_REQUESTS_PER_SECOND

RATE = DEFAULT_MAX_REQUESTS_PER_SECOND


def measure(history: int) -> dict[str, float]:
    rate = runs_per_second(small_workspace())
    lookback_hours = history / rate / 3600
    clock = SimClock()
    clock.set(START)
    with SimServer(SimWorkspace(small_workspace(history_hours=lookback_hours + 1), clock)) as s:
        ws = workspace(
            s.url, s.token, clock, lookback_hours=lookback_hours, max_requests_per_second=1e6
        )
        cpu = time.process_time()
        assert ws.collect("runs")
        first = s.requests_total()
        first_cpu = time.process_time() - cpu
        assert "runs" in ws.collectors
        counting = ws.collectors["runs"].snapshot is not None
        cpu = time.process_time()
        while ws.backfill(3600.0):
            pass
        lookback = s.requests_total() - first
        lookback_cpu = time.process_time() - cpu
        jobs = len(ws.collectors["runs"].ledger.last_runs)
        progress = ws.collectors["runs"].ledger.backfill_progress
        # Before: the first cycle's active listing, then every page of the look-back, up to
        # max_pages (then it failed, and the next cycle started the same listing again).
        mark = s.requests_total()
        wedged = False
        try:
            for _ in ws.client.iter_runs(
                completed_only=True,
                start_time_from=ws.collectors["runs"].ledger.backfill_from_ms - 60_000,
                expand_tasks=True,
            ):
                pass
        except ApiError:
            wedged = True
        before = 1 + s.requests_total() - mark
        ws.close()
    return {
        "runs": history,
        "first_requests": first,
        "ready_s": first / RATE,
        "first_cpu_s": first_cpu,
        "counting_after_first_cycle": counting,
        "lookback_requests": lookback,
        "lookback_s": lookback / (RATE / 2),
        "lookback_cpu_s": lookback_cpu,
        "jobs_with_last_run": jobs,
        "lookback_done": progress == 1.0,
        "before_requests": before,
        "before_ready_s": before / RATE,
        "before_wedged": wedged,
    }


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _watch(args: list[str], env: dict[str, str], jobs: int) -> dict[str, float]:
    """Start an exporter and time its first job series and every job's last run (wall time)."""
    port = _port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "--listen-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-collector.pipelines",  # the runs and pools figures, measured as before
            "--no-collector.jobs",
            *args,
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = every = float("nan")
    try:
        while time.monotonic() - started < 120:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except requests.RequestException:
                time.sleep(0.05)
                continue
            if first != first and "\ndatabricks_job_" in text:
                first = time.monotonic() - started
            if text.count("\ndatabricks_job_last_run_info{") >= jobs:
                every = time.monotonic() - started
                break
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(10)
    return {"first_job_series_s": first, "every_last_run_s": every}


def demo() -> dict[str, dict[str, float]]:
    """`make demo` against the same simulated workspace watched with a real workspace's
    defaults (its own simulator, 10 requests a second)."""
    from exporter.cli import start_simulator
    from exporter.config import load_settings

    settings, sim = start_simulator(load_settings(["--simulate"], {}))
    try:
        ws = settings.workspaces[0]
        jobs = 21  # 24 jobs, 3 of them one-time runs: no last-run gauges
        default = _watch(
            ["--interval", "15"],
            {"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": ws.token or ""},
            jobs,
        )
    finally:
        sim.stop()  # type: ignore[attr-defined]
    return {
        "demo": _watch(["--simulate", "--interval", "15"], {}, 21),
        "real_workspace_defaults": default,
    }


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    sizes = (1_000, 10_000) if args.quick else (1_000, 100_000, 1_000_000)
    rows = [measure(n) for n in sizes]
    print("## Time to ready against the look-back\n")
    print(
        "70 jobs; runs in `--lookback-hours`; the first cycle's requests and the look-back's "
        f"pages counted on the simulator, timed at the default {RATE:g} requests/s (the look-back "
        f"now at {RATE / 2:g}/s, between cycles). Before: the first cycle read the look-back "
        f"itself, and past max_pages ({DEFAULT_MAX_PAGES:,} pages) it failed and started again, "
        "forever.\n"
    )
    print(
        "| runs in look-back | now: requests before ready | now: ready after | before: requests "
        "before ready | before: ready after | faster | look-back after ready (requests) | jobs "
        "with a last run |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        before = "never (wedged)" if r["before_wedged"] else _duration(r["before_ready_s"])
        print(
            f"| {r['runs']:,} | {r['first_requests']:,} | {_duration(r['ready_s'])} "
            f"| {r['before_requests']:,} | {before} "
            f"| {r['before_requests'] / r['first_requests']:,.0f}x "
            f"| {r['lookback_requests']:,}, {_duration(r['lookback_s'])} "
            f"| {r['jobs_with_last_run']} {'(all)' if r['lookback_done'] else '(NOT DONE)'} |"
        )
    times = demo()
    print("\n## The demo's first seconds\n")
    print(
        "`make demo` (its own simulator: the look-back at 100 requests/s) against the same "
        "simulated workspace watched with a real workspace's defaults (10 requests/s); wall "
        "time from the process start.\n"
    )
    print("| | first job series | every job's last run |")
    print("|---|---|---|")
    for name, t in (
        ("make demo", times["demo"]),
        ("real-workspace defaults", times["real_workspace_defaults"]),
    ):
        print(f"| {name} | {t['first_job_series_s']:.1f} s | {t['every_last_run_s']:.1f} s |")
    figures({"sizes": rows, "demo": times})


if __name__ == "__main__":
    main()
