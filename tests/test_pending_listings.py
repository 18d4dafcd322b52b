"""Cut listings still to be read (pending windows), and the first Date: the cases an
independent review found, each as it was reproduced (a scripted client, no network)."""

from __future__ import annotations

import json
from pathlib import Path

from statefile_parts import restore_ledger

from exporter.collectors.runs import RunsCollector
from exporter.collectors.runs.ledger import LedgerPolicy, RunLedger
from exporter.servertime import ServerClock
from exporter.statefile import StateFile

MIN = 60_000


class FakeClient:
    workspace = "t"
    closed = False

    def __init__(self):
        self.active = []  # what the active listing returns
        self.completed = []  # all completed runs (filtered by start window)
        self.after_active = None  # hook: called after the active listing

    def iter_runs(
        self,
        *,
        active_only=False,
        completed_only=False,
        start_time_from=None,
        start_time_to=None,
        expand_tasks=False,
        dates=None,
        max_pages=None,
    ):
        if active_only:
            if dates is not None:
                dates.append(None)
            out = list(self.active)
            if self.after_active:
                self.after_active()
            yield from out
            return
        for r in sorted(self.completed, key=lambda r: -r["start_time"]):
            if start_time_from is not None and r["start_time"] < start_time_from:
                continue
            if start_time_to is not None and r["start_time"] > start_time_to:
                continue
            yield r

    def get_run(self, run_id):
        for r in self.completed + self.active:
            if r["run_id"] == run_id:
                return r
        return None


def raw(run_id, start, end=0, state="RUNNING", result=None):
    r = {
        "run_id": run_id,
        "job_id": 1,
        "run_name": "j",
        "start_time": start,
        "state": {"life_cycle_state": state},
        "run_duration": max(end - start, 0),
    }
    if end:
        r["end_time"] = end
        r["state"]["result_state"] = result or "SUCCESS"
    return r


def test_backlog_run_active_at_the_active_listing_is_not_a_repair():
    T = 1_700_000_000_000
    now = [T]
    client = FakeClient()
    ledger = RunLedger.starting_at(T, 0, LedgerPolicy(overlap_ms=5 * MIN))
    c = RunsCollector(client, ledger, lambda: now[0])
    c.collect()  # first cycle, nothing
    # A cut listing left a pending window [T-5min, T+10min] of the cycle at T+15min.
    now[0] = T + 20 * MIN
    c.collect()
    ledger.pending = [(T - 5 * MIN, T + 10 * MIN, T)]
    # R started at T+1min (inside the window, before this cycle's list_from = T+15min).
    # It is running at the active listing and ends just after it.
    R = raw(77, T + 1 * MIN)
    client.active = [R]

    def ends():
        client.active = []
        client.completed.append(raw(77, T + 1 * MIN, now[0] + 1000, "TERMINATED"))

    client.after_active = ends
    now[0] = T + 40 * MIN
    n = c.collect()
    client.after_active = None
    assert n == 1 and not ledger.active  # counted once from the pending listing, not active
    now[0] = T + 41 * MIN
    c.collect()
    now[0] = T + 42 * MIN
    c.collect()
    assert sum(ledger.runs_total.values()) == 1
    assert sum(ledger.repairs_total.values()) == 0, "a run never repaired counted as repaired"


def test_a_failed_run_of_a_pending_window_repaired_before_it_is_read_is_counted_once():
    T = 1_700_000_000_000
    now = [T]
    client = FakeClient()
    ledger = RunLedger.starting_at(T, 0, LedgerPolicy(overlap_ms=1 * MIN))
    c = RunsCollector(client, ledger, lambda: now[0])
    c.collect()
    now[0] = T + 10 * MIN
    c.collect()  # watermark T+10
    # R started at T+11, failed at T+12. The cycle at T+13 had its listing cut (a page failed)
    # below R's start: [T+9, T+12:30] is pending, since=T+10.
    now[0] = T + 13 * MIN
    c.collect()
    ledger.pending = [(T + 9 * MIN, T + 12 * MIN + 30_000, T + 10 * MIN)]
    # Before the next cycle R is repaired: it is active again at T+14.
    client.active = [raw(88, T + 11 * MIN)]
    now[0] = T + 14 * MIN
    c.collect()
    assert not ledger.pending and ledger.active[88].uncounted_since == T + 10 * MIN
    # The repair succeeds at T+15; runs/get (include_history) has both attempts.
    client.active = []
    done = raw(88, T + 11 * MIN, T + 15 * MIN, "TERMINATED", "SUCCESS")
    done["repair_history"] = [
        {"type": "ORIGINAL", "end_time": T + 12 * MIN, "state": {"result_state": "FAILED"}},
        {"type": "REPAIR", "end_time": T + 15 * MIN, "state": {"result_state": "SUCCESS"}},
    ]
    done["run_duration"] = 2 * MIN
    client.completed.append(done)
    for m in (16, 17, 18):
        now[0] = T + m * MIN
        c.collect()
    # Counted once with its original result, the repair as a repair.
    assert dict(ledger.runs_total) == {("1", "j", "FAILED"): 1}, "the run was never counted"
    assert dict(ledger.repairs_total) == {("1", "j", "SUCCESS"): 1}


