"""`make stack` (tools/stack.py): the exporter, a real Prometheus with the repository's rules, a
real Alertmanager (Debian's packages) and the Slack stand-in, run as a user runs them; the
job-failed alert reaches the stand-in with its run page link, and stopping the stack leaves none
of its processes behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "tools" / "stack.py"
INSTALLED = shutil.which("prometheus") is not None and (
    shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
)
needs_binaries = pytest.mark.skipif(
    not INSTALLED, reason="Debian's prometheus and prometheus-alertmanager (installed by .ci/run)"
)
RUN_PAGE = re.compile(r"https://adb-[\w.-]+\.azuredatabricks\.net/\?o=\d+#job/\d+/run/\d+")


class Stack:
    """tools/stack.py as a child of the test, its output in a file."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.out = tmp_path / "stack.jsonl"
        self.log = tmp_path / "stack.log"
        self._log = open(self.log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(STACK), "--out", str(self.out), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.children: dict[str, tuple[int, float]] = {}  # name: (pid, create_time)

    def output(self) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")

    def records(self, kind: str) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        lines = self.out.read_text().splitlines()
        # The last line may be half written.
        return [r for r in map(_json_or_none, lines) if r is not None and r.get("kind") == kind]

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the stack exited with {self.proc.returncode} before {what}:\n{self.output()}"
                )
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.output()}")

    def started(self) -> dict[str, Any]:
        (record,) = self.wait(lambda: self.records("stack"), 60, "the stack to start")
        for name, pid in record["pids"].items():
            proc = psutil.Process(pid)
            assert proc.ppid() == self.proc.pid, (name, proc.cmdline())
            self.children[name] = (pid, proc.create_time())
        return dict(record)

    def running_children(self) -> list[str]:
        """The stack's children still running (a reused pid is another process)."""
        alive = []
        for name, (pid, created) in self.children.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(name)
            except psutil.NoSuchProcess:
                pass
        return alive

    def close(self) -> None:
        """After a failed test: stop the stack, and any child of it it left behind."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for name in self.running_children():
            psutil.Process(self.children[name][0]).kill()
        self._log.close()


def _json_or_none(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    started: list[Stack] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Stack:
        s = Stack(tmp_path, *args, env=env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def temp_dir(output: str) -> Path:
    match = re.search(r"logs in (\S+) \(removed on exit\)", output)
    assert match, output
    return Path(match.group(1))


@needs_binaries
@pytest.mark.timeout(420)
def test_the_failed_job_alert_reaches_the_stand_in_with_its_run_page_link(stack):
    s = stack("--failing", "--duration", "300")
    record = s.started()
    assert set(record["pids"]) == {"exporter", "prometheus", "alertmanager"}
    assert all(url.startswith("http://127.0.0.1:") for url in record["urls"].values())

    def job_failed_alerts() -> list[dict[str, Any]]:
        return [
            m
            for m in s.records("slack")
            if "DatabricksJobRunFailed" in " ".join(m["titles"])
            and any(RUN_PAGE.fullmatch(a["link"]) for a in m["alerts"])
        ]

    messages = s.wait(job_failed_alerts, 240, "DatabricksJobRunFailed at the Slack stand-in")
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(60) == 0, s.output()
    assert s.running_children() == [], s.output()

    message = messages[0]
    (attachment,) = message["payload"]["attachments"]
    link = next(a["link"] for a in message["alerts"] if RUN_PAGE.fullmatch(a["link"]))
    # The template's job-failed layout: the summary, the job, the run page link.
    assert f"<{link}|Open the Databricks run>" in attachment["text"]
    assert re.search(
        r"\*Databricks job \S+ failed \((FAILED|TIMEDOUT|INTERNAL_ERROR)\)\*", attachment["text"]
    )
    assert "• Job: `" in attachment["text"]
    example = yaml.safe_load((ROOT / "alerts" / "alertmanager.example.yml").read_text())
    channels = {
        slack.get("channel")
        for receiver in example["receivers"]
        for slack in receiver.get("slack_configs") or []
    }
    assert message["payload"]["channel"] in channels  # the example's receiver

    output = s.output()
    for url in record["urls"].values():
        assert url in output
    # What the stand-in printed: one line per alert with its link.
    assert re.search(r"- Databricks job \S+ failed \(\w+\)  " + re.escape(link), output), output
    assert output.rstrip().endswith("stack: stopped"), output
    assert not temp_dir(output).exists()


@needs_binaries
@pytest.mark.timeout(300)
def test_the_demo_stack_loads_the_rules_scrapes_the_exporter_and_stops_after_its_duration(stack):
    s = stack("--duration", "40")
    record = s.started()
    s.wait(lambda: "Ctrl-C stops all of them." in s.output(), 90, "the URLs")
    prom, am = record["urls"]["prometheus"], record["urls"]["alertmanager"]
    exporter = record["urls"]["exporter"]
    assert "databricks_job_last_run_failed" in requests.get(exporter, timeout=5).text

    def target_up() -> bool:
        body = requests.get(prom + "/api/v1/targets", timeout=5).json()
        targets = body["data"]["activeTargets"]
        return any(
            t["labels"]["job"] == "databricks-exporter" and t["health"] == "up" for t in targets
        )

    s.wait(target_up, 30, "Prometheus to scrape the exporter")
    groups = requests.get(prom + "/api/v1/rules", timeout=5).json()["data"]["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert "DatabricksJobRunFailed" in names and "DatabricksExporterDown" in names
    status = requests.get(am + "/api/v2/status", timeout=5).json()
    config = yaml.safe_load(status["config"]["original"])  # api_url shows as <secret>
    assert config["route"]["group_wait"] == "5s"
    assert config["templates"] == [str(ROOT / "alerts" / "databricks.slack.tmpl")]

    assert s.proc.wait(120) == 0, s.output()
    assert s.running_children() == [], s.output()
    assert not temp_dir(s.output()).exists()


def test_without_prometheus_it_says_how_to_install_it(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no prometheus, no alertmanager
    proc = subprocess.run(
        [sys.executable, str(STACK), "--duration", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "sudo apt-get install prometheus prometheus-alertmanager" in proc.stderr
