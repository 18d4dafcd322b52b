"""Faults survived: connection resets, stalls, revoked tokens, Entra ID outages, rate limiting."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import assert_counts_match_truth, drain, select, wait_for
from fake_aad import SECRET, FakeAAD, exporter_env

from databricks_simulator import FaultRule
from exporter.client import RateLimiter


def start_tuned(exporter, server, tmp_path: Path, tuning: str):
    """An exporter on the simulator through a YAML file with tuning settings, once ready."""
    config = tmp_path / "ws.yaml"
    config.write_text(
        tuning + f"workspaces:\n  - name: ws\n    host: {server.url}\n    token_env: SIM_TOKEN\n"
    )
    proc = exporter(["--config", str(config), "--interval", "1"], {"SIM_TOKEN": server.token})
    proc.wait_ready()
    return proc


def test_connection_resets_and_stalls_are_retried_and_counts_stay_exact(
    make_sim, exporter, tmp_path: Path
):
    server = make_sim()
    proc = start_tuned(exporter, server, tmp_path, "timeout_seconds: 1\n")
    server.add_faults(
        FaultRule(path_prefix="/api/2.2/jobs/runs/list", body="reset", count=3),
        FaultRule(
            path_prefix="/api/2.2/jobs/runs/list", status=200, delay=3.0, count=2
        ),  # beyond the timeout
    )
    time.sleep(5)
    drain(server, proc)
    assert_counts_match_truth(proc, server)
    reasons = {
        dict(k)["reason"] for k in select(proc.samples(), "databricks_exporter_api_retries_total")
    }
    assert {"connection_error", "timeout"} <= reasons
    assert proc.proc.poll() is None


def test_revoked_token_gets_one_fresh_token_then_success(tmp_path, make_sim, exporter):
    server = make_sim()
    with FakeAAD(tmp_path, SECRET, on_token=server.tokens.add) as aad:
        proc = exporter(["--interval", "0.5"], exporter_env(server.url, aad))
        proc.wait_ready()
        assert len(aad.token_requests) == 1
        server.tokens.clear()  # Databricks no longer accepts the token (revoked)
        wait_for(lambda: len(aad.token_requests) == 2, 15, "a fresh token")
        time.sleep(2)
        samples = proc.samples()
        assert set(select(samples, "databricks_exporter_collection_success").values()) == {1.0}
        assert len(aad.token_requests) == 2  # one fresh token, not one per request
        assert select(samples, "databricks_exporter_token_requests_total") == {
            frozenset({("workspace", "default")}): 2.0
        }


def test_entra_id_outage_fails_collections_then_recovers(tmp_path, make_sim, exporter):
    server = make_sim()
    with FakeAAD(tmp_path, SECRET, on_token=server.tokens.add) as aad:
        aad.fail_next = 4  # azure-identity retries a 503 itself: all of one token attempt fails
        proc = exporter(["--interval", "0.5"], exporter_env(server.url, aad))
        proc.wait_healthy()
        wait_for(
            lambda: (
                0.0 in select(proc.samples(), "databricks_exporter_collection_success").values()
            ),
            20,
            "a failed collection",
        )
        proc.wait_ready(30)
        assert "Azure AD token for 2ff814a6" in proc.output()
        assert SECRET not in proc.output()
        assert proc.proc.poll() is None


def test_rate_limiter_spaces_requests_to_the_configured_rate():
    now = [100.0]
    slept = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(rate=5, burst=5, clock=lambda: now[0], sleep=sleep)
    for _ in range(25):
        limiter.acquire()
    # 5 at once (the burst), then 20 more at 5 a second: 4 simulated seconds.
    assert abs(sum(slept) - 4.0) < 1e-6
    assert abs(now[0] - 104.0) < 1e-6


def test_a_trickling_listing_reports_failure_then_counts_catch_up(
    make_sim, exporter, tmp_path: Path
):
    server = make_sim()
    proc = start_tuned(exporter, server, tmp_path, "timeout_seconds: 1\nmax_retries: 1\n")
    server.add_faults(
        FaultRule(path_prefix="/api/2.2/jobs/runs/list", body="trickle", delay=0.5, count=6)
    )

    def runs_failing() -> bool:
        success = select(proc.samples(), "databricks_exporter_collection_success")
        return any(dict(k)["collector"] == "runs" and v == 0 for k, v in success.items())

    wait_for(runs_failing, 30, "collection_success{collector='runs'} 0")
    assert "GET /api/2.2/jobs/runs/list: no complete answer within the 1s deadline" in (
        proc.output()
    )
    drain(server, proc)
    assert_counts_match_truth(proc, server)  # the faults ran out: the next cycles caught up
