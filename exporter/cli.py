"""Command line entry point: parse settings, start collectors, serve, stop cleanly on signals."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.config import ConfigError, PriceTable, Settings, load_settings
from exporter.exposition import Exposition
from exporter.logsetup import configure_logging
from exporter.redact import RedactingFilter
from exporter.scheduling import ClockStepWatch, Renderer, schedule
from exporter.server import MetricsServer, make_app
from exporter.statefile import MAX_STATE_BYTES_PER_WORKSPACE, StateFile, StateFileInUse
from exporter.webconfig import WebConfigError, WebConfigWatch
from exporter.workspace import Workspace, state_key

if TYPE_CHECKING:
    from databricks_simulator import SimConfig

log = logging.getLogger("exporter")


DEMO_FAULT_RATE = 0.01


def demo_config() -> SimConfig:
    """The demo's simulated workspace (a SimConfig; `make stack --failing` varies it)."""
    from databricks_simulator import SimConfig

    # The demo shows the Jobs API's awkward cases too: one-time runs (runs/submit, ADF), a
    # continuous job, a job of 130 tasks, status-only runs, repairs (a minute after a failure,
    # lasting a minute: the first within minutes), queues, pool start errors, an unpriced pool,
    # tasks on pools, job clusters, all-purpose clusters, serverless and SQL warehouses,
    # and an API that answers its first pools listing and 1% of requests with 429 or 5xx
    # (retried: databricks_exporter_api_retries_total).
    return SimConfig(
        jobs=24,
        period_seconds=(60, 600),
        duration_seconds=(10, 300),
        fail_rate=0.15,
        one_time_jobs=3,
        continuous_jobs=1,
        wide_jobs=1,
        status_only_rate=0.2,
        repair_rate=0.5,
        repair_delay_seconds=60,
        repair_seconds=60,
        pool_error_rate=0.2,
        pipelines=4,  # Lakeflow pipelines, an update every 10 to 30 minutes, a fifth failing
        idle_jobs=2,  # jobs with a schedule that never run (one paused): jobs collector, alerts
        align_origin_seconds=86_400,  # restarts within a UTC day replay the same runs
    )


def start_simulator(settings: Settings) -> tuple[Settings, object]:
    """Serve the simulated workspace on loopback and point the settings at it."""
    from databricks_simulator import FaultRule, SimServer, SimWorkspace

    sim = SimServer(SimWorkspace(demo_config())).start()
    sim.fault_rate = DEMO_FAULT_RATE
    sim.add_faults(FaultRule(path_prefix="/api/2.0/instance-pools/list", status=503))
    ws = replace(settings.workspaces[0], host=sim.url, token=sim.token)
    log.info("simulated workspace at %s (%d jobs)", sim.url, len(sim.model.jobs))
    # Idle cost in the demo: the simulated pools' node types, priced unless a table is given.
    # Standard_F4s_v2 is left out on purpose: its pool shows as unpriced.
    prices = settings.prices or PriceTable(
        "USD",
        {"Standard_DS3_v2": 0.293, "Standard_E8ds_v5": 0.576},
        source="demo prices (see deploy/azure-vm-prices.example.yml)",
    )
    # The demo's own simulator: its look-back is read in seconds, not at a real workspace's pace.
    rate = max(settings.max_requests_per_second, 100.0)
    return replace(settings, workspaces=(ws,), prices=prices, max_requests_per_second=rate), sim


def open_state_file(settings: Settings) -> StateFile | None:
    """The state file, owned by this process, holding entries of the configured workspaces."""
    if settings.state_file is None:
        return None
    max_bytes = MAX_STATE_BYTES_PER_WORKSPACE * len(settings.workspaces)
    state = StateFile(settings.state_file, max_bytes=max_bytes, owned=True)
    state.keep_only({ws.name: state_key(ws, settings) for ws in settings.workspaces})
    return state


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(argv)
    except ConfigError as exc:
        print(f"databricks-exporter: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, settings.secrets())
    web = None
    if settings.web_config_file is not None:
        try:
            web = WebConfigWatch(settings.web_config_file)
        except WebConfigError as exc:
            print(f"databricks-exporter: configuration error: {exc}", file=sys.stderr)
            return 2
    sim = None
    if settings.simulate:
        settings, sim = start_simulator(settings)
        RedactingFilter.instance().add(*settings.secrets())
    try:
        state = open_state_file(settings)
    except StateFileInUse as exc:
        print(f"databricks-exporter: configuration error: --state-file: {exc}", file=sys.stderr)
        return 2
    try:
        workspaces = [Workspace(ws, settings, state_file=state) for ws in settings.workspaces]
    except Exception as exc:  # e.g. azure-identity refusing its arguments
        print(f"databricks-exporter: configuration error: {exc}", file=sys.stderr)
        return 2
    exposition = Exposition(workspaces, web=web, process=True)
    app = make_app(
        exposition, lambda: all(ws.ready for ws in workspaces), settings.telemetry_path, web
    )
    try:
        server = MetricsServer(app, settings.listen, web)
    except OSError as exc:
        print(
            f"databricks-exporter: configuration error: --web.listen-address: cannot listen on "
            f"{' '.join(settings.listen)}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    renderer = Renderer(exposition).start()
    scheduler = schedule(workspaces, settings.interval, renderer)
    if state is not None:
        state.start_writer()
    server.start()
    scheduler.start()
    watch = ClockStepWatch(scheduler).start()
    log.info(
        "databricks-exporter %s serving %s for %d workspace(s)%s, every %gs",
        __version__,
        " ".join(url + settings.telemetry_path for url in server.urls),
        len(workspaces),
        f" (shard {settings.shard} of 0-{settings.total_shards - 1})"
        if settings.total_shards > 1
        else "",
        settings.interval,
    )
    if not workspaces:
        log.warning(
            "shard %d of %d has no workspace: the names hash to the other shards",
            settings.shard,
            settings.total_shards,
        )
    stop.wait()
    watch.stop()
    renderer.stop()
    scheduler.shutdown(wait=False)
    server.shutdown()
    for ws in workspaces:
        ws.close()
    if state is not None:
        state.close()  # what the last collections learnt is written before the exit
        state.release()
    if sim is not None:
        sim.stop()  # type: ignore[attr-defined]
    log.info("stopped")
    return 0


def run() -> None:
    """Console entry point: a collection stuck in a retry back-off must not delay the exit."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
