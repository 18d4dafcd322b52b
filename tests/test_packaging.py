"""The two distributions (issue 23): the exporter's wheel and the Airflow callbacks' wheel, built
from the working tree once per session, and the callbacks' wheel installed where users have it:
alone (an unrelated package named ``exporter`` first on the path), with the lowest versions its
declared ranges allow, and in the Airflow 3 and 2.10 venvs `make test` builds (there with
`pip check` clean, registered as a provider; tests/test_airflow_dag.py runs real DAGs on it)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from fake_slack import FakeSlack
from packaging.requirements import Requirement
from packaging_support import (
    CALLBACKS,
    EXPORTER,
    ROOT,
    install_callbacks,
    installed,
    metadata,
    pip,
    wheels,
)
from test_callbacks import failed_sim_run

import exporter.outcomes
from airflow_callbacks import outcomes

AIRFLOW_VENVS = [pytest.param(Path(sys.executable), id="airflow3")]
if os.environ.get("AIRFLOW2_TESTS", "1") != "0":
    AIRFLOW_VENVS.append(pytest.param(ROOT / ".venv-airflow2" / "bin" / "python", id="airflow2"))
# What the callbacks' tests need besides the callbacks: pytest, and what the fixtures import
# (the exporter's simulator as a fake Databricks, a fake Entra ID over TLS). Pinned to this venv's.
TEST_TOOLS = (
    "pytest",
    "pytest-timeout",
    "requests",
    "urllib3",
    "prometheus-client",
    "azure-identity",
    "cryptography",
    "PyYAML",
)
BUNDLED = {"pip", "setuptools", "wheel"}  # what `python -m venv` puts in a venv


def new_venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    return where / "bin" / "python"


# --- the source ----------------------------------------------------------------------------------


def test_the_callbacks_import_nothing_of_the_exporter():
    found = []
    for path in sorted((ROOT / "airflow_callbacks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "exporter"]
    assert found == []


def test_the_callbacks_outcome_tables_are_the_exporters():
    for table in (
        "OUTCOMES",
        "NO_RESULT",
        "RESULT_STATES",
        "TERMINATION_CODES",
        "TERMINATION_TYPES",
        "TERMINAL_LIFE_CYCLES",
    ):
        assert getattr(outcomes, table) == getattr(exporter.outcomes, table), table
    runs = [
        {"status": {"termination_details": {"code": c, "type": "CLIENT_ERROR", "message": " m "}}}
        for c in [*exporter.outcomes.TERMINATION_CODES, "NEW_CODE"]
    ] + [
        {"state": {"life_cycle_state": lc, "result_state": rs, "state_message": "x\ud83d"}}
        for lc in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR", "RUNNING")
        for rs in [*exporter.outcomes.RESULT_STATES, None, " failed "]
    ]
    for run in runs:
        result = exporter.outcomes.result_state_of(run)
        assert outcomes.result_state_of(run) == result
        assert outcomes.is_failure(result) == exporter.outcomes.is_failure(result)
        assert outcomes.state_message_of(run) == exporter.outcomes.state_message_of(run)
        assert outcomes.life_cycle_of(run) == exporter.outcomes.life_cycle_of(run)


# --- the wheels ----------------------------------------------------------------------------------


def test_the_callbacks_wheel_requires_slack_sdk_only_and_registers_as_a_provider():
    wheel = wheels()[CALLBACKS]
    meta = metadata(wheel)
    assert [Requirement(r) for r in meta.get_all("Requires-Dist")] == [
        Requirement("slack-sdk<4,>=3.26")
    ]
    assert meta.get_all("Provides-Extra") is None
    assert meta["License-Expression"] == "Apache-2.0" and meta["Requires-Python"] == ">=3.10"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        license_text = z.read(next(n for n in names if n.endswith("licenses/LICENSE"))).decode()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {
        "airflow_callbacks"
    }
    assert "[apache_airflow_provider]" in entry_points
    assert "provider_info = airflow_callbacks.provider_info:get_provider_info" in entry_points
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text


def test_the_exporter_wheel_holds_the_exporter_and_publishes_no_test_pins():
    wheel = wheels()[EXPORTER]
    meta = metadata(wheel)
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("Provides-Extra") == ["mixin"]  # test, airflow2, docs: dependency groups
    runtime = [Requirement(r) for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert {r.name for r in runtime} == {
        "prometheus-client",
        "azure-identity",
        "requests",
        "urllib3",
        "APScheduler",
        "PyYAML",
        "waitress",
        "bcrypt",  # --web.config.file's basic_auth_users
    }
    assert all(">=" in str(r.specifier) and "==" not in str(r.specifier) for r in runtime)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {
        "exporter",
        "databricks_simulator",  # --simulate and make demo
    }
    assert "databricks-exporter = exporter.cli:run" in entry_points


def test_check_wheel_contents_is_clean_for_both_wheels():
    tool = Path(sys.executable).parent / "check-wheel-contents"
    done = subprocess.run(
        [str(tool), *map(str, wheels().values())], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == 2, done.stdout


# --- where users install the callbacks -----------------------------------------------------------

ALONE = textwrap.dedent(
    """
    import json, sys
    import exporter
    assert exporter.UNRELATED, exporter.__file__
    import airflow_callbacks
    from airflow_callbacks import notify
    from airflow_callbacks.incidents import MemoryStore

    class TI:
        dag_id, task_id, run_id, map_index = "etl", "run_job", "manual__1", -1
        try_number, max_tries, log_url = 1, 0, "https://airflow.example/log"

        def xcom_pull(self, task_ids, key, map_indexes=None):
            return {"run_id": int(sys.argv[1])}.get(key)

    ok = notify({"ti": TI(), "exception": RuntimeError("boom")}, store=MemoryStore())
    print(json.dumps({
        "ok": ok,
        "callbacks": airflow_callbacks.__file__,
        "exporter": sorted(m for m in sys.modules if m.split(".")[0] == "exporter"),
    }))
    """
)


def test_the_callbacks_wheel_alone_beside_an_unrelated_exporter_package(
    tmp_path, make_sim, monkeypatch
):
    """A plain venv: the wheel brings slack-sdk and nothing else; a package called ``exporter``
    first on the path changes nothing; the Databricks details come without the exporter."""
    python = new_venv(tmp_path / "venv")
    done = pip(python, "install", str(wheels()[CALLBACKS]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(installed(python)) - BUNDLED == {CALLBACKS, "slack-sdk"}
    check = pip(python, "check")
    assert check.returncode == 0, check.stdout
    unrelated = tmp_path / "path" / "exporter"
    unrelated.mkdir(parents=True)
    (unrelated / "__init__.py").write_text("UNRELATED = True\n")
    (tmp_path / "alone.py").write_text(ALONE)
    server = make_sim(fail_rate=0.9, multi_task_rate=1.0, history_hours=0.2)
    with FakeSlack() as slack:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(tmp_path / "path"),
            "DATABRICKS_HOST": server.url,
            "DATABRICKS_TOKEN": server.token,
            "SLACK_WEBHOOK_URL": slack.webhook_url,
        }
        run = subprocess.run(
            [str(python), str(tmp_path / "alone.py"), str(failed_sim_run(server))],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        result = json.loads(run.stdout.splitlines()[-1])
        body = json.dumps(slack.messages)
    assert result["ok"] is True and result["exporter"] == ["exporter"]  # the unrelated one only
    assert result["callbacks"].startswith(str(tmp_path / "venv"))
    assert "java.lang.RuntimeException: boom" in body and "Failed task" in body
    assert server.stats.requests["/api/2.2/jobs/runs/get"] == 1  # the standard library's runs/get


def test_the_callbacks_tests_pass_with_the_lowest_versions_the_wheel_allows(tmp_path):
    """Each Requires-Dist of the wheel pinned to its floor, the wheel installed (not the tree),
    and the callbacks' unit tests run against it, no import of the exporter from the callbacks."""
    python = new_venv(tmp_path / "venv")
    floors = []
    for raw in metadata(wheels()[CALLBACKS]).get_all("Requires-Dist"):
        requirement = Requirement(raw)
        (floor,) = [s.version for s in requirement.specifier if s.operator == ">="]
        floors.append(f"{requirement.name}=={floor}")
    tools = [f"{name}=={version(name)}" for name in TEST_TOOLS]
    done = pip(python, "install", str(wheels()[CALLBACKS]), *floors, *tools)
    assert done.returncode == 0, done.stdout + done.stderr
    assert installed(python)["slack-sdk"] == "3.26.0"
    check = pip(python, "check")
    assert check.returncode == 0, check.stdout
    # The fixtures' simulator comes from the tree; nothing else of it is on the path.
    shim = tmp_path / "path"
    shim.mkdir()
    (shim / "databricks_simulator").symlink_to(ROOT / "databricks_simulator")
    (tmp_path / "pytest.ini").write_text("[pytest]\ntimeout = 300\n")
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + ["-p", "callbacks_import_guard", "-c", str(tmp_path / "pytest.ini")]
        + ["--rootdir", str(ROOT / "tests")]
        + [str(ROOT / "tests" / t) for t in ("test_callbacks.py", "test_callbacks_hostile.py")],
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(shim)]),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail and "error" not in tail.lower(), tail


@pytest.mark.parametrize("python", AIRFLOW_VENVS)
def test_the_callbacks_wheel_in_the_airflow_venvs_is_a_provider(python: Path, tmp_path):
    if not python.exists():
        pytest.fail(f"{python} is missing: `make test` builds it (make .venv-airflow2)")
    assert "No broken requirements found" in install_callbacks(python)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHONPATH"))} | {
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = python.parent / "airflow"

    def ask(*args: str) -> list[dict]:
        done = subprocess.run(
            [str(airflow), "providers", *args, "-o", "json"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout[done.stdout.index("[") :])

    (ours,) = [p for p in ask("list") if p["package_name"] == CALLBACKS]
    assert ours["version"] == version_of_callbacks()
    assert "airflow_callbacks.DatabricksSlackNotifier" in json.dumps(ask("notifications"))


def version_of_callbacks() -> str:
    return metadata(wheels()[CALLBACKS])["Version"]
