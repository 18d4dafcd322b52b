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
from exporter.state import OTHER_JOB, RUN_DURATION_BUCKETS, Attempt, Run, RunLedger, TaskResult

log = logging.getLogger(__name__)

FORMAT = "databricks-jobs-exporter/state/v2"
FORMATS = ("databricks-jobs-exporter/state/v1", FORMAT)  # v1: before repairs and one-time runs


def _hists(hists: dict[Any, Histogram]) -> list[list[Any]]:
    return [[*key, list(h.bounds), h.counts, h.total, h.count] for key, h in hists.items()]


def _restore_hists(rows: list[list[Any]], key_len: int) -> dict[Any, Histogram]:
    out = {}
    for row in rows:
        key, rest = tuple(str(k) for k in row[:key_len]), row[key_len:]
        if len(rest) == 3:  # v1: no bounds saved, the buckets of that version
            rest = [RUN_DURATION_BUCKETS, *rest]
        bounds, counts, total, count = rest
        bounds = tuple(float(b) for b in bounds)
        if len(counts) != len(bounds):
            raise ValueError(f"histogram of {key} has {len(counts)} counts for {len(bounds)}")
        out[key] = Histogram(bounds, [int(c) for c in counts], float(total), int(count))
    return out


def ledger_to_dict(ledger: RunLedger) -> dict[str, Any]:
    return {
        "baseline_ms": ledger.baseline_ms,
        "watermark_ms": ledger.watermark_ms,
        "overlap_ms": ledger.overlap_ms,
        "seen": [[run_id, start, end] for run_id, (start, end) in ledger.seen.items()],
        "active": [asdict(run) for run in ledger.active.values()],
        "runs_total": [[*key, n] for key, n in ledger.runs_total.items()],
        "tasks_total": [[*key, n] for key, n in ledger.tasks_total.items()],
        "durations": _hists(ledger.durations),
        "last_runs": [asdict(run) for run in ledger.last_runs.values()],
        "last_success_ms": ledger.last_success_ms,
        "repairs_total": [[*key, n] for key, n in ledger.repairs_total.items()],
        "one_time_total": [[*key, n] for key, n in ledger.one_time_total.items()],
        "one_time_durations": _hists(ledger.one_time_durations),
        "one_time_names": sorted(ledger.known_one_time_names),
        "vanished_runs": ledger.vanished_runs,
        "skipped_runs": dict(ledger.skipped_runs),
    }


def _attempt(data: Any) -> Attempt | None:
    return Attempt(int(data["end_ms"]), str(data["result_state"])) if data else None


def _run(data: dict[str, Any]) -> Run:
    data = dict(data)
    tasks = tuple(TaskResult(**t) for t in data.pop("tasks", ()))
    original = _attempt(data.pop("original", None))
    repairs = tuple(a for a in map(_attempt, data.pop("repairs", ())) if a is not None)
    return Run(**data, tasks=tasks, original=original, repairs=repairs)


def _counter(rows: list[list[Any]], key_len: int) -> Counter[Any]:
    return Counter({tuple(str(k) for k in row[:key_len]): int(row[key_len]) for row in rows})


def ledger_from_dict(data: dict[str, Any]) -> RunLedger:
    """A ledger from a v2 entry, or from a v1 entry (which lacks the newer parts)."""
    ledger = RunLedger(
        baseline_ms=int(data["baseline_ms"]),
        watermark_ms=int(data["watermark_ms"]),
        overlap_ms=int(data["overlap_ms"]),
    )
    ledger.seen = {
        row[0]: (int(row[1]), int(row[2]) if len(row) > 2 else 0) for row in data["seen"]
    }
    ledger.active = {run.run_id: run for run in map(_run, data["active"])}
    ledger.runs_total = _counter(data["runs_total"], 3)
    ledger.tasks_total = _counter(data["tasks_total"], 4)
    ledger.durations = _restore_hists(data["durations"], 2)
    ledger.last_runs = {run.job_id: run for run in map(_run, data["last_runs"])}
    ledger.last_success_ms = {k: int(v) for k, v in data["last_success_ms"].items()}
    ledger.repairs_total = _counter(data.get("repairs_total", []), 3)
    ledger.one_time_total = _counter(data.get("one_time_total", []), 3)
    ledger.one_time_durations = _restore_hists(data.get("one_time_durations", []), 2)
    ledger.known_one_time_names = {str(n) for n in data.get("one_time_names", [])}
    ledger.vanished_runs = int(data.get("vanished_runs", 0))
    ledger.skipped_runs = Counter(
        {str(k): int(v) for k, v in dict(data.get("skipped_runs", {})).items()}
    )
    ledger.fresh = False
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
        if not isinstance(doc, dict) or doc.get("format") not in FORMATS:
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
