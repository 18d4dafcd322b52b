"""Airflow callbacks: message building, target resolution, delivery to a fake Slack on loopback."""

from __future__ import annotations

import json
import logging
import sys
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from fake_slack import BOT_TOKEN, WEBHOOK_PATH, FakeSlack

from airflow_callbacks import (
    incidents,
    notify,
    slack_deadline_callback,
    slack_failure_callback,
    slack_recovery_callback,
)
from airflow_callbacks.context import task_facts
from airflow_callbacks.delivery import resolve_target
from airflow_callbacks.incidents import MemoryStore
from airflow_callbacks.message import HEADER_LIMIT, SECTION_LIMIT, build, escape

RUN_URL = "https://adb-1.2.azuredatabricks.net/?o=1#job/7/run/42"


class FakeTI:
    def __init__(
        self,
        xcom: dict[tuple[str, int], Any] | None = None,
        map_index: int = -1,
        try_number: int = 1,
    ):
        self.dag_id = "databricks_etl"
        self.task_id = "run_job"
        self.map_index = map_index
        self.try_number = try_number
        self.max_tries = 2
        self.run_id = "manual__2026-11-23"
        self.log_url = (
            "https://airflow.contoso.com/dags/databricks_etl/runs/x/tasks/run_job?try_number=1"
        )
        self.xcom = xcom or {}
        self.pulls: list[dict[str, Any]] = []

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int | None = None) -> Any:
        self.pulls.append({"task_ids": task_ids, "key": key, "map_indexes": map_indexes})
        return self.xcom.get((key, -1 if map_indexes is None else map_indexes))


BOOM = RuntimeError("boom")


def context(ti: FakeTI | None = None, exception: BaseException | None = BOOM, **extra: Any) -> dict:
    ctx: dict[str, Any] = {
        "ti": ti or FakeTI({("run_page_url", -1): RUN_URL, ("run_id", -1): 42}),
        "task": SimpleNamespace(owner="data-platform", retries=2, task_id="run_job"),
        "logical_date": "2026-11-23T00:00:00+00:00",
        "run_id": "manual__2026-11-23",
        **extra,
    }
    if exception is not None:
        ctx["exception"] = exception
    return ctx


def text_of(message: dict) -> str:
    return json.dumps(message, ensure_ascii=False)


# --- message -----------------------------------------------------------------------------------


def test_message_names_dag_task_try_date_error_and_both_links():
    message = build(task_facts(context()), "failure")
    header = message["blocks"][0]["text"]["text"]
    assert "Failed: databricks_etl · run_job" in header
    body = text_of(message)
    for needle in (
        "*Try*\\n1 of 3",
        "2026-11-23T00:00:00",
        "manual__2026-11-23",
        "data-platform",
        "RuntimeError: boom",
    ):
        assert needle in body, needle
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    urls = {e["text"]["text"]: e["url"] for e in actions["elements"]}
    assert urls == {"Airflow log": FakeTI().log_url, "Open the Databricks run": RUN_URL}
    assert RUN_URL in message["text"]


def test_exception_text_cannot_mention_or_link():
    exc = RuntimeError("<!channel> <@U123> <https://evil.example|click> @here & done ```")
    body = text_of(build(task_facts(context(exception=exc))))
    for bad in ("<!channel>", "<@U123>", "<https://evil", "@here"):
        assert bad not in body
    assert "&lt;!channel&gt;" in body and "&amp; done" in body


def test_escape_is_applied_to_names_too():
    assert escape("a<b>&@channel") == "a&lt;b&gt;&amp;@\u200bchannel"


