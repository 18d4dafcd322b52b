"""The simulator's answers parse with the official Databricks SDK models, losing no field.

The SDK's dataclasses (databricks.sdk.service.jobs / compute) are generated from Databricks'
own API specification: a field or enum value the real API does not have would not survive
``from_dict`` → ``as_dict``. This keeps the simulator honest to the real Jobs API 2.2, and
to the Pipelines API 2.0 (databricks.sdk.service.pipelines).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from databricks_simulator import OUTCOME_WIRE, SimClock, SimConfig, SimServer, SimWorkspace

jobs = pytest.importorskip("databricks.sdk.service.jobs")
compute = pytest.importorskip("databricks.sdk.service.compute")
pipelines_sdk = pytest.importorskip("databricks.sdk.service.pipelines")

EVERY_CASE = SimConfig(
    seed=4,
    jobs=12,
    history_hours=3,
    period_seconds=(60, 240),
    duration_seconds=(20, 200),
    fail_rate=0.9,
    one_time_jobs=3,
    continuous_jobs=1,
    wide_jobs=1,
    status_only_rate=0.3,
    repair_rate=1.0,
    repair_delay_seconds=60,
    queue_rate=0.5,
    pool_error_rate=1.0,
    pipelines=5,
    pipeline_period_seconds=(300, 900),
    pipeline_fail_rate=0.4,
)


@pytest.fixture(scope="module")
def every_case():
    clock = SimClock()
    clock.set(1_800_000_000.0)
    with SimServer(SimWorkspace(EVERY_CASE, clock)) as server:
        yield server


def lost(sent: Any, kept: Any, path: str = "") -> list[str]:
    """Paths of what the simulator sent that did not survive the SDK model (or changed)."""
    if isinstance(sent, dict) and isinstance(kept, dict):
        return [p for k, v in sent.items() for p in lost(v, kept.get(k), f"{path}.{k}")]
    if isinstance(sent, list) and isinstance(kept, list) and len(sent) == len(kept):
        pairs = enumerate(zip(sent, kept, strict=True))
        return [p for i, (a, b) in pairs for p in lost(a, b, f"{path}[{i}]")]
    return [] if sent == kept else [f"{path}: sent {sent!r}, model kept {kept!r}"]


def survives(model: Any, body: dict[str, Any]) -> bool:
    missing = lost(body, model.from_dict(body).as_dict())
    assert not missing, missing[:10]
    return True


def api(server: SimServer, path: str, **params: Any) -> dict[str, Any]:
    params = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
    response = requests.get(
        server.url + path,
        params=params,
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def all_runs(server: SimServer, **params: Any) -> list[dict[str, Any]]:
    runs, token = [], None
    while True:
        page = api(
            server,
            "/api/2.2/jobs/runs/list",
            limit=25,
            **params,
            **({"page_token": token} if token else {}),
        )
        assert survives(jobs.ListRunsResponse, page)
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not page.get("has_more"):
            return runs


def test_every_runs_list_page_survives_the_sdk_model(every_case):
    runs = all_runs(every_case, expand_tasks=True) + all_runs(every_case, active_only=True)
    assert len(runs) > 200


def test_the_listing_shows_every_case_the_exporter_must_handle(every_case):
    runs = all_runs(every_case, expand_tasks=True)
    codes = {r["status"].get("termination_details", {}).get("code") for r in runs}
    results = {r.get("state", {}).get("result_state") for r in runs}
    assert {wire[2] for wire in OUTCOME_WIRE.values()} <= codes
    assert {wire[1] for wire in OUTCOME_WIRE.values() if wire[1]} <= results
    assert {r["run_type"] for r in runs} == {"JOB_RUN", "SUBMIT_RUN", "WORKFLOW_RUN"}
    assert "CONTINUOUS" in {r["trigger"] for r in runs}
    assert any("state" not in r for r in runs) and any("state" in r for r in runs)
    assert any(r.get("has_more") and len(r["tasks"]) == 100 for r in runs)
    assert any("queue_duration" in r for r in runs)
    submit_job_ids = [r["job_id"] for r in runs if r["run_type"] == "SUBMIT_RUN"]
    assert len(set(submit_job_ids)) == len(submit_job_ids)  # a job of its own per submission
    active = all_runs(every_case, active_only=True)
    assert "QUEUED" in {r["status"]["state"] for r in active}
    assert any("queue_details" in r["status"] for r in active)


def test_runs_get_pages_tasks_and_history_and_survives_the_sdk_model(every_case):
    runs = all_runs(every_case, expand_tasks=True)
    wide = next(r for r in runs if r.get("has_more"))
    first = api(every_case, "/api/2.2/jobs/runs/get", run_id=wide["run_id"], include_history=True)
    assert survives(jobs.Run, first)
    assert len(first["tasks"]) == 100 and first["next_page_token"]
    rest = api(
        every_case,
        "/api/2.2/jobs/runs/get",
        run_id=wide["run_id"],
        include_history=True,
        page_token=first["next_page_token"],
    )
    assert survives(jobs.Run, rest)
    assert len(rest["tasks"]) == 30 and "next_page_token" not in rest
    repaired = [
        api(every_case, "/api/2.2/jobs/runs/get", run_id=r["run_id"], include_history=True)
        for r in runs
        if r["run_type"] == "JOB_RUN"
        and r.get("state", {}).get("result_state", "SUCCESS") == "SUCCESS"
    ]
    with_history = [r for r in repaired if "repair_history" in r]
    assert with_history
    for run in with_history:
        assert survives(jobs.Run, run)
        types = [item["type"] for item in run["repair_history"]]
        assert types == ["ORIGINAL", "REPAIR"]


def test_deleted_job_runs_get_answers_400_does_not_exist(make_sim):
    server = make_sim(history_hours=0.1)
    run = server.model.runs_desc(0, server.model.clock.now_ms()).__next__()
    requests.post(
        server.url + "/sim/jobs/delete", json={"job_id": run.job.job_id}, timeout=5
    ).raise_for_status()
    response = requests.get(
        server.url + "/api/2.2/jobs/runs/get",
        params={"run_id": run.run_id},
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert f"Run {run.run_id} does not exist" in response.json()["message"]


def test_instance_pools_with_start_errors_survive_the_sdk_model(every_case):
    body = api(every_case, "/api/2.0/instance-pools/list")
    assert survives(compute.ListInstancePools, body)
    errors = [p["status"]["pending_instance_errors"] for p in body["instance_pools"]]
    assert all(e and e[0]["message"] for e in errors)


def _pages(server: SimServer, path: str, key: str, model: Any, **params: Any) -> list[Any]:
    """Every page of a Pipelines API listing (next_page_token, no has_more), each checked."""
    items: list[Any] = []
    token = None
    while True:
        page = api(server, path, **params, **({"page_token": token} if token else {}))
        assert "has_more" not in page
        assert survives(model, page)
        items += page.get(key, [])
        token = page.get("next_page_token")
        if not token:
            return items


def test_pipelines_listings_survive_the_sdk_models(every_case):
    listing = _pages(
        every_case,
        "/api/2.0/pipelines",
        "statuses",
        pipelines_sdk.ListPipelinesResponse,
        max_results=2,
    )
    assert len(listing) == 5  # three pages of two
    for pipeline in listing:
        assert survives(pipelines_sdk.PipelineStateInfo, pipeline)
        updates = _pages(
            every_case,
            f"/api/2.0/pipelines/{pipeline['pipeline_id']}/updates",
            "updates",
            pipelines_sdk.ListUpdatesResponse,
            max_results=10,
        )
        assert len(updates) > 10  # paged
        ids = [u["update_id"] for u in updates]
        assert len(set(ids)) == len(ids)
        times = [u["creation_time"] for u in updates]
        assert times == sorted(times, reverse=True)  # newest first
        latest = [u["update_id"] for u in pipeline["latest_updates"]]
        assert latest == ids[: len(latest)]
        events = api(every_case, f"/api/2.0/pipelines/{pipeline['pipeline_id']}/events")
        assert survives(pipelines_sdk.ListPipelineEventsResponse, events)


def _idle_after_failure(server: SimServer) -> float:
    """The first minute from now when a pipeline is IDLE after a failed update."""
    clock, pipelines = server.model.clock, server.model.pipelines
    start = clock.time()
    for minute in range(24 * 60):
        at = int((start + 60 * minute) * 1000)
        for p in range(pipelines.count):
            listed = pipelines.pipeline_json(p, at)
            if listed["state"] == "IDLE" and listed["latest_updates"][0]["state"] == "FAILED":
                return start + 60 * minute
    raise AssertionError("no pipeline is ever IDLE after a failed update")


def test_the_pipelines_show_every_case_the_exporter_must_handle():
    clock = SimClock()
    clock.set(1_800_000_000.0)
    with SimServer(SimWorkspace(EVERY_CASE, clock)) as server:
        clock.set(_idle_after_failure(server))
        listing = api(server, "/api/2.0/pipelines", max_results=100)["statuses"]
        states = set()
        idle_after_failure = []
        for pipeline in listing:
            path = f"/api/2.0/pipelines/{pipeline['pipeline_id']}/updates"
            updates = api(server, path, max_results=100)["updates"]
            states |= {u["state"] for u in updates}
            last = next(u for u in updates if u["state"] in ("COMPLETED", "FAILED", "CANCELED"))
            if pipeline["state"] == "IDLE" and last["state"] == "FAILED":
                idle_after_failure.append(pipeline)
                assert pipeline["health"] == "UNHEALTHY"
        assert {"COMPLETED", "FAILED", "CANCELED"} <= states
        assert idle_after_failure  # IDLE while its latest update FAILED, as real pipelines are
        failed = idle_after_failure[0]
        events = api(server, f"/api/2.0/pipelines/{failed['pipeline_id']}/events")["events"]
        assert events[0]["level"] == "ERROR" and events[0]["error"]["exceptions"][0]["message"]
        assert events[0]["origin"]["update_id"] == failed["latest_updates"][0]["update_id"]
        # And updates on their way, in the states the SDK knows.
        on_their_way = {u["state"] for p in listing for u in p["latest_updates"]} - {
            "COMPLETED",
            "FAILED",
            "CANCELED",
        }
        assert on_their_way <= {s.value for s in pipelines_sdk.UpdateStateInfoState}


def test_an_unknown_pipeline_is_404_and_a_bad_page_size_400(every_case):
    headers = {"Authorization": f"Bearer {every_case.token}"}
    gone = requests.get(
        every_case.url + "/api/2.0/pipelines/nope/updates", headers=headers, timeout=5
    )
    assert gone.status_code == 404 and gone.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    big = requests.get(
        every_case.url + "/api/2.0/pipelines",
        params={"max_results": 101},
        headers=headers,
        timeout=5,
    )
    assert big.status_code == 400 and big.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_jobs_list_pages_survive_the_sdk_models_with_every_kind_of_settings():
    """jobs/list (100 a page) parses as ListJobsResponse, each job as BaseJob and its settings
    as JobSettings, losing no field; the settings show every promise the exporter reads."""
    config = SimConfig(seed=8, jobs=150, continuous_jobs=2, one_time_jobs=3, idle_jobs=5)
    clock = SimClock()
    clock.set(1_800_000_000.0)
    with SimServer(SimWorkspace(config, clock)) as server:
        listed, token = [], None
        while True:
            page = api(
                server, "/api/2.2/jobs/list", limit=100, **({"page_token": token} if token else {})
            )
            assert survives(jobs.ListJobsResponse, page)
            for job in page["jobs"]:
                assert survives(jobs.BaseJob, job)
                assert survives(jobs.JobSettings, job["settings"])
            listed += page["jobs"]
            token = page.get("next_page_token")
            if not page.get("has_more"):
                break
    assert len(listed) == 150 - 3 + 5
    settings = [j["settings"] for j in listed]
    assert sum("schedule" in s for s in settings) > 20
    assert {s["schedule"].get("pause_status") for s in settings if "schedule" in s} == {
        "PAUSED",
        "UNPAUSED",
        None,  # left out: UNPAUSED, as the API documents
    }
    triggers = {k for s in settings for k in s.get("trigger", {}) if k != "pause_status"}
    assert triggers == {"periodic", "file_arrival", "table_update"}
    assert sum("continuous" in s for s in settings) == 2
    rules = [r for s in settings for r in s.get("health", {}).get("rules", [])]
    assert rules and all(jobs.JobsHealthRule.from_dict(r).value > 0 for r in rules)
    assert {s["timeout_seconds"] > 0 for s in settings} == {True, False}
    assert {tuple(sorted(s.get("tags", {}))) for s in settings} == {
        (),
        ("team",),
        ("cost_center", "team", "tier"),
    }
    # The idle jobs come last, each with a schedule: live, then paused, in turn.
    assert [s["schedule"].get("pause_status", "UNPAUSED") for s in settings[-5:]] == [
        "UNPAUSED",
        "PAUSED",
        "UNPAUSED",
        "PAUSED",
        "UNPAUSED",
    ]
