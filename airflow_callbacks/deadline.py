"""Total deadlines for calls whose libraries only bound each socket read.

A server that trickles one byte every few seconds, or a token endpoint that accepts the connection
and never answers, keeps such a call alive far past any per-read timeout. ``call_within`` runs the
call in a daemon thread and stops waiting for it when the deadline passes; the thread is
abandoned (a daemon thread never keeps the task's process alive).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Expired(Exception):
    """The call did not finish within its deadline."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


def call_within(seconds: float, call: Callable[[], T], name: str = "bounded-call") -> T:
    """``call()``'s result, or its exception; ``Expired`` if it is not done within ``seconds``."""
    if seconds <= 0:
        raise Expired(name)
    outcome: list[T] = []
    failure: list[Exception] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"airflow_callbacks {name}", daemon=True)
    thread.start()
    thread.join(seconds)
    if failure:
        raise failure[0]
    if not outcome:  # still running, or ended by a BaseException that is not ours to re-raise
        raise Expired(name)
    return outcome[0]
