"""``--state-file``: the ledgers of all workspaces, written atomically after each collection.

A restart with the same file continues from the persisted watermark with the persisted
counters, so it neither loses nor double-counts runs. A missing, corrupt or foreign file gives
a warning and a fresh baseline, never a crash.

One process owns the file (``acquire``: an exclusive lock on ``<file>.lock``). A write that
fails (a full disk) renames the file to ``<file>.stale``: it no longer holds what /metrics
showed, and restoring its older counters would make them go backwards, which Prometheus reads
as a reset and counts the whole value again. A restart that finds only ``.stale`` starts a
fresh baseline instead (Prometheus sees one ordinary reset). Entries of workspaces no longer
configured are dropped, and a workspace renamed in the configuration keeps its entry when its
host is the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from exporter.health import Histogram
from exporter.poolusage import PoolUsage
from exporter.state import (
    OTHER_JOB,
    RUN_DURATION_BUCKETS,
    Attempt,
    Run,
    RunLedger,
    TaskResult,
    normalise_run_id,
)
from exporter.text import valid_text

log = logging.getLogger(__name__)

FORMAT = "databricks-jobs-exporter/state/v2"
# Far above any real state (a busy workspace's ledger is a few MB): a larger file is not ours.
MAX_STATE_BYTES_PER_WORKSPACE = 64 << 20
FUTURE_LIMIT_SECONDS = 366 * 86_400.0  # a saved time further ahead than this is not a time
_HEADER_RE = re.compile(rb'^\s*\{\s*"format"\s*:\s*"databricks-jobs-exporter/state/')
FORMATS = ("databricks-jobs-exporter/state/v1", FORMAT)  # v1: before repairs and one-time runs


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} is not an integer >= {minimum}: {str(value)[:40]!r}")
    return value


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} is not a finite number: {str(value)[:40]!r}")
    return float(value)


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not text: {str(value)[:40]!r}")
    return valid_text(value)  # a file written before text was made valid may hold a surrogate


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return value


def _run_id(value: Any, what: str) -> int | str:
    run_id = normalise_run_id(value)
    if run_id is None:
        raise ValueError(f"{what} is not a run id: {str(value)[:40]!r}")
    return run_id


_RUN_TYPES: dict[str, Any] = {
    "job_id": _str,
    "job_name": _str,
    "life_cycle_state": _str,
    "result_state": _str,
    "start_ms": _int,
    "end_ms": _int,
    "duration_seconds": _float,
    "run_page_url": _str,
    "run_type": _str,
    "trigger": _str,
    "queue_ms": _int,
    "uncounted_since": _int,
}
_RUN_FLAGS = ("end_reported", "more_tasks", "reopened", "inherited", "paused")


def _hists(hists: dict[Any, Histogram]) -> list[list[Any]]:
    return [[*key, list(h.bounds), h.counts, h.total, h.count] for key, h in hists.items()]


def _restore_hists(rows: Any, key_len: int) -> dict[Any, Histogram]:
    out = {}
    for row in _list(rows, "histograms"):
        row = _list(row, "histogram")
        key = tuple(_str(k, "histogram label") for k in row[:key_len])
        rest = row[key_len:]
        if len(rest) == 3:  # v1: no bounds saved, the buckets of that version
            rest = [list(RUN_DURATION_BUCKETS), *rest]
        if len(rest) != 4:
            raise ValueError(f"histogram of {key} has {len(rest)} parts, not 4")
        bounds = tuple(_float(b, "bucket bound") for b in _list(rest[0], "bounds"))
        counts = [_int(c, "bucket count") for c in _list(rest[1], "counts")]
        if not bounds or len(counts) != len(bounds) or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"histogram of {key}: {len(counts)} counts for {len(bounds)} bounds")
        count = _int(rest[3], "histogram count")
        if counts != sorted(counts) or counts[-1] > count:
            raise ValueError(f"histogram of {key} is not cumulative")
        out[key] = Histogram(bounds, counts, _float(rest[2], "histogram sum"), count)
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
        "backfill": [ledger.backfill_from_ms, ledger.backfill_to_ms],
        "pending": [list(window) for window in ledger.pending],
    }


def _attempt(data: Any) -> Attempt | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError("a repair history item is not an object")
    return Attempt(_int(data.get("end_ms"), "end_ms"), _str(data.get("result_state"), "result"))


def _run(data: Any) -> Run:
    """A Run from its saved form, every field checked (a wrong type would break /metrics)."""
    if not isinstance(data, dict):
        raise ValueError("a saved run is not an object")
    fields: dict[str, Any] = {"run_id": _run_id(data.get("run_id"), "run_id")}
    for key, check in _RUN_TYPES.items():
        if key in data:
            fields[key] = check(data[key], key)
        elif key not in ("run_type", "trigger", "queue_ms", "uncounted_since"):  # older files
            raise ValueError(f"a saved run lacks {key}")
    for flag in _RUN_FLAGS:
        if flag in data:
            if not isinstance(data[flag], bool):
                raise ValueError(f"{flag} is not true/false")
            fields[flag] = data[flag]
    tasks = []
    for task in _list(data.get("tasks", []), "tasks"):
        if not isinstance(task, dict):
            raise ValueError("a saved task is not an object")
        tasks.append(
            TaskResult(_str(task.get("task_key"), "task_key"), _str(task.get("result_state"), "r"))
        )
    repairs = [_attempt(a) for a in _list(data.get("repairs", []), "repairs")]
    return Run(
        **fields,
        tasks=tuple(tasks),
        original=_attempt(data.get("original")),
        repairs=tuple(a for a in repairs if a is not None),
    )


def _counter(rows: Any, key_len: int) -> Counter[Any]:
    out: Counter[Any] = Counter()
    for row in _list(rows, "counter"):
        row = _list(row, "counter row")
        if len(row) != key_len + 1:
            raise ValueError(f"a counter row has {len(row)} items, not {key_len + 1}")
        out[tuple(_str(k, "label") for k in row[:key_len])] = _int(row[key_len], "count")
    return out


def ledger_from_dict(data: dict[str, Any]) -> RunLedger:
    """A ledger from a v2 entry, or from a v1 entry (which lacks the newer parts).

    Every field's type is checked: ValueError (or KeyError for a missing part) otherwise.
    """
    ledger = RunLedger(
        baseline_ms=_int(data["baseline_ms"], "baseline_ms"),
        watermark_ms=_int(data["watermark_ms"], "watermark_ms"),
        overlap_ms=_int(data["overlap_ms"], "overlap_ms"),
    )
    for row in _list(data["seen"], "seen"):
        row = _list(row, "seen row")
        if len(row) not in (2, 3):
            raise ValueError("a seen row has the wrong length")
        end = _int(row[2], "seen end") if len(row) == 3 else 0
        ledger.seen[_run_id(row[0], "seen run_id")] = (_int(row[1], "seen start"), end)
    ledger.active = {run.run_id: run for run in map(_run, _list(data["active"], "active"))}
    ledger.runs_total = _counter(data["runs_total"], 3)
    ledger.tasks_total = _counter(data["tasks_total"], 4)
    ledger.durations = _restore_hists(data["durations"], 2)
    ledger.last_runs = {run.job_id: run for run in map(_run, _list(data["last_runs"], "last"))}
    success = data["last_success_ms"]
    if not isinstance(success, dict):
        raise ValueError("last_success_ms is not an object")
    ledger.last_success_ms = {
        _str(k, "job_id"): _int(v, "last success") for k, v in success.items()
    }
    ledger.repairs_total = _counter(data.get("repairs_total", []), 3)
    ledger.one_time_total = _counter(data.get("one_time_total", []), 3)
    ledger.one_time_durations = _restore_hists(data.get("one_time_durations", []), 2)
    names = _list(data.get("one_time_names", []), "one_time_names")
    ledger.known_one_time_names = {_str(n, "one-time name") for n in names}
    ledger.vanished_runs = _int(data.get("vanished_runs", 0), "vanished_runs")
    skipped = data.get("skipped_runs", {})
    if not isinstance(skipped, dict):
        raise ValueError("skipped_runs is not an object")
    ledger.skipped_runs = Counter(
        {_str(k, "reason"): _int(v, "skipped") for k, v in skipped.items()}
    )
    backfill = data.get("backfill")
    if backfill is not None:  # absent (older files): nothing left to read
        window = _list(backfill, "backfill")
        if len(window) != 2:
            raise ValueError("backfill is not [from, to]")
        ledger.backfill_from_ms = _int(window[0], "backfill from", -(2**62))
        ledger.backfill_to_ms = None if window[1] is None else _int(window[1], "backfill to")
    for window in _list(data.get("pending", []), "pending"):
        window = _list(window, "pending window")
        if len(window) != 3:
            raise ValueError("a pending window is not [from, to, since]")
        ledger.pending.append(
            (_int(window[0], "pending from"), _int(window[1], "pending to"), _int(window[2], "s"))
        )
    ledger.fresh = False
    ledger.known_jobs = {job_id for job_id in ledger.last_runs if job_id != OTHER_JOB}
    ledger.known_jobs |= {job_id for job_id, _, _ in ledger.runs_total if job_id != OTHER_JOB}
    ledger.known_task_keys = {(job_id, key) for job_id, _, key, _ in ledger.tasks_total}
    ledger.known_task_keys.discard((OTHER_JOB, OTHER_JOB))
    return ledger


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


class StateFileInUse(Exception):
    """Another process holds the state file's lock."""


