"""A logging filter that removes secrets from every record, including libraries' own logs."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
# Secrets whose shape is known wherever they come from: Slack tokens, Slack webhook paths,
# Databricks personal access tokens.
_SHAPES_RE = re.compile(
    r"xox[abeprs]-[A-Za-z0-9-]{8,}"
    r"|(?<=/services/)[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/[A-Za-z0-9_-]{8,}"
    r"|dapi[0-9a-f]{32}(?:-\d+)?"
)
_MASK = "***"


def secret_forms(value: str) -> list[str]:
    """A secret and the forms it can be echoed in: a URL's path and its quoted forms too."""
    forms = {value, quote(value, safe=""), quote(value)}
    # Escaped as a repr, a bytes repr or JSON would show it (an error quoting a header value).
    forms |= {
        value.encode("unicode_escape").decode("ascii"),
        repr(value.encode("utf-8", "backslashreplace"))[2:-1],
        json.dumps(value)[1:-1],
    }
    if "://" in value:
        path = urlsplit(value).path
        if len(path) > 1:
            forms |= {path, quote(path, safe=""), path.lstrip("/")}
    return sorted((f for f in forms if f), key=len, reverse=True)


def _forms(secrets: Iterable[str]) -> frozenset[str]:
    return frozenset(form for s in secrets if s for form in secret_forms(s) if len(form) >= 4)


class RedactingFilter(logging.Filter):
    """Replaces known secret values (and anything after 'Bearer ') with '***'.

    One process-wide instance: tokens acquired at run time are added with ``add`` so that
    even DEBUG output of urllib3, MSAL or azure-core cannot print them.
    """

    _instance: RedactingFilter | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        super().__init__()
        self._static: frozenset[str] = frozenset()  # configured secrets: kept for good
        self._rotating: dict[str, tuple[frozenset[str], frozenset[str]]] = {}  # (now, before)
        self._ordered: tuple[str, ...] = ()  # every form, longest first (a URL before its path)

    @classmethod
    def instance(cls, secrets: Iterable[str] = ()) -> RedactingFilter:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
        cls._instance.add(*secrets)
        return cls._instance

    def add(self, *secrets: str) -> None:
        """Secrets redacted for the life of the process (configured tokens and passwords)."""
        new = _forms(secrets)
        if new - self._static:
            with self._lock:
                self._static = self._static | new
                self._reorder()

    def rotate(self, key: str, secret: str) -> None:
        """A secret that replaces the one last given under ``key`` (an Entra ID token that was
        refreshed): the new one and the one before it are redacted, older ones forgotten, so
        the set stays as large as the number of credentials, not of tokens ever issued."""
        new = _forms([secret])
        with self._lock:
            current, _ = self._rotating.get(key, (frozenset(), frozenset()))
            if new == current:
                return
            self._rotating[key] = (new, current)
            self._reorder()

    def _reorder(self) -> None:
        every = set(self._static)
        for now, before in self._rotating.values():
            every |= now | before
        self._ordered = tuple(sorted(every, key=len, reverse=True))

    @property
    def size(self) -> int:
        """How many secret forms are redacted (bounded: see ``rotate``)."""
        return len(self._ordered)

    def redact(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, _MASK)
        text = _SHAPES_RE.sub(_MASK, text)
        return _BEARER_RE.sub(r"\1" + _MASK, text)

    def rewrite_every_record(self) -> None:
        """Redact each record where it is made, so every handler of every logger sees only the
        clean text: a library's own handler, or one added before ours, as much as ours (a
        handler's filter protects that handler only). Idempotent."""
        previous = logging.getLogRecordFactory()
        if getattr(previous, "redacting", None) is self:
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            self.filter(record)
            return record

        factory.redacting = self  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string must not kill logging
            return True
        clean = self.redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            clean_exc = self.redact(logging.Formatter().formatException(record.exc_info))
            clean = f"{clean}\n{clean_exc}"
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = clean, None
        return True


def redact(text: str) -> str:
    """Redact with the process-wide filter (for texts that do not go through logging)."""
    return RedactingFilter.instance().redact(text)