def test_long_error_and_names_are_truncated_to_slack_limits():
    ti = FakeTI()
    ti.dag_id = "d" * 500
    message = build(task_facts(context(ti=ti, exception=ValueError("x" * 100_000))))
    assert len(message["blocks"][0]["text"]["text"]) <= HEADER_LIMIT
    for block in message["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= SECTION_LIMIT
    assert len(message["text"]) <= 40_000 and len(message["blocks"]) <= 50


def test_missing_exception_and_fields_still_give_a_message():
    ti = FakeTI()
    ti.log_url = None
    message = build(task_facts({"ti": ti}))
    assert "Failed: databricks_etl · run_job" in message["blocks"][0]["text"]["text"]
    assert "Error" not in text_of(message)


def test_databricks_url_order_run_page_url_then_job_run_link_then_built_like_databricks():
    link = "https://adb-9.azuredatabricks.net/#job/1/run/2"
    both = FakeTI({("run_page_url", -1): RUN_URL, ("databricks_job_run_link", -1): link})
    assert task_facts(context(both)).databricks_url == RUN_URL
    only_link = FakeTI({("databricks_job_run_link", -1): link})
    assert task_facts(context(only_link)).databricks_url == link
    # Built the way Databricks links a run: ?o=<Azure workspace id>#job/<job>/run/<run>
    with_job = FakeTI({("run_id", -1): 777, ("job_id", -1): 31})
    facts = task_facts(context(with_job), host="https://adb-5.7.azuredatabricks.net/")
    assert facts.databricks_url == "https://adb-5.7.azuredatabricks.net/?o=5#job/31/run/777"
    facts = task_facts(context(with_job), host="https://dbc-1a2b.cloud.databricks.com")
    assert facts.databricks_url == "https://dbc-1a2b.cloud.databricks.com/#job/31/run/777"
    # A run id alone names no page (the old {host}/#job/runs/{id} is not one): runs/get's
    # run_page_url fills it in when there is a connection, else there is no link.
    only_id = FakeTI({("run_id", -1): 777})
    assert (
        task_facts(context(only_id), host="https://adb-5.7.azuredatabricks.net").databricks_url
        == ""
    )
    assert task_facts(context(FakeTI()), host="").databricks_url == ""


def test_mapped_task_pulls_xcom_with_its_own_map_index():
    ti = FakeTI({("run_page_url", 3): RUN_URL}, map_index=3)
    facts = task_facts(context(ti))
    assert facts.databricks_url == RUN_URL
    assert all(p["map_indexes"] == 3 for p in ti.pulls)
    assert "run_job[3]" in build(facts)["blocks"][0]["text"]["text"]


def test_localhost_log_url_adds_a_warning():
    ti = FakeTI()
    ti.log_url = "http://localhost:8080/dags/x/runs/y/tasks/z"
    assert "points at localhost" in text_of(build(task_facts(context(ti))))


# --- targets -----------------------------------------------------------------------------------


def test_target_order_webhook_before_bot_token():
    env = {
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/A/B/C",
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_CHANNEL": "#c",
    }
    target = resolve_target(env=env)
    assert target is not None and target.kind == "webhook"
    del env["SLACK_WEBHOOK_URL"]
    target = resolve_target(env=env)
    assert target is not None and (target.kind, target.channel) == ("api", "#c")
    assert "xoxb-1" not in repr(target)
    assert resolve_target(env={}) is None


# --- delivery over loopback ----------------------------------------------------------------------


@pytest.fixture
def slack():
    with FakeSlack() as server:
        yield server


def test_webhook_delivery_after_a_429_is_exactly_one_message(slack, monkeypatch):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    slack.fail_next(429, retry_after=1)
    assert notify(context()) is True
    assert slack.attempts == 2 and len(slack.messages) == 1
    assert "RuntimeError: boom" in text_of(slack.messages[0])


def test_web_api_delivery_with_bot_token_and_base_url_override(slack, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_CHANNEL", "#data-oncall")
    monkeypatch.setenv("SLACK_API_BASE_URL", slack.api_base)
    slack.fail_next(503)
    slack_failure_callback(context())
    assert len(slack.messages) == 1
    message = slack.messages[0]
    assert message["channel"] == "#data-oncall" and message["blocks"][0]["type"] == "header"


def test_slack_down_is_bounded_in_time_and_never_raises(slack, monkeypatch, caplog):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    slack.fail_next(429, count=50, retry_after=30)  # a Retry-After beyond the budget
    started = time.monotonic()
    assert notify(context(), budget=5) is False
    assert time.monotonic() - started < 8
    assert "Slack alert not delivered" in caplog.text


def test_unreachable_slack_is_bounded_and_logged_once(monkeypatch, caplog):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "http://127.0.0.1:9/services/T/B/SECRET")
    started = time.monotonic()
    slack_failure_callback(context())
    assert time.monotonic() - started < 20
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.name == "airflow_callbacks"
    ]
    assert len(warnings) == 1


