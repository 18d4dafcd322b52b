"""One workspace's parts wired together: auth → client → collectors, and their health."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, cast

from exporter.auth import DatabricksAuth, describe
from exporter.client import ApiError, DatabricksClient
from exporter.collectors import Background, Collector, Context, registrations
from exporter.config import Settings, WorkspaceConfig
from exporter.health import WorkspaceHealth
from exporter.servertime import ServerClock, elapsed_clock
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
        enabled = set(config.collectors or settings.collectors)
        self.registrations = {r.name: r for r in registrations() if r.name in enabled}
        # Seconds between each collector's collections (the scheduler's intervals).
        self.intervals = {name: r.interval(settings) for name, r in self.registrations.items()}
        for name, seconds in self.intervals.items():
            self.health.set_interval(name, seconds)
        self.collectors: dict[str, Collector] = {
            name: registration.factory(
                Context(
                    self.client,
                    config,
                    settings,
                    clock,
                    restore=partial(self._restore, registration.state_part),
                )
            )
            for name, registration in self.registrations.items()
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
                self._save_state(name)
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

    def _restore(
        self, part: str | None, load: Callable[[Any], Any], after_failed_write: bool
    ) -> Any:
        if self.state_file is None or part is None:
            return None
        return self.state_file.restore(self.name, self.host, part, load, after_failed_write)

    def background(self) -> list[str]:
        """The collectors with work between their collections (the runs' look-back)."""
        return [name for name, c in self.collectors.items() if hasattr(c, "background")]

    def backfill(self, budget_seconds: float, name: str | None = None) -> bool:
        """Do some of a collector's work between its collections (the runs' look-back; the
        first such collector without ``name``); True when something was read."""
        names = [name] if name is not None else self.background()[:1]
        if not names:
            return False
        collector = cast(Background, self.collectors[names[0]])
        if not collector.background_pending():
            return False
        try:
            requests = collector.background(budget_seconds)
        except Exception:  # the process must outlive any bug in it
            log.exception("workspace %s: %s: work between collections failed", self.name, names[0])
            return False
        if requests and self.state_file is not None:
            self._save_state(names[0])
        return requests > 0

    def _save_state(self, name: str) -> None:
        """Save what this collector keeps (from its own thread: nothing else changes it)."""
        assert self.state_file is not None
        registration = self.registrations[name]
        if registration.state_part is None or registration.save is None:
            return
        # A background writer writes it soon (and records the outcome through on_write);
        # without one the file is written now.
        save = self.state_file.update if self.state_file.background else self.state_file.save
        try:
            value = registration.save(self.collectors[name])
            if value is not None:
                save(self.name, self.host, {registration.state_part: value})
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
