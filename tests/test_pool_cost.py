"""What idle pools cost: the integrated instance-seconds counters and the price table."""

from __future__ import annotations

import json
import logging
import signal
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import ExporterProcess, select, wait_for

from databricks_simulator import FaultRule, SimClock, SimConfig, SimServer, SimWorkspace
from exporter.collectors.pools import Pool, parse_pool
from exporter.collectors.pools.usage import PoolUsage
from exporter.config import PriceTable

T0_MS = 1_799_971_200_000  # 00:00 UTC: the simulated working day starts at 07:00
PRICES = PriceTable("USD", {"Standard_DS3_v2": 0.293, "Standard_E8ds_v5": 0.576})


def pool(pool_id: str = "p1", idle: int = 0, used: int = 0, min_idle: int = 0, **kw: Any) -> Pool:
    raw = {
        "instance_pool_id": pool_id,
        "instance_pool_name": f"name-{pool_id}",
        "node_type_id": kw.get("node_type_id", "Standard_DS3_v2"),
        "min_idle_instances": min_idle,
        "stats": {
            "idle_count": idle,
            "used_count": used,
            "pending_idle_count": kw.get("pending_idle", 0),
            "pending_used_count": kw.get("pending_used", 0),
        },
    }
    parsed = parse_pool(raw)
    assert parsed is not None
    return parsed


def totals(snapshot: Any) -> dict[str, Any]:
    return dict(snapshot.totals)


def test_counts_hold_until_the_next_collection_left_point_rule():
    usage = PoolUsage(max_gap_seconds=300, prices=PRICES)
    usage.observe(T0_MS, [pool(idle=4, used=2, min_idle=1, pending_idle=1, pending_used=2)])
    snap = usage.observe(T0_MS + 60_000, [pool(idle=0, used=9, min_idle=1)])
    t = totals(snap)["p1"]
    # The counts seen at T0 held for the 60 s until the next answer, not the new ones.
    assert (t.idle, t.used, t.pending, t.idle_above_min) == (240.0, 120.0, 180.0, 180.0)
    assert t.idle_cost == pytest.approx(240 / 3600 * 0.293)
    snap = usage.observe(T0_MS + 90_000, [pool(idle=0, used=9, min_idle=1)])
    assert totals(snap)["p1"].used == 120.0 + 9 * 30
    assert snap.unobserved_seconds == 0.0


def test_a_gap_longer_than_the_limit_is_counted_not_integrated(caplog):
    usage = PoolUsage(max_gap_seconds=300)
    usage.observe(T0_MS, [pool(idle=5)])
    with caplog.at_level(logging.WARNING):
        snap = usage.observe(T0_MS + 600_000, [pool(idle=5)])  # 10 min: the API was down
    assert totals(snap)["p1"].idle == 0.0
    assert snap.unobserved_seconds == 600.0
    assert "unobserved for 600 s" in caplog.text
    # After the gap the integral goes on from the new answer.
    snap = usage.observe(T0_MS + 660_000, [pool(idle=5)])
    assert totals(snap)["p1"].idle == 300.0 and snap.unobserved_seconds == 600.0


def test_a_clock_that_goes_back_integrates_nothing_and_counts_on_from_the_new_time():
    usage = PoolUsage(max_gap_seconds=300)
    usage.observe(T0_MS, [pool(idle=1)])
    snap = usage.observe(T0_MS - 30_000, [pool(idle=1)])
    assert totals(snap)["p1"].idle == 0.0
    snap = usage.observe(T0_MS + 30_000, [pool(idle=1)])
    assert totals(snap)["p1"].idle == 60.0


def test_new_pools_start_at_zero_and_deleted_pools_end():
    usage = PoolUsage(max_gap_seconds=300)
    usage.observe(T0_MS, [pool("a", idle=1)])
    snap = usage.observe(T0_MS + 60_000, [pool("a", idle=1), pool("b", idle=7)])
    assert totals(snap) == {"a": totals(snap)["a"], "b": totals(snap)["b"]}
    assert totals(snap)["b"].idle == 0.0  # nothing known of b before this answer
    snap = usage.observe(T0_MS + 120_000, [pool("b", idle=7)])
    assert set(totals(snap)) == {"b"} and totals(snap)["b"].idle == 420.0


