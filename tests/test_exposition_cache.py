"""/metrics renders the snapshot families once per collection and stays byte-identical to a
fresh prometheus-client render, in text format, OpenMetrics and gzip."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator

import pytest
import requests
from conftest import parse_samples
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

import exporter.collectors.runs.families
import exporter.exposition
import exporter.metrics
from databricks_simulator import SimClock, SimConfig, SimServer, SimWorkspace
from exporter.collectors import Registration, registrations
from exporter.config import Settings, WorkspaceConfig
from exporter.exposition import Exposition
from exporter.metrics import build_registry
from exporter.server import MetricsServer, make_app
from exporter.workspace import Workspace

MAX_AGE = "databricks_job_active_run_max_age_seconds"


@pytest.fixture
def setup() -> Iterator[tuple[Workspace, SimClock]]:
    clock = SimClock()
    clock.set(1_800_000_000.0)
    config = SimConfig(seed=5, jobs=6, history_hours=2, period_seconds=(120, 600))
    with SimServer(SimWorkspace(config, clock)) as server:
        ws_config = WorkspaceConfig(name="cache", host=server.url, token=server.token)
        ws = Workspace(
            ws_config,
            Settings(workspaces=(ws_config,), lookback_hours=1, max_requests_per_second=1000),
            clock=clock.time,
            elapsed=clock.time,
        )
        assert ws.collect("runs") and ws.collect("pools")
        while ws.backfill(60):  # the look-back, read between cycles
            pass
        yield ws, clock
        ws.close()


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the job families were built (once per render of the snapshot part)."""
    calls: list[int] = []
    original = exporter.collectors.runs.families.job_families

    def counting(views):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(views)

    monkeypatch.setattr(exporter.collectors.runs.families, "job_families", counting)
    return calls


@pytest.mark.parametrize("slice_size", [10_000, 7, 1])
def test_every_format_is_byte_identical_to_a_fresh_render(setup, monkeypatch, slice_size):
    monkeypatch.setattr(exporter.exposition, "SLICE", slice_size)  # families cut in slices too
    ws, clock = setup
    exposition = Exposition([ws], clock.time)
    registry = build_registry([ws], clock.time)
    for _ in range(2):  # the first render fills the cache, the second serves from it
        text, text_type = exposition.render(None)
        assert text == generate_latest(registry)
        assert text_type.startswith("text/plain; version=0.0.4")
        om, om_type = exposition.render(OPENMETRICS)
        assert om == generate_openmetrics(registry)
        assert om_type.startswith(OPENMETRICS)
        assert om.count(b"# EOF") == 1 and om.endswith(b"# EOF\n")
        zipped, _ = exposition.render(OPENMETRICS, gzip=True)
        assert gzip.decompress(zipped) == om
        assert gzip.decompress(exposition.render(None, gzip=True)[0]) == text


def test_snapshot_part_is_rendered_once_per_snapshot_and_live_part_per_scrape(setup, renders):
    ws, clock = setup
    exposition = Exposition([ws], clock.time)
    first = parse_samples(exposition.render(None)[0].decode())
    clock.advance(30)
    second = parse_samples(exposition.render(None)[0].decode())
    assert len(renders) == 1
    ages = [(k, v) for k, v in first.items() if k[0] == MAX_AGE]
    assert ages, "the fixture has active runs"
    for key, value in ages:
        assert second[key] == pytest.approx(value + 30)  # live: ages move with the clock
    clock.advance(600)
    assert ws.collect("runs")
    third = parse_samples(exposition.render(None)[0].decode())
    assert len(renders) == 2
    requests_key = next(
        k
        for k in third
        if k[0] == "databricks_exporter_api_requests_total"
        and ("endpoint", "/api/2.2/jobs/runs/list") in k[1]
    )
    assert third[requests_key] > first[requests_key]