class StateFile:
    """Loads once at startup; ``save`` rewrites the whole file (temp + fsync + rename)."""

    def __init__(
        self, path: Path, max_bytes: int = MAX_STATE_BYTES_PER_WORKSPACE, owned: bool = False
    ) -> None:
        """``owned``: take the lock first (``acquire``), so a second exporter on the same file
        exits before it reads (let alone renames or copies) the first one's file."""
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._lock_file: Any = None
        self._kept_aside: Path | None = None
        self._fragments: dict[str, dict[str, bytes]] = {}  # workspace -> part -> JSON bytes
        self._dirty: set[str] = set()
        self._listeners: dict[str, Callable[[bool], None]] = {}
        self._write_lock = threading.Lock()  # one write at a time, outside self._lock
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._writer: threading.Thread | None = None
        self.last_write_seconds = 0.0
        self._stale = False  # the last write failed and the file was set aside as .stale
        if owned:
            self.acquire()
        self._loaded = self._load()

    @property
    def _target(self) -> Path:
        return self.path.resolve()  # a symlink stays a symlink: its target is rewritten

    @property
    def _stale_path(self) -> Path:
        return self._target.with_name(self._target.name + ".stale")

    @property
    def _tmp_prefix(self) -> str:
        return f".{self._target.name}.tmp-"

    def acquire(self) -> None:
        """Own the file for this process's life, or raise StateFileInUse (two exporters on one
        file would overwrite each other's counters). Then remove temp files a killed writer
        left behind: only the owner writes them."""
        lock_path = self._target.with_name(self._target.name + ".lock")
        handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the process's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read(20).strip()
            handle.close()
            raise StateFileInUse(
                f"{self.path} is in use by another exporter"
                + (f" (pid {holder})" if holder.isdigit() else "")
                + "; give each exporter its own --state-file"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle
        for leftover in self._target.parent.glob(self._tmp_prefix + "*"):
            with contextlib.suppress(OSError):
                leftover.unlink()
                log.info("state file: removed %s, left by an interrupted write", leftover.name)

    def release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _load(self) -> dict[str, dict[str, Any]]:
        target = self._target
        if not target.exists() and self._stale_path.exists():
            log.warning(
                "state file %s: the last writes failed (disk full?) and only %s is left, older "
                "than what was served: the runs ledgers continue from it (the runs since are "
                "listed again and counted once, so their counters come back where they were), "
                "the pools' integrals start from zero (one reset for Prometheus, instead of "
                "going back to older values)",
                self.path,
                self._stale_path.name,
            )
            self._stale = True
            target = self._stale_path
        try:
            size = target.stat().st_size
            with open(target, "rb") as f:
                head = f.read(256)
        except FileNotFoundError:
            log.info("state file %s does not exist yet; starting a fresh baseline", self.path)
            return {}
        except OSError as exc:
            self._keep_aside(f"is unreadable ({str(exc)[:120]})")
            return {}
        if not _HEADER_RE.match(head):
            self._set_aside("is not an exporter state file")
            return {}
        if size > self.max_bytes:
            self._set_aside(f"is {size / 2**20:.0f} MiB, more than any state file")
            return {}
        try:
            doc = json.loads(target.read_bytes())
        except (OSError, ValueError) as exc:
            self._keep_aside(f"is unreadable ({str(exc)[:120]})")
            return {}
        if not isinstance(doc, dict) or doc.get("format") not in FORMATS:
            self._keep_aside("is not an exporter state file")
            return {}
        workspaces = doc.get("workspaces")
        if not isinstance(workspaces, dict):
            self._keep_aside("has no workspaces")
            return {}
        return workspaces

    def _set_aside(self, why: str) -> None:
        """Move a file that is not a state file out of the way (renamed, never copied: it may
        be large) before it is ever overwritten."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self._target.with_name(f"{self._target.name}.corrupt-{stamp}")
        try:
            os.replace(self._target, aside)
        except OSError as exc:
            log.warning("state file %s %s, and it could not be moved (%s)", self.path, why, exc)
            return
        self._kept_aside = aside
        log.warning("state file %s %s; moved to %s, fresh baseline", self.path, why, aside)

    def _keep_aside(self, why: str) -> None:
        """Copy an unusable file to <file>.corrupt-<time> before it is ever overwritten."""
        if self._kept_aside is not None:
            log.warning("state file %s %s; fresh baseline (copy kept)", self.path, why)
            return
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            shutil.copy2(self.path, aside)
        except OSError as exc:
            log.warning(
                "state file %s %s, and no copy could be kept (%s); fresh baseline",
                self.path,
                why,
                exc,
            )
            return
        self._kept_aside = aside
        log.warning("state file %s %s; kept as %s, fresh baseline", self.path, why, aside)

    def keep_only(self, configured: dict[str, str]) -> None:
        """Match the file's entries to the configured workspaces (name -> host key).

        A workspace renamed in the configuration (an entry under another name with the same
        host, and none under the new name) continues from its entry. Entries of workspaces no
        longer configured are dropped, so the file does not grow with every rename.
        """
        orphans = {n: e for n, e in self._loaded.items() if n not in configured}
        for name, host in configured.items():
            if name in self._loaded:
                continue
            same_host = [
                o for o, e in orphans.items() if isinstance(e, dict) and e.get("host") == host
            ]
            hosts = [h for h in configured.values() if h == host]
            if len(same_host) == 1 and len(hosts) == 1:
                old = same_host[0]
                self._loaded[name] = orphans.pop(old)
                del self._loaded[old]
                log.warning(
                    "state file: workspace %s was saved as %s (same host); it continues from "
                    "that entry (its series get the new workspace label)",
                    name,
                    old,
                )
        for name in orphans:
            del self._loaded[name]
            log.warning(
                "state file: workspace %.64r is no longer configured; its saved state is dropped",
                name,
            )

    def _entry(self, workspace: str, host: str, warn: bool = True) -> dict[str, Any] | None:
        """The saved entry of a workspace for this host, or None (warned when unusable)."""
        entry = self._loaded.get(workspace)
        if not isinstance(entry, dict):
            if entry is not None and warn:
                self._keep_aside(f"has a damaged entry for workspace {workspace}")
            return None
        if entry.get("host") != host:
            if warn:
                log.warning(
                    "state file: workspace %s was saved for another host; fresh baseline",
                    workspace,
                )
            return None
        return entry

    def restore(self, workspace: str, host: str) -> RunLedger | None:
        """The persisted ledger of a workspace, or None (with a warning when it is unusable)."""
        entry = self._entry(workspace, host)
        if entry is None or "ledger" not in entry:  # pools only: runs off, or not saved yet
            return None
        try:
            ledger = ledger_from_dict(dict(entry["ledger"]))
        except (KeyError, TypeError, ValueError) as exc:
            self._keep_aside(f"has a damaged entry for workspace {workspace} ({str(exc)[:120]})")
            return None
        if ledger.watermark_ms > (time.time() + FUTURE_LIMIT_SECONDS) * 1000:
            # Saved after a bogus Date header (before those were checked): years ahead.
            self._keep_aside(f"has a watermark of workspace {workspace} a year ahead")
            return None
        self._carry(workspace, host, "ledger", entry["ledger"])
        log.info(
            "workspace %s: restored %d counted runs from %s",
            workspace,
            sum(ledger.runs_total.values()),
            self.path,
        )
        return ledger

    def restore_pools(self, workspace: str, host: str, usage: PoolUsage) -> bool:
        """Continue a workspace's pool integral from the file; False when there is none."""
        entry = self._entry(workspace, host, warn=False)  # restore() has warned
        if entry is None or "pools" not in entry:
            return False
        if self._stale:
            # An integral older than what was served cannot be continued without its counters
            # going back; the time since cannot be integrated again either.
            return False
        try:
            usage.restore(entry["pools"])
        except (TypeError, ValueError) as exc:
            self._keep_aside(f"has damaged pool counters for {workspace} ({str(exc)[:120]})")
            return False
        self._carry(workspace, host, "pools", entry["pools"])
        return True

    def _carry(self, workspace: str, host: str, part: str, data: Any) -> None:
        """Keep a restored part in the file until its collector saves a newer one."""
        fragment = json.dumps(data, separators=(",", ":")).encode()
        with self._lock:
            self._fragments.setdefault(workspace, {"host": _json(host)})[part] = fragment

    def update(
        self,
        workspace: str,
        host: str,
        ledger: RunLedger | None = None,
        pools: dict[str, Any] | None = None,
    ) -> None:
        """Take a workspace's new ledger and/or pool integral, serialized now (from the thread
        that owns it: nothing changes it meanwhile), for the next write. Only this part is
        encoded: the file's other parts keep their encoded bytes."""
        parts: dict[str, bytes] = {}
        if ledger is not None:
            parts["ledger"] = json.dumps(ledger_to_dict(ledger), separators=(",", ":")).encode()
        if pools is not None:
            parts["pools"] = json.dumps(pools, separators=(",", ":")).encode()
        with self._lock:
            self._fragments.setdefault(workspace, {"host": _json(host)}).update(parts)
            self._dirty.add(workspace)
        self._wake.set()

    def save(
        self,
        workspace: str,
        host: str,
        ledger: RunLedger | None = None,
        pools: dict[str, Any] | None = None,
    ) -> None:
        """``update`` and write the file now; OSError when the write fails."""
        self.update(workspace, host, ledger, pools)
        self.flush(raise_errors=True)

    def on_write(self, workspace: str, callback: Callable[[bool], None]) -> None:
        """Call ``callback(ok)`` after each write that carried the workspace's new state."""
        self._listeners[workspace] = callback

    def flush(self, raise_errors: bool = False) -> bool:
        """Write the file if any part changed since the last write; True when it is current."""
        with self._write_lock:
            with self._lock:
                if not self._dirty:
                    return True
                dirty, self._dirty = self._dirty, set()
                data = self._document()
            started = time.monotonic()
            try:
                self._write(data)
            except OSError as exc:
                self._set_stale()
                with self._lock:
                    self._dirty |= dirty  # written whole with the next write
                self._notify(dirty, False)
                if raise_errors:
                    raise
                log.error(
                    "cannot write state file %s: %s (databricks_exporter_state_write_errors_total)",
                    self.path,
                    exc,
                )
                return False
            finally:
                self.last_write_seconds = time.monotonic() - started
            if self._stale:
                self._stale = False
                with contextlib.suppress(FileNotFoundError):
                    self._stale_path.unlink()
            self._notify(dirty, True)
            return True

    def _notify(self, workspaces: set[str], ok: bool) -> None:
        for workspace in workspaces:
            callback = self._listeners.get(workspace)
            if callback is not None:
                callback(ok)

    def _document(self) -> bytes:
        """The file's bytes from the encoded parts (and entries loaded but never restored)."""
        entries = []
        for name in sorted(set(self._loaded) | set(self._fragments)):
            fragments = self._fragments.get(name)
            if fragments is None:
                entry = json.dumps(self._loaded[name], separators=(",", ":")).encode()
            else:
                entry = b"{" + b",".join(_json(k) + b":" + v for k, v in fragments.items()) + b"}"
            entries.append(_json(name) + b":" + entry)
        return b'{"format":' + _json(FORMAT) + b',"workspaces":{' + b",".join(entries) + b"}}"

    def start_writer(self, min_gap_seconds: float = 1.0) -> None:
        """Write from a thread of its own, at most once per ``min_gap_seconds`` (and never
        more than a tenth of the time: a gap of at least 10x the last write's duration), so a
        hundred workspaces' collections make a few writes a minute, not hundreds."""
        if self._writer is not None:
            return

        def run() -> None:
            while not self._closing.is_set():
                self._wake.wait()
                self._wake.clear()
                if self._closing.is_set():
                    break
                self.flush()
                gap = max(min_gap_seconds, 10 * self.last_write_seconds)
                self._closing.wait(gap)

        self._writer = threading.Thread(target=run, name="state-file", daemon=True)
        self._writer.start()

    @property
    def background(self) -> bool:
        return self._writer is not None

    def close(self) -> None:
        """Stop the writer and write what is left (a clean stop loses nothing)."""
        self._closing.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout=30)
        self.flush()

    def _write(self, data: bytes) -> None:
        target = self._target
        directory = target.parent
        fd, tmp = tempfile.mkstemp(prefix=self._tmp_prefix, dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _set_stale(self) -> None:
        """After a failed write the file is older than what /metrics showed: rename it (a
        rename needs no free space), so a restart does not restore counters that go back."""
        if self._stale:
            return
        try:
            os.replace(self._target, self._stale_path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("state file %s: cannot set the outdated file aside: %s", self.path, exc)
            return
        self._stale = True
