"""Airflow callbacks against hostile input and hostile services (issue 22, items 16-20).

The rule: a callback posts, never raises, never holds a worker past its budget, never leaks a
secret. Every service here is a fake on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fake_slack import BOT_TOKEN, FakeSlack
from test_callbacks import context, text_of

from airflow_callbacks import notify
from airflow_callbacks.incidents import MemoryStore

SETTINGS = (
    "SLACK_WEBHOOK_URL",
    "SLACK_BOT_TOKEN",
    "SLACK_CHANNEL",
    "SLACK_API_BASE_URL",
    "AIRFLOW_CALLBACKS_SLACK_CONN_ID",
    "DATABRICKS_HOST",
    "DATABRICKS_TOKEN",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", server.webhook_url)
        yield server


@pytest.fixture
def bot(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
        monkeypatch.setenv("SLACK_CHANNEL", "#data-oncall")
        monkeypatch.setenv("SLACK_API_BASE_URL", server.api_base)
        yield server


# --- 16: an exception whose str() raises ----------------------------------------------------------


class Unprintable(RuntimeError):
    def __str__(self) -> str:
        raise ValueError("no text for you")


def test_an_exception_whose_str_raises_is_posted_with_a_placeholder(slack):
    assert notify(context(exception=Unprintable()), store=MemoryStore()) is True
    (message,) = slack.messages
    assert "Unprintable: (str() failed)" in text_of(message)


def test_context_values_whose_str_raises_do_not_stop_the_message(slack):
    task = SimpleNamespace(owner=Unprintable(), retries=2, task_id="run_job")
    assert notify(context(task=task, run_id=Unprintable()), store=MemoryStore()) is True
    (message,) = slack.messages
    assert "Failed: databricks_etl · run_job" in message["blocks"][0]["text"]["text"]
    assert "*Owner*\\n(str() failed)" in text_of(message)
