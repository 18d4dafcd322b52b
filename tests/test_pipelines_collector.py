"""The pipelines collector against the simulator over loopback HTTP: every update counted once
by outcome, through faults, gaps and restarts; cheap when nothing changed; bad input skipped."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import pytest
from loopback import Loopback, QuietHandler

from databricks_simulator import FaultRule, SimClock, SimConfig, SimServer, SimWorkspace
from exporter.auth import DatabricksAuth
from exporter.client import DatabricksClient
from exporter.collectors.pipelines.collector import PipelinesCollector
from exporter.collectors.pipelines.families import pipeline_families
from exporter.collectors.pipelines.ledger import PipelineLedger, from_dict, to_dict
from exporter.config import WorkspaceConfig
from exporter.health import WorkspaceHealth
from exporter.servertime import ServerClock

MIN = 60
CONFIG = SimConfig(
    seed=5,
    jobs=1,
    pools=1,
    history_hours=6,
    pipelines=6,
    pipeline_period_seconds=(300, 900),
    pipeline_fail_rate=0.3,
)


def _client(url: str, token: str, clock: SimClock | None = None) -> DatabricksClient:
    health = WorkspaceHealth()
    auth = DatabricksAuth(WorkspaceConfig(name="t", host=url, token=token), health)
    server_clock = ServerClock("t", elapsed=clock.time, wall=clock.time) if clock else None
    return DatabricksClient(
        "t", url, auth, health, backoff_factor=0.01, max_retries=2, server_clock=server_clock
    )


@pytest.fixture
def world():
    clock = SimClock()
    clock.set(1_800_000_000.0)
    with SimServer(SimWorkspace(CONFIG, clock)) as server:
        client = _client(server.url, server.token, clock)
        collector = PipelinesCollector(client, PipelineLedger(clock.now_ms()), clock.time)
        yield server, collector, clock
        client.close()


def counted(collector: PipelinesCollector) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for (pipeline_id, _, state), n in collector.ledger.updates_total.items():
        out[(pipeline_id, state)] += n
    return +out


def truth(server: SimServer, collector: PipelinesCollector, clock: SimClock) -> Counter:
    return +server.model.pipelines.truth(collector.ledger.baseline_ms, clock.now_ms())


def run(collector: PipelinesCollector, clock: SimClock, minutes: int, step: int = MIN) -> None:
    for _ in range(minutes * MIN // step):
        clock.advance(step)
        collector.collect()


def requests_to(server: SimServer, part: str) -> int:
    """Requests whose path ends with ``part``."""
    return sum(n for path, n in server.stats.requests.items() if path.endswith(part))


def test_every_update_is_counted_once_by_outcome(world):
    server, collector, clock = world
    assert collector.collect() == 6
    assert counted(collector) == Counter()  # what ended before the baseline is not counted
    run(collector, clock, 180)
    want = truth(server, collector, clock)
    assert sum(want.values()) >= 40 and {s for _, s in want} == {"COMPLETED", "FAILED", "CANCELED"}
    assert counted(collector) == want
    durations = sum(h.count for h in collector.ledger.durations.values())
    assert durations == sum(want.values())


def test_updates_are_read_only_when_the_listing_says_something_changed(world):
    server, collector, clock = world
    collector.collect()
    before = {part: requests_to(server, part) for part in ("/pipelines", "/updates", "/events")}
    cycles = 180
    run(collector, clock, cycles)
    listing, updates, events = (requests_to(server, part) - before[part] for part in before)
    assert listing == cycles  # one page: six pipelines
    ended = sum(counted(collector).values())
    failed = sum(n for (_, state), n in counted(collector).items() if state == "FAILED")
    # An updates page when a new update shows in latest_updates and when one ends, no more:
    # never one per pipeline and cycle (1,080 here).
    assert updates <= 2 * ended + 6, (updates, ended)
    assert events == failed  # one event-log page per failed update, for its error
    print(f"pipelines: {(listing + updates + events) / cycles:.2f} requests a cycle")


def test_a_long_gap_reads_the_updates_pages_down_to_what_was_settled(world):
    server, collector, clock = world
    collector.collect()
    clock.advance(5 * 3600)  # far more updates than latest_updates (3) or one page (25) shows
    collector.collect()
    assert counted(collector) == truth(server, collector, clock)
    run(collector, clock, 30)
    assert counted(collector) == truth(server, collector, clock)


def test_faults_change_nothing_and_lose_nothing(world):
    server, collector, clock = world
    collector.collect()
    for minute in range(240):
        if minute % 7 == 0:
            server.add_faults(FaultRule(path_prefix="/api/2.0/pipelines/", status=500, count=3))
        if minute % 11 == 0:
            server.add_faults(FaultRule(path_prefix="/api/2.0/pipelines", status=503, count=3))
        if minute % 13 == 0:
            server.add_faults(FaultRule(path_prefix="/api/2.0/pipelines/", body="html", count=3))
        clock.advance(MIN)
        try:
            collector.collect()
        except Exception as exc:  # a failed listing fails the cycle, nothing else
            assert "pipelines" in str(exc)
    server.faults.clear()
    clock.advance(MIN)
    collector.collect()
    assert counted(collector) == truth(server, collector, clock)
    assert sum(counted(collector).values()) >= 40


def test_a_restart_from_the_saved_ledger_counts_on_exactly(world):
    server, collector, clock = world
    collector.collect()
    run(collector, clock, 60)
    saved = json.loads(json.dumps(to_dict(collector.ledger)))
    run(collector, clock, 20)  # counted, then lost with the process: not in `saved`
    clock.advance(45 * MIN)  # down for 45 minutes
    again = PipelinesCollector(collector.client, from_dict(saved), clock.time)
    again.collect()
    run(again, clock, 60)
    assert counted(again) == truth(server, again, clock)


def test_a_pipeline_idle_after_a_failed_update_shows_the_failure_and_its_error(world):
    server, collector, clock = world
    collector.collect()
    pipelines = server.model.pipelines
    for _ in range(600):
        snap = collector.snapshot
        assert snap is not None
        idle = {pid for pid, _, state, _ in snap.pipelines if state == "IDLE"}
        failed = [(k, last) for k, last in snap.last.items() if last.state == "FAILED"]
        hits = [(k, last) for k, last in failed if k[0] in idle]
        if hits:
            break
        clock.advance(MIN)
        collector.collect()
    (pipeline_id, name), last = hits[0]
    p = pipelines.index(pipeline_id)
    update = next(
        u for u in pipelines.updates_desc(p, clock.now_ms()) if u.update_id == last.update_id
    )
    assert last.error == pipelines.error_message(update)
    families = {f.name: f for f in pipeline_families([("w", snap)])}
    labels = {"workspace": "w", "pipeline_id": pipeline_id, "pipeline_name": name}
    info = [
        s
        for s in families["databricks_pipeline_info"].samples
        if s.labels["pipeline_id"] == pipeline_id
    ]
    assert info[0].labels["state"] == "IDLE" and info[0].labels["health"] == "UNHEALTHY"
    flag = [
        s for s in families["databricks_pipeline_last_update_failed"].samples if s.labels == labels
    ]
    assert flag[0].value == 1.0
    error = [
        s
        for s in families["databricks_pipeline_last_update_error_info"].samples
        if s.labels["pipeline_id"] == pipeline_id
    ]
    assert (
        error[0].labels["message"] == last.error and error[0].labels["update_id"] == last.update_id
    )


class Hostile(QuietHandler):
    """A pipelines API whose objects are broken in the ways real data breaks."""

    pipelines: Any = None
    updates: Any = None

    def do_GET(self) -> None:
        body = self.pipelines if self.path.startswith("/api/2.0/pipelines?") else self.updates
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class HostileServer(Loopback):
    def __init__(self, pipelines: Any, updates: Any) -> None:
        self._listen(type("H", (Hostile,), {"pipelines": pipelines, "updates": updates}))
        self.url = f"http://127.0.0.1:{self.port}"


def _hostile(pipelines: Any, updates: Any) -> HostileServer:
    return HostileServer(pipelines, updates)


GOOD = {"pipeline_id": "p-1", "name": "orders", "state": "IDLE", "latest_updates": []}


@pytest.mark.parametrize(
    "pipelines, updates, listed, settled",
    [
        # No pipeline_id, an id that is not text, a 300-character id: skipped, the rest kept.
        (
            {"statuses": [{"name": "x"}, {"pipeline_id": 7}, {"pipeline_id": "p" * 300}, GOOD]},
            {"updates": []},
            1,
            0,
        ),
        # An unknown pipeline state and health are shown as they are.
        ({"statuses": [{**GOOD, "state": "HIBERNATING", "health": "MEH"}]}, {"updates": []}, 1, 0),
        # Updates without an id or a time, with a time of 1e400 or text: skipped.
        (
            {"statuses": [GOOD]},
            {
                "updates": [
                    {"state": "COMPLETED", "creation_time": 1},
                    {"update_id": "u1", "state": "COMPLETED", "creation_time": "yesterday"},
                    {"update_id": "u2", "state": "FAILED", "creation_time": 1e400},
                    {"update_id": "u3", "state": "COMPLETED", "creation_time": 1_700_000_000_000},
                    {"update_id": "u4", "state": "SLEEPING", "creation_time": 1_699_999_999_999},
                ]
            },
            1,
            1,
        ),
        # A page with no statuses at all: no pipeline, not an error.
        ({}, {"updates": []}, 0, 0),
    ],
)
def test_broken_objects_are_skipped_and_the_rest_kept(pipelines, updates, listed, settled, caplog):
    with _hostile(pipelines, updates) as server:
        client = _client(server.url, "dapi-x")
        collector = PipelinesCollector(client, PipelineLedger(1_800_000_000_000))
        assert collector.collect() == listed
        book = collector.ledger.books.get("p-1")
        assert (len(book.known) if book else 0) == settled
        assert not collector.ledger.updates_total  # before the baseline: never counted
        if book is not None and "u4" in book.active:
            assert collector.snapshot.running[("p-1", "orders")] == 0  # unknown: not running
        client.close()


@pytest.mark.parametrize(
    "pipelines",
    ['{"statuses": "many"}', "not json", '["a list"]', '{"statuses": [1, 2]}'],
)
def test_a_listing_that_is_not_one_fails_the_cycle_cleanly(pipelines, caplog):
    caplog.set_level(logging.ERROR)
    with _hostile(pipelines, {"updates": []}) as server:
        client = _client(server.url, "dapi-secret-123456")
        collector = PipelinesCollector(client, PipelineLedger(1_800_000_000_000))
        try:
            collector.collect()
        except Exception as exc:
            assert "pipelines" in str(exc) and "dapi-secret" not in str(exc)
        else:
            assert collector.snapshot is not None and collector.snapshot.pipelines == ()
        client.close()


@pytest.mark.parametrize(
    "saved",
    [
        {},
        {"baseline_ms": -1, "books": {}},
        {"baseline_ms": 1, "books": {"p": {"name": 3}}},
        {"baseline_ms": 1, "books": {}, "updates_total": [["p", "n", "EXPLODED", 1]]},
        {"baseline_ms": 1, "books": {}, "durations": [["p", "n", [60.0], [2], 1.0, 1]]},
    ],
)
def test_a_damaged_saved_ledger_is_refused(saved):
    with pytest.raises(ValueError):
        from_dict(saved)


def test_a_pipeline_unreadable_in_the_first_cycle_blinds_no_other_and_loses_nothing(world):
    """One pipeline's updates answering 503 in the first cycle: the cycle succeeds with the
    others' facts, and that pipeline's updates on their way then (as the listing showed them)
    are counted when they end, once it is readable."""
    server, collector, clock = world
    _fail_after_first_pipeline(server, collector)
    assert not collector.ledger.fresh and collector.snapshot is not None
    second = server.model.pipelines.pipeline_id(1)
    assert collector.ledger.books[second].first_read  # still to be read
    clock.advance(MIN)
    collector.collect()
    run(collector, clock, 120)
    assert counted(collector) == truth(server, collector, clock)


def _fail_after_first_pipeline(server: SimServer, collector: PipelinesCollector) -> None:
    """Collect with the second pipeline's updates answering 503 (retries included)."""
    second = server.model.pipelines.pipeline_id(1)
    server.faults.clear()
    # max_retries=2: three answers, all 503
    server.add_faults(FaultRule(path_prefix=f"/api/2.0/pipelines/{second}", status=503, count=3))
    collector.collect()
