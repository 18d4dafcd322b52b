"""A real exporter process counts pipeline updates exactly once through API faults and a
SIGKILL restart with --state-file, against the simulator on loopback (its clock moved by hand,
so the truth is exact)."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

from conftest import ExporterProcess, select, sim_env, wait_for

from databricks_simulator import SimClock, SimConfig, SimServer, SimWorkspace

CONFIG = SimConfig(
    seed=9,
    jobs=1,
    pools=1,
    history_hours=6,
    pipelines=5,
    pipeline_period_seconds=(300, 900),
    pipeline_fail_rate=0.3,
)


def _collections(proc: ExporterProcess) -> float:
    series = select(proc.samples(), "databricks_exporter_collection_duration_seconds_count")
    return sum(v for k, v in series.items() if ("collector", "pipelines") in k)


def _step(proc: ExporterProcess, clock: SimClock, seconds: float) -> None:
    """Move the world on, then wait for two collections: one wholly after the move."""
    clock.advance(seconds)
    before = _collections(proc)
    wait_for(lambda: _collections(proc) >= before + 2, 60, "two pipeline collections")


def _exported(proc: ExporterProcess) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for labels, value in select(proc.samples(), "databricks_pipeline_updates_total").items():
        d = dict(labels)
        out[(d["pipeline_id"], d["state"])] += int(value)
    return +out


def _baseline_ms(proc: ExporterProcess) -> int:
    series = select(proc.samples(), "databricks_exporter_pipelines_baseline_timestamp_seconds")
    (value,) = series.values()
    return int(value * 1000)


def test_updates_are_counted_once_through_faults_and_a_sigkill_restart(exporter, tmp_path):
    clock = SimClock()
    clock.set(float(int(time.time())))  # frozen, on a whole second (the Date header's)
    state = tmp_path / "state.json"
    with SimServer(SimWorkspace(CONFIG, clock)) as server:
        env = sim_env(server)
        args = ["--interval", "0.5", "--state-file", str(state), "--no-collector.runs"]
        first = exporter(args, env)
        first.wait_ready()
        baseline = _baseline_ms(first)
        assert _exported(first) == Counter()  # what ended before the start is not counted
        for minute in range(40):
            server.fault_rate = 0.2 if 10 <= minute < 25 else 0.0  # 429, 500, 503
            _step(first, clock, 60)
        server.fault_rate = 0.0
        _step(first, clock, 1)
        pipelines = server.model.pipelines
        assert _exported(first) == +pipelines.truth(baseline, clock.now_ms())
        saved = json.loads(state.read_text())["workspaces"]["default"]
        assert "pipelines" in saved and saved["pipelines"]["baseline_ms"] == baseline
        first.stop(signal.SIGKILL)

        clock.advance(50 * 60)  # down for 50 minutes: several updates of each pipeline end
        again = exporter(args, env)
        again.wait_ready()
        assert _baseline_ms(again) == baseline  # continued, not a new baseline
        for _ in range(20):
            _step(again, clock, 60)
        want = +pipelines.truth(baseline, clock.now_ms())
        assert sum(want.values()) >= 30 and {s for _, s in want} >= {"COMPLETED", "FAILED"}
        assert _exported(again) == want
        # A few more collections with nothing new count nothing twice.
        _step(again, clock, 0)
        assert _exported(again) == want
        failed = select(again.samples(), "databricks_pipeline_last_update_failed")
        assert set(failed.values()) <= {0.0, 1.0} and len(failed) == CONFIG.pipelines
