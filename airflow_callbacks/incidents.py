"""Open incidents: which task instances failed a try and have not recovered, and their Slack thread.

The record lives in Airflow itself, as an Airflow Variable per task instance
(``airflow_callbacks.incident.<hash>``, JSON: dag, task, map index, DAG run, state, Slack channel
and thread ts, the last error's line, redacted), so it survives a worker restart between tries and
is shared by every worker. It is written by the first failed try, updated by later tries, and
deleted on recovery. A task instance that failed for good keeps its record until it recovers
(cleared and re-run), so the recovery replies in the same thread; records older than
``MAX_AGE_DAYS`` count as closed.

Every operation is best effort: a store that cannot be reached answers ``None`` / ``False``, and
the callbacks fall back to one plain message per event.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import MISSING, asdict, dataclass
from typing import Any, Protocol

log = logging.getLogger("airflow_callbacks")

PREFIX = "airflow_callbacks.incident."
MAX_AGE_DAYS = 7


@dataclass
class Incident:
    dag_id: str
    task_id: str
    map_index: int
    run_id: str
    state: str  # the last event: "retry", "failure"
    channel: str = ""  # the Slack thread, when delivered with the Web API
    ts: str = ""
    opened: float = 0.0
    updates: int = 0
    error: str = ""  # digest of the error the thread last showed (error_digest)
    last_error: str = ""  # that error's line, redacted and cut, for the recovered parent


_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float)}


def parse(raw: Any) -> Incident | None:
    """The Incident a stored JSON text describes; None unless every field has its type (a
    record edited by hand, or written by another version, must not break the callback)."""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    values: dict[str, Any] = {}
    for name, spec in Incident.__dataclass_fields__.items():
        if name not in data:
            if spec.default is MISSING:
                return None
            continue
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, _TYPES[str(spec.type)]):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return None
        values[name] = value
    return Incident(**values)


def key_of(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """A Variable key within Airflow's 250 characters for any ids."""
    digest = hashlib.sha256(f"{dag_id}\0{run_id}\0{task_id}\0{map_index}".encode()).hexdigest()
    return PREFIX + digest[:32]


class Store(Protocol):
    def load(self, key: str) -> Incident | None: ...
    def save(self, key: str, incident: Incident) -> bool: ...
    def close(self, key: str) -> bool: ...


def _variable() -> Any:
    try:
        from airflow.sdk import Variable  # Airflow 3: through the task's execution API
    except ImportError:
        from airflow.models import Variable  # type: ignore[no-redef]  # Airflow 2: the database
    return Variable


class VariableStore:
    """Incidents as Airflow Variables."""

    @staticmethod
    def _failed(what: str, exc: Exception) -> None:
        log.debug("Incident record %s failed: %s", what, type(exc).__name__)

    def load(self, key: str) -> Incident | None:
        try:
            raw = _variable().get(key, None)  # positional: `default` on 3, `default_var` on 2
        except Exception as exc:
            self._failed("read", exc)
            return None
        if raw is None:
            return None
        incident = parse(raw)
        if incident is None:
            log.warning("Incident record %s is damaged; treated as absent (a new incident)", key)
            return None
        if time.time() - incident.opened > MAX_AGE_DAYS * 86400:
            return None
        return incident

    def save(self, key: str, incident: Incident) -> bool:
        try:
            _variable().set(
                key,
                json.dumps(asdict(incident)),
                description="Open Slack incident of airflow_callbacks (deleted on recovery)",
            )
            return True
        except Exception as exc:
            self._failed("write", exc)
            return False

    def close(self, key: str) -> bool:
        try:
            _variable().delete(key)
            return True
        except Exception as exc:
            self._failed("delete", exc)
            return False


class MemoryStore:
    """For tests and for running the callbacks without Airflow."""

    def __init__(self) -> None:
        self.records: dict[str, Incident] = {}

    def load(self, key: str) -> Incident | None:
        return self.records.get(key)

    def save(self, key: str, incident: Incident) -> bool:
        self.records[key] = incident
        return True

    def close(self, key: str) -> bool:
        self.records.pop(key, None)
        return True


def metadata(facts: Any, kind: str) -> dict[str, Any]:
    """Slack message metadata on an incident's first message, for apps that read the channel."""
    return {
        "event_type": "airflow_task_incident",
        "event_payload": {
            "dag_id": facts.dag_id,
            "run_id": facts.run_id,
            "task_id": facts.task_id,
            "map_index": facts.map_index,
            "state": kind,
        },
    }


def default_store() -> Store:
    """Airflow Variables where Airflow is installed; else this process's memory."""
    try:
        import airflow  # noqa: F401
    except ImportError:
        return _MEMORY
    return VariableStore()


_MEMORY = MemoryStore()
