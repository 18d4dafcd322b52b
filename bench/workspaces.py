"""Figure 8: many workspaces in one exporter process (issue 21): CPU, memory, threads, scrape
latency, how late collections start, and time to ready, with 1, 10, 50 and 100 workspaces.

Every workspace is simulated (70 jobs; quiet: a run per job every 3-6 minutes, as
small_workspace; busy: every 30-60 s), all served on the real clock by one child process, so
the exporter's CPU and memory are its own. The exporter is a real process (`python -m exporter
--config <yaml>`) with the workspaces in its YAML and their tokens in its environment. From
/readyz 200 on, this process scrapes /metrics once a second (Prometheus's headers) for a few
intervals and reads databricks_exporter_collection_start_delay_seconds from every scrape; the
exporter's RSS and threads are sampled every second from its start. The baseline is the
1-workspace row of the same run.

Usage: python bench/workspaces.py [--interval 15] [--intervals 4] [--quick]
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests
from common import SimFleet, figures, free_port, median, percentile, simulator_fleet

from databricks_simulator import SimConfig

ROOT = Path(__file__).parent.parent
JOBS = 70
BUSY_SHARE = 0.1  # of the workspaces in a busy mix
# What the issue asks of one process: 100 quiet workspaces under one core on average and
# 512 MiB, and no collection starting later than 10% of its interval.
TARGET_CORE_SHARE = 1.0
TARGET_RSS_MB = 512.0
TARGET_DELAY_SHARE = 0.10
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
DELAY = re.compile(
    rb"^databricks_exporter_collection_start_delay_seconds\{([^}]*)\} (\S+)", re.MULTILINE
)
PROGRESS = re.compile(
    rb"^databricks_exporter_lookback_progress_ratio\{([^}]*)\} (\S+)", re.MULTILINE
)
LABEL = re.compile(rb'(\w+)="([^"]*)"')


def quiet(seed: int) -> SimConfig:
    """small_workspace() with a seed of its own, on a short history (the look-back is short)."""
    return SimConfig(
        seed=seed,
        jobs=JOBS,
        history_hours=2.0,
        period_seconds=(180, 360),
        duration_seconds=(60, 1200),
        long_run_rate=0.01,
    )


def busy(seed: int) -> SimConfig:
    """A run per job every 30-60 s (~1.6 runs/s), lasting 10-50 s."""
    return SimConfig(
        seed=seed,
        jobs=JOBS,
        history_hours=2.0,
        period_seconds=(30, 60),
        duration_seconds=(10, 50),
        long_run_rate=0.01,
    )


@dataclass
class Sampler:
    """RSS and threads of a process, every second, in a thread of this one."""

    pid: int
    rss_mb: list[float] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._proc = psutil.Process(self.pid)
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                with self._proc.oneshot():
                    self.rss_mb.append(self._proc.memory_info().rss / 2**20)
                    self.threads.append(self._proc.num_threads())
            except psutil.Error:
                return
            if self._stop.wait(1.0):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def write_config(path: Path, servers: list[tuple[str, str]]) -> dict[str, str]:
    """The exporter's YAML for these workspaces; returns the environment holding their tokens."""
    env, lines = {}, ["workspaces:"]
    for i, (url, token) in enumerate(servers):
        var = f"BENCH_WS{i:03d}_TOKEN"
        env[var] = token
        lines += [f"  - name: ws{i:03d}", f"    host: {url}", f"    token_env: {var}"]
    path.write_text("\n".join(lines) + "\n")
    return env


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def parse_gauges(pattern: re.Pattern[bytes], text: bytes) -> dict[tuple[str, str], float]:
    out = {}
    for m in pattern.finditer(text):
        labels = {k.decode(): v.decode() for k, v in LABEL.findall(m.group(1))}
        out[(labels.get("workspace", ""), labels.get("collector", ""))] = float(m.group(2))
    return out


