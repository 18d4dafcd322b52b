"""The exposition format: a golden file from the fixed-seed simulator, checked by promtool."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from databricks_simulator import SimClock, SimConfig, SimServer, SimWorkspace
from exporter.collectors.runs.model import Run
from exporter.config import PriceTable, Settings, WorkspaceConfig
from exporter.metrics import build_registry
from exporter.workspace import Workspace

GOLDEN = Path(__file__).parent / "golden" / "exposition.prom"
# Collection durations are wall-clock measurements; everything else is a function of the seed.
UNSTABLE = ("databricks_exporter_collection_duration_seconds",)
# Family names users rely on (README, "Metrics"; counters without _total, as the parser names them).
PROMISED_FAMILIES = {
    "databricks_job_runs",
    "databricks_job_run_duration_seconds",
    "databricks_job_last_run_duration_seconds",
    "databricks_job_last_run_failed",
    "databricks_job_last_run_end_timestamp_seconds",
    "databricks_job_last_success_timestamp_seconds",
    "databricks_job_last_run_info",
    "databricks_job_runs_active",
    "databricks_job_active_run_max_age_seconds",
    "databricks_task_runs",
    "databricks_instance_pool_idle_instances",
    "databricks_instance_pool_used_instances",
    "databricks_instance_pool_pending_idle_instances",
    "databricks_instance_pool_pending_used_instances",
    "databricks_instance_pool_min_idle_instances",
    "databricks_instance_pool_max_capacity",
    "databricks_instance_pool_info",
    "databricks_exporter_collection_success",
    "databricks_exporter_last_success_timestamp_seconds",
    "databricks_exporter_api_requests",
    "databricks_exporter_token_requests",
}


def render_fixed_workspace() -> str:
    clock = SimClock()
    clock.set(1_800_000_000.0)
    config = SimConfig(
        seed=42,
        jobs=7,
        history_hours=6,
        period_seconds=(300, 900),
        duration_seconds=(20, 400),
        fail_rate=0.4,
        one_time_jobs=2,
        continuous_jobs=1,
        status_only_rate=0.3,
        repair_rate=0.5,
        repair_delay_seconds=600,
        pool_error_rate=0.5,
    )
    with SimServer(SimWorkspace(config, clock), token="dapi-golden") as server:
        ws_config = WorkspaceConfig(name="golden", host=server.url, token=server.token)
        ws = Workspace(
            ws_config,
            Settings(
                workspaces=(ws_config,),
                lookback_hours=2,
                max_requests_per_second=1000,
                # Standard_F4s_v2 (pool 2) is left out: its pool is listed as unpriced.
                prices=PriceTable("USD", {"Standard_DS3_v2": 0.293, "Standard_E8ds_v5": 0.576}),
                max_pool_gap_seconds=3600,
            ),
            clock=clock.time,
            elapsed=clock.time,
        )
        assert ws.collect("runs") and ws.collect("pools")
        while ws.backfill(60):  # the look-back, read between cycles
            pass
        clock.advance(1800)
        assert ws.collect("runs") and ws.collect("pools")
        text = generate_latest(build_registry([ws], clock.time)).decode()
        ws.close()
    return "".join(
        line + "\n" for line in text.splitlines() if not line.split("{")[0].startswith(UNSTABLE)
    )


def test_exposition_matches_the_golden_file():
    text = render_fixed_workspace()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "exposition changed; rerun with UPDATE_GOLDEN=1 if intended"


def test_every_series_carries_workspace_and_counters_are_nonzero():
    families = list(text_string_to_metric_families(GOLDEN.read_text()))
    names = {f.name for f in families}
    assert PROMISED_FAMILIES - names == set()
    for family in families:
        for sample in family.samples:
            assert sample.labels.get("workspace") == "golden", sample
    runs = [
        s
        for f in families
        if f.name == "databricks_job_runs"
        for s in f.samples
        if s.name.endswith("_total")
    ]
    assert sum(s.value for s in runs) > 0


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool comes from Debian's prometheus (.ci/run)"
)
def test_promtool_accepts_the_exposition():
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=GOLDEN.read_text(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # promtool prints lint remarks on stdout/stderr and exits 1 only for problems.
    assert result.returncode == 0, result.stdout + result.stderr


def hostile_run(name: str) -> Run:
    return Run(
        run_id=1,
        job_id="7",
        job_name=name,
        life_cycle_state="TERMINATED",
        result_state='ODD"STATE\n',
        start_ms=1,
        end_ms=2,
        duration_seconds=1.0,
        run_page_url="https://x/?o=1#job/7/run/1",
    )


def test_hostile_label_values_render_as_valid_exposition():
    from exporter.collectors.runs.families import job_families
    from exporter.collectors.runs.ledger import RunsSnapshot

    names = ['quote " and backslash \\', "new\nline", "unicode ✓ ジョブ", "x" * 10_000]
    lines = []
    for name in names:
        run = hostile_run(name)
        snap = RunsSnapshot({("7", name, run.result_state): 1}, {}, {}, {"7": run}, {}, (), 0, 0)
        registry_text = _render(list(job_families([("w", snap)])))
        parsed = {
            s.labels["job_name"]
            for f in text_string_to_metric_families(registry_text)
            for s in f.samples
            if "job_name" in s.labels
        }
        assert parsed == {name}
        lines.append(registry_text)


def _render(families: list) -> str:
    from prometheus_client.registry import Collector, CollectorRegistry

    class Fixed(Collector):
        def collect(self):
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    return generate_latest(registry).decode()


def test_concurrent_scrapes_during_collection_all_get_complete_output(make_sim):
    server = make_sim()
    ws_config = WorkspaceConfig(name="c", host=server.url, token=server.token)
    ws = Workspace(
        ws_config,
        Settings(workspaces=(ws_config,), lookback_hours=0.05, max_requests_per_second=1000),
    )
    assert ws.collect("runs") and ws.collect("pools")
    registry = build_registry([ws])
    reference = {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
    stop = threading.Event()

    def keep_collecting() -> None:
        while not stop.is_set():
            ws.collect("runs")

    worker = threading.Thread(target=keep_collecting)
    worker.start()
    results: list[set[str]] = []

    def scrape() -> None:
        results.append(
            {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
        )

    scrapers = [threading.Thread(target=scrape) for _ in range(50)]
    for t in scrapers:
        t.start()
    for t in scrapers:
        t.join()
    stop.set()
    worker.join()
    ws.close()
    assert len(results) == 50 and all(r == reference for r in results)


def test_every_exposed_family_is_in_the_readme_metrics_table():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme[readme.index("## Metrics") : readme.index("### Counting rules")]
    families = [
        line.split()[2] for line in GOLDEN.read_text().splitlines() if line.startswith("# TYPE")
    ]
    assert "databricks_instance_pool_idle_cost_total" in families
    missing = [name for name in families if f"| `{name}` |" not in table]
    assert missing == []


def test_the_process_families_are_in_the_readme_metrics_table():
    from prometheus_client.parser import text_string_to_metric_families

    from exporter.exposition import Exposition

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme[readme.index("## Metrics") : readme.index("### Counting rules")]
    body, _ = Exposition([], process=True).render()
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    ours = {n for n in names if n.startswith("databricks_")}
    assert "databricks_exporter_build_info" in ours and "process_resident_memory_bytes" in names
    listed = [n for n in ours if f"| `{n}` |" in table or f"| `{n}_total` |" in table]
    assert sorted(ours - set(listed)) == []
    assert "`process_*`" in table and "`python_info`" in table
