"""The real exporter process against the loopback simulator: exact counts, faults, lifecycle."""

from __future__ import annotations

import signal
import time

import requests
from conftest import (
    assert_counts_match_truth,
    baseline_ms,
    drain,
    exported_runs,
    parse_samples,
    select,
    sim_env,
    wait_for,
)

from databricks_simulator import FaultRule


def test_every_run_is_counted_exactly_once(make_sim, exporter):
    server = make_sim()
    proc = exporter(["--interval", "1"], sim_env(server))
    proc.wait_ready()
    time.sleep(6)
    drain(server, proc)
    want = assert_counts_match_truth(proc, server)
    results = {result for (_, _, result) in want}
    assert "SUCCESS" in results and results & {"FAILED", "TIMEDOUT"}
    samples = proc.samples()
    hist_count = sum(select(samples, "databricks_job_run_duration_seconds_count").values())
    assert hist_count == sum(want.values())
    assert not select(samples, "databricks_job_runs_active"), "no run is active after the drain"


def test_counts_stay_exact_with_429_and_5xx_injected(make_sim, exporter):
    server = make_sim()
    proc = exporter(["--interval", "1"], sim_env(server))
    proc.wait_ready()
    server.add_faults(
        FaultRule(path_prefix="/api/2.2/jobs/runs/list", status=429, retry_after=1, count=2),
        FaultRule(path_prefix="/api/2.2/jobs/runs/list", status=503, count=2),
        FaultRule(path_prefix="/api/2.2/jobs/runs/list", status=502, count=1, body="html"),
    )
    server.fault_rate = 0.15
    time.sleep(6)
    drain(server, proc)
    server.fault_rate = 0.0
    assert_counts_match_truth(proc, server)
    retries = select(proc.samples(), "databricks_exporter_api_retries_total")
    reasons = {dict(k)["reason"] for k in retries}
    assert {"429", "503"} <= reasons
    assert sum(server.stats.faults.values()) >= 5


def test_ready_only_after_first_collection_and_serves_contract_families(make_sim, exporter):
    server = make_sim(latency_ms=300)
    proc = exporter(["--interval", "5"], sim_env(server))
    proc.wait_healthy()
    assert requests.get(proc.url + "/readyz", timeout=2).status_code == 503
    proc.wait_ready()
    names = {name for name, _ in proc.samples()}
    for family in (
        "databricks_job_last_run_failed",
        "databricks_job_last_run_info",
        "databricks_job_last_run_end_timestamp_seconds",
        "databricks_job_last_run_duration_seconds",
        "databricks_instance_pool_idle_instances",
        "databricks_instance_pool_used_instances",
        "databricks_instance_pool_max_capacity",
        "databricks_instance_pool_info",
        "databricks_exporter_collection_success",
        "databricks_exporter_last_success_timestamp_seconds",
        "databricks_exporter_api_requests_total",
        "databricks_exporter_token_requests_total",
    ):
        assert family in names, family
    landing = requests.get(proc.url + "/", timeout=2).text
    assert "/metrics" in landing and "/readyz" in landing


def test_rejected_token_reports_failure_and_keeps_serving(make_sim, exporter):
    server = make_sim()
    proc = exporter(
        ["--interval", "1"],
        {"DATABRICKS_HOST": server.url, "DATABRICKS_TOKEN": "dapi-wrong-token-123"},
    )
    proc.wait_healthy()
    wait_for(
        lambda: len(select(proc.samples(), "databricks_exporter_collection_success")) == 4,
        10,
        "a failed collection of each collector",
    )
    success = {
        dict(k)["collector"]: v
        for k, v in select(proc.samples(), "databricks_exporter_collection_success").items()
    }
    assert success == {"runs": 0.0, "pools": 0.0, "pipelines": 0.0, "jobs": 0.0}
    # Ready all the same: failures are metrics and alerts, never a reason to stop the scrapes.
    assert requests.get(proc.url + "/readyz", timeout=2).status_code == 200
    log = proc.output()
    assert "401 UNAUTHENTICATED" in log and "check the credentials" in log
    assert "Traceback" not in log
    assert "dapi-wrong-token-123" not in log
    assert proc.proc.poll() is None


