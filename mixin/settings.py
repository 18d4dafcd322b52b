"""The mixin's configuration: the scrape selector and alert thresholds (mixin/config.yml)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

DEFAULT = Path(__file__).with_name("config.yml")
DURATION = re.compile(r"^[0-9]+[smhdw]$")


@dataclasses.dataclass(frozen=True)
class Thresholds:
    failed_runs: int
    failed_runs_window: str
    not_succeeded_hours: float
    slow_factor: float
    slow_min_minutes: float
    stuck_hours: float
    near_timeout_ratio: float
    near_timeout_min_minutes: float
    not_succeeding_periods: float
    idle_above_min_instances: int
    idle_cost_per_day: float
    data_stale_minutes: float
    throttled_per_minute: float


@dataclasses.dataclass(frozen=True)
class Settings:
    selector: str
    grafana_url: str
    thresholds: Thresholds
    runbook_url: str = "README.md"  # each alert's runbook_url: this + "#" + its name, lower case

    def matchers(self, *more: str) -> str:
        """The selector and more label matchers, comma-separated (the selector is never empty)."""
        return ",".join((self.selector, *more))

    def m(self, metric: str, *more: str) -> str:
        """A metric with the selector and more label matchers: `name{selector,matchers}`."""
        return f"{metric}{{{self.matchers(*more)}}}"

    def dashboard_link(self, path: str) -> str:
        return self.grafana_url.rstrip("/") + path

    def runbook_link(self, alert: str) -> str:
        """The alert's section of the README's Runbooks (its heading is the alert's name)."""
        return f"{self.runbook_url}#{alert.lower()}"


class SettingsError(ValueError):
    pass


def load(path: Path | None = None) -> Settings:
    """The defaults of config.yml, overridden by the keys of `path`."""
    doc = _read(DEFAULT)
    if path is not None:
        user = _read(path)
        if not isinstance(user.get("thresholds") or {}, dict):
            raise SettingsError(f"{path}: thresholds must be a mapping of name: value")
        unknown = set(user) - set(doc) | set(user.get("thresholds") or {}) - set(doc["thresholds"])
        if unknown:
            raise SettingsError(f"{path}: unknown keys {sorted(unknown)}")
        doc = {**doc, **user, "thresholds": {**doc["thresholds"], **(user.get("thresholds") or {})}}
    return _settings(doc, path or DEFAULT)


def _read(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise SettingsError(f"{path}: expected a mapping at the top")
    return doc


def _settings(doc: dict[str, Any], path: Path) -> Settings:
    selector = str(doc.get("selector") or "").strip().strip(",")
    if not selector:
        raise SettingsError(
            f'{path}: selector is required (e.g. job="databricks-exporter"): '
            "DatabricksExporterDown finds the exporter's up series with it"
        )
    if "{" in selector or "}" in selector:
        raise SettingsError(f"{path}: selector takes label matchers only, without braces")
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Thresholds):
        value = doc["thresholds"][field.name]
        if field.type == "str":
            if not isinstance(value, str) or not DURATION.match(value):
                raise SettingsError(f"{path}: thresholds.{field.name} must be a duration like 6h")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise SettingsError(f"{path}: thresholds.{field.name} must be a number >= 0")
        values[field.name] = value
    runbook_url = str(doc.get("runbook_url") or "README.md").strip()
    if "#" in runbook_url or any(c.isspace() for c in runbook_url):
        raise SettingsError(
            f"{path}: runbook_url is the README's URL without an anchor (each alert adds its own)"
        )
    return Settings(selector, str(doc.get("grafana_url") or ""), Thresholds(**values), runbook_url)