def test_a_collection_that_changes_nothing_keeps_the_render(setup, renders):
    ws, clock = setup
    exposition = Exposition([ws], clock.time)
    exposition.render(None)
    runs, pools = ws.collectors["runs"].snapshot, ws.collectors["pools"].snapshot
    assert ws.collect("runs") and ws.collect("pools")  # same simulated instant: same answers
    assert ws.collectors["runs"].snapshot is runs and ws.collectors["pools"].snapshot is pools
    exposition.refresh()
    exposition.render(None)
    assert len(renders) == 1
    clock.advance(600)
    assert ws.collect("runs")
    assert ws.collectors["runs"].snapshot is not runs
    exposition.render(None)
    assert len(renders) == 2


def test_refresh_renders_the_scraped_formats_ahead_of_the_next_scrape(setup, renders):
    ws, clock = setup
    exposition = Exposition([ws], clock.time)
    exposition.refresh()
    assert renders == []  # nothing scraped yet: nothing to prepare
    exposition.render(OPENMETRICS, gzip=True)
    exposition.render(None)
    assert len(renders) == 2
    clock.advance(60)
    assert ws.collect("runs")
    exposition.refresh()
    assert len(renders) == 4
    body, _ = exposition.render(OPENMETRICS, gzip=True)
    exposition.render(None)
    assert len(renders) == 4
    assert gzip.decompress(body) == generate_openmetrics(build_registry([ws], clock.time))


def test_scrapes_during_a_re_render_get_the_previous_render_without_waiting(
    setup, monkeypatch: pytest.MonkeyPatch
):
    ws, clock = setup
    exposition = Exposition([ws], clock.time)
    before = exposition.render(None)[0]
    original = exporter.collectors.runs.families.job_families
    started, release = threading.Event(), threading.Event()

    def slow(views):  # type: ignore[no-untyped-def]
        started.set()
        assert release.wait(10)
        return original(views)

    monkeypatch.setattr(exporter.collectors.runs.families, "job_families", slow)
    clock.advance(600)
    assert ws.collect("runs")
    refresher = threading.Thread(target=exposition.refresh)
    refresher.start()
    try:
        assert started.wait(10)
        during = exposition.render(None)[0]  # would deadlock the test if it waited
    finally:
        release.set()
        refresher.join()
    after = exposition.render(None)[0]
    snapshot_part = "databricks_job_last_run_info"
    assert _lines(during, snapshot_part) == _lines(before, snapshot_part)
    assert _lines(after, snapshot_part) != _lines(before, snapshot_part)


def _lines(body: bytes, prefix: str) -> list[str]:
    return [line for line in body.decode().splitlines() if line.startswith(prefix)]


def test_http_scrape_negotiates_openmetrics_and_gzip_like_prometheus(setup):
    ws, clock = setup
    server = MetricsServer(make_app(Exposition([ws], clock.time), lambda: True), ["127.0.0.1:0"])
    server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        prom = requests.get(
            url,
            headers={
                "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-"
                "text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                "Accept-Encoding": "gzip",
            },
            timeout=10,
        )
        plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    finally:
        server.shutdown()
    assert prom.status_code == 200 and prom.headers["Content-Encoding"] == "gzip"
    assert prom.headers["Content-Type"].startswith("application/openmetrics-text")
    names = {f.name for f in parse_om(prom.text)}
    assert {"databricks_job_last_run_info", "databricks_exporter_api_requests", MAX_AGE} <= names
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["Content-Type"].startswith("text/plain")
    assert int(plain.headers["Content-Length"]) == len(plain.content)
    assert "databricks_job_last_run_info{" in plain.text


