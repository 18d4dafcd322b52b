"""The process's own series: build info, prometheus-client's process and platform collectors,
and whether the web config's last reload worked. Rendered on each scrape with the live part."""

from __future__ import annotations

import platform
from collections.abc import Iterable

from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from exporter import __version__
from exporter.catalogue import BUILD_INFO, PROCESS, WEB_CONFIG_RELOAD, describe
from exporter.webconfig import WebConfigWatch


class BuildInfo(Collector):
    """``databricks_exporter_build_info{version, python_version, python_implementation} 1``,
    and ``databricks_exporter_web_config_last_reload_successful`` with --web.config.file."""

    def __init__(self, web: WebConfigWatch | None = None) -> None:
        self.web = web
        self.labels = {
            "version": __version__,
            "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation(),
        }

    def describe(self) -> Iterable[Metric]:
        return describe(PROCESS if self.web is not None else (BUILD_INFO,))

    def collect(self) -> Iterable[Metric]:
        info = BUILD_INFO.gauge()
        info.add_metric([self.labels[name] for name in BUILD_INFO.labels], 1)
        yield info
        if self.web is not None:
            reload = WEB_CONFIG_RELOAD.gauge()
            reload.add_metric([], 1 if self.web.reload_ok else 0)
            yield reload


def register_self(registry: CollectorRegistry, web: WebConfigWatch | None = None) -> None:
    """Build info and prometheus-client's process_* and python_info collectors."""
    registry.register(BuildInfo(web))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