def test_pools_of_unknown_node_types_are_listed_and_logged_once_never_priced_at_zero(caplog):
    usage = PoolUsage(max_gap_seconds=300, prices=PRICES)
    odd = pool("gpu", idle=2, node_type_id="Standard_NC6s_v3")
    with caplog.at_level(logging.WARNING):
        usage.observe(T0_MS, [odd, pool("cpu", idle=1)])
        snap = usage.observe(T0_MS + 60_000, [odd, pool("cpu", idle=1)])
    assert snap.unpriced == ("gpu",)
    assert dict(snap.prices) == {"cpu": 0.293}
    assert caplog.text.count("Standard_NC6s_v3, which the price table lacks") == 1
    # Without a price table nothing is priced and nothing is called unpriced.
    plain = PoolUsage(max_gap_seconds=300).observe(T0_MS, [odd])
    assert plain.currency is None and plain.unpriced == () and plain.prices == ()


def test_the_integral_survives_a_round_trip_and_refuses_damaged_parts():
    usage = PoolUsage(max_gap_seconds=300, prices=PRICES)
    usage.observe(T0_MS, [pool(idle=3, min_idle=1)])
    usage.observe(T0_MS + 60_000, [pool(idle=3, min_idle=1)])
    again = PoolUsage(max_gap_seconds=300, prices=PRICES)
    again.restore(json.loads(json.dumps(usage.to_dict())))
    assert again.to_dict() == usage.to_dict()
    snap = again.observe(T0_MS + 120_000, [pool(idle=3, min_idle=1)])
    assert totals(snap)["p1"].idle == 360.0 and totals(snap)["p1"].idle_above_min == 240.0
    damaged = usage.to_dict()
    damaged["totals"]["p1"][0] = -5  # a negative counter
    fresh = PoolUsage(max_gap_seconds=300)
    with pytest.raises(ValueError, match="non-negative"):
        fresh.restore(damaged)
    assert fresh.to_dict() == PoolUsage(max_gap_seconds=300).to_dict()


def test_the_answer_date_is_databricks_clock_and_a_bad_one_is_ignored():
    from exporter.client import _date_ms

    expected = datetime(2027, 1, 15, 8, 0, 0, tzinfo=timezone.utc).timestamp() * 1000
    assert _date_ms("Fri, 15 Jan 2027 08:00:00 GMT") == int(expected)
    assert _date_ms(None) is None
    assert _date_ms("yesterday") is None
    assert _date_ms("Fri, 15 Jan 2027 08:00:00") is None  # no zone: not a usable time
    assert _date_ms("Thu, 01 Jan 1970 00:00:00 GMT") is None  # a zeroed clock is no clock


# --- a simulated day over loopback ---------------------------------------------------------

TICK_S = 300  # the simulated time between the exporter's collections
DAY_TICKS = 24 * 3600 // TICK_S
OUTAGE_TICKS = (100, 101)  # the API answers 503 to pools for these two ticks: 10 minutes
KILL_AFTER_TICK = 180  # SIGKILL; one tick passes while the exporter is down


def _pools_requests(server: SimServer) -> int:
    with server._lock:
        return server.stats.requests["/api/2.0/instance-pools/list"]


def _tick(server: SimServer, proc: ExporterProcess, at_ms: int) -> None:
    """Move Databricks' clock to ``at_ms`` and wait until the exporter has asked at that time."""
    server.model.clock.set(at_ms / 1000)
    before = _pools_requests(server)
    # The second request after the move started after it: the first may have been in flight.
    wait_for(lambda: _pools_requests(server) >= before + 2 or proc.proc.poll(), 20, "a request")
    assert proc.proc.poll() is None, proc.output()


def _saved_last_ms(state: Path) -> int | None:
    try:
        doc = json.loads(state.read_text())
        return doc["workspaces"]["sim"]["pools"]["last_ms"]
    except (OSError, ValueError, KeyError):
        return None


def _wait_saved(state: Path, at_ms: int) -> None:
    wait_for(lambda: _saved_last_ms(state) == at_ms, 20, f"the answer of {at_ms} saved")


