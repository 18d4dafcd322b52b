"""The Slack message: Block Kit with a plain-text fallback, escaped and within Slack's limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any
from urllib.parse import urlsplit

from airflow_callbacks.context import TaskFacts, base_url_setting
from airflow_callbacks.redact import Redactor

SECTION_LIMIT = 3000  # characters of a section's text
FIELD_LIMIT = 2000  # characters of one section field
HEADER_LIMIT = 150  # characters of a header block
TEXT_LIMIT = 40_000  # characters of the top-level text
MAX_BLOCKS = 50
URL_LIMIT = 3000
ERROR_LIMIT = 2500  # leaves room for the code fence and the title in one section

KINDS = {
    "failure": (":red_circle:", "Failed"),
    "retry": (":large_orange_circle:", "Retrying"),
    "recovery": (":large_green_circle:", "Recovered"),
}
_ZW = "\u200b"


def escape(text: str) -> str:
    """Slack mrkdwn escaping: no mentions (<!channel>, <@U..>), no links, no @here/@channel."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for word in ("@channel", "@here", "@everyone"):
        text = text.replace(word, "@" + _ZW + word[1:])
    return text


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code(text: str) -> str:
    return "```" + text.replace("```", "`" + _ZW + "`" + _ZW + "`") + "```"


def _is_local(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "0.0.0.0", "::1") or host.startswith("127.")


def header_block(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": truncate(text, HEADER_LIMIT)}}


def fields_section(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """A section of at most 10 ``*label*`` / value fields, the values escaped."""
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": truncate(f"*{label}*\n{escape(value)}", FIELD_LIMIT)}
            for label, value in pairs[:10]
        ],
    }


def redacted(facts: TaskFacts, redact: Callable[[str], str]) -> TaskFacts:
    """``facts`` with every text passed through ``redact`` (before anything is cut)."""
    texts: dict[str, Any] = {}
    for f in fields(facts):
        value = getattr(facts, f.name)
        if isinstance(value, str):
            texts[f.name] = redact(value)
    return replace(facts, **texts)


def build(
    facts: TaskFacts,
    kind: str = "failure",
    details: list[str] | None = None,
    redact: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """``{"text": ..., "blocks": [...]}`` for chat.postMessage or an incoming webhook.

    Every text from the task and from Databricks goes through ``redact`` (known secret shapes
    when not given) first: an exception can quote a token, a URL can carry one."""
    redact = redact or Redactor()
    facts = redacted(facts, redact)
    details = [redact(d) for d in details or []]
    icon, verb = KINDS.get(kind, KINDS["failure"])
    title = f"{verb}: {facts.dag_id} · {facts.task_id}"
    if facts.map_index >= 0:
        title += f"[{facts.map_index}]"
    blocks: list[dict[str, Any]] = [header_block(f"{icon} {title}")]
    fields = [("DAG", facts.dag_id), ("Task", facts.task_id)]
    if facts.map_index >= 0:
        fields.append(("Map index", str(facts.map_index)))
    if facts.try_number is not None:
        of = f" of {facts.max_tries + 1}" if facts.max_tries is not None else ""
        fields.append(("Try", f"{facts.try_number}{of}"))
    if facts.logical_date:
        fields.append(("Logical date", facts.logical_date))
    if facts.run_id:
        fields.append(("DAG run", facts.run_id))
    if facts.owner:
        fields.append(("Owner", facts.owner))
    if facts.databricks_run_id:
        fields.append(("Databricks run", facts.databricks_run_id))
    blocks.append(fields_section(fields))
    error = ""
    if kind != "recovery" and (facts.exception_type or facts.exception_message):
        error = f"{facts.exception_type}: {facts.exception_message}".strip(": ")
        body = _code(escape(truncate(error, ERROR_LIMIT)))
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(f"*Error*\n{body}", SECTION_LIMIT)},
            }
        )
    buttons = []
    if facts.log_url:
        buttons.append(_button("Airflow log", facts.log_url, "airflow_log"))
    if facts.databricks_url:
        buttons.append(_button("Databricks run", facts.databricks_url, "databricks_run"))
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    notes = [escape(d) for d in details]
    if facts.log_url and _is_local(facts.log_url):
        notes.append(
            ":warning: The Airflow log URL points at localhost: "
            f"set `{base_url_setting()}` in airflow.cfg."
        )
    for note in notes:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": truncate(note, SECTION_LIMIT)}],
            }
        )
    text = f"{verb}: {facts.dag_id}.{facts.task_id}"
    if facts.try_number is not None:
        text += f" (try {facts.try_number})"
    if error:
        text += f": {truncate(error, 500)}"
    if facts.databricks_url:
        text += f" Databricks run: {facts.databricks_url}"
    return {"text": truncate(escape(text), TEXT_LIMIT), "blocks": blocks[:MAX_BLOCKS]}


def _button(label: str, url: str, action_id: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "url": url[:URL_LIMIT],
        "action_id": action_id,
    }
