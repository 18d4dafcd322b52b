"""Hostile input: arbitrary JSON where runs, pools and state files are expected.

Whatever arrives, no exception escapes the parsers and the state-file reader, and what the
exporter then serves parses back as Prometheus exposition.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from statefile_parts import restore_ledger, restore_pools, save_ledger

from exporter.collectors.pools import PoolsSnapshot, parse_pool
from exporter.collectors.pools.families import pool_families
from exporter.collectors.pools.usage import PoolUsage
from exporter.collectors.runs.families import job_families
from exporter.collectors.runs.ledger import LedgerPolicy, RunLedger
from exporter.collectors.runs.model import BadRun, parse_run
from exporter.collectors.runs.persist import ledger_from_dict, ledger_to_dict
from exporter.config import PriceTable
from exporter.statefile import StateFile

NOW = 1_800_000_000_000
MIN = 60_000

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
RUN_KEYS = [
    "run_id",
    "job_id",
    "run_name",
    "state",
    "status",
    "start_time",
    "end_time",
    "run_duration",
    "queue_duration",
    "tasks",
    "run_type",
    "trigger",
    "repair_history",
    "has_more",
    "run_page_url",
]
run_like = st.dictionaries(st.sampled_from(RUN_KEYS), json_values, max_size=10)
STATE_KEYS = ["life_cycle_state", "result_state", "state", "termination_details", "code", "type"]
states = st.dictionaries(st.sampled_from(STATE_KEYS), json_values, max_size=4)


def render(ledger: RunLedger, pools: PoolsSnapshot) -> str:
    class One:
        def collect(self):
            snap = ledger.snapshot()
            yield from job_families([("w", snap)])
            yield from pool_families([("w", pools)])

    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())
    text = generate_latest(registry).decode()
    list(text_string_to_metric_families(text))  # parses back
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            run_like, st.builds(lambda s, t: {"run_id": 1, "state": s, "status": t}, states, states)
        ),
        max_size=6,
    ),
    st.lists(json_values, max_size=3),
)
def test_arbitrary_run_and_pool_objects_never_raise_and_render_valid_exposition(raws, pools):
    ledger = RunLedger.starting_at(NOW, 60 * MIN, LedgerPolicy(overlap_ms=5 * MIN))
    runs = []
    for raw in raws:
        try:
            run = parse_run(raw, NOW + MIN)
        except BadRun:
            continue
        if run is not None:
            runs.append(run)
    ledger.apply(NOW + MIN, [r for r in runs if not r.terminal], [r for r in runs if r.terminal])
    parsed = [p for p in (parse_pool(p) for p in pools if isinstance(p, dict)) if p is not None]
    usage = PoolUsage(300, PriceTable("USD", {"Standard_DS3_v2": 0.293}))
    usage.observe(NOW, parsed)
    render(ledger, PoolsSnapshot(tuple(parsed), usage.observe(NOW + MIN, parsed)))
    # What was counted survives a state file round trip.
    again = ledger_from_dict(json.loads(json.dumps(ledger_to_dict(ledger))))
    assert again.runs_total == ledger.runs_total


def state_file_with(tmp_path_factory: Any, part: str, doc: Any) -> Path:
    """A state file whose workspace "w" (host "h") has ``doc`` as its ``part``."""
    path = Path(tmp_path_factory.mktemp("state")) / "state.json"
    entry = {
        "format": "databricks-jobs-exporter/state/v2",
        "workspaces": {"w": {"host": "h", part: doc}},
    }
    path.write_text(json.dumps(entry))
    return path


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_state_files_are_restored_or_refused_never_raised(tmp_path_factory, doc):
    path = state_file_with(tmp_path_factory, "ledger", doc)
    ledger = restore_ledger(StateFile(path), "w", "h")
    kept = list(path.parent.glob("state.json.corrupt-*"))
    # Either the entry is restored (and renders), or it is refused and kept aside: never both.
    assert (ledger is not None) != bool(kept)
    if ledger is not None:
        assert render(ledger, PoolsSnapshot(())).startswith("# HELP")


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_pool_counters_are_restored_or_refused_never_raised(tmp_path_factory, doc):
    path = state_file_with(tmp_path_factory, "pools", doc)
    usage = PoolUsage(300)
    restored = restore_pools(StateFile(path), "w", "h", usage)
    kept = list(path.parent.glob("state.json.corrupt-*"))
    assert restored != bool(kept)
    if not restored:  # refused: the integral starts afresh, untouched by the damaged part
        assert usage.to_dict() == PoolUsage(300).to_dict()
    pool = parse_pool({"instance_pool_id": "p", "stats": {"idle_count": 2}})
    assert pool is not None
    usage.observe(NOW, [pool])  # whatever was restored, the integral goes on
    totals = dict(usage.observe(NOW + MIN, [pool]).totals)
    assert totals["p"].idle >= 120.0


def test_damaged_state_files_are_kept_aside_and_the_exporter_starts_fresh(tmp_path):
    good = RunLedger.starting_at(NOW, 60 * MIN, LedgerPolicy(overlap_ms=5 * MIN))
    saved = ledger_to_dict(good)
    saved["runs_total"] = [["1", "job", "SUCCESS", "many"]]  # a string where a count belongs
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps(
            {
                "format": "databricks-jobs-exporter/state/v2",
                "workspaces": {"w": {"host": "h", "ledger": saved}},
            }
        )
    )
    state = StateFile(path)
    assert restore_ledger(state, "w", "h") is None
    kept = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text() == path.read_text()
    save_ledger(state, "w", "h", good)  # the fresh baseline overwrites the file, the copy stays
    assert restore_ledger(StateFile(path), "w", "h") is not None and kept[0].exists()


def test_a_symlinked_state_file_stays_a_symlink_and_its_target_is_written(tmp_path):
    target = tmp_path / "data" / "state.json"
    target.parent.mkdir()
    link = tmp_path / "state.json"
    os.symlink(target, link)
    save_ledger(
        StateFile(link),
        "w",
        "h",
        RunLedger.starting_at(NOW, 60 * MIN, LedgerPolicy(overlap_ms=5 * MIN)),
    )
    assert link.is_symlink() and target.exists()
    assert restore_ledger(StateFile(link), "w", "h") is not None