def test_idle_instance_seconds_equal_the_simulators_integral_over_a_day_with_a_kill_and_an_outage(
    exporter, tmp_path
):
    clock = SimClock()
    clock.set(T0_MS / 1000)
    model = SimWorkspace(SimConfig(jobs=1, pools=4, pool_step_seconds=600), clock)
    state = tmp_path / "state.json"
    config = tmp_path / "exporter.yml"
    with SimServer(model) as server:
        config.write_text(
            json.dumps(
                {
                    "workspaces": [{"name": "sim", "host": server.url, "token_env": "SIM_TOKEN"}],
                    "collectors": {"runs": False},
                    "max_retries": 0,
                    "max_pool_gap_seconds": 1.5 * TICK_S,
                    "date_tolerance_seconds": 0,  # the simulator's clock is moved by hand
                    "prices": {"currency": "USD", "node_types": dict(PRICES.per_hour)},
                }
            )
        )
        args = ["--config", str(config), "--interval", "0.1", "--state-file", str(state)]
        env = {"SIM_TOKEN": server.token}
        proc = exporter(args, env)
        proc.wait_healthy()
        before_kill: dict[Any, float] = {}
        tick = 0
        while tick <= DAY_TICKS:
            at_ms = T0_MS + tick * TICK_S * 1000
            if tick == OUTAGE_TICKS[0]:
                server.add_faults(FaultRule("/api/2.0/instance-pools/list", 503, count=10**6))
            if tick == OUTAGE_TICKS[-1] + 1:
                with server._lock:
                    server.faults = []
            _tick(server, proc, at_ms)
            if tick == KILL_AFTER_TICK:
                _wait_saved(state, at_ms)
                before_kill = select(
                    proc.samples(), "databricks_instance_pool_idle_instance_seconds_total"
                )
                proc.stop(signal.SIGKILL)
                tick += 1  # Databricks' time goes on while the exporter is down
                server.model.clock.set((at_ms + TICK_S * 1000) / 1000)
                proc = exporter(args, env)
                proc.wait_healthy()
                continue
            tick += 1
        end_ms = T0_MS + DAY_TICKS * TICK_S * 1000
        _wait_saved(state, end_ms)
        _tick(server, proc, end_ms)  # one more collection: its render follows the saved one
        samples = proc.samples()
        truth = server.model.pool_truth(T0_MS, end_ms)
        # The exporter saw nothing from the last answer before the outage to the first after it.
        gap = (
            T0_MS + (OUTAGE_TICKS[0] - 1) * TICK_S * 1000,
            T0_MS + (OUTAGE_TICKS[-1] + 1) * TICK_S * 1000,
        )
        unseen = server.model.pool_truth(*gap)

    # Only the outage is unobserved: the tick while the exporter was killed was integrated
    # from the counts the state file kept.
    unobserved = select(samples, "databricks_exporter_pool_unobserved_seconds_total")
    assert list(unobserved.values()) == [3 * TICK_S]
    after = select(samples, "databricks_instance_pool_idle_instance_seconds_total")
    for labels, value in before_kill.items():
        assert after[labels] >= value  # a counter, never reset by the restart
    for kind in ("idle", "used", "pending", "idle_above_min"):
        exported = {
            dict(labels)["pool_id"]: value
            for labels, value in select(
                samples, f"databricks_instance_pool_{kind}_instance_seconds_total"
            ).items()
        }
        for pool_id, sums in truth.items():
            observed = sums[kind] - unseen[pool_id][kind]
            assert exported[pool_id] == pytest.approx(observed, rel=0.01), (kind, pool_id)
        whole_day = sum(s[kind] for s in truth.values())
        assert sum(exported.values()) <= whole_day
    idle = {dict(k)["pool_id"]: v for k, v in after.items()}
    cost = select(samples, "databricks_instance_pool_idle_cost_total")
    priced = {dict(k)["pool_id"]: (dict(k)["currency"], v) for k, v in cost.items()}
    node_types = {p["instance_pool_id"]: p["node_type_id"] for p in model.pools_json(end_ms)}
    for pool_id, (currency, value) in priced.items():
        price = PRICES.per_hour[node_types[pool_id]]
        assert currency == "USD"
        assert value == pytest.approx(idle[pool_id] * price / 3600, rel=1e-9)
    unpriced = {dict(k)["pool_id"] for k in select(samples, "databricks_instance_pool_unpriced")}
    assert unpriced == {p for p, n in node_types.items() if n not in PRICES.per_hour} != set()
    assert set(priced) | unpriced == set(truth)
