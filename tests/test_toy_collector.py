"""A collector is one folder: a toy one written to a temporary directory on the import path,
and nothing else, is scheduled, toggled, timed, persisted, rendered and ready-checked with the
others by a real exporter process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from conftest import select, sim_env, wait_for

from exporter.collectors import collector_names

TOY = '''
"""A toy collector: lists the pools each cycle and counts its own collections, which it keeps
in the state file."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from exporter.catalogue import Family
from exporter.collectors import Context, Registration

COLLECTIONS = Family(
    "databricks_toy_collections_total",
    "counter",
    "Successful collections of the toy collector, kept across restarts.",
    ("workspace",),
)
POOLS = Family("databricks_toy_pools", "gauge", "Pools the toy saw.", ("workspace",))


class Toy:
    name = "toy"

    def __init__(self, ctx: Context, collections: int) -> None:
        self.client = ctx.client
        self.collections = collections
        self.snapshot: tuple[int, int] | None = None

    def collect(self) -> int:
        gate = Path(os.environ["TOY_GATE"])
        while not gate.exists():  # the first collection waits: the exporter is not ready
            time.sleep(0.05)
        pools = self.client.get("/api/2.0/instance-pools/list").get("instance_pools") or []
        self.collections += 1
        self.snapshot = (self.collections, len(pools))
        return len(pools)


def build(ctx: Context) -> Toy:
    def load(data: Any) -> int:
        if not isinstance(data, dict) or not isinstance(data.get("collections"), int):
            raise ValueError("not a toy part")
        return data["collections"]

    return Toy(ctx, ctx.restore(load, True) or 0)


def render(views):
    collections, pools = COLLECTIONS.counter(), POOLS.gauge()
    for ws, (count, seen) in views:
        collections.add_metric([ws], count)
        pools.add_metric([ws], seen)
    yield collections
    yield pools


COLLECTOR = Registration(
    name="toy",
    factory=build,
    render=render,
    families=(COLLECTIONS, POOLS),
    order=1000,
    state_part="toy",
    save=lambda toy: {"collections": toy.collections},
)
'''


def _write_toy(root: Path) -> Path:
    folder = root / "exporter" / "collectors" / "toy"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(TOY)
    return root


def _toy(proc, name: str) -> float | None:  # type: ignore[no-untyped-def]
    series = select(proc.samples(), name)
    return next((v for k, v in series.items() if ("collector", "toy") in k or len(k) == 1), None)


def test_a_collector_written_as_one_folder_runs_with_the_others(make_sim, exporter, tmp_path):
    root = _write_toy(tmp_path / "extra")
    gate = tmp_path / "gate"
    state = tmp_path / "state.json"
    server = make_sim()
    env = sim_env(server, PYTHONPATH=str(root), TOY_GATE=str(gate))
    args = ["--interval", "1", "--state-file", str(state)]

    # Toggled: the command line knows it, from its folder alone.
    usage = subprocess.run(
        [sys.executable, "-m", "exporter", "--help"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "--collector.toy" in usage and "--no-collector.toy" in usage

    proc = exporter(args, env)
    proc.wait_healthy()
    # Ready-checked: the others have collected, the toy has not yet: not ready.
    wait_for(
        lambda: (
            {
                dict(k)["collector"]
                for k in select(proc.samples(), "databricks_exporter_collection_success")
            }
            >= set(collector_names())
        ),
        30,
        "the other collectors collected",
    )
    assert requests.get(proc.url + "/readyz", timeout=5).status_code == 503
    gate.touch()
    proc.wait_ready()

    # Scheduled, timed and rendered with the others.
    wait_for(lambda: (_toy(proc, "databricks_toy_collections_total") or 0) >= 3, 30, "3 cycles")
    samples = proc.samples()
    toy = frozenset({("workspace", "default"), ("collector", "toy")})
    assert select(samples, "databricks_exporter_collection_success")[toy] == 1
    assert select(samples, "databricks_exporter_collection_duration_seconds_count")[toy] >= 3
    assert select(samples, "databricks_toy_pools") == {
        frozenset({("workspace", "default")}): float(len(server.model.pools_json()))
    }
    assert "# HELP databricks_toy_collections_total Successful collections" in proc.metrics_text()

    # Persisted: the state file carries its part; after a SIGKILL it continues from there.
    wait_for(
        lambda: state.exists() and "toy" in json.loads(state.read_text())["workspaces"]["default"],
        30,
        "saved",
    )
    time.sleep(1.5)
    proc.stop(signal.SIGKILL)
    saved = json.loads(state.read_text())["workspaces"]["default"]
    assert {"ledger", "pools", "toy"} <= set(saved)
    kept = saved["toy"]["collections"]
    assert kept >= 3
    again = exporter(args, env)
    again.wait_ready()
    first = _toy(again, "databricks_toy_collections_total")
    assert first is not None and first >= kept + 1  # continued, never from zero

    # Toggled off: no toy series, no toy collection, ready without it; its state is kept.
    again.stop()
    off = exporter([*args, "--no-collector.toy"], env)
    off.wait_ready()
    collectors = {
        dict(k)["collector"]
        for k in select(off.samples(), "databricks_exporter_collection_success")
    }
    assert collectors == set(collector_names())  # the built-in ones, without the toy
    assert "databricks_toy" not in off.metrics_text()
    wait_for(lambda: off.samples() and state.exists(), 10, "state written")
    time.sleep(1.5)
    off.stop()
    assert json.loads(state.read_text())["workspaces"]["default"]["toy"]["collections"] >= first
