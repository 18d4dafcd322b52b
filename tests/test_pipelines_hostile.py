"""Pipelines against a scripted Pipelines API on loopback (the real client over HTTP), in the
cases the simulator never plays: a pipeline missing from one listing, one created while the
exporter was down, one whose updates cannot be read in the first cycle, a listing ahead of
/updates, an update state this exporter does not know, downtime between an update's end and
its reading, and an event log that fails once."""

from __future__ import annotations

import email.utils
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from exporter.auth import DatabricksAuth
from exporter.client import DatabricksClient
from exporter.collectors.pipelines.collector import PipelinesCollector
from exporter.collectors.pipelines.ledger import (
    FORGET_AFTER_MS,
    PipelineLedger,
    from_dict,
    to_dict,
)
from exporter.config import WorkspaceConfig
from exporter.health import WorkspaceHealth
from exporter.servertime import ServerClock

START = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = START

    def time(self) -> float:
        return self.t

    def ms(self) -> int:
        return int(self.t * 1000)


class World:
    """pipelines: id -> name and updates (newest first); faults: path part -> status."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.faults: dict[str, int] = {}
        self.hidden: set[str] = set()
        self.latest_override: dict[str, list[dict[str, Any]]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[str] = []

    def add(self, pid: str) -> None:
        self.pipelines[pid] = {"name": pid, "updates": []}

    def start(self, pid: str, uid: str, state: str | None = "RUNNING", created: int = 0) -> None:
        update = {"update_id": uid, "creation_time": created or self.clock.ms()}
        if state is not None:
            update["state"] = state
        self.pipelines[pid]["updates"].insert(0, update)

    def set(self, pid: str, uid: str, state: str) -> None:
        for update in self.pipelines[pid]["updates"]:
            if update["update_id"] == uid:
                update["state"] = state

    def listing(self) -> list[dict[str, Any]]:
        out = []
        for pid, p in sorted(self.pipelines.items()):
            if pid in self.hidden:
                continue
            latest = self.latest_override.get(pid) or [
                {"update_id": u["update_id"], "state": u.get("state", "")} for u in p["updates"][:3]
            ]
            out.append(
                {"pipeline_id": pid, "name": p["name"], "state": "IDLE", "latest_updates": latest}
            )
        return out


def _page(items: list[Any], query: dict[str, list[str]]) -> dict[str, Any]:
    n = int(query.get("max_results", ["25"])[0])
    start = int(query.get("page_token", ["0"])[0])
    body: dict[str, Any] = {"items": items[start : start + n]}
    if start + n < len(items):
        body["next_page_token"] = str(start + n)
    return body


@pytest.fixture
def world() -> Iterator[tuple[World, Clock, DatabricksClient]]:
    clock = Clock()
    w = World(clock)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            w.requests.append(url.path)
            status, body = 200, None
            for part, code in w.faults.items():
                if part in url.path:
                    status, body = code, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "x"}
            if body is None:
                parts = url.path.split("/")[4:]
                if not parts:
                    page = _page(w.listing(), query)
                    body = {"statuses": page.pop("items"), **page}
                elif parts[1] == "updates":
                    page = _page(w.pipelines[parts[0]]["updates"], query)
                    body = {"updates": page.pop("items"), **page}
                else:
                    body = {"events": w.events.get(parts[0], [])}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Date", email.utils.formatdate(clock.time(), usegmt=True))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_port}"
    health = WorkspaceHealth()
    auth = DatabricksAuth(WorkspaceConfig(name="t", host=url, token="dapi-x"), health)
    client = DatabricksClient(
        "t",
        url,
        auth,
        health,
        backoff_factor=0.01,
        max_retries=1,
        server_clock=ServerClock("t", elapsed=clock.time, wall=clock.time),
    )
    try:
        yield w, clock, client
    finally:
        client.close()
        httpd.shutdown()
        httpd.server_close()


def counts(c: PipelinesCollector) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for (pid, _, state), n in c.ledger.updates_total.items():
        out[(pid, state)] = out.get((pid, state), 0) + n
    return out


def collector(client: DatabricksClient, clock: Clock, baseline: int) -> PipelinesCollector:
    return PipelinesCollector(client, PipelineLedger(baseline), clock.time)


def test_a_pipeline_missing_from_one_listing_keeps_its_counters_and_is_not_recounted(world):
    w, clock, client = world
    w.add("pA")
    c = collector(client, clock, clock.ms())
    c.collect()
    for k in range(30):  # each update seen on its way, then ended
        clock.t += 60
        w.start("pA", f"u{k:02d}")
        c.collect()
        clock.t += 60
        w.set("pA", f"u{k:02d}", "COMPLETED")
        c.collect()
    assert counts(c) == {("pA", "COMPLETED"): 30}
    w.hidden.add("pA")  # a permission flap, a page that shifted
    clock.t += 60
    c.collect()
    assert counts(c) == {("pA", "COMPLETED"): 30}  # never lower: no counter reset
    w.hidden.clear()
    clock.t += 60
    c.collect()
    assert counts(c) == {("pA", "COMPLETED"): 30}  # nothing ran meanwhile: nothing counted
    # Deleted for good: after a day its series go, and if it came back it would not recount.
    w.hidden.add("pA")
    for _ in range(2):
        clock.t += FORGET_AFTER_MS / 1000
        c.collect()
    assert counts(c) == {} and "pA" in c.ledger.tombstones
    w.hidden.clear()
    clock.t += 60
    c.collect()
    assert counts(c) == {}


def test_a_pipeline_created_while_the_exporter_was_down_is_counted_in_full(world):
    w, clock, client = world
    w.add("pA")
    c = collector(client, clock, clock.ms())
    c.collect()
    saved = json.loads(json.dumps(to_dict(c.ledger)))  # the state file at shutdown
    w.add("pB")
    for k in range(40):  # two days down, an update an hour: more than a page of them
        clock.t += 3600
        w.start("pB", f"u{k:02d}", "COMPLETED")
    clock.t += 60
    again = PipelinesCollector(client, from_dict(saved), clock.time)
    again.collect()
    assert counts(again)[("pB", "COMPLETED")] == 40
    clock.t += 60
    again.collect()
    assert counts(again)[("pB", "COMPLETED")] == 40


def test_one_unreadable_pipeline_in_the_first_cycle_blinds_no_other_and_loses_nothing(world):
    w, clock, client = world
    for pid in ("pA", "pB"):
        w.add(pid)
    w.start("pA", "a1", created=clock.ms() - 60_000)
    w.start("pB", "b1", created=clock.ms() - 60_000)
    w.faults["/pB/updates"] = 500
    c = collector(client, clock, clock.ms())
    c.collect()  # succeeds: pA is read, pB's b1 is known on its way from the listing
    assert c.snapshot is not None and not c.ledger.fresh
    clock.t += 30
    w.set("pA", "a1", "FAILED")
    w.set("pB", "b1", "COMPLETED")
    for _ in range(3):
        clock.t += 60
        c.collect()
    assert counts(c) == {("pA", "FAILED"): 1}  # pB still unreadable, a1 counted meanwhile
    del w.faults["/pB/updates"]
    clock.t += 60
    c.collect()
    assert counts(c) == {("pA", "FAILED"): 1, ("pB", "COMPLETED"): 1}


def test_a_duration_is_observed_only_when_the_updates_end_was_seen_within_bounds(world):
    w, clock, client = world
    w.add("pA")
    w.start("pA", "x1")
    c = collector(client, clock, clock.ms() - 1)
    c.collect()
    saved = json.loads(json.dumps(to_dict(c.ledger)))
    clock.t += 300
    w.set("pA", "x1", "COMPLETED")  # ran 5 minutes
    clock.t += 2 * 3600  # the exporter was down for 2 hours
    again = PipelinesCollector(client, from_dict(saved), clock.time)
    again.collect()
    assert counts(again) == {("pA", "COMPLETED"): 1}  # counted...
    assert sum(h.count for h in again.ledger.durations.values()) == 0  # ...no invented 2 h
    w.start("pA", "x2")
    clock.t += 60
    again.collect()
    clock.t += 120
    w.set("pA", "x2", "COMPLETED")
    clock.t += 60
    again.collect()  # seen on its way one cycle before: within a cycle of the truth
    (hist,) = again.ledger.durations.values()
    assert hist.count == 1 and 180 <= hist.total <= 240


def test_a_listing_ahead_of_updates_is_read_again_until_they_agree(world):
    w, clock, client = world
    w.add("pA")
    w.start("pA", "x1")
    c = collector(client, clock, clock.ms() - 1)
    c.collect()
    clock.t += 60
    w.latest_override["pA"] = [{"update_id": "x1", "state": "COMPLETED"}]  # /updates: RUNNING
    c.collect()
    w.latest_override.clear()
    w.set("pA", "x1", "COMPLETED")
    clock.t += 60
    c.collect()
    assert counts(c) == {("pA", "COMPLETED"): 1}
    assert c.snapshot is not None and c.snapshot.running[("pA", "pA")] == 0


def test_an_update_state_it_does_not_know_neither_runs_nor_pins_the_reads(world):
    w, clock, client = world
    w.add("pA")
    c = collector(client, clock, clock.ms() - 1)
    c.collect()
    w.start("pA", "odd", None)  # UpdateInfo.state is optional
    clock.t += 60
    c.collect()
    for k in range(60):
        clock.t += 60
        w.start("pA", f"u{k:03d}", "COMPLETED")
        before = len(w.requests)
        c.collect()
    assert len(w.requests) - before <= 2  # the listing and one page, not back to "odd"
    assert "odd" not in c.ledger.books["pA"].active
    assert counts(c) == {("pA", "COMPLETED"): 60}


def test_a_failed_updates_error_is_asked_again_when_the_event_log_failed(world):
    w, clock, client = world
    w.add("pA")
    c = collector(client, clock, clock.ms() - 1)
    c.collect()
    w.start("pA", "f1")
    clock.t += 60
    c.collect()
    w.set("pA", "f1", "FAILED")
    w.faults["/pA/events"] = 500
    clock.t += 60
    c.collect()
    book = c.ledger.books["pA"]
    assert book.last is not None and book.last.error == ""
    del w.faults["/pA/events"]
    w.events["pA"] = [{"origin": {"update_id": "f1"}, "level": "ERROR", "message": "boom"}]
    clock.t += 60
    c.collect()
    assert "boom" in book.last.error
