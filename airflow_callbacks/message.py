"""The Slack message: Block Kit with a plain-text fallback, escaped and within Slack's limits."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any
from urllib.parse import urlsplit

from airflow_callbacks.context import TaskFacts, base_url_setting
from airflow_callbacks.enrich import FailedTask, RunDetails
from airflow_callbacks.redact import Redactor
from airflow_callbacks.run_output import TaskError

SECTION_LIMIT = 3000  # characters of a section's text
FIELD_LIMIT = 2000  # characters of one section field
HEADER_LIMIT = 150  # characters of a header block
TEXT_LIMIT = 40_000  # characters of the top-level text
MAX_BLOCKS = 50
URL_LIMIT = 3000
ERROR_LIMIT = 2500  # leaves room for the code fence and the title in one section
AIRFLOW_ERROR_LIMIT = 600  # Airflow's exception when the task's own error is shown too
REPLY_ERROR_LIMIT = 300  # the error line of a thread reply
MAX_RERUN = 20  # task keys named in the repair line
ACTIONS_LIMIT = 25  # elements of an actions block
RUN_PAGE = "Open the Databricks run"  # the run page link, in the Alertmanager template too

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


_ENTITY_TAIL = re.compile(r"&[a-z]{0,3}$")  # a cut inside &amp; &lt; &gt;


def _code(text: str, limit: int | None = None) -> str:
    """A code block of ``text`` (already escaped), at most ``limit`` characters with its fences:
    the backticks that would close it early are broken up first, then it is cut, so the
    fences stay whole whatever the text holds."""
    inner = text.replace("```", "`" + _ZW + "`" + _ZW + "`")
    if limit is not None and len(inner) > limit - 6:
        inner = _ENTITY_TAIL.sub("", inner[: max(limit - 7, 0)]) + "…"
    return "```" + inner + "```"


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


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}}


def _context(text: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}],
    }


def link(url: str, label: str) -> str:
    """A mrkdwn link whose URL cannot break out of it."""
    safe = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{safe[:URL_LIMIT]}|{label}>"


def task_error_section(
    error: TaskError, failed: FailedTask | None, redact: Callable[[str], str]
) -> dict[str, Any]:
    """``*Failed task* `ingest` (FAILED) · task run`` with the error and its trace (and the
    notebook's result), all within one section."""
    title = "*Failed task*"
    if error.task_key:
        title += f" `{escape(error.task_key)}`"
    if failed is not None:
        title += f" ({escape(failed.result_state)})"
    title = truncate(title, 300)
    if failed is not None and failed.run_page_url.startswith(("http://", "https://")):
        anchor = link(failed.run_page_url, "task run")
        if len(anchor) <= 400 - len(title) - 3:  # a link is whole or left out, never cut
            title += " · " + anchor
    parts = [title]
    # Cut after escaping (an escaped "&" is five characters) and after the backticks are
    # broken up (_code), so that the code fences stay whole.
    result = _code(escape(redact(error.result)), 1000) if error.result else ""
    body = escape(redact(error.text()))
    if body:
        room = max(200, ERROR_LIMIT - len(parts[0]) - len(result))
        parts.append(_code(body, room))
    if result:
        cut = " (truncated by Databricks)" if error.result_truncated else ""
        parts.append(f"*Notebook result*{cut}\n" + result)
    return _section("\n".join(parts))


def rerun_line(details: RunDetails, run_url: str) -> str:
    """What a repair of the run would re-run, beside the run page where it is repaired."""
    names = ", ".join(f"`{escape(name)}`" for name in details.rerun[:MAX_RERUN])
    if len(details.rerun) > MAX_RERUN:
        names += f" and {len(details.rerun) - MAX_RERUN} more"
    where = f" · {link(run_url, RUN_PAGE)}" if run_url else ""
    return f":wrench: *Repair* would re-run {names}{where}"


def build(
    facts: TaskFacts,
    kind: str = "failure",
    details: list[str] | None = None,
    redact: Callable[[str], str] | None = None,
    *,
    run: RunDetails | None = None,
    mention: str = "",
    links: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """``{"text": ..., "blocks": [...]}`` for chat.postMessage or an incoming webhook: the
    incident's facts (the parent message of a thread).

    ``run``: what Databricks said (failed tasks with their errors, what a repair re-runs);
    ``mention``: a Slack mention from the settings (the only text not escaped); ``links``:
    (label, URL) buttons after the Airflow log and the run page (Dashboard, Runbook).
    Every text from the task and from Databricks goes through ``redact`` (known secret shapes
    when not given) first: an exception can quote a token, a URL can carry one."""
    redact = redact or Redactor()
    run = run or RunDetails()
    if not facts.databricks_url and run.run_page_url:
        facts = replace(facts, databricks_url=run.run_page_url)
    facts = redacted(facts, redact)
    details = [redact(d) for d in [*run.lines, *(details or [])]]
    icon, verb = KINDS.get(kind, KINDS["failure"])
    title = f"{verb}: {facts.dag_id} · {facts.task_id}"
    if facts.map_index >= 0:
        title += f"[{facts.map_index}]"
    blocks: list[dict[str, Any]] = [header_block(f"{icon} {title}")]
    if mention:
        blocks.append(_context(f"cc {mention}"))
    fields = [("DAG", facts.dag_id), ("Task", facts.task_id)]
    if facts.map_index >= 0:
        fields.append(("Map index", str(facts.map_index)))
    if facts.try_number is not None:
        fields.append(("Try", try_of(facts)))
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
    errors = run.errors if kind != "recovery" else []
    if kind != "recovery" and (facts.exception_type or facts.exception_message):
        error = f"{facts.exception_type}: {facts.exception_message}".strip(": ")
        # With the task's own error below, Airflow's (which repeats it) is kept short.
        limit = AIRFLOW_ERROR_LIMIT if errors else ERROR_LIMIT
        body = _code(escape(error), limit)
        blocks.append(_section(f"*Error*\n{body}"))
    failed = {f.task_key: f for f in run.failed}
    for task_error in errors:
        blocks.append(task_error_section(task_error, failed.get(task_error.task_key), redact))
    shown = {e.task_key for e in errors}
    if kind != "recovery":
        for task in run.failed:
            if task.task_key not in shown:
                details.append(
                    redact(f"Failed task {task.task_key} ({task.result_state}) {task.run_page_url}")
                )
        if run.more_failed:
            details.append(f"... and {run.more_failed} more failed tasks")
    buttons = []
    if facts.log_url:
        buttons.append(_button("Airflow log", facts.log_url, "airflow_log"))
    if facts.databricks_url:
        buttons.append(_button(RUN_PAGE, facts.databricks_url, "databricks_run"))
    for label, url in links:
        buttons.append(_button(label, url, label.lower().replace(" ", "_")))
    if buttons:
        blocks.append({"type": "actions", "elements": buttons[:ACTIONS_LIMIT]})
    if kind != "recovery" and run.rerun:
        blocks.append(_context(rerun_line(run, facts.databricks_url)))
    notes = [escape(d) for d in details]
    if facts.log_url and _is_local(facts.log_url):
        notes.append(
            ":warning: The Airflow log URL points at localhost: "
            f"set `{base_url_setting()}` in airflow.cfg."
        )
    blocks.extend(_context(note) for note in notes)
    text = f"{verb}: {facts.dag_id}.{facts.task_id}"
    if facts.try_number is not None:
        text += f" (try {facts.try_number})"
    first = errors[0].error if errors and errors[0].error else error
    if first:
        text += f": {truncate(first, 500)}"
    if facts.databricks_url:
        text += f" Databricks run: {facts.databricks_url}"
    text = truncate(escape(text), TEXT_LIMIT - len(mention) - 1)
    return {"text": f"{mention} {text}" if mention else text, "blocks": blocks[:MAX_BLOCKS]}


def try_of(facts: TaskFacts) -> str:
    of = f" of {facts.max_tries + 1}" if facts.max_tries is not None else ""
    return f"{facts.try_number}{of}"


def error_line(facts: TaskFacts, run: RunDetails | None = None) -> str:
    """The one line a thread reply shows as the error: the failed task's own, else Airflow's."""
    for task_error in (run or RunDetails()).errors:
        line = task_error.error or (task_error.trace[-1] if task_error.trace else "")
        if line:
            return f"{task_error.task_key}: {line}" if task_error.task_key else line
    error = f"{facts.exception_type}: {facts.exception_message}".strip(": ")
    return error.strip().split("\n", 1)[0]


REPLIES = {
    "retry": "try {try_} failed, retrying",
    "failure": "try {try_} failed, no retries left",
    "recovery": "try {try_} succeeded",
}


def reply(
    facts: TaskFacts,
    kind: str,
    new_error: str = "",
    redact: Callable[[str], str] | None = None,
    mention: str = "",
) -> dict[str, Any]:
    """A thread reply: what changed only. One line (the state and the try), and the error in a
    code block when it differs from the one the thread last showed."""
    redact = redact or Redactor()
    facts = redacted(facts, redact)
    icon, verb = KINDS.get(kind, KINDS["failure"])
    try_ = try_of(facts) if facts.try_number is not None else "?"
    line = f"{icon} *{verb}* · " + REPLIES.get(kind, REPLIES["failure"]).format(try_=try_)
    if mention:
        line += f" · cc {mention}"
    text = f"{verb}: {facts.dag_id}.{facts.task_id} (try {try_})"
    if new_error:
        error = truncate(redact(new_error), REPLY_ERROR_LIMIT)
        line += "\n" + _code(escape(error))
        text += f": {error}"
    return {"text": truncate(escape(text), 500), "blocks": [_section(line)]}


def _button(label: str, url: str, action_id: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "url": url[:URL_LIMIT],
        "action_id": action_id,
    }