def measure(
    fleet: SimFleet,
    indices: list[int],
    interval: float,
    intervals: int,
    scrape_every: float,
    lookback_hours: float,
    workdir: Path,
    label: str,
) -> dict[str, Any]:
    """One exporter process over the workspaces at these indices of the fleet."""
    n = len(indices)
    config = workdir / f"workspaces-{label}.yaml"
    tokens = write_config(config, [fleet.servers[i] for i in indices])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "AZURE_"))}
    env.update(tokens)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / f"exporter-{label}.log"
    cmd = [
        sys.executable,
        "-m",
        "exporter",
        "--config",
        str(config),
        "--listen-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--interval",
        f"{interval:g}",
        "--max-requests-per-second",
        "10",
        "--lookback-hours",
        f"{lookback_hours:g}",
        "--no-collector.pipelines",  # the runs and pools figures, measured as before
        "--no-collector.jobs",
    ]
    sim = psutil.Process(fleet.pid)
    with open(log_path, "wb") as log:
        started = time.monotonic()
        popen = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        sampler = Sampler(popen.pid)
        proc = psutil.Process(popen.pid)
        session = requests.Session()
        try:
            ready_s = wait_ready(session, url, popen, started, log_path, timeout=60 + n)
            cpu_to_ready = cpu_seconds(proc)
            cpu0, sim0, t0 = cpu_seconds(proc), cpu_seconds(sim), time.monotonic()
            window = intervals * interval
            scrapes, failures, size = [], 0, 0
            readings: dict[tuple[str, str], set[float]] = {}  # distinct values: collections
            delays: list[float] = []  # every sample of every scrape
            cpu_ticks: list[tuple[float, float]] = [(t0, cpu0)]
            lookback_done: float | None = None
            lookback_left = n  # workspaces whose look-back is not read yet, at the last scrape
            tick = t0
            while True:
                tick += scrape_every
                if tick > t0 + window:
                    break
                time.sleep(max(0.0, tick - time.monotonic()))
                s = time.perf_counter()
                try:
                    answer = session.get(
                        url + "/metrics", headers=PROMETHEUS_HEADERS, stream=True, timeout=30
                    )
                    body = answer.raw.read(decode_content=False)
                except requests.RequestException:
                    failures += 1
                    continue
                took = time.perf_counter() - s
                cpu_ticks.append((time.monotonic(), cpu_seconds(proc)))
                if answer.status_code != 200:
                    failures += 1
                    continue
                scrapes.append(took)
                size = len(body)
                if answer.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                for key, value in parse_gauges(DELAY, body).items():
                    delays.append(value)
                    readings.setdefault(key, set()).add(value)
                progress = list(parse_gauges(PROGRESS, body).values())
                lookback_left = n - sum(1 for v in progress if v >= 1.0)
                if lookback_done is None and lookback_left == 0:
                    lookback_done = time.monotonic()
            t1 = time.monotonic()
            cpu = cpu_seconds(proc) - cpu0
            sim_cpu = cpu_seconds(sim) - sim0
            cpu_ticks.append((t1, cpu0 + cpu))
        finally:
            session.close()
            stop_s = stop(popen)
            sampler.stop()
    elapsed = t1 - t0
    # After the look-back: from the first tick once every workspace had read its look-back, if
    # at least one interval of the window was left (the steady state).
    steady: float | None = None
    if lookback_done is not None:
        ts, cs = next((t, c) for t, c in cpu_ticks if t >= lookback_done)
        if t1 - ts >= interval:
            steady = (cpu0 + cpu - cs) / ((t1 - ts) / interval)
    distinct = [v for values in readings.values() for v in values]
    # A reading of one interval or more: either a collection that really waited that long, or
    # one that started before the scheduler's submitted event recorded its due time (APScheduler
    # dispatches those events only after submitting every due job), so it was measured against
    # the previous due time. Shown apart; the figures below one interval are unaffected.
    whole = [v for v in distinct if v >= interval]
    max_delay = max(delays, default=0.0)
    return {
        "workspaces": n,
        "cpu_per_interval_s": cpu / (elapsed / interval),
        "cpu_share_of_core": cpu / elapsed,
        "cpu_per_interval_after_lookback_s": steady,
        "cpu_to_ready_s": cpu_to_ready,
        "simulator_share_of_core": sim_cpu / elapsed,
        "peak_rss_mb": max(sampler.rss_mb),
        "max_threads": max(sampler.threads),
        "scrapes": len(scrapes),
        "scrape_failures": failures,
        "scrape_p50_ms": median(scrapes) * 1000 if scrapes else None,
        "scrape_p99_ms": percentile(scrapes, 99) * 1000 if scrapes else None,
        "gzip_kib": size / 1024,
        "delay_samples": len(delays),
        "workspaces_with_delay": len({ws for ws, _ in readings}),
        "collections_seen": len(distinct),
        "max_start_delay_s": max_delay,
        "p99_start_delay_s": percentile(delays, 99) if delays else 0.0,
        "start_delay_share": max_delay / interval,
        "readings_of_an_interval_or_more": len(whole),
        "max_start_delay_below_interval_s": max((v for v in distinct if v < interval), default=0.0),
        "ready_s": ready_s,
        "lookback_done_s": None if lookback_done is None else lookback_done - t0,
        "lookback_left": lookback_left,
        "window_s": elapsed,
        "stop_s": stop_s,
        "exit_code": popen.returncode,
    }