def test_each_workspace_and_collector_is_re_rendered_only_when_its_snapshot_changes(tmp_path):
    clock = SimClock()
    clock.set(1_800_000_000.0)
    config = SimConfig(seed=5, jobs=6, history_hours=2, period_seconds=(120, 600))
    with SimServer(SimWorkspace(config, clock)) as a, SimServer(SimWorkspace(config, clock)) as b:
        configs = [
            WorkspaceConfig(name=name, host=server.url, token=server.token)
            for name, server in (("a", a), ("b", b))
        ]
        settings = Settings(
            workspaces=tuple(configs), lookback_hours=1, max_requests_per_second=1000
        )
        ws_a, ws_b = (Workspace(c, settings, clock=clock.time, elapsed=clock.time) for c in configs)
        for ws in (ws_a, ws_b):
            assert ws.collect("runs") and ws.collect("pools")
        exposition = Exposition([ws_a, ws_b], clock.time)
        registry = build_registry([ws_a, ws_b], clock.time)
        exposition.render(None, gzip=True)
        assert exposition.renders == {"runs": 2, "pools": 2}
        clock.advance(60)
        assert ws_a.collect("pools")  # new counts and counters: only a's pools part changes
        body, _ = exposition.render(None, gzip=True)
        assert exposition.renders == {"runs": 2, "pools": 3}
        assert gzip.decompress(body) == generate_latest(registry)
        assert ws_b.collect("runs")
        body, _ = exposition.render(None, gzip=True)
        assert exposition.renders == {"runs": 3, "pools": 3}
        # Joined family by family: one header per family, every workspace's samples under it.
        assert gzip.decompress(body) == generate_latest(registry)
        assert gzip.decompress(body).count(b"# TYPE databricks_job_runs_total counter") == 1
        for ws in (ws_a, ws_b):
            ws.close()


def test_a_toy_collector_is_a_protocol_a_families_function_and_one_registration(
    setup, monkeypatch: pytest.MonkeyPatch
):
    from prometheus_client.core import GaugeMetricFamily

    class Warehouses:  # what a SQL warehouses collector would look like
        name = "warehouses"
        snapshot: tuple[tuple[str, int], ...] | None = None

        def collect(self) -> int:
            self.snapshot = (("wh-1", 2), ("wh-2", 0))
            return len(self.snapshot)

    def families(views):  # type: ignore[no-untyped-def]
        running = GaugeMetricFamily(
            "databricks_sql_warehouse_clusters", "Running clusters.", labels=["workspace", "id"]
        )
        for ws, snapshot in views:
            for warehouse_id, clusters in snapshot:
                running.add_metric([ws, warehouse_id], clusters)
        yield running

    ws, clock = setup
    toy = Registration("warehouses", factory=lambda ctx: Warehouses(), render=families, families=())
    monkeypatch.setattr(exporter.collectors, "_found", (*registrations(), toy))
    monkeypatch.setitem(ws.registrations, "warehouses", toy)
    monkeypatch.setitem(ws.collectors, "warehouses", Warehouses())
    assert ws.collect("warehouses")  # the one wrapper: timed, health recorded
    exposition = Exposition([ws], clock.time)
    text = exposition.render(None)[0]
    assert text == generate_latest(build_registry([ws], clock.time))
    samples = parse_samples(text.decode())
    assert (
        samples[
            (
                "databricks_sql_warehouse_clusters",
                frozenset({("workspace", "cache"), ("id", "wh-1")}),
            )
        ]
        == 2
    )
    ok = (
        "databricks_exporter_collection_success",
        frozenset({("workspace", "cache"), ("collector", "warehouses")}),
    )
    assert samples[ok] == 1


def test_a_refresh_renders_while_more_collections_keep_arriving(setup, renders):
    # Collections finishing faster than renders keep `pending` set (Renderer sets it again for
    # each one): the refresh it waits for must still render, or /metrics freezes for good.
    ws, clock = setup
    exposition = Exposition([ws], clock.time)
    exposition.render(None)
    for _ in range(3):
        clock.advance(600)
        assert ws.collect("runs")
        exposition.pending = True  # another collection said "changed" during the last render
        before = len(renders)
        exposition.refresh()
        assert len(renders) == before + 1
        served = exposition.render(None)[0].decode()  # still pending: the refreshed render
        assert len(renders) == before + 1
        assert served == generate_latest(build_registry([ws], clock.time)).decode()
