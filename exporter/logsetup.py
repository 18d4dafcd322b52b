"""Logging as Prometheus exporters log: logfmt (the default) or JSON lines on stderr.

Each line carries ``time``, ``level``, ``logger`` and ``msg``, and ``workspace``, ``collector``
and ``endpoint`` where they apply: a collection sets the first two for everything logged while
it runs (``log_context``), the API client the third for the request in flight. The fields live
in context variables, which are per thread, so the scheduler's worker threads never see each
other's. Secrets are redacted where each record is made (``RedactingFilter``), before either
formatter sees it, so both formats and every library's records are clean.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone

from exporter.redact import RedactingFilter

LOG_FORMATS = ("logfmt", "json")
FIELDS = ("workspace", "collector", "endpoint")
# slog's level names (what promslog prints, what Loki and Vector recognise).
_LEVELS = {"WARNING": "WARN", "CRITICAL": "ERROR", "FATAL": "ERROR"}

_NONE: dict[str, str] = {}  # never changed: log_context sets a new dict
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_fields")


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Add fields to every line logged by this thread until the block ends."""
    token = _context.set({**_context.get(_NONE), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, str]:
    """time, level, logger, the context fields, msg (already redacted and with its traceback)."""
    when = datetime.fromtimestamp(record.created, timezone.utc)
    out = {
        "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "level": _LEVELS.get(record.levelname, record.levelname),
        "logger": record.name,
    }
    context = _context.get(_NONE)
    for name in FIELDS:
        value = getattr(record, name, None) or context.get(name)
        if value:
            out[name] = str(value)
    out["msg"] = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:  # a record made before redaction
        out["msg"] += "\n" + RedactingFilter.instance().redact(
            logging.Formatter().formatException(record.exc_info)
        )
    return out


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _logfmt_value(value: str) -> str:
    """go-logfmt's rules: bare when it can be, else quoted, with backslash, quote, newline,
    CR and tab escaped and other control characters (ESC, NUL, U+2028) as u-escapes."""
    if value and value != "null" and value.isprintable() and not any(c in value for c in ' ="\\'):
        return value
    out = []
    for c in value:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif not c.isprintable() or 0xD800 <= ord(c) <= 0xDFFF:
            out.append(f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


class LogfmtFormatter(logging.Formatter):
    """``time=... level=INFO logger=exporter workspace=prod msg="..."`` (go-logfmt's quoting)."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line, the same fields as logfmt."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record))  # \\u escapes: valid UTF-8 whatever the text


def configure_logging(level: str, fmt: str = "logfmt", secrets: Sequence[str] = ()) -> None:
    """Log to stderr in ``fmt``, with every known secret redacted from every record (of any
    logger, for any handler: records are rewritten where they are made)."""
    RedactingFilter.instance(secrets).rewrite_every_record()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet = logging.WARNING if level != "DEBUG" else logging.NOTSET
    # APScheduler logs every job execution at INFO; that is noise at our default level.
    logging.getLogger("apscheduler").setLevel(quiet)
    logging.getLogger("azure").setLevel(quiet)
