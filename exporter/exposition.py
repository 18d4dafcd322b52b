"""The bytes of /metrics: snapshot families rendered once per collection, live ones per scrape.

prometheus-client formats about 150,000 samples a second; 5,000 jobs make 166,000 samples, so
formatting them on every scrape would take a second of CPU per scrape and per Prometheus replica.
Job and pool families change only when a collection publishes a new snapshot, so their text is
rendered once per snapshot (per format and encoding) and reused; the few families that change
between collections (exporter health, ages of active runs) are rendered on each scrape and
appended. With gzip, the cached part is kept as a compressor state (zlib ``copy()``), so each
scrape compresses only the live part and the response is one ordinary gzip stream.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.metrics import LiveCollector, SnapshotCollector
from exporter.workspace import Workspace

EOF_MARKER = b"# EOF\n"  # OpenMetrics ends the whole exposition with it, once
GZIP_LEVEL = 6
SLICE = 10_000  # samples formatted at a time


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _registry(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


@dataclass
class _Rendered:
    snapshots: tuple[Any, ...]
    encoder: Callable[..., bytes]
    head: bytes  # the snapshot families' text, or its gzip stream so far
    compressor: Any = None  # zlib compress object after ``head`` (gzip only)


class Exposition:
    """Renders /metrics for the workspaces; ``render`` is safe to call from many threads."""

    def __init__(self, workspaces: Sequence[Workspace], clock: Callable[[], float] = time.time):
        self._snapshot = SnapshotCollector(workspaces)
        self._live = _registry(LiveCollector(workspaces, clock))
        self._cache: dict[tuple[str, bool], _Rendered] = {}
        self._lock = threading.Lock()
        self._rendering: set[tuple[str, bool]] = set()

    def render(self, accept: str | None = None, gzip: bool = False) -> tuple[bytes, str]:
        """The body and content type for a scrape with this Accept header."""
        encoder, content_type = choose_encoder(accept or "")
        rendered = self._cached(content_type, gzip, encoder)
        live = encoder(self._live)
        if not gzip:
            return rendered.head + live, content_type
        compressor = rendered.compressor.copy()
        return rendered.head + compressor.compress(live) + compressor.flush(), content_type

    def refresh(self) -> None:
        """Render every format scraped so far for the current snapshots (after a collection)."""
        for (content_type, gzip), rendered in list(self._cache.items()):
            self._cached(content_type, gzip, rendered.encoder)

    def _cached(self, content_type: str, gzip: bool, encoder: Callable[..., bytes]) -> _Rendered:
        key = (content_type, gzip)
        hit = self._cache.get(key)
        if hit is not None and (
            _same(hit.snapshots, self._snapshot.snapshots()) or key in self._rendering
        ):
            return hit  # current, or being re-rendered: the previous render is served meanwhile
        with self._lock:  # one render at a time; a scrape that waited here reuses it
            snapshots = self._snapshot.snapshots()
            hit = self._cache.get(key)
            if hit is not None and _same(hit.snapshots, snapshots):
                return hit
            self._rendering.add(key)
            try:
                rendered = self._render(snapshots, gzip, encoder)
            finally:
                self._rendering.discard(key)
            self._cache[key] = rendered
            return rendered

    def _render(
        self, snapshots: tuple[Any, ...], gzip: bool, encoder: Callable[..., bytes]
    ) -> _Rendered:
        # Family by family, and a large family in slices of its samples, each slice's samples
        # dropped once formatted: a render at 5,000 jobs never holds the whole text or a whole
        # family's text. prometheus-client's encoders join per-family text, and a slice after
        # the first differs only by the repeated HELP/TYPE lines, so the result is
        # byte-identical to one encoder call over everything.
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if gzip else None
        parts: list[bytes] = []
        for family in self._snapshot.collect(snapshots):
            for text in _slices(family, encoder):
                parts.append(compressor.compress(text) if compressor else text)
        if compressor is None:
            return _Rendered(snapshots, encoder, b"".join(parts))
        parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
        return _Rendered(snapshots, encoder, b"".join(parts), compressor)


def _slices(family: Metric, encoder: Callable[..., bytes]) -> Iterator[bytes]:
    """The family's text in slices of SLICE samples, consuming ``family.samples``."""
    first = True
    while first or family.samples:
        part = Metric(family.name, family.documentation, family.type, family.unit)
        part.samples = family.samples[:SLICE]
        del family.samples[:SLICE]
        text = encoder(_registry(_Fixed([part])))
        del part
        if text.endswith(EOF_MARKER):  # OpenMetrics: the live part ends the exposition
            text = text[: -len(EOF_MARKER)]
        if not first:  # drop the repeated "# HELP", "# TYPE" (and "# UNIT") lines
            while text.startswith(b"# "):
                text = text[text.index(b"\n") + 1 :]
        first = False
        yield text


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Same snapshot objects (identity: a snapshot is never changed once published)."""
    return len(a) == len(b) and all(
        x[0] is y[0] and x[1] is y[1] for x, y in zip(a, b, strict=True)
    )
