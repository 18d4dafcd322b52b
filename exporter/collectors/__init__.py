"""Collectors: one folder each, found and registered by their folder alone.

A collector is ``exporter/collectors/<name>/``: its API parsing and model, its collector, its
families and what it keeps in the state file. Its ``__init__.py`` declares ``COLLECTOR``, a
``Registration``: its name, whether it is on by default, the factory that builds it for one
workspace, how its snapshots render, the part of the state file it keeps and, for a collector
with an interval of its own, the setting that holds it. Every other part
of the exporter (the workspace, the state file, the exposition, the command line's toggles,
readiness) loops over ``registrations()`` and names no collector.

Every collector follows one protocol (node_exporter's shape): a ``name``, a ``collect()`` that
makes its API calls and replaces ``snapshot`` (an immutable value) only when it succeeds, and
raises ``ApiError`` otherwise. ``Workspace.collect`` is the one wrapper that runs them: it
times the call, records success or failure and the error, and keeps the last good snapshot.

Folders are looked for in every ``exporter/collectors`` directory on the import path, so a
collector can also be added from outside the installed package.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from exporter.catalogue import Family
    from exporter.client import DatabricksClient
    from exporter.config import Settings, WorkspaceConfig

__path__ = pkgutil.extend_path(__path__, __name__)


class Collector(Protocol):
    name: str
    snapshot: Any  # None until the first successful collection

    def collect(self) -> int:
        """One collection; returns how many objects it saw. Raises ApiError on failure."""
        ...


class Background(Protocol):
    """A collector with work between its collections (the runs' look-back)."""

    def background_pending(self) -> bool: ...

    def background(self, budget_seconds: float) -> int:
        """Work for up to ``budget_seconds``; returns the requests made, logs its errors."""
        ...


@dataclass(frozen=True)
class Context:
    """What a factory builds one workspace's collector from."""

    client: DatabricksClient
    config: WorkspaceConfig
    settings: Settings
    clock: Callable[[], float]  # Unix seconds
    # restore(load, after_failed_write): the collector's saved part through ``load`` (which
    # raises KeyError, TypeError or ValueError for a damaged part), or None; see StateFile.
    restore: Callable[[Callable[[Any], Any], bool], Any] = lambda load, after_failed_write: None


Views = Sequence[tuple[str, Any]]  # (workspace name, snapshot) of every workspace, in order


@dataclass(frozen=True)
class Registration:
    """Everything the rest of the exporter knows of a collector."""

    name: str
    factory: Callable[[Context], Collector]
    # The families a collection's snapshots render as (views: one per workspace, in order).
    render: Callable[[Views], Iterator[Metric]]
    families: tuple[Family, ...]  # what render and live may yield (exporter.catalogue)
    on_by_default: bool = True
    order: int = 100  # place in the exposition and on the command line (lower first)
    # The families that change between collections (rendered at every scrape), if any.
    live: Callable[[Views, float], Iterator[Metric]] | None = None
    live_families: tuple[Family, ...] = ()  # those of ``families`` that ``live`` yields
    # The collector's part of the state file, and what to write there (from its own thread).
    state_part: str | None = None
    save: Callable[[Any], Any] | None = None
    # The Settings field of the seconds between its collections (jobs_interval), when the
    # collector has an interval of its own; None: the shared ``interval``.
    interval_setting: str | None = None

    def interval(self, settings: Settings) -> float:
        """The seconds between this collector's collections."""
        name = self.interval_setting or "interval"
        return float(getattr(settings, name))


_found: tuple[Registration, ...] | None = None
_lock = threading.Lock()


def registrations() -> tuple[Registration, ...]:
    """Every collector's registration, in ``order``; imported once, on first use.

    Raises ValueError for two collectors of one name or one family declared twice.
    """
    global _found
    with _lock:
        if _found is None:
            found = []
            for module in pkgutil.iter_modules(__path__, __name__ + "."):
                if not module.ispkg:
                    continue
                registration = getattr(importlib.import_module(module.name), "COLLECTOR", None)
                if isinstance(registration, Registration):
                    found.append(registration)
            _found = _checked(sorted(found, key=lambda r: (r.order, r.name)))
        return _found


def _checked(found: list[Registration]) -> tuple[Registration, ...]:
    names: set[str] = set()
    families: dict[str, str] = {}
    for registration in found:
        if registration.name in names:
            raise ValueError(f"two collectors are named {registration.name!r}")
        names.add(registration.name)
        if not set(registration.live_families) <= set(registration.families):
            raise ValueError(f"{registration.name}: live families not among its families")
        for family in registration.families:
            if family.name in families:
                raise ValueError(
                    f"family {family.name} is declared by {families[family.name]} and "
                    f"{registration.name}"
                )
            families[family.name] = registration.name
    return tuple(found)


def collector_names() -> tuple[str, ...]:
    return tuple(r.name for r in registrations())


def default_collectors() -> tuple[str, ...]:
    return tuple(r.name for r in registrations() if r.on_by_default)


def registration(name: str) -> Registration:
    for found in registrations():
        if found.name == name:
            return found
    raise KeyError(name)
