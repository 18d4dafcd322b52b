"""Airflow callbacks against hostile input and hostile services (issue 22, items 16-20).

The rule: a callback posts, never raises, never holds a worker past its budget, never leaks a
secret. Every service here is a fake on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fake_aad import SECRET, FakeAAD, exporter_env
from fake_slack import BOT_TOKEN, FakeSlack
from loopback import Loopback, QuietHandler
from test_callbacks import FakeTI, context, failed_sim_run, text_of

from airflow_callbacks import incidents, notify
from airflow_callbacks.incidents import MemoryStore
from airflow_callbacks.message import ERROR_LIMIT

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


# --- 17: a Slack that trickles its answer ---------------------------------------------------------


def bounded(call: Callable[[], Any], seconds: float) -> tuple[Any, float]:
    """(what ``call`` returned, how long it took); fails the test, instead of hanging it, when
    the call is still running after ``seconds``. An exception from the call is re-raised."""
    result: list[Any] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: result.append(_outcome(call)), daemon=True)
    thread.start()
    thread.join(seconds)
    elapsed = time.monotonic() - started
    if thread.is_alive():
        pytest.fail(f"still running after {seconds:g}s")
    ok, value = result[0]
    if not ok:
        raise value
    return value, elapsed


def _outcome(call: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, call()
    except BaseException as exc:
        return False, exc


class Trickle(Loopback):
    """Answers every request with one byte every ``every`` seconds, for as long as it runs: no
    socket read ever waits long enough to time out."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.requests = 0
        self.stopped = threading.Event()
        self._listen(self._handler())
        self.url = f"http://127.0.0.1:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(QuietHandler):
            def _trickle(self) -> None:
                server.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: "
                sent = 0
                while not server.stopped.wait(server.every):
                    try:
                        self.wfile.write(head[sent : sent + 1] or b"a")
                    except OSError:
                        break
                    sent += 1
                self.close_connection = True

            do_GET = do_POST = _trickle

        return Handler

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        super().__exit__(*exc)


@pytest.mark.parametrize("via", ["webhook", "web-api"])
def test_a_slack_that_trickles_its_answer_is_given_up_within_the_budget(monkeypatch, caplog, via):
    budget = 3.0
    with Trickle() as trickle:
        if via == "webhook":
            monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{trickle.url}/services/T0/B0/{'x' * 24}")
        else:
            monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
            monkeypatch.setenv("SLACK_CHANNEL", "#c")
            monkeypatch.setenv("SLACK_API_BASE_URL", trickle.url + "/api/")
        posted, elapsed = bounded(
            lambda: notify(context(), budget=budget, store=MemoryStore()), 3 * budget
        )
    assert posted is False and trickle.requests >= 1
    assert elapsed < 3 * budget
    gave_up = [r for r in caplog.records if "gave up posting after" in r.getMessage()]
    assert len(gave_up) == 1 and gave_up[0].levelno == logging.WARNING


# --- 18: a damaged incident record ----------------------------------------------------------------


class FakeVariable:
    """Airflow's Variable API over a dict."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: str, description: str = "") -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


VALID = {
    "dag_id": "databricks_etl",
    "task_id": "run_job",
    "map_index": -1,
    "run_id": "manual__2026-11-23",
    "state": "retry",
    "channel": "C1",
    "ts": "1700000000.000001",
    "opened": 1.0e12,
    "updates": 0,
}


@pytest.mark.parametrize(
    "record",
    [
        json.dumps({**VALID, "opened": None}),
        json.dumps({**VALID, "opened": "yesterday"}),
        json.dumps({**VALID, "ts": 1700000000.000001}),
        json.dumps({**VALID, "map_index": True}),
        json.dumps([VALID]),
        "{not json",
    ],
    ids=["opened-null", "opened-text", "ts-number", "map-index-bool", "a-list", "not-json"],
)
def test_a_damaged_incident_record_is_treated_as_absent(bot, monkeypatch, caplog, record):
    variables: dict[str, str] = {}
    monkeypatch.setattr(incidents, "_variable", lambda: FakeVariable(variables))
    key = incidents.key_of("databricks_etl", "manual__2026-11-23", "run_job", -1)
    variables[key] = record
    assert notify(context(), "retry", store=incidents.VariableStore()) is True
    (message,) = bot.messages
    assert "thread_ts" not in message  # a new incident, not a reply into a thread
    assert any("damaged" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    saved = incidents.parse(variables[key])  # the damaged record is replaced by a sound one
    assert saved is not None and saved.ts == message["ts"]


def test_a_sound_incident_record_still_threads(bot, monkeypatch):
    variables: dict[str, str] = {}
    monkeypatch.setattr(incidents, "_variable", lambda: FakeVariable(variables))
    store = incidents.VariableStore()
    assert notify(context(FakeTI(try_number=1)), "retry", store=store) is True
    assert notify(context(FakeTI(try_number=2)), "failure", store=store) is True
    assert bot.messages[1]["thread_ts"] == bot.messages[0]["ts"]


# --- 19: enrichment that stalls -------------------------------------------------------------------


def test_an_entra_id_that_never_answers_costs_the_enrichment_deadline_only(
    tmp_path: Path, slack, monkeypatch, caplog
):
    """Environment credentials (a service principal): the token request is accepted and never
    answered; the alert goes without the Databricks details, within the budget."""
    caplog.set_level(logging.INFO, logger="airflow_callbacks")
    released = threading.Event()
    budget = 4.0
    with FakeAAD(tmp_path, SECRET, on_token=lambda token: released.wait(60)) as aad:
        for name, value in exporter_env("http://127.0.0.1:9", aad).items():
            monkeypatch.setenv(name, value)
        posted, elapsed = bounded(
            lambda: notify(context(), budget=budget, store=MemoryStore()), 3 * budget
        )
        released.set()
    assert posted is True and len(slack.messages) == 1
    assert elapsed < budget
    assert aad.token_requests, "the token request should have reached the fake Entra ID"
    assert "Databricks run details skipped: no answer within 2s" in caplog.text


def test_a_databricks_connection_that_trickles_costs_the_enrichment_deadline_only(
    slack, monkeypatch
):
    """The task's own connection through DatabricksHook: its timeout bounds each read only."""
    pytest.importorskip("airflow.providers.databricks")
    budget = 4.0
    with Trickle() as databricks:
        monkeypatch.setenv(
            "AIRFLOW_CONN_DBX_SLOW",
            json.dumps(
                {
                    "conn_type": "databricks",
                    "host": "127.0.0.1",
                    "port": databricks.port,
                    "schema": "http",
                    "password": "dapi" + "0" * 32,
                }
            ),
        )
        task = SimpleNamespace(
            owner="o", retries=0, task_id="run_job", databricks_conn_id="dbx_slow"
        )
        ctx = context(task=task)
        posted, elapsed = bounded(
            lambda: notify(ctx, budget=budget, store=MemoryStore()), 3 * budget
        )
    assert posted is True and len(slack.messages) == 1
    assert elapsed < budget and databricks.requests == 1


