"""``--state-file``: what every workspace's collectors keep, written atomically after collections.

The file knows no collector: each workspace's entry holds its host and one part per collector
that keeps state, named by the collector's registration (exporter.collectors) and encoded and
checked by the collector's own code.

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
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

FORMAT = "databricks-jobs-exporter/state/v2"
# Far above any real state (a busy workspace's ledger is a few MB): a larger file is not ours.
MAX_STATE_BYTES_PER_WORKSPACE = 64 << 20
FUTURE_LIMIT_SECONDS = 366 * 86_400.0  # a saved time further ahead than this is not a time
_HEADER_RE = re.compile(rb'^\s*\{\s*"format"\s*:\s*"databricks-jobs-exporter/state/')
FORMATS = ("databricks-jobs-exporter/state/v1", FORMAT)  # v1: before repairs and one-time runs


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
        self._warned: set[tuple[str, str]] = set()  # (workspace, host) whose entry was looked at
        self._write_lock = threading.Lock()  # one write at a time, outside self._lock
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._writer: threading.Thread | None = None
        self.last_write_seconds = 0.0
        self._stale = False  # the last write failed and the file was set aside as .stale
        if owned:
            self.acquire()
        self._loaded = self._load()
        self._from_stale = self._stale  # loaded from <file>.stale (the last writes failed)

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

    def restore(
        self,
        workspace: str,
        host: str,
        part: str,
        load: Callable[[Any], T],
        after_failed_write: bool = True,
    ) -> T | None:
        """A workspace's saved ``part`` through ``load`` (which checks every field and raises
        KeyError, TypeError or ValueError otherwise), or None: not saved, saved for another
        host, or damaged (warned, the file kept aside). ``after_failed_write`` False: a part
        that cannot be continued from a file older than what was served (an integral, whose
        counters would go back) is not restored from the ``.stale`` file."""
        warn = (workspace, host) not in self._warned
        self._warned.add((workspace, host))
        entry = self._entry(workspace, host, warn=warn)
        if entry is None or part not in entry:  # that collector off, or not saved yet
            return None
        if self._stale and not after_failed_write:
            return None
        try:
            value = load(entry[part])
        except (KeyError, TypeError, ValueError) as exc:
            self._keep_aside(
                f"has a damaged {part} entry for workspace {workspace} ({str(exc)[:120]})"
            )
            return None
        self._carry(workspace, host, part, entry[part])
        return value

    def _fragment(self, workspace: str, host: str) -> dict[str, bytes]:
        """The workspace's encoded parts (under self._lock). The first time, the parts of its
        loaded entry for this host come along, so the state of a collector turned off (or not
        collected yet) stays in the file until it is turned on again."""
        fragments = self._fragments.get(workspace)
        if fragments is None:
            fragments = self._fragments[workspace] = {"host": _json(host)}
            entry = self._loaded.get(workspace)
            # Not from the .stale file: what was not restored from it is older than what was
            # served, and restoring it after the next start would make its counters go back.
            if not self._from_stale and isinstance(entry, dict) and entry.get("host") == host:
                for part, value in entry.items():
                    if part != "host":
                        fragments[part] = json.dumps(value, separators=(",", ":")).encode()
        return fragments

    def _carry(self, workspace: str, host: str, part: str, data: Any) -> None:
        """Keep a restored part in the file until its collector saves a newer one."""
        fragment = json.dumps(data, separators=(",", ":")).encode()
        with self._lock:
            self._fragment(workspace, host)[part] = fragment

    def update(self, workspace: str, host: str, parts: Mapping[str, Any]) -> None:
        """Take a workspace's new parts (part name -> JSON-able value), serialized now (from
        the thread that owns them: nothing changes them meanwhile), for the next write. Only
        these parts are encoded: the file's other parts keep their encoded bytes."""
        encoded = {
            part: json.dumps(value, separators=(",", ":")).encode() for part, value in parts.items()
        }
        with self._lock:
            self._fragment(workspace, host).update(encoded)
            self._dirty.add(workspace)
        self._wake.set()

    def save(self, workspace: str, host: str, parts: Mapping[str, Any]) -> None:
        """``update`` and write the file now; OSError when the write fails."""
        self.update(workspace, host, parts)
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
