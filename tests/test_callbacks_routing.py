"""Routing, mentions, mute and last-retry-only (airflow_callbacks.settings / routing): one test per
rule, the defaults (today's behaviour), bad settings, and the rules applied by notify() against
the fake Slack."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from test_callbacks import FakeTI, context, text_of

from airflow_callbacks import notify, settings
from airflow_callbacks.enrich import RunDetails
from airflow_callbacks.incidents import MemoryStore
from airflow_callbacks.routing import Event, Route, route
from airflow_callbacks.settings import Settings, load, parse

PLATFORM = "<!subteam^S0PLATFORM|platform>"
DATA = "<!subteam^S0DATA>"
ALICE = "<@U0ALICE>"

RULES = {
    "routes": [
        {
            "termination_type": ["CLOUD_FAILURE", "INTERNAL_ERROR"],
            "channel": "#data-platform",
            "mention": PLATFORM,
        },
        {"job_tag": {"team": "finance"}, "channel": "#finance-data"},
        {"owner": "ml-team", "channel": "#ml-oncall"},
        {"termination_type": "CLIENT_ERROR", "mention": "owner"},
    ],
    "mentions": {"data-eng": DATA, "alice": ALICE},
}


def event(**fields) -> Event:
    return Event(**{"kind": "failure", **fields})


# --- defaults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["retry", "failure", "recovery"])
def test_without_settings_every_event_goes_to_the_targets_channel_without_mention(kind):
    assert load(raw=None) == Settings() and load(raw="") == Settings()
    for result in ("FAILED", "CANCELED", "UPSTREAM_FAILED", ""):
        got = route(
            Settings(), event(kind=kind, result_state=result, termination_type="CLIENT_ERROR")
        )
        assert got == Route()


# --- one test per rule -------------------------------------------------------------------------


@pytest.mark.parametrize("termination", ["CLOUD_FAILURE", "INTERNAL_ERROR"])
def test_a_platform_failure_goes_to_the_platform_channel_with_its_group(termination):
    got = route(parse(RULES), event(termination_type=termination, owner="data-eng"))
    assert got == Route("#data-platform", PLATFORM)


def test_a_client_error_mentions_the_owner_of_the_dag():
    got = route(parse(RULES), event(termination_type="CLIENT_ERROR", owner="data-eng"))
    assert got == Route("", DATA)


def test_a_client_error_mentions_the_owner_the_job_tag_names():
    tags = {"owner": "alice"}
    got = route(
        parse(RULES), event(termination_type="CLIENT_ERROR", owner="airflow", job_tags=tags)
    )
    assert got == Route("", ALICE)


def test_several_dag_owners_mention_the_first_known():
    got = route(parse(RULES), event(termination_type="CLIENT_ERROR", owner="nobody, alice"))
    assert got.mention == ALICE


def test_an_owner_without_a_mention_gets_none():
    got = route(parse(RULES), event(termination_type="CLIENT_ERROR", owner="nobody"))
    assert got == Route()


def test_a_job_tag_routes_to_its_channel():
    got = route(parse(RULES), event(termination_type="CLIENT_ERROR", job_tags={"team": "finance"}))
    assert got == Route("#finance-data", "")  # the first rule that matches decides
    assert parse(RULES).wants_tags


def test_a_job_tag_wildcard_needs_the_tag_only():
    rules = parse({"routes": [{"job_tag": {"team": "*"}, "channel": "#teams"}]})
    assert route(rules, event(job_tags={"team": "x"})).channel == "#teams"
    assert route(rules, event(job_tags={"other": "x"})).channel == ""


def test_a_dag_owner_routes_to_its_channel():
    assert route(parse(RULES), event(owner="ml-team")) == Route("#ml-oncall", "")


def test_all_conditions_of_a_rule_must_hold():
    rules = parse(
        {"routes": [{"termination_type": "CLIENT_ERROR", "owner": "ml-team", "channel": "#x"}]}
    )
    assert route(rules, event(termination_type="CLIENT_ERROR", owner="ml-team")).channel == "#x"
    assert route(rules, event(termination_type="CLIENT_ERROR", owner="other")).channel == ""
    assert route(rules, event(termination_type="CLOUD_FAILURE", owner="ml-team")).channel == ""


@pytest.mark.parametrize(
    ("result", "muted"),
    [("CANCELED", True), ("UPSTREAM_CANCELED", True), ("EXCLUDED", True), ("FAILED", False)],
)
def test_mute_skipped_and_canceled_runs(result, muted):
    rules = parse({"mute": ["skipped", "canceled"]})
    assert bool(route(rules, event(result_state=result)).muted) is muted
    assert not route(rules, event(kind="recovery", result_state=result)).muted
    only_canceled = parse({"mute": ["canceled"]})
    assert bool(route(only_canceled, event(result_state="EXCLUDED")).muted) is False


def test_alert_on_last_retry_only_mutes_retries_only():
    rules = parse({"alert_on_last_retry_only": True})
    assert route(rules, event(kind="retry")).muted
    assert not route(rules, event(kind="failure")).muted
    assert not route(rules, event(kind="recovery")).muted


# --- bad settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"', "null"])
def test_a_variable_that_is_not_a_json_object_means_the_defaults(raw, caplog):
    assert load(raw=raw) == Settings()
    if raw != "null":
        assert "is not a JSON object" in caplog.text


def test_wrong_values_are_dropped_with_a_warning_naming_the_key_not_the_value(caplog):
    got = parse(
        {
            "routes": [
                {"channel": "#ok", "mention": "@platform-team secret-xyz"},
                {"termination_type": 3, "channel": "#bad"},
                "not a rule",
                {"channel": ["#bad"]},
            ],
            "mentions": {"a": "<!subteam^S1>", "b": "everyone"},
            "mute": ["canceled", "failed"],
            "alert_on_last_retry_only": "yes",
            "dashboard_url": "javascript:alert(1)",
        }
    )
    assert got.routes == (settings.Rule("#ok", ""),)
    assert got.mentions == {"a": "<!subteam^S1>"}
    assert got.mute == frozenset({"canceled"}) and got.last_retry_only is False
    assert got.dashboard_url == ""
    for key in ("routes[0].mention", "routes[1]", "routes[2]", "routes[3]", "mentions['b']"):
        assert key in caplog.text, key
    assert "secret-xyz" not in caplog.text and "everyone" not in caplog.text


def test_keyword_settings_replace_the_variables_keys(monkeypatch):
    monkeypatch.setattr(settings, "_variable_text", lambda: json.dumps(RULES))
    got = load({"mute": ["canceled"]})
    assert got.mute == frozenset({"canceled"}) and len(got.routes) == 4
    assert load({"routes": []}).routes == ()


# --- applied by notify() --------------------------------------------------------------------------


def databricks_says(monkeypatch, **fields) -> None:
    import airflow_callbacks

    monkeypatch.setattr(airflow_callbacks, "run_details", lambda *a, **kw: RunDetails(**fields))


def ctx(try_number: int = 1, owner: str = "data-eng"):
    task = SimpleNamespace(owner=owner, retries=2, task_id="run_job")
    return context(FakeTI({("run_id", -1): 42}, try_number=try_number), task=task)


def test_notify_posts_a_platform_failure_to_its_channel_and_threads_there(bot, monkeypatch):
    databricks_says(monkeypatch, termination_type="CLOUD_FAILURE", result_state="FAILED")
    store = MemoryStore()
    assert notify(ctx(1), "retry", store=store, settings=RULES)
    assert notify(ctx(2), "failure", store=store, settings=RULES)
    parent, reply = bot.messages
    assert parent["channel"] == "#data-platform" and parent["text"].startswith(PLATFORM)
    assert "cc " + PLATFORM in text_of(parent)
    assert reply["thread_ts"] == parent["ts"]
    assert reply["channel"] == bot.channel_id("#data-platform")  # the incident's channel


def test_a_route_to_a_channel_that_refuses_the_bot_still_posts_the_alert(bot, monkeypatch):
    databricks_says(monkeypatch, termination_type="CLOUD_FAILURE", result_state="FAILED")
    bot.refused_channels.add("#data-platform")  # a typo in the route, or the bot not invited
    store = MemoryStore()
    assert notify(ctx(2), "failure", store=store, settings=RULES)
    (parent,) = bot.messages
    assert parent["channel"] == "#data-oncall"  # the target's own channel
    assert "Routed to #data-platform, which refused it (channel_not_found)" in text_of(parent)
    assert notify(ctx(3), "recovery", store=store, settings=RULES)  # the thread is where it is
    assert bot.thread(parent["ts"])


def test_notify_mutes_a_canceled_run_and_posts_nothing(bot, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="airflow_callbacks")
    databricks_says(monkeypatch, result_state="CANCELED", termination_type="SUCCESS")
    assert notify(ctx(), "failure", store=MemoryStore(), settings={"mute": ["canceled"]}) is False
    assert bot.messages == [] and "mute: the Databricks run was canceled" in caplog.text


def test_notify_with_last_retry_only_opens_the_incident_at_the_final_failure(bot, monkeypatch):
    import airflow_callbacks

    asked: list[str] = []

    def details(run_id, *args, **kwargs):
        asked.append(run_id)
        return RunDetails(result_state="FAILED", termination_type="CLIENT_ERROR")

    monkeypatch.setattr(airflow_callbacks, "run_details", details)
    store, only_last = MemoryStore(), {"alert_on_last_retry_only": True}
    assert notify(ctx(1), "retry", store=store, settings=only_last) is False
    assert notify(ctx(2), "retry", store=store, settings=only_last) is False
    assert bot.messages == [] and store.records == {}
    assert asked == []  # a muted retry does not even ask Databricks
    assert notify(ctx(3), "failure", store=store, settings=only_last) is True
    (parent,) = bot.messages
    assert (
        "thread_ts" not in parent
        and "Failed: databricks_etl · run_job" in parent["blocks"][0]["text"]["text"]
    )


def test_the_dashboard_and_runbook_links_are_buttons_with_the_job_filled_in(bot, monkeypatch):
    databricks_says(monkeypatch, job_id="1234")
    links = {
        "dashboard_url": "https://grafana.example.com/d/databricks-jobs?var-job_id={job_id}",
        "runbook_url": "https://wiki.example.com/runbooks/{dag_id}/{task_id}",
    }
    assert notify(ctx(), "failure", store=MemoryStore(), settings=links)
    (actions,) = [b for b in bot.messages[0]["blocks"] if b["type"] == "actions"]
    urls = {e["text"]["text"]: e["url"] for e in actions["elements"]}
    assert urls["Dashboard"] == "https://grafana.example.com/d/databricks-jobs?var-job_id=1234"
    assert urls["Runbook"] == "https://wiki.example.com/runbooks/databricks_etl/run_job"


def test_error_tasks_bounds_the_get_output_calls(caplog):
    assert parse({}).error_tasks == 2 and parse({"error_tasks": 0}).error_tasks == 0
    assert parse({"error_tasks": 50}).error_tasks == 5
    for bad in (-1, "3", True, 1.5):
        assert parse({"error_tasks": bad}).error_tasks == 2
    assert "error_tasks is not a whole number" in caplog.text


def test_the_notifier_takes_settings_too(bot, monkeypatch):
    from airflow_callbacks import DatabricksSlackNotifier

    databricks_says(monkeypatch, termination_type="INTERNAL_ERROR", result_state="INTERNAL_ERROR")
    monkeypatch.setattr("airflow_callbacks.incidents.default_store", lambda: MemoryStore())
    DatabricksSlackNotifier(settings=RULES).notify(ctx())
    (message,) = bot.messages
    assert message["channel"] == "#data-platform" and message["text"].startswith(PLATFORM)


def test_the_variable_is_read_through_airflow_and_an_unreadable_one_means_the_defaults(
    monkeypatch,
):
    pytest.importorskip("airflow")
    monkeypatch.delenv("AIRFLOW_VAR_AIRFLOW_CALLBACKS_SETTINGS", raising=False)
    assert load() == Settings()  # no Variable (and no task supervisor to ask): the defaults
    monkeypatch.setenv("AIRFLOW_VAR_AIRFLOW_CALLBACKS_SETTINGS", json.dumps({"mute": ["canceled"]}))
    assert load().mute == frozenset({"canceled"})  # Airflow's environment secrets backend
