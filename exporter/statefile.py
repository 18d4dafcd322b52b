"""``--state-file``: the ledgers of all workspaces, written atomically after each collection.

A restart with the same file continues from the persisted watermark with the persisted
counters, so it neither loses nor double-counts runs. A missing, corrupt or foreign file gives
a warning and a fresh baseline, never a crash.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from exporter.health import Histogram
from exporter.state import OTHER_JOB, RUN_DURATION_BUCKETS, Run, RunLedger, TaskResult

log = logging.getLogger(__name__)

FORMAT = "databricks-jobs-exporter/state/v1"


def ledger_to_dict(ledger: RunLedger) -> dict[str, Any]:
    return {
        "baseline_ms": ledger.baseline_ms,
        "watermark_ms": ledger.watermark_ms,
        "overlap_ms": ledger.overlap_ms,
        "seen": [[run_id, start] for run_id, start in ledger.seen.items()],
        "active": [asdict(run) for run in ledger.active.values()],
        "runs_total": [[*key, n] for key, n in ledger.runs_total.items()],
        "tasks_total": [[*key, n] for key, n in ledger.tasks_total.items()],
        "durations": [
            [job_id, job_name, h.counts, h.total, h.count]
            for (job_id, job_name), h in ledger.durations.items()
        ],
        "last_runs": [asdict(run) for run in ledger.last_runs.values()],
        "last_success_ms": ledger.last_success_ms,
    }


def _run(data: dict[str, Any]) -> Run:
    tasks = tuple(TaskResult(**t) for t in data.pop("tasks", ()))
    return Run(**data, tasks=tasks)


def ledger_from_dict(data: dict[str, Any]) -> RunLedger:
    ledger = RunLedger(
        baseline_ms=int(data["baseline_ms"]),
        watermark_ms=int(data["watermark_ms"]),
        overlap_ms=int(data["overlap_ms"]),
    )
    ledger.seen = {run_id: int(start) for run_id, start in data["seen"]}
    ledger.active = {run.run_id: run for run in map(_run, data["active"])}
    ledger.runs_total = Counter({tuple(row[:3]): int(row[3]) for row in data["runs_total"]})
    ledger.tasks_total = Counter({tuple(row[:4]): int(row[4]) for row in data["tasks_total"]})
    ledger.durations = {
        (job_id, name): Histogram(RUN_DURATION_BUCKETS, list(counts), float(total), int(count))
        for job_id, name, counts, total, count in data["durations"]
    }
    ledger.last_runs = {run.job_id: run for run in map(_run, data["last_runs"])}
    ledger.last_success_ms = {k: int(v) for k, v in data["last_success_ms"].items()}
    ledger.known_jobs = {job_id for job_id in ledger.last_runs if job_id != OTHER_JOB}
    ledger.known_jobs |= {job_id for job_id, _, _ in ledger.runs_total if job_id != OTHER_JOB}
    return ledger


class StateFile:
    """Loads once at startup; ``save`` rewrites the whole file (temp + fsync + rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._workspaces: dict[str, dict[str, Any]] = {}
        self._loaded = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            log.info("state file %s does not exist yet; starting a fresh baseline", self.path)
            return {}
        except (OSError, ValueError) as exc:
            log.warning(
                "state file %s is unreadable (%s); starting a fresh baseline", self.path, exc
            )
            return {}
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            log.warning(
                "state file %s is not an exporter state file; starting a fresh baseline", self.path
            )
            return {}
        workspaces = doc.get("workspaces")
        return workspaces if isinstance(workspaces, dict) else {}

    def restore(self, workspace: str, host: str) -> RunLedger | None:
        """The persisted ledger of a workspace, or None (with a warning when it is unusable)."""
        entry = self._loaded.get(workspace)
        if entry is None:
            return None
        if entry.get("host") != host:
            log.warning(
                "state file: workspace %s was saved for another host; fresh baseline", workspace
            )
            return None
        try:
            ledger = ledger_from_dict(dict(entry["ledger"]))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning(
                "state file: workspace %s has a damaged entry (%s); fresh baseline", workspace, exc
            )
            return None
        log.info(
            "workspace %s: restored %d counted runs from %s",
            workspace,
            sum(ledger.runs_total.values()),
            self.path,
        )
        return ledger

    def save(self, workspace: str, host: str, ledger: RunLedger) -> None:
        entry = {"host": host, "ledger": ledger_to_dict(ledger)}
        with self._lock:
            self._workspaces[workspace] = entry
            doc = {"format": FORMAT, "workspaces": {**self._loaded, **self._workspaces}}
            data = json.dumps(doc, separators=(",", ":")).encode()
            directory = self.path.parent
            fd, tmp = tempfile.mkstemp(prefix=".state-", dir=directory)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
                dir_fd = os.open(directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