# --- 20: secrets in the text of a message ---------------------------------------------------------

PAT = "dapi" + "0123456789abcdef" * 2
HOOK_SECRET = "a1B2c3D4e5F6g7H8i9J0k1L2"
HOOK = f"https://hooks.slack.com/services/T0123ABCD/B0456EFGH/{HOOK_SECRET}"
XOXB_SECRET = "AbCdEfGhIjKlMnOpQrStUvWx"
XOXB = f"xoxb-1234567890-0987654321-{XOXB_SECRET}"


@pytest.mark.parametrize("via", ["webhook", "web-api"])
def test_secrets_in_the_exception_text_never_reach_the_channel(monkeypatch, via):
    with FakeSlack() as server:
        if via == "webhook":
            monkeypatch.setenv("SLACK_WEBHOOK_URL", server.webhook_url)
        else:
            monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
            monkeypatch.setenv("SLACK_CHANNEL", "#c")
            monkeypatch.setenv("SLACK_API_BASE_URL", server.api_base)
        exc = PermissionError(f"denied with {PAT}; posting to {HOOK} as {XOXB} failed")
        assert notify(context(exception=exc), store=MemoryStore()) is True
        body = json.dumps(server.messages)
    assert "PermissionError: denied with ***; posting to" in body
    for secret in (PAT, PAT[4:], HOOK_SECRET, XOXB_SECRET, "T0123ABCD/B0456EFGH"):
        assert secret not in body, secret


def test_a_secret_at_the_cut_of_a_long_error_is_redacted_before_the_cut(slack):
    """Cut first, and a PAT's first characters would remain: redaction comes before the cut."""
    prefix = "x" * (ERROR_LIMIT - len("RuntimeError: ") - 16)
    exc = RuntimeError(prefix + PAT)
    assert notify(context(exception=exc), store=MemoryStore()) is True
    body = text_of(slack.messages[0])
    assert "dapi0123456" not in body and "xxx***" in body


def test_configured_secrets_and_secrets_in_urls_are_redacted_everywhere(slack, monkeypatch):
    """Secrets without a known shape, from the settings: DATABRICKS_TOKEN, the webhook URL."""
    monkeypatch.setenv("DATABRICKS_TOKEN", "shapeless-configured-42")
    ti = FakeTI({("run_page_url", -1): "https://adb-1.2.azuredatabricks.net/?o=1#job/7/run/42"})
    ti.log_url = "https://airflow.contoso.com/log?try_number=1&token=tok-in-the-url-0042"
    exc = RuntimeError(
        f"token shapeless-configured-42 rejected; webhook {slack.webhook_url}; "
        "db postgresql://airflow:hunter2hunter2@db:5432/airflow"
    )
    assert notify(context(ti, exception=exc), store=MemoryStore()) is True
    body = text_of(slack.messages[0])
    for secret in ("shapeless-configured-42", "XXXXSECRET", "hunter2hunter2", "tok-in-the-url"):
        assert secret not in body, secret
    assert "&token=***" in body and "postgresql://***@db:5432" in body
    assert "https://adb-1.2.azuredatabricks.net/?o=1#job/7/run/42" in body  # links survive


def test_the_databricks_connections_token_is_redacted_when_known(make_sim, slack, monkeypatch):
    """The run details came through the task's connection: its password is known, and redacted
    wherever it appears (here a shapeless token quoted by the exception)."""
    pytest.importorskip("airflow.providers.databricks")
    server = make_sim(fail_rate=0.9, multi_task_rate=1.0, history_hours=0.2)
    assert server.token.startswith("dapi-sim-")  # not the shape of a PAT
    port = int(server.url.rsplit(":", 1)[1])
    conn = {"conn_type": "databricks", "host": "127.0.0.1", "port": port, "schema": "http"}
    monkeypatch.setenv("AIRFLOW_CONN_DBX_PROD", json.dumps({**conn, "password": server.token}))
    task = SimpleNamespace(owner="o", retries=0, task_id="run_job", databricks_conn_id="dbx_prod")
    ti = FakeTI({("run_id", -1): failed_sim_run(server)})
    exc = RuntimeError(f"Databricks said 401 for token {server.token}")
    assert notify(context(ti, exception=exc, task=task), store=MemoryStore()) is True
    body = text_of(slack.messages[0])
    assert "Failed task" in body  # the details came through the connection
    assert server.token not in body and "for token ***" in body
