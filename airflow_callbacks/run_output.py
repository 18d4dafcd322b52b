"""The failing task's own error, from one ``runs/get-output`` answer, cut to what matters.

The answer (Jobs API 2.2 ``RunOutput``) has ``error`` (one line), ``error_trace`` (the stack trace,
for notebooks with ANSI colour escapes), ``logs`` (stdout/stderr of Python, JAR and wheel tasks,
up to the last 5 MB), ``notebook_output.result`` (what ``dbutils.notebook.exit()`` returned) and
``metadata`` (the run). ``excerpt`` keeps the exception line and the frames nearest to it:
for a Python trace the frames above the last exception line, for a JVM trace the ``at ...`` frames
under the last ``Caused by`` (the root cause). Every text is redacted (the given ``redact``) after
the escapes are stripped and before anything is cut, so that a cut secret cannot survive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

TAIL_CHARS = 64 * 1024  # of a trace or of logs read at all (a 5 MB log is cut to its tail first)
MAX_LINES = 12  # of the trace excerpt
FRAMES_BEFORE = 6  # Python: frames above the exception line
FRAMES_AFTER = 4  # JVM: "at ..." frames under it
LINE_LIMIT = 240  # characters of one trace line
TRACE_LIMIT = 1800  # characters of the whole excerpt (a Slack section holds 3000)
ERROR_LIMIT = 500
RESULT_LIMIT = 500

# CSI (colours, cursor), OSC (titles, links) and single-character escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# An exception line at the start of a line: "ValueError: x", "java.io.IOException: x",
# "Caused by: org.apache.spark.SparkException: x", "py4j.protocol.Py4JJavaError: ...".
_EXCEPTION = re.compile(
    r"^(?:Caused by: )?(?:[A-Za-z_][\w$]*\.)*(?:[A-Za-z_][\w$]*)?"
    r"(?:Error|Exception|Exit|Failure|Interrupt|Throwable|Warning)\b(?::|$)"
)
_JVM_FRAME = re.compile(r"^\s+(?:at |\.\.\. \d+ more)")
# The user's own code in a Databricks trace: a notebook cell, a workspace or repo file (the
# frames under /databricks/ and site-packages are Spark's and the libraries').
_USER_FRAME = re.compile(r'^(?:File\s+"?<command-\d+>|Cell In\[|File\s+"?/(?:Workspace|Repos)/)')
_ARROW = re.compile(r"^-+>")
_FRAME = re.compile(r"^(?:File\s|Cell In\[)")
_RULE = re.compile(r"^[-=_~]{8,}$")


@dataclass(frozen=True)
class TaskError:
    """What one failed task's output says; empty strings and an empty trace when it says nothing."""

    task_key: str = ""
    error: str = ""
    trace: list[str] = field(default_factory=list)
    result: str = ""  # notebook_output.result
    result_truncated: bool = False
    source: str = ""  # "error_trace" or "logs": where the trace lines came from

    def __bool__(self) -> bool:
        return bool(self.error or self.trace or self.result)

    def text(self) -> str:
        """The error and its trace as one text (what a thread compares to see a new error)."""
        lines = [self.error] if self.error else []
        return "\n".join(lines + [line for line in self.trace if line.strip() != self.error])


def clean(text: str) -> str:
    """``text`` without ANSI escapes, carriage-return overwrites and other control characters."""
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    return _CONTROL.sub("", text.replace("\t", "    "))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tail(text: str) -> str:
    """The last ``TAIL_CHARS`` characters, from a line start (a partial first line is dropped)."""
    if len(text) <= TAIL_CHARS:
        return text
    return text[-TAIL_CHARS:].split("\n", 1)[-1]


def _head(text: str) -> str:
    """The first ``TAIL_CHARS`` characters, to a line end (a partial last line is dropped)."""
    if len(text) <= TAIL_CHARS:
        return text
    return text[:TAIL_CHARS].rsplit("\n", 1)[0]


def trace_lines(text: str) -> list[str]:
    """The lines of ``text`` (already cleaned and redacted) that explain the failure."""
    lines = [line.rstrip() for line in text.split("\n")]
    lines = [line for line in lines if line.strip() and not _RULE.match(line.strip())]
    if not lines:
        return []
    anchors = [i for i, line in enumerate(lines) if _EXCEPTION.match(line.strip())]
    if not anchors:
        picked = lines[-MAX_LINES:]
    else:
        at = anchors[-1]
        after: list[str] = []
        for line in lines[at + 1 :]:
            if not _JVM_FRAME.match(line) or len(after) == FRAMES_AFTER:
                break
            after.append(line)
        if after:  # a JVM trace: the cause and the frames under it
            picked = [lines[at], *after]
        else:  # a Python trace: the frames above the exception line
            start = at
            while start > 0 and at - start < FRAMES_BEFORE:
                if "Traceback (most recent call last)" in lines[start - 1]:
                    break
                if _EXCEPTION.match(lines[start - 1].strip()):
                    break  # the exception of an earlier trace ("During handling of ...")
                start -= 1
            picked = lines[start : at + 1]
            # PySpark raises from its own frames ("raise converted from None"): the user's
            # line (the notebook cell's ----> arrow) is kept above them, whatever is dropped.
            own = _user_frame(lines, at)
            if own and not any(line in picked for line in own):
                kept = MAX_LINES - len(own) - 1
                return _bounded([*own, "…", *picked[-kept:]], keep=len(own) + 1)
    return _bounded(picked[-MAX_LINES:])


def _user_frame(lines: list[str], at: int) -> list[str]:
    """The last frame of the user's own code above line ``at``: its header and arrow line."""
    for i in range(at - 1, -1, -1):
        if _USER_FRAME.match(lines[i].strip()):
            for j in range(i + 1, at):
                if _FRAME.match(lines[j].strip()):
                    break
                if _ARROW.match(lines[j].strip()):
                    return [lines[i], lines[j]]
            return [lines[i]]
    return []


def _bounded(picked: list[str], keep: int = 0) -> list[str]:
    """At most TRACE_LIMIT characters: the lines farthest from the exception line go first
    (after the ``keep`` lines at the top: the user's own frame), the exception line last."""
    picked = [_cut(line, LINE_LIMIT) for line in picked]
    while len(picked) > keep + 1 and sum(len(line) + 1 for line in picked) > TRACE_LIMIT:
        # The first line after the kept ones of a Python trace, the last frame of a JVM trace.
        anchor = next((i for i, ln in enumerate(picked) if _EXCEPTION.match(ln.strip())), -1)
        picked.pop(keep if anchor != keep else -1)
    return picked


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def excerpt(
    output: Any, task_key: str = "", redact: Callable[[str], str] | None = None
) -> TaskError:
    """The TaskError of a ``runs/get-output`` answer; an empty one for anything else."""
    if not isinstance(output, Mapping):
        return TaskError(task_key)
    redact = redact or (lambda text: text)

    def prepared(value: Any) -> str:
        return redact(clean(_tail(_text(value))))

    error = _cut(" ".join(prepared(output.get("error")).split()), ERROR_LIMIT)
    source, trace = "", []
    for name in ("error_trace", "logs"):
        lines = trace_lines(prepared(output.get(name)))
        if lines:
            source, trace = name, lines
            break
    notebook = output.get("notebook_output")
    result, truncated = "", False
    if isinstance(notebook, Mapping):
        result = _cut(redact(clean(_head(_text(notebook.get("result"))))), RESULT_LIMIT)
        truncated = notebook.get("truncated") is True
    return TaskError(task_key, error, trace, result.strip(), truncated, source)
