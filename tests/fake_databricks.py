"""A fake Databricks workspace on loopback for the Databricks provider's operators.

jobs/run-now and jobs/runs/submit start a run that has already failed: its first task FAILED
(runs/get-output, asked with the task's run id, answers with a coloured notebook trace), the
second UPSTREAM_FAILED; runs/get answers with both ``state`` and ``status`` as the real API does,
and the run page URL Databricks gives; jobs/get gives job 11's tags. Bearer token checked; every
request recorded (no API here changes anything but run-now and runs/submit).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loopback import Loopback, QuietHandler

TOKEN = "dapi-fake-0123456789abcdef-SECRET"
WORKSPACE_ID = 1234567890123456
STATE_MESSAGE = "Task ingest failed with message: Workload failed, see run output for details."
TASK_ERROR = "ZeroDivisionError: division by zero"
JOB_TAGS = {11: {"team": "finance", "owner": "data-platform"}}  # jobs/get's settings.tags
LEAKED = "dapi0123456789abcdef0123456789abcdef"  # a token a notebook printed into its trace

# runs/get-output answers as Databricks gives them (Jobs API 2.2 RunOutput; metadata cut short).
# A notebook task that raised: IPython's coloured trace, as the notebook UI shows it.
NOTEBOOK_ANSI = {
    "error": TASK_ERROR,
    "error_trace": (
        "\x1b[0;31m---------------------------------------------------------------------------"
        "\x1b[0m\n"
        "\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call "
        "last)\n"
        "File \x1b[0;32m<command-3478194624461553>, line 7\x1b[0m\n"
        "\x1b[1;32m      5\x1b[0m conf \x1b[38;5;241m=\x1b[39m {\x1b[38;5;124m'token'\x1b[39m: "
        f"\x1b[38;5;124m'{LEAKED}'\x1b[39m}}\n"
        "\x1b[1;32m      6\x1b[0m rows \x1b[38;5;241m=\x1b[39m spark\x1b[38;5;241m.\x1b[39m"
        "table(\x1b[38;5;124m'raw.events'\x1b[39m)\x1b[38;5;241m.\x1b[39mcount()\n"
        "\x1b[0;32m----> 7\x1b[0m ratio \x1b[38;5;241m=\x1b[39m rows \x1b[38;5;241m/\x1b[39m "
        "\x1b[38;5;241m0\x1b[39m\n"
        "\n"
        "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"
    ),
    "notebook_output": {},
    "metadata": {"job_id": 11, "run_id": 0},
}


class FakeDatabricks(Loopback):
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.runs: dict[int, dict[str, Any]] = {}
        self._next = 1000
        self._lock = threading.Lock()
        # runs/get-output as a test wants it: task run id -> (status, JSON body or raw bytes);
        # with ``hang_outputs`` set, get-output waits for it (never answers before the test ends).
        self.outputs: dict[int, tuple[int, Any]] = {}
        self.hang_outputs: threading.Event | None = None
        self._listen(self._handler())
        self.url = f"http://127.0.0.1:{self.port}"

    def connection(self) -> dict[str, Any]:
        """The Airflow connection (type ``databricks``) that reaches this workspace."""
        return {
            "conn_type": "databricks",
            "host": "127.0.0.1",
            "port": self.port,
            "schema": "http",
            "password": TOKEN,
        }

    def page(self, job_id: int, run_id: int) -> str:
        return f"{self.url}/?o={WORKSPACE_ID}#job/{job_id}/run/{run_id}"

    def start(self, job_id: int | None = 11, name: str = "job 11") -> dict[str, Any]:
        """A failed run, as run-now or runs/submit start it."""
        return self._start(job_id, name)

    def _start(self, job_id: int | None, name: str) -> dict[str, Any]:
        with self._lock:
            run_id, self._next = self._next, self._next + 10
        job_id = job_id if job_id is not None else run_id + 5  # runs/submit: a new job each
        failed = {
            "life_cycle_state": "TERMINATED",
            "result_state": "FAILED",
            "state_message": STATE_MESSAGE,
        }
        status = {
            "state": "TERMINATED",
            "termination_details": {
                "code": "RUN_EXECUTION_ERROR",
                "type": "CLIENT_ERROR",
                "message": STATE_MESSAGE,
            },
        }
        run = {
            "job_id": job_id,
            "run_id": run_id,
            "run_name": name,
            "number_in_job": run_id,
            "state": failed,
            "status": status,
            "run_page_url": self.page(job_id, run_id),
            "start_time": 1_764_000_000_000,
            "end_time": 1_764_000_060_000,
            "tasks": [
                {
                    "task_key": "ingest",
                    "run_id": run_id + 1,
                    "attempt_number": 0,
                    "state": {**failed, "state_message": TASK_ERROR},
                    "status": status,
                    "run_page_url": self.page(job_id, run_id + 1),
                },
                {
                    "task_key": "publish",
                    "run_id": run_id + 2,
                    "attempt_number": 0,
                    "state": {
                        "life_cycle_state": "SKIPPED",
                        "result_state": "UPSTREAM_FAILED",
                        "state_message": "Upstream task(s) failed.",
                    },
                    "status": {
                        "state": "TERMINATED",
                        "termination_details": {
                            "code": "SKIPPED",
                            "type": "SUCCESS",
                            "message": "Upstream task(s) failed.",
                        },
                    },
                    "run_page_url": self.page(job_id, run_id + 2),
                },
            ],
        }
        self.runs[run_id] = run
        return run

    def _answer(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        path = path.replace("/api/2.1/jobs/", "/api/2.2/jobs/")  # older providers ask 2.1
        if method == "POST" and path == "/api/2.2/jobs/run-now":
            run = self._start(int(params["job_id"]), f"job {params['job_id']}")
            return 200, {"run_id": run["run_id"], "number_in_job": run["number_in_job"]}
        if method == "POST" and path == "/api/2.2/jobs/runs/submit":
            return 200, {"run_id": self._start(None, str(params.get("run_name", "")))["run_id"]}
        if method == "GET" and path == "/api/2.2/jobs/runs/get":
            run_id = int(params.get("run_id", 0))
            if run_id not in self.runs:
                message = f"Run {run_id} does not exist."
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": message}
            return 200, self.runs[run_id]
        if method == "GET" and path == "/api/2.2/jobs/runs/get-output":
            task_run = int(params.get("run_id", 0))
            if self.hang_outputs is not None:
                self.hang_outputs.wait(30)
            if task_run in self.outputs:
                return self.outputs[task_run]
            job_run = self.runs.get(task_run - 1)  # the failed task's run id is the run's + 1
            if job_run is None or not job_run["tasks"]:
                message = "Retrieving the output of runs with multiple tasks is not supported."
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": message}
            return 200, {
                **NOTEBOOK_ANSI,
                "metadata": {"job_id": job_run["job_id"], "run_id": task_run},
            }
        if method == "GET" and path == "/api/2.2/jobs/get":
            job_id = int(params.get("job_id", 0))
            if job_id not in JOB_TAGS:  # runs/submit's jobs have no settings to get
                message = f"Job {job_id} does not exist."
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": message}
            return 200, {"job_id": job_id, "settings": {"name": "etl", "tags": JOB_TAGS[job_id]}}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(QuietHandler):
            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                if raw:
                    params.update(json.loads(raw))
                with fake._lock:
                    fake.requests.append((method, parts.path))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    status, body = 401, {"error_code": "UNAUTHENTICATED", "message": "bad token"}
                else:
                    status, body = fake._answer(method, parts.path, params)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler
