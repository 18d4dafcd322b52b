"""What the benchmark scripts share: workloads, a simulator in its own process, RSS, percentiles."""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import socket
import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import psutil
import requests

from databricks_simulator import SimClock, SimConfig, SimServer, SimWorkspace
from exporter.config import Settings, WorkspaceConfig
from exporter.workspace import Workspace


def figures(data: dict[str, Any]) -> None:
    """The script's figures as JSON, for bench/run.py to write beside the Markdown (tests read
    the JSON, people the Markdown). Only when run.py asks (BENCH_FIGURES names a file)."""
    path = os.environ.get("BENCH_FIGURES")
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=1)


START = 1_800_000_000.0  # a fixed simulated "now" at the start of every benchmark


def small_workspace(jobs: int = 70, history_hours: float = 24.0, seed: int = 1) -> SimConfig:
    """A team's workspace: a run per job every 3-6 minutes, lasting 1-20 minutes (~23k/day)."""
    return SimConfig(
        seed=seed,
        jobs=jobs,
        history_hours=history_hours,
        period_seconds=(180, 360),
        duration_seconds=(60, 1200),
        long_run_rate=0.01,
    )


def large_workspace(jobs: int = 5000, history_hours: float = 2.0, seed: int = 3) -> SimConfig:
    """5,000 jobs at 10 runs a second together (each every 450-550 s), runs of 0.5-3 minutes."""
    return SimConfig(
        seed=seed,
        jobs=jobs,
        history_hours=history_hours,
        period_seconds=(450, 550),
        duration_seconds=(30, 180),
        long_run_rate=0.0,
    )


def runs_per_second(config: SimConfig) -> float:
    model = SimWorkspace(config, SimClock())
    return sum(1000.0 / job.period_ms for job in model.jobs)


def rss_mb(pid: int | None = None) -> float:
    gc.collect()
    return psutil.Process(pid or os.getpid()).memory_info().rss / 2**20


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def read_lookback(ws: Workspace) -> None:
    """Read the whole look-back now (the exporter reads it between cycles, in the background)."""
    while ws.backfill(3600.0):
        pass


def workspace(url: str, token: str, clock: SimClock, **settings: Any) -> Workspace:
    config = WorkspaceConfig(name="bench", host=url, token=token)
    # The runs and pools figures, measured as before (the pipelines collector has its own).
    settings.setdefault("collectors", ("runs", "pools"))
    settings_ = Settings(workspaces=(config,), **settings)
    return Workspace(config, settings_, clock=clock.time, elapsed=clock.time)


@dataclass
class RemoteSim:
    """A simulator served by another process, and a local copy of its frozen clock."""

    url: str
    token: str
    clock: SimClock
    pid: int

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        requests.post(self.url + "/sim/clock", json={"set": self.clock.time()}, timeout=30)

    def stats(self) -> dict[str, Any]:
        return requests.get(self.url + "/sim/stats", timeout=30).json()  # type: ignore[no-any-return]

    def requests_total(self) -> int:
        return sum(self.stats()["requests"].values())

    def truth(self, after_ms: int) -> int:
        answer = requests.get(self.url + "/sim/truth", params={"after_ms": after_ms}, timeout=300)
        return answer.json()["total"]


def _serve(config: SimConfig, start: float, conn: Connection) -> None:
    clock = SimClock()
    clock.set(start)
    with SimServer(SimWorkspace(config, clock)) as server:
        conn.send((server.url, server.token))
        conn.recv()  # until the parent says stop (or dies: EOFError)


@contextmanager
def simulator_process(config: SimConfig, start: float = START) -> Iterator[RemoteSim]:
    """The simulator in a child process, so this process's RSS is the exporter's alone."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(config, start, child), daemon=True)
    proc.start()
    try:
        url, token = parent.recv()
        clock = SimClock()
        clock.set(start)
        assert proc.pid is not None
        yield RemoteSim(url, token, clock, proc.pid)
    finally:
        with suppress(OSError):
            parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a child process to listen on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SimFleet:
    """Simulated workspaces on the real clock, all served by one other process."""

    servers: list[tuple[str, str]]  # (url, token) of each, in the order of the configs
    pid: int


def _serve_fleet(configs: Sequence[SimConfig], conn: Connection) -> None:
    servers = [SimServer(SimWorkspace(config)).start() for config in configs]
    try:
        conn.send([(server.url, server.token) for server in servers])
        with suppress(EOFError):
            conn.recv()  # until the parent says stop (or dies)
    finally:
        for server in servers:
            server.stop()


@contextmanager
def simulator_fleet(configs: Sequence[SimConfig]) -> Iterator[SimFleet]:
    """One child process serving a SimServer per config on loopback, on the real clock, so an
    exporter process pointed at them spends only its own CPU and memory."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve_fleet, args=(list(configs), child), daemon=True)
    proc.start()
    try:
        servers = parent.recv()
        assert proc.pid is not None
        yield SimFleet(servers, proc.pid)
    finally:
        with suppress(OSError):
            parent.send("stop")
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()
