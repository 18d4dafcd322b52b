"""Build the repository's two wheels: the exporter's and the Airflow callbacks'.

    python packaging/build_wheels.py dist/

The sources a wheel is made of (pyproject.toml, README.md, LICENSE, exporter/,
databricks_simulator/, airflow_callbacks/, packaging/) are copied to a temporary directory
first, so no build/ left in the tree from an earlier build can add files to a wheel. pip
builds each in an isolated environment with the setuptools its pyproject.toml asks for. Prints
the wheels' paths.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "exporter",
    "databricks_simulator",
    "airflow_callbacks",
    "packaging",
)
PROJECTS = (".", "packaging/airflow-callbacks")


def build(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.glob("*.whl"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    with tempfile.TemporaryDirectory(prefix="wheels-") as tmp:
        src = Path(tmp)
        for name in SOURCES:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, src / name, symlinks=True, ignore=ignore)
            else:
                shutil.copy2(path, src / name)
        subprocess.run(
            [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "wheel"]
            + ["--no-deps", "--wheel-dir", str(out.resolve())]
            + [str(src / project) for project in PROJECTS],
            check=True,
        )
    built = sorted(set(out.glob("*.whl")) - before) or sorted(out.glob("*.whl"))
    return built


if __name__ == "__main__":
    for wheel in build(Path(sys.argv[1] if len(sys.argv) > 1 else "dist")):
        print(wheel)
