"""The bytes of /metrics: snapshot families rendered once per collection, live ones per scrape.

prometheus-client formats about 150,000 samples a second; 5,000 jobs make 166,000 samples, so
formatting them on every scrape would take a second of CPU per scrape and per Prometheus replica.
Job and pool families change only when a collection publishes a new snapshot, so their text is
rendered once per snapshot and reused, per (workspace, collector) part: a pools collection does
not re-render the job series, nor one workspace's collection another's. The parts' texts are
joined family by family (one header, then every part's samples), which is byte-identical to
prometheus-client rendering everything at once. The few families that change between
collections (exporter health, ages of active runs) are rendered on each scrape and appended.
With gzip, the joined part is kept as a compressor state (zlib ``copy()``), so each scrape
compresses only the live part and the response is one ordinary gzip stream.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.metrics import LiveCollector, Part, SnapshotCollector, render_part
from exporter.selfmetrics import register_self
from exporter.webconfig import WebConfigWatch
from exporter.workspace import Workspace

log = logging.getLogger(__name__)

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
    parts: tuple[Part, ...]
    encoder: Callable[..., bytes]
    head: bytes  # the snapshot families' text, or its gzip stream so far
    compressor: Any = None  # zlib compress object after ``head`` (gzip only)


@dataclass(frozen=True)
class _PartText:
    """One (workspace, collector) part's families: (name, header lines, sample lines) each."""

    snapshot: Any
    families: tuple[tuple[str, bytes, bytes], ...]


class Exposition:
    """Renders /metrics for the workspaces; ``render`` is safe to call from many threads."""

    def __init__(
        self,
        workspaces: Sequence[Workspace],
        clock: Callable[[], float] = time.time,
        web: WebConfigWatch | None = None,
        process: bool = False,
    ):
        self._snapshot = SnapshotCollector(workspaces)
        self._live = _registry(LiveCollector(workspaces, clock))
        if process:  # build info, process_* and python_info: the process's, not the data's
            register_self(self._live, web)
        self._cache: dict[tuple[str, bool], _Rendered] = {}
        self._parts: dict[tuple[str, str, str], _PartText] = {}  # (format, workspace, collector)
        self._lock = threading.Lock()
        self._rendering: set[tuple[str, bool]] = set()
        self.renders: Counter[str] = Counter()  # parts formatted, by collector (benchmarks)
        # A render for new snapshots is on its way (exporter.scheduling.Renderer): scrapes are
        # served the previous one meanwhile rather than render it themselves.
        self.pending = False

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
        """Render every format scraped so far for the current snapshots (after a collection).

        This is the render that ``pending`` waits for, so it renders whatever ``pending`` says:
        with collections finishing faster than renders (many workspaces, a short interval),
        ``pending`` is set again before each render ends and would otherwise never clear."""
        for (content_type, gzip), rendered in list(self._cache.items()):
            self._cached(content_type, gzip, rendered.encoder, refreshing=True)

    def _cached(
        self,
        content_type: str,
        gzip: bool,
        encoder: Callable[..., bytes],
        refreshing: bool = False,
    ) -> _Rendered:
        key = (content_type, gzip)
        hit = self._cache.get(key)
        if hit is not None and (
            (self.pending and not refreshing)
            or key in self._rendering
            or _same(hit.parts, self._snapshot.parts())
        ):
            return hit  # current, or being re-rendered: the previous render is served meanwhile
        with self._lock:  # one render at a time; a scrape that waited here reuses it
            parts = self._snapshot.parts()
            hit = self._cache.get(key)
            if hit is not None and _same(hit.parts, parts):
                return hit
            self._rendering.add(key)
            try:
                rendered = self._join(content_type, parts, gzip, encoder)
            finally:
                self._rendering.discard(key)
            self._cache[key] = rendered
            return rendered

    def _join(
        self, content_type: str, parts: tuple[Part, ...], gzip: bool, encoder: Callable[..., bytes]
    ) -> _Rendered:
        """The parts' texts (each formatted only when its snapshot changed), family by family."""
        texts = [self._part(content_type, part, encoder) for part in parts]
        live = {(content_type, ws, collector) for ws, collector, _ in parts}
        for stale in [k for k in self._parts if k[0] == content_type and k not in live]:
            del self._parts[stale]  # a collector turned off or a workspace gone
        # Parts come collector by collector (SnapshotCollector.parts), so one pass keeps the
        # exposition order: each family's header from its first part, then every part's samples.
        headers: dict[str, bytes] = {}
        bodies: dict[str, list[bytes]] = {}
        for text in texts:
            for family, header, body in text.families:
                headers.setdefault(family, header)
                bodies.setdefault(family, []).append(body)
        chunks: list[bytes] = []
        for family, header in headers.items():
            chunks.append(header)
            chunks.extend(bodies[family])
        if not gzip:
            return _Rendered(parts, encoder, b"".join(chunks))
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        head = [compressor.compress(chunk) for chunk in chunks]
        head.append(compressor.flush(zlib.Z_SYNC_FLUSH))
        return _Rendered(parts, encoder, b"".join(head), compressor)

    def _part(self, content_type: str, part: Part, encoder: Callable[..., bytes]) -> _PartText:
        ws, collector, snapshot = part
        key = (content_type, ws, collector)
        hit = self._parts.get(key)
        if hit is not None and hit.snapshot is snapshot:
            return hit
        # Family by family, and a large family in slices of its samples, each slice's samples
        # dropped once formatted: a render at 5,000 jobs never holds a whole family twice.
        # prometheus-client's encoders join per-family text, and a slice after the first
        # differs only by the repeated HELP/TYPE lines, so the joined text is byte-identical to
        # one encoder call over everything.
        families = []
        for family in render_part(collector, ws, snapshot):
            try:
                text = b"".join(_slices(family, encoder))
            except Exception as exc:  # one family that cannot be encoded must not fail the page
                log.error(
                    "workspace %s: %s left out of /metrics, it cannot be rendered: %.200s",
                    ws,
                    family.name,
                    exc,
                )
                continue
            cut = 0
            while text.startswith(b"# ", cut):  # HELP, TYPE (and UNIT) lines
                cut = text.index(b"\n", cut) + 1
            families.append((family.name, text[:cut], text[cut:]))
        self.renders[collector] += 1
        rendered = _PartText(snapshot, tuple(families))
        self._parts[key] = rendered
        return rendered


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


def _same(a: tuple[Part, ...], b: tuple[Part, ...]) -> bool:
    """Same parts with the same snapshot objects (a snapshot is never changed once published)."""
    return len(a) == len(b) and all(
        x[0] == y[0] and x[1] == y[1] and x[2] is y[2] for x, y in zip(a, b, strict=True)
    )
