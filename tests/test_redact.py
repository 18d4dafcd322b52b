"""Secrets are rewritten in every log record, whichever logger and handler sees it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from exporter.cli import configure_logging
from exporter.redact import RedactingFilter

SECRET = "dapi-not-a-real-token-0123456789"
LATER = "eyJ0eXAiOiJKV1QiLCJhbGciOi.late-token"


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter().format(record))


@pytest.fixture
def library_handler() -> Iterator[Keep]:
    """A handler a library installed on its own logger, before the exporter configured logging."""
    factory, root = logging.getLogRecordFactory(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    keep = Keep()
    lib = logging.getLogger("urllib3.connectionpool")
    lib.addHandler(keep)
    try:
        yield keep
    finally:
        lib.removeHandler(keep)
        logging.setLogRecordFactory(factory)
        root.handlers[:], root.level = handlers, level


def test_a_libraries_own_handler_never_sees_a_secret(library_handler: Keep):
    configure_logging("DEBUG", secrets=[SECRET])
    configure_logging("DEBUG", secrets=[SECRET])  # twice: one rewrite, not a chain
    RedactingFilter.instance().add(LATER)  # a token acquired at run time
    lib = logging.getLogger("urllib3.connectionpool")
    lib.debug("GET /api?token=%s Authorization: Bearer %s", SECRET, LATER)
    try:
        raise RuntimeError(f"refused {SECRET}")
    except RuntimeError:
        lib.exception("request failed")
    text = "\n".join(library_handler.lines)
    assert len(library_handler.lines) == 2
    assert SECRET not in text and LATER not in text
    assert "GET /api?token=*** Authorization: Bearer ***" in text
    assert "RuntimeError: refused ***" in text  # the traceback is kept, cleaned
    assert getattr(logging.getLogRecordFactory(), "redacting", None) is RedactingFilter.instance()
