"""Databricks' clock, read from the answers' ``Date`` headers, and checked before it is trusted.

The cycles are timed by Databricks' clock, so an exporter clock minutes off neither loses runs
nor stretches the pools' integral. But one header is one proxy's or one server's word: a
single ``Date`` an hour ahead would move the runs watermark an hour ahead (the runs of that hour
never counted) and make the pools integral skip an hour. So each ``Date`` is compared with the
last trusted one plus the time elapsed since on a clock that never steps (the boot-time
monotonic clock, which also counts a suspend). One that disagrees by more than ``tolerance`` is
not trusted: the extrapolated time is used instead, and a warning says so. A real step of
Databricks' clock is a new offset that every answer keeps: once answers have agreed on one for
``confirm`` seconds, it is followed. ``date_tolerance_seconds: 0`` turns the check off (a
simulator whose clock is moved by hand, faster than time passes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TOLERANCE_MS = 10_000  # Date has 1 s resolution; latency and clock drift are far below this
CONFIRM_MS = 300_000  # a new offset every answer agrees on for 5 minutes is a real clock step
FAR_MS = 86_400_000  # a Date more than a day from the exporter's own clock is never trusted


def elapsed_clock() -> float:
    """Seconds on a clock that never steps; CLOCK_BOOTTIME also runs while the host sleeps."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        return time.clock_gettime(boottime)
    return time.monotonic()


class ServerClock:
    """``read(date_ms)``: the time to use for an answer, in ms of Databricks' clock."""

    def __init__(
        self,
        workspace: str,
        elapsed: Callable[[], float] = elapsed_clock,
        wall: Callable[[], float] = time.time,
        tolerance_ms: int = TOLERANCE_MS,
        confirm_ms: int = CONFIRM_MS,
    ) -> None:
        self.workspace = workspace
        self._elapsed = elapsed
        self._wall = wall
        self.tolerance_ms = tolerance_ms
        self.confirm_ms = confirm_ms
        self._lock = threading.Lock()
        self._anchor: tuple[int, float] | None = None  # (trusted Date ms, elapsed s then)
        self._provisional: tuple[int, float] | None = None  # a first Date not yet confirmed
        self._candidate: tuple[int, float] | None = None  # (offset ms, elapsed s first seen)
        self.distrusted = 0  # answers whose Date was not trusted

    def read(self, date_ms: int | None) -> int | None:
        """The time of an answer: its Date when trusted, else the extrapolated time; None
        without a Date and without a trusted one before (the caller uses its own clock)."""
        now = self._elapsed()
        with self._lock:
            if self.tolerance_ms <= 0:  # checks off: every Date is trusted (as before 0.4)
                if date_ms is not None:
                    self._anchor = (date_ms, now)
                    return date_ms
                return self._expected(now)
            if date_ms is not None and abs(date_ms - self._wall() * 1000) > FAR_MS:
                self._distrust(
                    date_ms, "more than a day away from this host's clock, and so from any"
                )
                return self._expected(now)
            if self._anchor is None:
                # The first Date is trusted when this host's clock agrees, or when the next
                # answer agrees with it; until then it times its own answer only.
                if date_ms is None:
                    return None
                provisional = self._provisional
                agrees = (
                    provisional is not None
                    and abs(date_ms - provisional[0] - int((now - provisional[1]) * 1000))
                    <= self.tolerance_ms
                )
                if agrees or abs(date_ms - self._wall() * 1000) <= self.tolerance_ms:
                    self._anchor, self._provisional = (date_ms, now), None
                else:
                    self._provisional = (date_ms, now)
                return date_ms
            expected = self._expected(now)
            assert expected is not None
            if date_ms is None:
                return expected
            if abs(date_ms - expected) <= self.tolerance_ms:
                self._anchor, self._candidate = (date_ms, now), None
                return date_ms
            if self._confirmed(date_ms - int(now * 1000), now):
                log.warning(
                    "workspace %s: Databricks' clock stepped by %+.0f s (every answer agreed "
                    "for %.0f s); following it",
                    self.workspace,
                    (date_ms - expected) / 1000,
                    self.confirm_ms / 1000,
                )
                self._anchor, self._candidate = (date_ms, now), None
                return date_ms
            self._distrust(
                date_ms, f"{(date_ms - expected) / 1000:+.0f} s off the time kept since the last"
            )
            return expected

    def elapsed_now(self) -> float:
        return self._elapsed()

    def time_at(self, elapsed: float) -> int | None:
        """Databricks' time at an earlier ``elapsed_now()``, once a Date is trusted; else None."""
        with self._lock:
            return self._expected(elapsed)

    def _expected(self, now: float) -> int | None:
        if self._anchor is None:
            return None
        date_ms, then = self._anchor
        return date_ms + int((now - then) * 1000)

    def _confirmed(self, offset_ms: int, now: float) -> bool:
        """Whether answers have agreed on this new offset for ``confirm_ms``."""
        if self._candidate is None or abs(offset_ms - self._candidate[0]) > self.tolerance_ms:
            self._candidate = (offset_ms, now)
            return False
        return (now - self._candidate[1]) * 1000 >= self.confirm_ms

    def _distrust(self, date_ms: int, why: str) -> None:
        self.distrusted += 1
        if self.distrusted == 1 or self.distrusted % 100 == 0:
            log.warning(
                "workspace %s: an answer's Date header (%s) is %s trusted answer; not trusted, "
                "the time kept since then is used (%d such answers)",
                self.workspace,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(min(date_ms / 1000, 2**37))),
                why,
                self.distrusted,
            )
