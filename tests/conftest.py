"""Shared fixtures: the loopback simulator and a real exporter process pointed at it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from databricks_simulator import SimConfig, SimServer, SimWorkspace

# Fast jobs: runs start every 1-3 s and last 0.2-1.5 s, so a test sees dozens end in seconds.
FAST = SimConfig(
    seed=11,
    jobs=8,
    history_hours=0.05,
    period_seconds=(1.0, 3.0),
    duration_seconds=(0.2, 1.5),
    fail_rate=0.25,
    long_run_rate=0.0,
    pools=3,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def make_sim() -> Iterator[Callable[..., SimServer]]:
    """Start simulators on loopback (stopped at teardown); kwargs override FAST."""
    started: list[SimServer] = []

    def make(**overrides: Any) -> SimServer:
        config = SimConfig(**{**FAST.__dict__, **overrides})
        server = SimServer(SimWorkspace(config)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def sim() -> Iterator[SimServer]:
    """A shared simulator for tests that only read (never stop or inject faults)."""
    with SimServer(SimWorkspace(FAST)) as server:
        yield server


class ExporterProcess:
    """`python -m exporter` as a child process, with its stderr captured to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115
        full_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "AZURE_"))
        }
        full_env.update(env)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "--web.listen-address",
                f"127.0.0.1:{self.port}",
                # Loopback is fast; the client-side limit itself is unit-tested (test_faults).
                *(
                    []
                    if "--max-requests-per-second" in args
                    else ["--max-requests-per-second", "1000"]
                ),
                *args,
            ],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = 20.0) -> None:
        self._wait(
            lambda: requests.get(self.url + "/healthz", timeout=1).status_code == 200,
            timeout,
            "healthy",
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        self._wait(
            lambda: requests.get(self.url + "/readyz", timeout=1).status_code == 200,
            timeout,
            "ready",
        )

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"exporter exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                if check():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"exporter not {what} after {timeout}s:\n{self.output()}")

    def metrics_text(self) -> str:
        response = requests.get(self.url + "/metrics", timeout=5)
        response.raise_for_status()
        return response.text

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return parse_samples(self.metrics_text())

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def parse_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def select(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str
) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Callable[..., ExporterProcess]]:
    """Start real exporter processes; all are stopped at teardown."""
    procs: list[ExporterProcess] = []

    def start(args: list[str] | None = None, env: dict[str, str] | None = None) -> ExporterProcess:
        proc = ExporterProcess(args or [], env or {}, tmp_path / f"exporter-{len(procs)}.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def sim_env(server: SimServer, **extra: str) -> dict[str, str]:
    return {"DATABRICKS_HOST": server.url, "DATABRICKS_TOKEN": server.token, **extra}


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last value {last!r}")


def exported_runs(proc: ExporterProcess) -> dict[tuple[str, str, str], float]:
    series = select(proc.samples(), "databricks_job_runs_total")
    return {
        (d["job_id"], d["job_name"], d["result_state"]): v
        for d, v in ((dict(k), v) for k, v in series.items())
    }


def exported_tasks(proc: ExporterProcess) -> dict[tuple[str, str, str, str], float]:
    series = select(proc.samples(), "databricks_task_runs_total")
    return {
        (d["job_id"], d["job_name"], d["task_key"], d["result_state"]): v
        for d, v in ((dict(k), v) for k, v in series.items())
    }


def baseline_ms(proc: ExporterProcess) -> int:
    (value,) = select(proc.samples(), "databricks_exporter_baseline_timestamp_seconds").values()
    return round(value * 1000)


def truth(server: SimServer, after_ms: int) -> tuple[dict, dict]:
    t = server.model.truth(after_ms)
    runs = {(r["job_id"], r["job_name"], r["result_state"]): float(r["count"]) for r in t["runs"]}
    tasks = {
        (r["job_id"], r["job_name"], r["task_key"], r["result_state"]): float(r["count"])
        for r in t["tasks"]
    }
    return runs, tasks


def drain(server: SimServer, proc: ExporterProcess | None = None, ended: int = 10) -> None:
    """Stop new runs and wait until every started run has ended; with ``proc``, first wait
    until ``ended`` runs have ended since its baseline (assert_counts_match_truth wants them,
    and a loaded machine can get there late)."""
    if proc is not None:
        wait_for(
            lambda: sum(truth(server, baseline_ms(proc))[0].values()) >= ended,
            60,
            f"{ended} simulated runs to end after the exporter's baseline",
        )
    requests.post(server.url + "/sim/stop", json={}, timeout=5).raise_for_status()
    wait_for(lambda: server.model.active_count() == 0, 30, "simulated runs to finish")


def assert_counts_match_truth(proc: ExporterProcess, server: SimServer) -> dict:
    base = baseline_ms(proc)
    want_runs, want_tasks = truth(server, base)
    assert sum(want_runs.values()) >= 10, "the simulator should have ended runs during the test"
    wait_for(lambda: exported_runs(proc) == want_runs, 20, "exported run counts to equal the truth")
    assert exported_tasks(proc) == want_tasks
    # A few more cycles must not count anything twice.
    time.sleep(3)
    assert exported_runs(proc) == want_runs
    return want_runs


@pytest.fixture
def bot(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fake Slack Web API the callbacks post to with a bot token, to #data-oncall, with no
    webhook, no Slack connection and no settings Variable (the callbacks' defaults)."""
    from fake_slack import BOT_TOKEN, FakeSlack

    from airflow_callbacks import settings

    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CALLBACKS_SLACK_CONN_ID", raising=False)
    monkeypatch.setattr(settings, "_variable_text", lambda: None)
    with FakeSlack() as server:
        monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
        monkeypatch.setenv("SLACK_CHANNEL", "#data-oncall")
        monkeypatch.setenv("SLACK_API_BASE_URL", server.api_base)
        yield server
