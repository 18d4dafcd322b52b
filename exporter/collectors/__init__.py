"""Collectors turn Databricks API pages into plain data, one module per API area.

Every collector follows one protocol (node_exporter's shape): a ``name``, a ``collect()`` that
makes its API calls and replaces ``snapshot`` (an immutable value) only when it succeeds, and
raises ``ApiError`` otherwise. ``Workspace.collect`` is the one wrapper that runs them: it
times the call, records success or failure and the error, and keeps the last good snapshot.
"""

from __future__ import annotations

from typing import Any, Protocol

# Every collector the exporter has, on by default; `--no-collector.<name>` or `collectors:` in
# the YAML turns one off. Adding a collector: its module, a name here, a line in Workspace.
COLLECTOR_NAMES = ("runs", "pools")


class Collector(Protocol):
    name: str
    snapshot: Any  # None until the first successful collection

    def collect(self) -> int:
        """One collection; returns how many objects it saw. Raises ApiError on failure."""
        ...