def test_a_listing_that_keeps_failing_makes_one_growing_window_not_one_per_cycle():
    T = 1_700_000_000_000
    ledger = RunLedger.starting_at(T, 0, LedgerPolicy(overlap_ms=MIN))
    ledger.apply(T, [], [])
    for cycle in range(1, 200):
        now = T + cycle * MIN
        # Each cycle's listing is cut below its newest page: [list_from, now - 30 s].
        ledger.defer(ledger.list_from_ms, now - 30_000, ledger.watermark_ms)
        ledger.apply(now, [], [])
    assert len(ledger.pending) == 1
    (start, _, since) = ledger.pending[0]
    assert start == T - MIN and since == T  # the earliest part and since are kept
    for cycle in range(200, 600):  # still failing after 6 hours: given up, seen bounded again
        now = T + cycle * MIN
        ledger.defer(ledger.list_from_ms, now - 30_000, ledger.watermark_ms)
        ledger.apply(now, [], [])
    assert ledger.horizon_ms >= T + 600 * MIN - 6 * 3600_000 - 2 * MIN


def test_a_first_date_an_hour_ahead_does_not_move_the_baseline_into_the_future():
    T = 1_700_000_000_000
    now = [T]
    client = FakeClient()
    ahead = [T + 3600_000]

    def dated(*, dates=None, **kw):
        if kw.get("active_only") and dates is not None:
            dates.append(ahead.pop() if ahead else now[0])
            return iter(())
        return FakeClient.iter_runs(client, dates=None, **kw)

    client.iter_runs = dated  # type: ignore[method-assign]
    ledger = RunLedger.starting_at(T, 0, LedgerPolicy(overlap_ms=MIN))
    collector = RunsCollector(client, ledger, lambda: now[0])
    collector.collect()  # the first answer's Date is an hour ahead (a proxy's clock)
    assert ledger.baseline_ms == T and ledger.watermark_ms == T
    client.completed.append(raw(5, T + MIN, T + 10 * MIN, "TERMINATED"))
    now[0] = T + 11 * MIN
    collector.collect()
    assert sum(ledger.runs_total.values()) == 1  # a run of that hour is counted


def test_a_first_date_is_trusted_once_the_host_or_the_next_answer_agrees():
    elapsed = [0.0]
    host = 1_700_000_000.0
    clock = ServerClock("w", elapsed=lambda: elapsed[0], wall=lambda: host + elapsed[0])
    assert clock.read(int((host + 3600) * 1000)) == (host + 3600) * 1000  # provisional
    elapsed[0] = 30
    assert clock.read(int((host + 30) * 1000)) == (host + 30) * 1000  # the host agrees: anchor
    elapsed[0] = 60
    assert clock.read(int((host + 3660) * 1000)) == (host + 60) * 1000  # the bogus one again
    behind = ServerClock("w", elapsed=lambda: elapsed[0], wall=lambda: host + 120)
    elapsed[0] = 0
    assert behind.read(int(host * 1000)) == host * 1000  # 2 min behind the host: provisional
    elapsed[0] = 5
    assert behind.read(int((host + 5) * 1000)) == (host + 5) * 1000  # the next agrees
    elapsed[0] = 10
    assert behind.read(int((host + 3600) * 1000)) == (host + 10) * 1000  # anchored: refused


def test_a_state_entry_with_pools_only_is_no_damaged_entry(tmp_path: Path):
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps(
            {
                "format": "databricks-jobs-exporter/state/v2",
                "workspaces": {
                    "w": {"host": "h", "pools": {"last_ms": None, "last": {}, "totals": {}}}
                },
            }
        )
    )
    state = StateFile(path)
    assert restore_ledger(state, "w", "h") is None
    assert not list(tmp_path.glob("state.json.corrupt-*"))
