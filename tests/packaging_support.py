"""The two wheels, built once per test session, and the callbacks' wheel installed into a venv.

Used by tests/test_packaging.py and tests/test_airflow_dag.py: the callbacks under test in real
Airflow runs are the wheel a user installs, never the repository's source tree.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import tempfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "build_wheels", ROOT / "packaging" / "build_wheels.py"
)
assert _spec is not None and _spec.loader is not None
build_wheels = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_wheels)

CALLBACKS = "airflow-provider-databricks-slack-callbacks"
EXPORTER = "databricks-jobs-exporter"


@functools.cache
def wheels() -> dict[str, Path]:
    """{distribution name: wheel}, both built from the working tree (once per session)."""
    out = Path(tempfile.mkdtemp(prefix="test-wheels-"))
    built = build_wheels.build(out)
    by_name = {metadata(w)["Name"]: w for w in built}
    assert set(by_name) == {CALLBACKS, EXPORTER}, built
    return by_name


def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(z.read(name).decode())


def pip(python: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def installed(python: Path) -> dict[str, str]:
    """{normalised name: version} of what ``python``'s environment holds."""
    listed = pip(python, "list", "--format=json")
    assert listed.returncode == 0, listed.stderr
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(listed.stdout)}


@functools.cache
def install_callbacks(python: Path) -> str:
    """The callbacks' wheel, replacing whatever copy ``python``'s venv had, with no index: what
    it requires must already be there (an Airflow environment's pins are not touched). Returns
    ``pip check``'s output, which the caller asserts on."""
    wheel = wheels()[CALLBACKS]
    pip(python, "uninstall", "-y", CALLBACKS)
    done = pip(python, "install", "--no-index", str(wheel))
    assert done.returncode == 0, done.stdout + done.stderr
    check = pip(python, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    return check.stdout
