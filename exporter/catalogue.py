"""Every metric family declared once: name, type, help, labels, unit.

Each collector declares its families in its own folder (``families.py``: ``FAMILIES``) and the
exporter's own health families are here; ``catalogue()`` is all of them. The families code
renders from these declarations, ``describe()`` answers from them (so prometheus-client refuses
a name declared twice at start), the README's metrics table is checked against them, and the
mixin imports the names it queries from them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One family. ``name`` is the family's name as prometheus-client knows it (a counter's
    without ``_total``); ``labels`` in the order the samples carry them."""

    name: str
    type: str  # counter, gauge or histogram
    help: str
    labels: tuple[str, ...]
    unit: str = ""

    @property
    def series(self) -> str:
        """The name a query uses: a counter's ``_total``, a histogram's base name."""
        return self.name + "_total" if self.type == "counter" else self.name