def wait_ready(
    session: requests.Session,
    url: str,
    popen: subprocess.Popen[bytes],
    started: float,
    log_path: Path,
    timeout: float,
) -> float:
    while time.monotonic() - started < timeout:
        if popen.poll() is not None:
            raise SystemExit(f"exporter exited with {popen.returncode}:\n{tail(log_path)}")
        try:
            if session.get(url + "/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise SystemExit(f"exporter not ready after {timeout:.0f} s:\n{tail(log_path)}")


def tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


def stop(popen: subprocess.Popen[bytes]) -> float:
    t = time.monotonic()
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(30)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    return time.monotonic() - t


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--interval", type=float, default=15)
    p.add_argument("--intervals", type=int, default=4, help="measured after /readyz")
    p.add_argument("--scrape-every", type=float, default=1.0, help="seconds between scrapes")
    p.add_argument("--lookback-hours", type=float, default=0.1)
    p.add_argument("--sizes", type=int, nargs="*", help="workspaces per quiet row")
    p.add_argument("--busy-sizes", type=int, nargs="*", help="workspaces per busy-mix row")
    p.add_argument("--quick", action="store_true", help="1 and 3 workspaces, 2 intervals of 5 s")
    args = p.parse_args()
    if args.quick:
        sizes, busy_sizes = (1, 3), (3,)
        args.interval, args.intervals = 5.0, 2
    else:
        sizes, busy_sizes = (1, 10, 50, 100), (100,)
    sizes = tuple(args.sizes or sizes)
    busy_sizes = tuple(busy_sizes if args.busy_sizes is None else args.busy_sizes)
    quiet_count = max(sizes + busy_sizes)
    busy_count = max((max(1, round(n * BUSY_SHARE)) for n in busy_sizes), default=0)
    configs = [quiet(seed=1 + i) for i in range(quiet_count)]
    configs += [busy(seed=5000 + i) for i in range(busy_count)]
    # The fleet: the quiet workspaces, then the busy ones; a busy mix of n replaces the last
    # 10% of the quiet ones by busy ones.
    runs: list[tuple[str, list[int]]] = [(f"quiet-{n}", list(range(n))) for n in sizes]
    for n in busy_sizes:
        b = max(1, round(n * BUSY_SHARE))
        runs.append((f"busy-{n}", [*range(n - b), *range(quiet_count, quiet_count + b)]))
    wall = time.monotonic()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, simulator_fleet(configs) as fleet:
        for label, indices in runs:
            row = measure(
                fleet,
                indices,
                args.interval,
                args.intervals,
                args.scrape_every,
                args.lookback_hours,
                Path(tmp),
                label,
            )
            row["busy"] = sum(1 for i in indices if i >= quiet_count)
            row["mix"] = "busy" if row["busy"] else "quiet"
            rows.append(row)
    wall = time.monotonic() - wall
    report(rows, args, wall)


def report(rows: list[dict[str, Any]], args: argparse.Namespace, wall: float) -> None:
    interval = args.interval
    print("## Many workspaces in one process\n")
    print(
        f"One exporter process (`python -m exporter --config`, interval {interval:g} s, "
        f"--max-requests-per-second 10, --lookback-hours {args.lookback_hours:g}) over N "
        f"simulated workspaces of {JOBS} jobs each, served on the real clock by one other "
        "process. Quiet: a run per job every 3-6 min (small_workspace); busy mix: "
        f"{BUSY_SHARE:.0%} of the workspaces have a run per job every 30-60 s. Measured over "
        f"{args.intervals} intervals from /readyz 200: CPU (user + system of the exporter "
        f"process, scrapes included), scrapes of /metrics every {args.scrape_every:g} s "
        "(Prometheus's headers; wall time of the whole response) and "
        "databricks_exporter_collection_start_delay_seconds read from "
        "each; RSS and threads sampled every second from the start. Baseline: the "
        f"1-workspace row. {wall:.0f} s of wall time.\n"
    )
    print(
        "| workspaces | mix | CPU per interval | % of a core | same, after the look-back "
        "| CPU to ready | peak RSS | max threads | ready | look-back read |"
    )
    print("|" + "---|" * 10)
    for r in rows:
        lookback = (
            f"{r['lookback_done_s']:.0f} s after ready"
            if r["lookback_done_s"] is not None
            else f"{r['lookback_left']} not within the window"
        )
        steady = r["cpu_per_interval_after_lookback_s"]
        print(
            f"| {r['workspaces']} | {r['mix']} | {r['cpu_per_interval_s']:.3f} s "
            f"| {r['cpu_share_of_core'] * 100:.1f}% "
            f"| {'n/a' if steady is None else f'{steady:.3f} s'} | {r['cpu_to_ready_s']:.2f} s "
            f"| {r['peak_rss_mb']:.1f} MB | {r['max_threads']} | {r['ready_s']:.1f} s "
            f"| {lookback} |"
        )
    print(
        "\n| workspaces | mix | scrape p50 | scrape p99 | /metrics (gzip) | start delay max "
        "| p99 | max / interval | collections seen | of them ≥ 1 interval late "
        "| max below 1 interval |"
    )
    print("|" + "---|" * 11)
    for r in rows:
        print(
            f"| {r['workspaces']} | {r['mix']} | {ms(r['scrape_p50_ms'])} "
            f"| {ms(r['scrape_p99_ms'])} | {r['gzip_kib']:,.0f} KiB "
            f"| {r['max_start_delay_s']:.3f} s | {r['p99_start_delay_s']:.3f} s "
            f"| {r['start_delay_share'] * 100:.1f}% | {r['collections_seen']} "
            f"| {r['readings_of_an_interval_or_more']} "
            f"| {r['max_start_delay_below_interval_s']:.3f} s |"
        )
    print(
        "\nStart delays are the gauge as the exporter reports it, at every scrape (max, p99) and "
        "per collection (each distinct value of a workspace and collector). A collection "
        "reported one interval late or more either waited that long or started before "
        "APScheduler dispatched its submitted event (dispatched only once every due job is "
        "submitted), so it was measured against its previous due time: 'max below 1 interval' "
        "leaves those out."
    )
    base = rows[0]
    print(
        "\nHow the cost scales against the 1-workspace baseline (same run), and the issue's "
        f"targets: under {TARGET_CORE_SHARE:g} core on average, under {TARGET_RSS_MB:g} MiB, no "
        f"collection starting later than {TARGET_DELAY_SHARE:.0%} of its interval (asked of 100 "
        "quiet workspaces; shown for every row).\n"
    )
    print(
        "| workspaces | mix | CPU per workspace vs 1 | RSS per workspace vs 1 "
        "| RSS added per extra workspace | threads added per extra workspace | simulator's "
        "% of a core | CPU < 1 core | RSS < 512 MiB | starts < 10% late (gauge; below 1 "
        "interval) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        n = r["workspaces"]
        b = base["workspaces"]
        r["cpu_per_workspace_ratio"] = (
            r["cpu_per_interval_s"] / n / (base["cpu_per_interval_s"] / b)
        )
        r["rss_per_workspace_ratio"] = r["peak_rss_mb"] / n / (base["peak_rss_mb"] / b)
        extra = (
            f"{(r['peak_rss_mb'] - base['peak_rss_mb']) / (n - b):.2f} MB"
            if n > b
            else "(baseline)"
        )
        threads = (
            f"{(r['max_threads'] - base['max_threads']) / (n - b):.2f}" if n > b else "(baseline)"
        )
        r["meets_cpu"] = r["cpu_share_of_core"] < TARGET_CORE_SHARE
        r["meets_rss"] = r["peak_rss_mb"] < TARGET_RSS_MB
        r["meets_delay"] = r["start_delay_share"] <= TARGET_DELAY_SHARE
        below = r["max_start_delay_below_interval_s"] / interval <= TARGET_DELAY_SHARE
        r["meets_delay_below_interval"] = below
        print(
            f"| {n} | {r['mix']} | {r['cpu_per_workspace_ratio']:.3f} "
            f"| {r['rss_per_workspace_ratio']:.3f} | {extra} | {threads} "
            f"| {r['simulator_share_of_core'] * 100:.0f}% | {verdict(r['meets_cpu'])} "
            f"| {verdict(r['meets_rss'])} | {verdict(r['meets_delay'])}; {verdict(below)} |"
        )
    failures = sum(r["scrape_failures"] for r in rows)
    print(
        f"\nScrapes: {sum(r['scrapes'] for r in rows)} answered, {failures} failed; every "
        "workspace reported a start delay: "
        f"{'yes' if all(r['workspaces_with_delay'] == r['workspaces'] for r in rows) else 'NO'}."
    )
    figures(
        {
            "sizes": rows,
            "interval": interval,
            "intervals": args.intervals,
            "scrape_every": args.scrape_every,
            "lookback_hours": args.lookback_hours,
        }
    )


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} ms"


if __name__ == "__main__":
    main()