def test_no_secret_in_logs_at_debug(slack, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    slack.fail_next(500)
    assert notify(context()) is True
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_CHANNEL", "#c")
    monkeypatch.setenv("SLACK_API_BASE_URL", slack.api_base)
    assert notify(context()) is True
    assert "Sending a request" in caplog.text  # slack-sdk's DEBUG logging really ran
    assert "XXXXSECRETXXXX" not in caplog.text and BOT_TOKEN not in caplog.text


def test_a_webhook_error_page_echoing_the_secret_path_is_redacted_at_every_level(
    slack, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG)
    slack.echo_path = True
    slack.fail_next(403, count=3)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    assert notify(context(FakeTI({("run_id", -1): 1}))) is False
    lines = [r.getMessage() for r in caplog.records]
    assert any("403" in line and "***" in line for line in lines), lines
    path = WEBHOOK_PATH
    for secret in (slack.webhook_url, path, path.lstrip("/"), quote(path, safe=""), "XXXXSECRET"):
        leaked = [line for line in lines if secret in line]
        assert not leaked, (secret, leaked)


def test_no_target_configured_logs_how_to_configure(monkeypatch, caplog):
    for name in ("SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN", "AIRFLOW_CALLBACKS_SLACK_CONN_ID"):
        monkeypatch.delenv(name, raising=False)
    assert notify(context()) is False
    assert "SLACK_WEBHOOK_URL" in caplog.text


def test_recovery_posts_only_after_a_failed_try_of_the_same_task_instance(slack, monkeypatch):
    store = MemoryStore()
    monkeypatch.setattr(incidents, "default_store", lambda: store)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    slack_recovery_callback(context(FakeTI(try_number=1), exception=None))
    # A cleared success runs again with a higher try number: still nothing failed.
    slack_recovery_callback(context(FakeTI(try_number=2), exception=None))
    assert slack.messages == []
    # Map index 3 failed a try; index 4 did not.
    assert notify(context(FakeTI(map_index=3)), "retry") is True
    slack_recovery_callback(context(FakeTI(map_index=4, try_number=2), exception=None))
    assert len(slack.messages) == 1
    slack_recovery_callback(context(FakeTI(map_index=3, try_number=2), exception=None))
    assert len(slack.messages) == 2
    assert (
        "Recovered: databricks_etl · run_job[3]" in slack.messages[1]["blocks"][0]["text"]["text"]
    )
    assert store.records == {}  # the incident is closed
    slack_recovery_callback(context(FakeTI(map_index=3, try_number=3), exception=None))
    assert len(slack.messages) == 2


def failed_sim_run(server) -> int:
    model = server.model
    now = model.clock.now_ms()
    for job in model.jobs:
        if len(job.tasks) < 2:
            continue
        for k in range(model._last_k(job, now), -1, -1):
            run = model.run(job, k)
            if run.outcome == "FAILED" and run.end_ms < now:
                return run.run_id
    raise AssertionError("the simulator has no failed multi-task run")


@pytest.mark.parametrize("status_only", [0.0, 1.0], ids=["state-and-status", "status-only"])
def test_databricks_state_message_and_failed_tasks_are_added_when_configured(
    make_sim, slack, monkeypatch, status_only
):
    server = make_sim(
        fail_rate=0.9, multi_task_rate=1.0, history_hours=0.2, status_only_rate=status_only
    )
    run_id = failed_sim_run(server)
    monkeypatch.setenv("DATABRICKS_HOST", server.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", server.token)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    assert notify(context(FakeTI({("run_id", -1): run_id}))) is True
    body = text_of(slack.messages[0])
    assert "java.lang.RuntimeException: boom" in body  # the run's state_message
    assert "Failed task" in body and "#job/" in body
    assert "UPSTREAM_FAILED" not in body and "SKIPPED" not in body  # not failures themselves
    assert server.stats.requests["/api/2.2/jobs/runs/get"] == 1


def test_enrichment_failure_is_silent_and_the_alert_still_goes(make_sim, slack, monkeypatch):
    server = make_sim()
    monkeypatch.setenv("DATABRICKS_HOST", server.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-wrong")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    assert notify(context(FakeTI({("run_id", -1): 123}))) is True
    assert "Failed task" not in text_of(slack.messages[0])


# --- the task's own Databricks connection --------------------------------------------------------


def test_details_come_through_the_tasks_databricks_connection_without_environment(
    make_sim, slack, monkeypatch
):
    """DatabricksHook with the operator's databricks_conn_id; no DATABRICKS_* variables."""
    pytest.importorskip("airflow.providers.databricks")
    server = make_sim(fail_rate=0.9, multi_task_rate=1.0, history_hours=0.2)
    run_id = failed_sim_run(server)
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "AZURE_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    port = server.url.rsplit(":", 1)[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_DBX_PROD",
        json.dumps(
            {
                "conn_type": "databricks",
                "host": "127.0.0.1",
                "port": int(port),
                "schema": "http",
                "password": server.token,
            }
        ),
    )
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    task = SimpleNamespace(owner="o", retries=0, task_id="run_job", databricks_conn_id="dbx_prod")
    ctx = context(FakeTI({("run_id", -1): run_id}), task=task)
    assert notify(ctx, store=MemoryStore()) is True
    body = text_of(slack.messages[0])
    assert "java.lang.RuntimeException: boom" in body and "Failed task" in body
    # No run_page_url in XCom: the link is the one runs/get gave.
    button = next(b for b in slack.messages[0]["blocks"] if b["type"] == "actions")["elements"]
    urls = [e["url"] for e in button if e["action_id"] == "databricks_run"]
    assert urls and urls[0].endswith(f"/run/{run_id}") and "#job/" in urls[0], urls
    assert server.token not in body


# --- Slack connections with the provider's semantics ---------------------------------------------


@pytest.mark.parametrize(
    ("host", "schema", "password"),
    [
        ("hooks.slack-gov.com/services", "", "T1/B1/SECRET"),  # no scheme: https://{host}
        ("", "", "T1/B1/SECRET"),  # the default host
        ("https://hooks.example.com/x/", "", "/T1/B1/SECRET"),
        ("", "", "https://hooks.slack.com/services/T1/B1/SECRET"),  # a full URL as password
        ("proxy.internal/services", "http", "T1/B1/SECRET"),
    ],
)
def test_webhook_connection_url_is_exactly_the_slack_providers(host, schema, password):
    pytest.importorskip("airflow.providers.slack")
    from airflow.models import Connection
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    from airflow_callbacks.delivery import webhook_url_of

    conn = Connection(
        conn_id="w", conn_type="slackwebhook", host=host, schema=schema, password=password
    )
    expected = SlackWebhookHook(slack_webhook_conn_id="w")._build_conn_params(conn)["url"]
    assert webhook_url_of(host, schema, password) == expected
    if host.startswith("hooks.slack-gov"):
        assert expected.startswith("https://hooks.slack-gov.com/services/")


def test_slack_connection_reads_the_prefixed_base_url_extra(monkeypatch):
    from airflow_callbacks import delivery

    conn = SimpleNamespace(
        conn_type="slack",
        password="xoxb-9",
        host="",
        schema="",
        extra_dejson={"extra__slack__base_url": "https://slack-gov.com/api/", "channel": "#c"},
    )
    monkeypatch.setattr(delivery, "_get_connection", lambda conn_id: conn)
    target = resolve_target("slack_gov", env={})
    assert target is not None
    assert (target.kind, target.base_url, target.channel) == (
        "api",
        "https://slack-gov.com/api/",
        "#c",
    )


def test_delivery_goes_through_the_slack_providers_hooks(slack, monkeypatch):
    pytest.importorskip("airflow.providers.slack")
    port = slack.url.rsplit(":", 1)[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_HOOK",
        json.dumps(
            {
                "conn_type": "slackwebhook",
                "host": f"127.0.0.1:{port}/services",
                "schema": "http",
                "password": WEBHOOK_PATH.removeprefix("/services/"),
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_API",
        json.dumps(
            {"conn_type": "slack", "password": BOT_TOKEN, "extra": {"base_url": slack.api_base}}
        ),
    )
    from airflow.providers.slack.hooks.slack import SlackHook
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    built = []
    for hook in (SlackHook, SlackWebhookHook):
        original = hook.__init__

        def spy(self, *a, _original=original, **kw):
            built.append(type(self).__name__)
            _original(self, *a, **kw)

        monkeypatch.setattr(hook, "__init__", spy)
    assert notify(context(), slack_conn_id="slack_hook", store=MemoryStore()) is True
    assert notify(context(), slack_conn_id="slack_api", channel="#x", store=MemoryStore()) is True
    assert built == ["SlackWebhookHook", "SlackHook"]
    assert [m["via"] for m in slack.messages] == ["webhook", "api"]


# --- incident threads ----------------------------------------------------------------------------


@pytest.fixture
def bot(slack, monkeypatch):
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_CHANNEL", "#data-oncall")
    monkeypatch.setenv("SLACK_API_BASE_URL", slack.api_base)
    return slack


def header(message: dict) -> str:
    return message["blocks"][0]["text"]["text"]


def test_retries_then_final_failure_are_one_thread_with_its_parent_updated(bot):
    store = MemoryStore()
    for try_number, kind in ((1, "retry"), (2, "retry"), (3, "failure")):
        assert notify(context(FakeTI(try_number=try_number)), kind, store=store) is True
    parent, *replies = bot.messages
    assert "thread_ts" not in parent and "Retrying" in header(parent)
    assert parent["metadata"]["event_type"] == "airflow_task_incident"
    assert [m.get("thread_ts") for m in replies] == [parent["ts"], parent["ts"]]
    assert ["Retrying" in header(replies[0]), "Failed" in header(replies[1])] == [True, True]
    # The channel shows one line with the incident's current state.
    assert [u["ts"] for u in bot.updates] == [parent["ts"]] * 2
    assert bot.updates[-1]["channel"] == bot.channel_id("#data-oncall")
    assert "Failed: databricks_etl · run_job" in header(bot.updates[-1])
    assert "2 updates in the thread" in text_of(bot.updates[-1])
    # It stays open after the final failure: clearing the task and a success reply there.
    assert notify(context(FakeTI(try_number=4), exception=None), "recovery", store=store)
    assert bot.messages[-1]["thread_ts"] == parent["ts"]
    assert "Recovered" in header(bot.updates[-1]) and store.records == {}


def test_retry_then_recovery_is_one_thread_and_closes_the_incident(bot):
    store = MemoryStore()
    assert notify(context(FakeTI(try_number=1)), "retry", store=store)
    assert notify(context(FakeTI(try_number=2), exception=None), "recovery", store=store)
    assert len(bot.messages) == 2 and bot.messages[1]["thread_ts"] == bot.messages[0]["ts"]
    assert "Recovered" in header(bot.updates[0]) and store.records == {}


def test_the_thread_survives_a_new_process_between_tries(bot):
    """What a retry on another worker sees: only what the store kept (JSON, like a Variable)."""
    first, second = MemoryStore(), MemoryStore()
    assert notify(context(FakeTI(try_number=1)), "retry", store=first)
    ((key, incident),) = first.records.items()
    second.records[key] = incidents.Incident(**json.loads(json.dumps(incident.__dict__)))
    assert notify(context(FakeTI(try_number=2)), "failure", store=second)
    assert bot.messages[1]["thread_ts"] == bot.messages[0]["ts"]


def test_other_task_instances_and_dag_runs_get_their_own_threads(bot):
    store = MemoryStore()
    assert notify(context(FakeTI(map_index=0)), "retry", store=store)
    assert notify(context(FakeTI(map_index=1)), "retry", store=store)
    other_run = FakeTI(map_index=0)
    assert notify(context(other_run, run_id="scheduled__2026-11-24"), "retry", store=store)
    assert [m.get("thread_ts") for m in bot.messages] == [None, None, None]
    assert len(store.records) == 3


def test_webhooks_cannot_thread_so_each_event_is_a_plain_message(slack, monkeypatch):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    store = MemoryStore()
    assert notify(context(FakeTI(try_number=1)), "retry", store=store)
    assert notify(context(FakeTI(try_number=2), exception=None), "recovery", store=store)
    assert [header(m).split(":")[1].strip() for m in slack.messages] == [
        "large_orange_circle",
        "large_green_circle",
    ]
    assert all("thread_ts" not in m for m in slack.messages) and slack.updates == []


def test_an_unreachable_store_falls_back_to_plain_messages(bot):
    class Broken(MemoryStore):
        def load(self, key):
            return None

        def save(self, key, incident):
            return False

    store = Broken()
    assert notify(context(FakeTI(try_number=1)), "retry", store=store)
    assert notify(context(FakeTI(try_number=2)), "failure", store=store)
    assert [m.get("thread_ts") for m in bot.messages] == [None, None]


# --- details that differ between Airflow versions -------------------------------------------------


@pytest.mark.parametrize(
    ("version", "setting"), [("2.10.5", "[webserver] base_url"), ("3.3.2", "[api] base_url")]
)
def test_the_localhost_hint_names_the_setting_of_the_running_airflow(monkeypatch, version, setting):
    # Only the version is read: a stand-in module, so this runs where Airflow is not installed.
    monkeypatch.setitem(sys.modules, "airflow", SimpleNamespace(__version__=version))
    ti = FakeTI()
    ti.log_url = "http://localhost:8080/log"
    assert f"set `{setting}` in airflow.cfg" in text_of(build(task_facts(context(ti))))


# --- DAG-level alerts ---------------------------------------------------------------------------


def test_dag_failure_summary_lists_each_failed_task_once_with_link_duration_and_owner(
    slack, monkeypatch
):
    from airflow_callbacks import dag_alerts

    rows = [
        {"task_id": "load", "map_index": -1, "state": "failed", "duration": 754.2},
        {"task_id": "fan_out", "map_index": 3, "state": "failed", "duration": 5},
    ]
    xcoms = {("load", "run_page_url"): RUN_URL}
    monkeypatch.setattr(dag_alerts, "_failed_from_sdk", lambda dag_id, run_id: rows)
    monkeypatch.setattr(
        dag_alerts,
        "_xcom_from_sdk",
        lambda dag_id, run_id, task_id, map_index, key: xcoms.get((task_id, key)),
    )
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    owners = {
        "load": SimpleNamespace(owner="data-platform"),
        "fan_out": SimpleNamespace(owner="<!here>"),
    }
    dag = SimpleNamespace(dag_id="databricks_etl", get_task=lambda task_id: owners[task_id])
    dag_alerts.slack_dag_failure_callback(
        {"dag": dag, "run_id": "scheduled__2026-11-24", "reason": "task_failure"}
    )
    (message,) = slack.messages
    body = text_of(message)
    assert "DAG run failed: databricks_etl" in header(message)
    assert f"*load* · 12m 34s · owner data-platform · <{RUN_URL}|Databricks run>" in body
    assert "*fan_out[3]* · 0m 5s · owner &lt;!here&gt;" in body
    assert "*Failed tasks*\\n2" in body and "<!here>" not in body


def test_dag_failure_summary_falls_back_to_the_database_when_the_sdk_cannot_answer(
    slack, monkeypatch
):
    """Under dag.test() there is no supervisor: the metadata database answers instead."""
    from airflow_callbacks import dag_alerts

    def no_supervisor(*args):
        raise RuntimeError("no SUPERVISOR_COMMS")

    monkeypatch.setattr(dag_alerts, "_failed_from_sdk", no_supervisor)
    monkeypatch.setattr(dag_alerts, "_failed_from_task_states", no_supervisor)
    monkeypatch.setattr(dag_alerts, "_xcom_from_sdk", no_supervisor)
    monkeypatch.setattr(
        dag_alerts,
        "_failed_from_db",
        lambda dag_id, run_id: [{"task_id": "t", "map_index": -1, "state": "failed"}],
    )
    monkeypatch.setattr(dag_alerts, "_xcom_from_db", lambda *a: RUN_URL)
    assert dag_alerts.failed_tasks("d", "r") == [
        {"task_id": "t", "map_index": -1, "state": "failed", "url": RUN_URL}
    ]


def test_in_the_dag_processor_task_states_name_the_failed_map_indexes(monkeypatch):
    """Airflow 3's DAG processor answers GetTaskStates but not breadcrumbs."""
    from airflow_callbacks import dag_alerts

    pytest.importorskip("airflow.sdk.execution_time.task_runner")
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    def no_breadcrumbs(*args):
        raise RuntimeError("unexpected message GetTaskBreadcrumbs")

    states = {
        "r": {"load": "failed", "fan_out_2": "failed", "fan_out_3": "success", "x_1": "failed"}
    }
    monkeypatch.setattr(dag_alerts, "_failed_from_sdk", no_breadcrumbs)
    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", lambda **kw: states)
    monkeypatch.setattr(dag_alerts, "_xcom_from_sdk", lambda *a: None)
    monkeypatch.setattr(dag_alerts, "_xcom_from_db", lambda *a: None)
    dag = SimpleNamespace(task_ids=["load", "fan_out", "x_1"])
    got = [(t["task_id"], t["map_index"]) for t in dag_alerts.failed_tasks("d", "r", dag)]
    assert got == [("fan_out", 2), ("load", -1), ("x_1", -1)]


def test_many_failed_tasks_stay_within_slacks_block_limits():
    from airflow_callbacks.dag_alerts import MAX_TASKS, dag_failure_message

    tasks = [
        {"task_id": f"task_{'x' * 200}_{i}", "map_index": i, "url": RUN_URL, "duration": 1}
        for i in range(500)
    ]
    message = dag_failure_message("d", "r", "", "", tasks, None)
    sections = [b for b in message["blocks"] if b["type"] == "section" and "text" in b]
    assert all(len(b["text"]["text"]) <= SECTION_LIMIT for b in sections)
    assert f"and {500 - MAX_TASKS} more failed tasks" in text_of(message)
    assert len(message["blocks"]) <= 50


def test_deadline_callback_posts_dag_run_late_with_expected_and_current_time(slack, monkeypatch):
    """The context Airflow 3's Deadline.handle_miss gives the callback (a DAGRunResponse dump)."""
    from airflow_callbacks import slack_deadline_callback

    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    deadline_context = {
        "dag_run": {
            "dag_id": "databricks_etl",
            "dag_run_id": "scheduled__2026-11-24T02:00:00+00:00",
            "state": "running",
            "logical_date": "2026-11-24T02:00:00Z",
            "queued_at": "2026-11-24T02:00:01Z",
            "start_date": "2026-11-24T02:00:03Z",
        },
        "deadline": {"id": "0193", "deadline_time": "2026-11-24T04:00:00+00:00"},
    }
    slack_deadline_callback(context=deadline_context, channel="#ignored-by-webhooks")
    (message,) = slack.messages
    body = text_of(message)
    assert "DAG run late: databricks_etl" in header(message)
    assert "*Expected by*\\n2026-11-24T04:00:00+00:00" in body
    assert "*Now*\\n20" in body and "*State*\\nrunning" in body
    slack_deadline_callback(context={"dag_run": "garbage"})  # never raises
    assert len(slack.messages) == 2


def test_deadline_callback_fits_airflows_deadline_alert():
    deadline = pytest.importorskip("airflow.sdk.definitions.deadline")
    from datetime import timedelta

    from airflow.sdk.definitions.callback import AsyncCallback, SyncCallback

    from airflow_callbacks.dag_alerts import slack_deadline_callback_async

    for callback in (
        SyncCallback(slack_deadline_callback, kwargs={"channel": "#x"}),
        AsyncCallback(slack_deadline_callback_async, kwargs={"channel": "#x"}),
    ):
        alert = deadline.DeadlineAlert(
            reference=deadline.DeadlineReference.DAGRUN_QUEUED_AT,
            interval=timedelta(hours=2),
            callback=callback,
        )
        assert alert.callback.path.startswith("airflow_callbacks.dag_alerts.slack_deadline")
