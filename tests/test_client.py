"""The client's edge cases (requests-mock) and its retries over real sockets (simulator)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import requests_mock as rm

from databricks_simulator import FaultRule, SimClock, SimConfig, SimServer, SimWorkspace
from exporter.auth import DatabricksAuth
from exporter.client import POOLS_LIST, RUNS_GET, RUNS_LIST, ApiError, DatabricksClient
from exporter.config import WorkspaceConfig
from exporter.health import WorkspaceHealth

HOST = "https://adb-1.2.azuredatabricks.net"


def list_runs(client: DatabricksClient, **filters: Any) -> list[dict[str, Any]]:
    return list(client.iter_runs(**filters))


def make_client(host: str = HOST, token: str = "dapi-test-token", **kw) -> DatabricksClient:
    health = WorkspaceHealth()
    auth = DatabricksAuth(WorkspaceConfig(name="t", host=host, token=token), health)
    kw.setdefault("backoff_factor", 0.01)
    return DatabricksClient("t", host, auth, health, **kw)


def test_list_runs_sends_lowercase_booleans_limit_25_and_follows_pages(requests_mock: rm.Mocker):
    requests_mock.get(
        HOST + RUNS_LIST,
        [
            {
                "json": {
                    "runs": [{"run_id": 1}, {"run_id": 2}],
                    "has_more": True,
                    "next_page_token": "p2",
                }
            },
            {"json": {"runs": [{"run_id": 2}, {"run_id": 3}], "has_more": False}},
        ],
    )
    runs = list_runs(make_client(), completed_only=True, start_time_from=123, expand_tasks=True)
    assert sorted(r["run_id"] for r in runs) == [1, 2, 3]  # the duplicate across pages is kept once
    first, second = requests_mock.request_history
    assert first.qs == {
        "limit": ["25"],
        "expand_tasks": ["true"],
        "completed_only": ["true"],
        "start_time_from": ["123"],
    }
    assert second.qs["page_token"] == ["p2"]
    assert first.headers["Authorization"] == "Bearer dapi-test-token"


def test_a_page_token_that_repeats_stops_pagination(requests_mock: rm.Mocker):
    requests_mock.get(
        HOST + RUNS_LIST,
        json={"runs": [{"run_id": 1}], "has_more": True, "next_page_token": "same"},
    )
    with pytest.raises(ApiError, match="page token repeated"):
        list_runs(make_client())
    assert requests_mock.call_count == 2


def test_endless_distinct_page_tokens_stop_at_max_pages(requests_mock: rm.Mocker):
    counter = iter(range(10**6))
    requests_mock.get(
        HOST + RUNS_LIST,
        json=lambda req, ctx: {
            "runs": [],
            "has_more": True,
            "next_page_token": f"t{next(counter)}",
        },
    )
    with pytest.raises(ApiError, match="more than 50 pages"):
        list_runs(make_client(max_pages=50))
    assert requests_mock.call_count == 50


def test_api_error_body_is_in_the_message(requests_mock: rm.Mocker):
    requests_mock.get(
        HOST + RUNS_LIST,
        status_code=403,
        json={"error_code": "PERMISSION_DENIED", "message": "User is not authorized"},
    )
    with pytest.raises(ApiError) as info:
        list_runs(make_client())
    text = str(info.value)
    assert (
        "workspace t: GET /api/2.2/jobs/runs/list 403 PERMISSION_DENIED: User is not authorized"
        in text
    )
    assert "Can View" in text
    assert info.value.status == 403


def test_html_error_page_gives_a_short_clear_error(requests_mock: rm.Mocker):
    requests_mock.get(
        HOST + POOLS_LIST,
        status_code=400,
        text="<html><body>Bad things</body></html>",
        headers={"Content-Type": "text/html"},
    )
    with pytest.raises(ApiError, match="400 <html><body>Bad things"):
        make_client().list_pools()


def test_malformed_json_with_200_is_an_error_not_empty_data(requests_mock: rm.Mocker):
    requests_mock.get(
        HOST + RUNS_LIST, text='{"runs": [', headers={"Content-Type": "application/json"}
    )
    with pytest.raises(ApiError, match="expected a JSON object"):
        list_runs(make_client())


def test_non_list_runs_field_is_an_error(requests_mock: rm.Mocker):
    requests_mock.get(HOST + RUNS_LIST, json={"runs": {"oops": 1}, "has_more": False})
    with pytest.raises(ApiError, match="'runs' is not a list"):
        list_runs(make_client())


def test_missing_runs_field_means_no_runs(requests_mock: rm.Mocker):
    requests_mock.get(HOST + RUNS_LIST, json={"has_more": False})
    assert list_runs(make_client(), active_only=True) == []


def test_run_that_no_longer_exists_is_none(requests_mock: rm.Mocker):
    requests_mock.get(
        HOST + RUNS_GET,
        status_code=400,
        json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run 7 does not exist."},
    )
    assert make_client().get_run(7) is None


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Run 7 does not exist."}),
        (
            400,
            {"error_code": "INVALID_PARAMETER_VALUE", "message": "Run: 7 in job: 3 doesn't exist"},
        ),
        (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "gone"}),
        (403, {"error_code": "PERMISSION_DENIED", "message": "no access to this run"}),
    ],
    ids=["400-deleted-job", "400-sdk-form", "404", "403"],
)
def test_runs_get_answers_that_mean_the_run_is_gone_are_none(
    requests_mock: rm.Mocker, status: int, body: dict
):
    requests_mock.get(HOST + RUNS_GET, status_code=status, json=body)
    assert make_client().get_run(7) is None


def test_other_400s_of_runs_get_are_errors_not_gone(requests_mock: rm.Mocker):
    requests_mock.get(
        HOST + RUNS_GET,
        status_code=400,
        json={"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid page token"},
    )
    with pytest.raises(ApiError, match="Invalid page token"):
        make_client().get_run(7)


def test_get_run_asks_for_the_repair_history_and_pages_it_with_the_tasks(
    requests_mock: rm.Mocker,
):
    requests_mock.get(
        HOST + RUNS_GET,
        [
            {
                "json": {
                    "run_id": 7,
                    "tasks": [{"task_key": "a"}],
                    "repair_history": [{"type": "ORIGINAL"}],
                    "next_page_token": "n",
                }
            },
            {"json": {"repair_history": [{"type": "REPAIR", "id": 1}]}},
        ],
    )
    run = make_client().get_run(7)
    assert run is not None and "include_history=true" in requests_mock.request_history[0].url
    assert [h["type"] for h in run["repair_history"]] == ["ORIGINAL", "REPAIR"]
    assert run["tasks"] == [{"task_key": "a"}] and "next_page_token" not in run


def test_get_run_follows_task_pages(requests_mock: rm.Mocker):
    requests_mock.get(
        HOST + RUNS_GET,
        [
            {"json": {"run_id": 7, "tasks": [{"task_key": "a"}], "next_page_token": "n"}},
            {"json": {"run_id": 7, "tasks": [{"task_key": "b"}]}},
        ],
    )
    run = make_client().get_run(7)
    assert run is not None and [t["task_key"] for t in run["tasks"]] == ["a", "b"]


def test_requests_are_counted_by_endpoint_and_status(requests_mock: rm.Mocker):
    requests_mock.get(HOST + POOLS_LIST, json={"instance_pools": []})
    client = make_client()
    client.list_pools()
    client.list_pools()
    assert client.health.snapshot().requests == {(POOLS_LIST, "200"): 2}


# --- over real sockets, against the simulator -------------------------------------------------


def test_429_with_retry_after_is_retried_and_counted(make_sim):
    server = make_sim()
    server.add_faults(FaultRule(path_prefix=POOLS_LIST, status=429, retry_after=1, count=2))
    client = make_client(server.url, server.token)
    pools = client.list_pools()
    assert len(pools) == 3
    snap = client.health.snapshot()
    assert snap.retries == {(POOLS_LIST, "429"): 2}
    assert snap.requests == {(POOLS_LIST, "200"): 1}
    assert server.stats.requests[POOLS_LIST] == 3


def test_5xx_beyond_the_retry_budget_raises_with_the_status(make_sim):
    server = make_sim()
    server.add_faults(FaultRule(path_prefix=POOLS_LIST, status=503, count=10))
    client = make_client(server.url, server.token, max_retries=2)
    with pytest.raises(ApiError, match="503 TEMPORARILY_UNAVAILABLE"):
        client.list_pools()
    assert server.stats.requests[POOLS_LIST] == 3  # one try and two retries: bounded


def test_a_stalled_response_times_out_and_is_retried(make_sim):
    server = make_sim()
    server.add_faults(FaultRule(path_prefix=POOLS_LIST, status=200, delay=2.0, count=1))
    client = make_client(server.url, server.token, timeout=0.5)
    assert len(client.list_pools()) == 3
    assert client.health.snapshot().retries == {(POOLS_LIST, "timeout"): 1}


def test_a_workspace_that_is_down_gives_a_clear_error(make_sim):
    server = make_sim()
    url = server.url
    server.stop()
    client = make_client(url, "dapi-x", max_retries=1)
    with pytest.raises(ApiError, match=r"workspace t: GET /api/2\.0/instance-pools/list"):
        client.list_pools()
    assert client.health.snapshot().requests == {(POOLS_LIST, "error"): 1}


def test_simulator_refuses_limit_above_25_like_the_api(make_sim):
    server = make_sim()
    client = make_client(server.url, server.token)
    with pytest.raises(ApiError, match="400 INVALID_PARAMETER_VALUE"):
        client.get(RUNS_LIST, {"limit": 26})


def test_simulator_clock_moves_from_another_process_and_counts_runs_served():
    clock = SimClock()
    clock.set(1_800_000_000.0)
    with SimServer(SimWorkspace(SimConfig(jobs=4, history_hours=1), clock)) as server:
        client = make_client(server.url, server.token)
        runs = list_runs(client, completed_only=True, start_time_from=0)
        answer = requests.post(server.url + "/sim/clock", json={"advance": 600}, timeout=5).json()
        later = list_runs(client, completed_only=True, start_time_from=0)
        stats = requests.get(server.url + "/sim/stats", timeout=5).json()
    assert answer["now_ms"] == 1_800_000_600_000
    assert len(later) > len(runs) > 0
    assert stats["runs_served"] == len(runs) + len(later)


def test_simulator_clock_control_refuses_a_running_clock(make_sim):
    server = make_sim()
    answer = requests.post(server.url + "/sim/clock", json={"advance": 60}, timeout=5)
    assert answer.status_code == 400 and answer.json()["error_code"] == "INVALID_STATE"


def test_proxy_and_ca_bundle_from_the_environment_are_honoured(make_sim, monkeypatch, tmp_path):
    server = make_sim()
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    # The simulator answers absolute-form proxy requests too, so it can stand in for a proxy:
    # the host name below is never resolved, the request goes to the proxy on loopback.
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = make_client("http://adb-1.2.azuredatabricks.invalid", server.token)
    assert client.session.verify == str(bundle)
    assert client.list_pools()
    assert server.stats.requests["/api/2.0/instance-pools/list"] == 1


def test_a_trickling_response_is_cut_at_the_deadline(make_sim):
    server = make_sim()
    # The whole answer would take ~50 s at a byte every 0.5 s; each read is well within the
    # 1 s read timeout, so only a total deadline stops it.
    server.add_faults(FaultRule(path_prefix=POOLS_LIST, body="trickle", delay=0.5, count=10))
    client = make_client(server.url, server.token, timeout=1.0, max_retries=1)
    with pytest.raises(ApiError, match=r"GET /api/2\.0/instance-pools/list: no complete answer"):
        client.list_pools()
    # Headers came at once, so the body was cut (not retried: the next cycle asks again).
    assert server.stats.requests[POOLS_LIST] == 1
    assert 0 < server.trickled_bytes < 8  # ~2 bytes in the 1 s deadline, of ~100
    assert client.health.snapshot().requests == {(POOLS_LIST, "error"): 1}


def test_an_error_body_is_redacted_before_it_is_cut(requests_mock: rm.Mocker):
    token = "dapi0123456789abcdef0123456789abcdef"
    # A proxy echoing the token in its error page, the token straddling the 120th character.
    requests_mock.get(HOST + POOLS_LIST, status_code=502, text="x" * 112 + f"{token} z")
    client = make_client(token=token, max_retries=0)
    with pytest.raises(ApiError) as info:
        client.list_pools()
    assert token[:8] not in str(info.value) and "***" in str(info.value)


def test_a_page_larger_than_the_cap_is_refused_with_a_clear_error(make_sim):
    server = make_sim()
    # ~20 MB of run objects in one page (the real API sends 25 runs a page).
    server.extra_runs = [{"run_id": i, "run_name": "x" * 300} for i in range(60_000)]
    client = make_client(server.url, server.token, max_retries=0)
    with pytest.raises(ApiError, match=r"runs/list: response larger than 16 MiB; refused"):
        list_runs(client, completed_only=True)
    small = make_client(server.url, server.token, max_response_bytes=64 << 20)
    assert len(list_runs(small, completed_only=True)) > 60_000  # under the cap it is read
