"""One workspace's parts wired together: auth → client → collectors, and their health."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from exporter.auth import DatabricksAuth, describe
from exporter.client import ApiError, DatabricksClient
from exporter.collectors import Collector
from exporter.collectors.pools import PoolsCollector
from exporter.collectors.runs import RunsCollector
from exporter.config import Settings, WorkspaceConfig
from exporter.health import WorkspaceHealth
from exporter.poolusage import PoolUsage
from exporter.servertime import ServerClock, elapsed_clock
from exporter.state import RunLedger
from exporter.statefile import StateFile

log = logging.getLogger(__name__)


def state_key(config: WorkspaceConfig, settings: Settings) -> str:
    """What the state file knows a workspace's host by: the simulator's port changes at every
    start."""
    return "simulated" if settings.simulate else config.host


class Workspace:
    """A workspace's enabled collectors and health; ``collect(name)`` is what the scheduler runs."""

    def __init__(
        self,
        config: WorkspaceConfig,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        state_file: StateFile | None = None,
        elapsed: Callable[[], float] = elapsed_clock,
    ) -> None:
        self.name = config.name
        self.health = WorkspaceHealth()
        self.clock = clock
        auth = DatabricksAuth(config, self.health, settings.timeout_seconds)
        self.client = DatabricksClient(
            config.name,
            config.host,
            auth,
            self.health,
            timeout=settings.timeout_seconds,
            max_retries=settings.max_retries,
            max_pages=settings.max_pages,
            max_requests_per_second=settings.max_requests_per_second,
            max_response_bytes=settings.max_response_bytes,
            server_clock=ServerClock(
                config.name,
                elapsed=elapsed,
                wall=clock,
                tolerance_ms=int(settings.date_tolerance_seconds * 1000),
            ),
        )
        self.host = state_key(config, settings)
        self.state_file = state_file
        if state_file is not None:
            self.health.expect_state_writes()
            state_file.on_write(config.name, self._state_written)
        now_ms = int(clock() * 1000)
        restored = state_file.restore(config.name, self.host) if state_file else None
        ledger = restored or RunLedger.starting_at(
            now_ms,
            lookback_ms=int(settings.lookback_hours * 3600 * 1000),
            overlap_ms=int(settings.overlap_seconds * 1000),
        )
        ledger.overlap_ms = int(settings.overlap_seconds * 1000)  # a restored one's too
        ledger.max_jobs = settings.max_jobs
        ledger.max_one_time_names = settings.max_one_time_run_names
        ledger.max_series = settings.max_series
        ledger.set_run_name_patterns(settings.run_name_patterns)
        enabled = set(config.collectors or settings.collectors)
        self.runs: RunsCollector | None = None
        self.pools: PoolsCollector | None = None
        if "runs" in enabled:
            self.runs = RunsCollector(
                self.client,
                ledger,
                lambda: int(self.clock() * 1000),
                backfill_rate=settings.max_requests_per_second / 2,
            )
        if "pools" in enabled:
            gap = settings.max_pool_gap_seconds or 5 * settings.interval
            usage = PoolUsage(gap, config.prices or settings.prices)
            if state_file is not None:
                state_file.restore_pools(config.name, self.host, usage)
            self.pools = PoolsCollector(self.client, usage, clock)
        self.collectors: dict[str, Collector] = {
            c.name: c for c in (self.runs, self.pools) if c is not None
        }
        self._attempted: set[str] = set()
        self._lock = threading.Lock()
        if config.token and not settings.simulate:
            log.warning(
                "workspace %s: authenticating with a personal access token; prefer a service "
                "principal or managed identity",
                self.name,
            )
        else:
            log.info("workspace %s: authenticating with %s", self.name, describe(config))

    @property
    def ready(self) -> bool:
        """True once every enabled collector has attempted one collection, success or not.

        Failures are metrics and alerts (collection_success, DatabricksExporterCollectionFailing),
        never a reason to leave the scrape: a not-ready pod leaves the Service's endpoints.
        """
        with self._lock:
            return self._attempted >= set(self.collectors)

    def collect(self, name: str) -> bool:
        """Run one collector once; time it, log and record failures, never raise."""
        collector = self.collectors[name]
        started = time.monotonic()
        ok = False
        try:
            count = collector.collect()
            ok = True
            if self.state_file is not None:
                self._save_state(collector)
            log.debug("workspace %s: %s collection ok (%d)", self.name, name, count)
        except ApiError as exc:
            log.error("%s (collector %s)", exc, name, extra={"endpoint": exc.endpoint})
        except Exception:  # the process must outlive any bug in one collection
            log.exception("workspace %s: %s collection failed unexpectedly", self.name, name)
        duration = time.monotonic() - started
        self.health.record_collection(name, ok, duration, self.clock())
        with self._lock:
            self._attempted.add(name)
        return ok

    def backfill(self, budget_seconds: float) -> bool:
        """Read some of the runs' look-back (between cycles); True when something was read."""
        if self.runs is None or self.runs.ledger.backfill_window() is None:
            return False
        try:
            pages = self.runs.backfill(budget_seconds)
        except Exception:  # the process must outlive any bug in it
            log.exception("workspace %s: reading the look-back failed unexpectedly", self.name)
            return False
        if pages and self.state_file is not None:
            self._save_state(self.runs)
        return pages > 0

    def _save_state(self, collector: Collector) -> None:
        """Save what this collector keeps (from its own thread: nothing else changes it)."""
        assert self.state_file is not None
        # A background writer writes it soon (and records the outcome through on_write);
        # without one the file is written now.
        save = self.state_file.update if self.state_file.background else self.state_file.save
        try:
            if collector is self.runs:
                with self.runs.lock:  # the look-back may change the ledger from its thread
                    save(self.name, self.host, ledger=self.runs.ledger)
            elif collector is self.pools and self.pools.usage is not None:
                save(self.name, self.host, pools=self.pools.usage.to_dict())
        except OSError as exc:
            self.health.record_state_write(False, self.clock())
            log.error(
                "workspace %s: cannot write state file: %s "
                "(databricks_exporter_state_write_errors_total)",
                self.name,
                exc,
            )
            return
        if not self.state_file.background:
            self.health.record_state_write(True, self.clock())

    def _state_written(self, ok: bool) -> None:
        if self.state_file is not None and self.state_file.background:
            self.health.record_state_write(ok, self.clock())

    def close(self) -> None:
        self.client.close()
