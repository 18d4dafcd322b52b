"""A pytest plugin (``-p callbacks_import_guard``) for the callbacks' tests in a venv of their own.

The fixtures need the simulator (``databricks_simulator``, a fake Databricks that imports nothing
of the exporter); this makes sure the code under test never uses the exporter: any
``import exporter...`` executed by an ``airflow_callbacks`` module fails the session, and
``airflow_callbacks`` must be the installed wheel's copy, not the repository's.
"""

from __future__ import annotations

import builtins
import sys
from typing import Any

import pytest

violations: list[str] = []
_real_import = builtins.__import__


def _guarded(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level=0):
    importer = str((globals or {}).get("__name__") or "")
    if level == 0 and name.split(".")[0] == "exporter" and importer.startswith("airflow_callbacks"):
        violations.append(f"{importer} imports {name}")
        raise ImportError(f"airflow_callbacks must not import {name}")
    return _real_import(name, globals, locals, fromlist, level)


def pytest_configure(config: pytest.Config) -> None:
    builtins.__import__ = _guarded
    import airflow_callbacks

    where = str(airflow_callbacks.__file__)
    if not where.startswith(sys.prefix) or "site-packages" not in where:
        raise pytest.UsageError(f"airflow_callbacks comes from {where}, not from the wheel")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    builtins.__import__ = _real_import
    if violations:
        print("\nairflow_callbacks imported the exporter:", *sorted(set(violations)), sep="\n  ")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