def test_recovers_after_malformed_responses(make_sim, exporter):
    server = make_sim()
    server.add_faults(
        FaultRule(path_prefix="/api/2.2/jobs/runs/list", status=200, body="truncated", count=2)
    )
    proc = exporter(["--interval", "1"], sim_env(server))
    proc.wait_ready(30)
    assert "expected a JSON object" in proc.output()
    time.sleep(3)
    drain(server, proc)
    assert_counts_match_truth(proc, server)


def test_pool_deleted_in_the_workspace_disappears_from_metrics(make_sim, exporter):
    server = make_sim()
    proc = exporter(["--interval", "1"], sim_env(server))
    proc.wait_ready()
    pools = {dict(k)["pool_id"] for k in select(proc.samples(), "databricks_instance_pool_info")}
    assert len(pools) == 3
    victim = sorted(pools)[1]
    requests.post(server.url + "/sim/pools/delete", json={"pool_id": victim}, timeout=5)
    wait_for(
        lambda: (
            victim
            not in {
                dict(k)["pool_id"] for k in select(proc.samples(), "databricks_instance_pool_info")
            }
        ),
        10,
        "the deleted pool to vanish",
    )
    # Every pool family forgets it; the start-ups it served (counted runs' history, like a
    # deleted job's counters) stay in databricks_cluster_setup_seconds.
    pool_lines = [
        line
        for line in proc.metrics_text().splitlines()
        if line.startswith(("databricks_instance_pool", "databricks_exporter_pool"))
    ]
    assert pool_lines and not [line for line in pool_lines if victim in line]


def test_sigterm_stops_promptly_with_exit_code_0(make_sim, exporter):
    server = make_sim()
    proc = exporter(["--interval", "1"], sim_env(server))
    proc.wait_ready()
    started = time.monotonic()
    code = proc.stop(signal.SIGTERM)
    assert code == 0
    assert time.monotonic() - started < 10
    assert "shutting down" in proc.output()


def test_debug_logging_never_prints_the_token(make_sim, exporter):
    server = make_sim()
    proc = exporter(["--interval", "1", "--log-level", "DEBUG"], sim_env(server))
    proc.wait_ready()
    text = proc.metrics_text()
    proc.stop()
    output = proc.output()
    assert "GET /api/2.2/jobs/runs/list" in output or "runs/list" in output  # DEBUG really is on
    assert server.token not in output
    assert server.token not in text


def test_simulate_flag_serves_a_demo_workspace(exporter):
    proc = exporter(["--simulate", "--interval", "2"])
    proc.wait_ready(60)
    # The last runs of jobs that have not run since the start come with the look-back.
    wait_for(
        lambda: (
            select(proc.samples(), "databricks_exporter_lookback_progress_ratio")
            == {frozenset({("workspace", "simulated")}): 1.0}
        ),
        60,
        "the look-back",
    )
    samples = proc.samples()
    workspaces = {dict(k)["workspace"] for k in select(samples, "databricks_job_last_run_info")}
    assert workspaces == {"simulated"}
    # 24 simulated jobs, 3 of them submitting one-time runs: those are not jobs here.
    assert len(select(samples, "databricks_job_last_run_info")) == 21
    job_ids = {dict(k)["job_id"] for k in select(samples, "databricks_job_runs_active")}
    assert job_ids and all(len(j) < 12 for j in job_ids)  # no ephemeral job of a submission
    assert select(samples, "databricks_job_continuous")


