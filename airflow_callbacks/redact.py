"""Secrets out of Slack messages: known secret shapes, and the secrets this process is given.

The exception text, Databricks' state message, log URLs: anything a task or a service wrote can
carry a token. Every text goes through ``Redactor`` before it is cut to Slack's limits (a cut
secret no longer matches) and the whole payload once more just before it is sent.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

MASK = "***"
MIN_SECRET = 8  # a configured "secret" shorter than this would mask ordinary words

# Names of settings whose value is a secret, in key=value / key: value / conf.set("key", "v"),
# with any prefix ("DB_PASSWORD", "refresh_token", "aws_secret_access_key", "spark.x.token").
_KEYS = (
    r"(?:[A-Za-z0-9]+[_.-])*"
    r"(?:password|passwd|pwd|secret|client_secret|secret_access_key|access_key|token"
    r"|access_token|refresh_token|api[_-]?key|accountkey|sharedaccesskey|sas_token|sig"
    r"|account\.key(?:\.[A-Za-z0-9-]+)*)"
)
_NOT_AFTER = r"(?<![A-Za-z0-9])"  # a name starts here, not inside a word

# (pattern, replacement): the part that names the secret's kind stays readable.
_SHAPES = [
    (re.compile(p), r)
    for p, r in (
        (r"xox[abeoprs]-[A-Za-z0-9-]{8,}|xapp-[A-Za-z0-9-]{8,}", MASK),  # Slack tokens
        (r"(/services/)[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/[A-Za-z0-9_-]{8,}", r"\1" + MASK),  # webhooks
        (r"dapi[0-9a-f]{32}(?:-\d+)?", MASK),  # Databricks personal access tokens
        (r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*", MASK),  # JWTs (Entra ID)
        (r"\bAKIA[0-9A-Z]{16}\b", MASK),  # AWS access key ids
        (r"\bgh[pousr]_[A-Za-z0-9]{36,}", MASK),  # GitHub tokens
        (r"\bAIza[0-9A-Za-z_-]{35}", MASK),  # Google API keys
        # user:password@ in a URL; the password may hold '@' (up to the last one before the
        # host), the user part is a plain name (not "host:1433;user=sa" of a JDBC URL)
        (r"(://)[^/\s:@<>|;=]+:[^/\s<>|;]+@", r"\1" + MASK + "@"),
        (
            r"(?i)([?&](?:sig|code|token|access_token|client_secret|password)=)[^&\s<>|]+",
            r"\1" + MASK,
        ),
        (r"(?i)((?<![A-Za-z0-9_])sig=)[^&\s<>|]+", r"\1" + MASK),  # SAS signature anywhere
        (r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}", r"\1" + MASK),
        (r"(?i)(authorization[\"']?\s*[=:]\s*[\"']?basic\s+)[A-Za-z0-9+/=]{8,}", r"\1" + MASK),
        # conf.set("fs.azure.account.key.<account>...", "value") and friends
        (
            rf"(?i)({_NOT_AFTER}{_KEYS}[^\"'\s]*[\"']\s*,\s*[\"'])[^\"']{{3,}}",
            r"\1" + MASK,
        ),
        # key="quoted value with spaces" / key: 'value'
        (rf"(?i)({_NOT_AFTER}{_KEYS}[\"']?\s*[=:]\s*\")[^\"]{{3,}}(?=\")", r"\1" + MASK),
        (rf"(?i)({_NOT_AFTER}{_KEYS}[\"']?\s*[=:]\s*')[^']{{3,}}(?=')", r"\1" + MASK),
        # key=value and key: value in traces and logs (JDBC URLs, configs, printed dicts)
        (
            rf"(?i)({_NOT_AFTER}{_KEYS}[\"']?\s*[=:]\s*[\"']?)(?!\*\*\*)[^\s\"'&;,)}}\]]{{3,}}",
            r"\1" + MASK,
        ),
    )
]

SECRET_SETTINGS = (
    "SLACK_WEBHOOK_URL",
    "SLACK_BOT_TOKEN",
    "DATABRICKS_TOKEN",
    "AZURE_CLIENT_SECRET",
)


def forms(secret: str) -> set[str]:
    """A secret and the forms it is echoed in: URL-quoted, and a URL's path alone."""
    found = {secret, quote(secret, safe=""), quote(secret)}
    if "://" in secret:
        path = urlsplit(secret).path
        found |= {path, path.lstrip("/"), quote(path, safe="")}
    return {f for f in found if len(f) >= MIN_SECRET}


class Redactor:
    """``redactor(text)``: known secret shapes and the given secrets (and those set in ``env``
    under SECRET_SETTINGS) replaced by ``***``."""

    def __init__(self, secrets: Iterable[str] = (), env: Mapping[str, str] | None = None) -> None:
        values = list(secrets)
        if env is not None:
            values += [env.get(name, "") for name in SECRET_SETTINGS]
        found = {form for value in values if value for form in forms(value.strip())}
        self.secrets = sorted(found, key=len, reverse=True)  # a URL before its path

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        for pattern, replacement in _SHAPES:
            text = pattern.sub(replacement, text)
        return text

    def payload(self, value: Any) -> Any:
        """Every string in a JSON-like message (text, blocks, metadata), redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {k: self.payload(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.payload(v) for v in value]
        return value


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message through a ``Redactor`` holding every
    secret given to ``add`` (slack-sdk logs the webhook URL and request bodies at DEBUG)."""

    _shared: RedactingFilter | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self.redactor = Redactor()

    @classmethod
    def shared(cls) -> RedactingFilter:
        """The process-wide filter of the ``airflow_callbacks`` logger."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def add(self, *secrets: str) -> None:
        new = {s for s in secrets if s} - self._secrets
        if new:
            with self._lock:
                self._secrets |= new
                self.redactor = Redactor(self._secrets)

    def redact(self, text: str) -> str:
        return self.redactor(text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string must not kill logging
            return True
        clean = self.redactor(message)
        if record.exc_info and record.exc_info[1] is not None:
            clean += "\n" + self.redactor(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = clean, None
        return True


def filter_of(logger: logging.Logger) -> RedactingFilter:
    """The ``RedactingFilter`` on ``logger``, added the first time."""
    for existing in logger.filters:
        if isinstance(existing, RedactingFilter):
            return existing
    added = RedactingFilter.shared() if logger.name == "airflow_callbacks" else RedactingFilter()
    logger.addFilter(added)
    return added


def mask_in_airflow(secrets: Iterable[str]) -> None:
    """Hand the secrets to Airflow's own secrets masker, where there is one (task logs, the
    supervisor's log in Airflow 3), so that no log line Airflow writes shows them either."""
    values = [s for s in secrets if s and len(s) >= MIN_SECRET]
    if not values:
        return
    for module in (
        "airflow.sdk.log",  # Airflow 3.1+
        "airflow.sdk.execution_time.secrets_masker",  # Airflow 3.0
        "airflow.utils.log.secrets_masker",  # Airflow 2
    ):
        try:
            mask_secret = getattr(importlib.import_module(module), "mask_secret", None)
        except Exception:
            continue
        if mask_secret is None:
            continue
        for value in values:
            with contextlib.suppress(Exception):
                mask_secret(value)
        return