def test_metrics_parse_as_openmetrics_on_negotiation(sim, exporter):
    proc = exporter(["--interval", "5"], sim_env(sim))
    proc.wait_ready()
    response = requests.get(
        proc.url + "/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        timeout=5,
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    assert parse_samples(requests.get(proc.url + "/metrics", timeout=5).text)


def test_sigkill_and_restart_with_state_file_neither_loses_nor_double_counts(
    make_sim, exporter, tmp_path
):
    server = make_sim()
    state = tmp_path / "state.json"
    first = exporter(["--interval", "0.5", "--state-file", str(state)], sim_env(server))
    first.wait_ready()
    time.sleep(3)
    base = baseline_ms(first)
    assert sum(exported_runs(first).values()) > 0
    first.stop(signal.SIGKILL)
    time.sleep(3)  # runs end while no exporter is watching
    second = exporter(["--interval", "0.5", "--state-file", str(state)], sim_env(server))
    second.wait_ready()
    assert baseline_ms(second) == base
    time.sleep(2)
    drain(server, second)
    assert_counts_match_truth(second, server)
    assert "restored" in second.output()


def test_corrupt_state_file_gives_a_warning_and_a_fresh_baseline(make_sim, exporter, tmp_path):
    server = make_sim()
    state = tmp_path / "state.json"
    state.write_text(
        '{"format": "databricks-jobs-exporter/state/v1", "workspaces": {"default": {"host": "'
    )
    proc = exporter(["--interval", "1", "--state-file", str(state)], sim_env(server))
    proc.wait_ready()
    assert "unreadable" in proc.output() and "fresh baseline" in proc.output()
    (kept,) = tmp_path.glob("state.json.corrupt-*")  # the damaged file is kept, not lost
    assert kept.read_text().startswith('{"format"')
    wait_for(lambda: state.exists() and state.read_text().endswith("}"), 10, "a fresh state file")
    assert proc.proc.poll() is None


def test_fifty_parallel_scrapes_during_collections_get_complete_output(make_sim, exporter):
    from concurrent.futures import ThreadPoolExecutor

    server = make_sim(latency_ms=20)  # collections take a while, so scrapes overlap them
    proc = exporter(["--interval", "0.2"], sim_env(server))
    proc.wait_ready()
    reference = {name for name, _ in proc.samples()}

    def scrape(_: int) -> set[str]:
        response = requests.get(proc.url + "/metrics", timeout=30)
        assert response.status_code == 200
        families = {name for name, _ in parse_samples(response.text)}
        return families

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(scrape, range(50)))
    assert len(results) == 50
    for families in results:
        # Series come and go with the data (active runs), but no scrape misses a family that
        # is always present, and none is cut short.
        assert {n for n in reference if "active" not in n} <= families


def test_simulate_with_a_state_file_restores_after_a_restart(exporter, tmp_path):
    state = tmp_path / "state.json"
    first = exporter(["--simulate", "--interval", "1", "--state-file", str(state)])
    first.wait_ready(60)
    wait_for(lambda: state.exists() and '"ledger"' in state.read_text(), 20, "the state file")
    base = baseline_ms(first)
    first.stop(signal.SIGKILL)
    second = exporter(["--simulate", "--interval", "1", "--state-file", str(state)])
    second.wait_ready(60)
    assert baseline_ms(second) == base
    assert "restored" in second.output()


def test_pools_forbidden_is_ready_serves_jobs_and_reports_pools_failing(make_sim, exporter):
    server = make_sim()
    server.add_faults(FaultRule(path_prefix="/api/2.0/instance-pools/", status=403, count=10**6))
    proc = exporter(["--interval", "1"], sim_env(server))
    proc.wait_ready()
    wait_for(lambda: exported_runs(proc), 20, "job runs counted")
    success = {
        dict(k)["collector"]: v
        for k, v in select(proc.samples(), "databricks_exporter_collection_success").items()
    }
    assert success == {"runs": 1.0, "pools": 0.0, "pipelines": 1.0, "jobs": 1.0}
    assert "403" in proc.output()


def test_a_collector_turned_off_makes_no_calls_and_no_series(make_sim, exporter):
    server = make_sim()
    proc = exporter(["--interval", "1", "--no-collector.pools"], sim_env(server))
    proc.wait_ready()
    wait_for(lambda: exported_runs(proc), 20, "job runs counted")
    text = proc.metrics_text()
    assert "databricks_instance_pool_idle_instances{" not in text
    assert 'collector="pools"' not in text
    assert server.stats.requests["/api/2.0/instance-pools/list"] == 0
