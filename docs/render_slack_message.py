"""Draw docs/slack-message.png from the exact Block Kit the callbacks send (make docs-image).

Not a Slack screenshot (Slack is not reachable from CI): a plain rendering of the header,
fields, sections, buttons and context blocks the callbacks build (``message.build`` for the
incident, ``message.reply`` for its thread, ``dag_alerts.dag_failure_message`` for the DAG
summary), in Slack's layout, from the tests' recorded runs/get-output of a failed notebook.
"""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "tests"))

from fake_databricks import NOTEBOOK_ANSI  # noqa: E402  (the tests' recorded get-output)

from airflow_callbacks.context import TaskFacts  # noqa: E402
from airflow_callbacks.dag_alerts import dag_failure_message  # noqa: E402
from airflow_callbacks.enrich import FailedTask, RunDetails  # noqa: E402
from airflow_callbacks.message import build, reply  # noqa: E402
from airflow_callbacks.redact import Redactor  # noqa: E402
from airflow_callbacks.run_output import excerpt  # noqa: E402

FONTS = Path("/usr/share/fonts/truetype/dejavu")
WIDTH, PAD, INDENT = 980, 24, 72
INK, GREY, LINK, CODE_BG, BORDER = "#1d1c1d", "#616061", "#1264a3", "#f8f8f8", "#dddddd"
EMOJI = {
    ":red_circle:": "#e01e5a",
    ":large_orange_circle:": "#f4900c",
    ":large_green_circle:": "#2eb67d",
}


def font(bold: bool = False, mono: bool = False, size: int = 15) -> Any:
    name = "DejaVuSansMono.ttf" if mono else ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
    try:
        return ImageFont.truetype(str(FONTS / name), size)
    except OSError:
        return ImageFont.load_default()


def example() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The incident's parent (as the thread leaves it), its replies, and the DAG summary: built
    by the callbacks' own functions from what the fake Databricks of the tests answers."""
    host = "https://adb-1234567890123456.7.azuredatabricks.net"
    page = f"{host}/?o=1234567890123456#job/1234/run/987654"
    facts = TaskFacts(
        dag_id="databricks_etl",
        task_id="nightly_load",
        map_index=-1,
        try_number=3,
        max_tries=2,
        logical_date="2026-11-23T02:00:00+00:00",
        run_id="scheduled__2026-11-23T02:00:00+00:00",
        owner="data-platform",
        log_url="https://airflow.contoso.com/dags/databricks_etl/runs/x/tasks/nightly_load",
        exception_type="AirflowException",
        exception_message=(
            "nightly_load failed with terminal state: FAILED and with the errors "
            "[{'task_key': 'ingest', 'error': 'ZeroDivisionError: division by zero'}]"
        ),
        databricks_url=page,
        databricks_run_id="987654",
    )
    error = excerpt(NOTEBOOK_ANSI, "ingest", Redactor())
    run = RunDetails(
        run_page_url=page,
        lines=["Databricks: Task ingest failed with message: Workload failed, see run output."],
        failed=[FailedTask("ingest", "FAILED", f"{host}/?o=1234567890123456#job/1234/run/987655")],
        errors=[error],
        rerun=["ingest", "publish"],
    )
    mention = "<!subteam^S0DATAPLAT|data-platform>"
    links = [("Dashboard", "https://grafana.contoso.com/d/databricks-jobs/databricks-jobs")]
    parent = build(
        facts, "failure", ["2 updates in the thread"], run=run, mention=mention, links=links
    )
    # Try 1 opened the incident (FileNotFoundError), try 2 failed the same way, try 3 otherwise.
    replies = [
        reply(replace(facts, try_number=2), "retry"),
        reply(facts, "failure", f"ingest: {error.error}", mention=mention),
    ]
    summary = dag_failure_message(
        "databricks_etl",
        facts.run_id,
        facts.logical_date,
        "task_failure",
        [
            {"task_id": "nightly_load", "map_index": -1, "duration": 754, "url": page},
            {"task_id": "adhoc_export", "map_index": -1, "duration": 61, "url": ""},
        ],
        None,
    )
    return parent, replies, summary


def plain(text: str) -> str:
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text.replace("\u200b", "")


def wrap(draw: ImageDraw.ImageDraw, text: str, f: Any, width: int) -> list[str]:
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in re.split(r"(\s+)", para):
            if draw.textlength(line + word, font=f) <= width:
                line += word
                continue
            if line.strip():
                lines.append(line.rstrip())
            while draw.textlength(word, font=f) > width:  # a long URL or token: cut it
                cut = max(1, int(len(word) * width / draw.textlength(word, font=f)) - 1)
                lines.append(word[:cut])
                word = word[cut:]
            line = word.lstrip()
        lines.append(line)
    return lines


class Canvas:
    def __init__(self) -> None:
        self.image = Image.new("RGB", (WIDTH, 4000), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.y = PAD

    def text(self, x: int, text: str, f: Any, fill: str = INK, width: int = 0) -> None:
        width = width or WIDTH - x - PAD
        for line in wrap(self.draw, text, f, width):
            self.draw.text((x, self.y), line, font=f, fill=fill)
            self.y += int(f.size * 1.45)

    def header(self, x: int, text: str) -> None:
        for code, colour in EMOJI.items():
            if text.startswith(code):
                size = 18
                self.draw.ellipse((x, self.y + 3, x + size, self.y + 3 + size), fill=colour)
                x, text = x + size + 10, text[len(code) :].strip()
        self.text(x, text, font(bold=True, size=19))
        self.y += 4

    def message(self, message: dict[str, Any], x: int, when: str, avatar: int = 40) -> None:
        top = self.y
        self.draw.rounded_rectangle((x, top, x + avatar, top + avatar), 8, fill="#ff3621")
        self.draw.text((x + 9, top + 8), "D", font=font(bold=True, size=22), fill="white")
        left = x + avatar + 12
        self.draw.text((left, top), "Databricks alerts", font=font(bold=True), fill=INK)
        name_end = left + self.draw.textlength("Databricks alerts", font=font(bold=True))
        self.draw.text((name_end + 8, top + 2), f"APP  {when}", font=font(size=12), fill=GREY)
        self.y = top + 26
        for block in message["blocks"]:
            getattr(self, "_" + block["type"])(left, block)
        self.y = max(self.y, top + avatar) + 14

    def _header(self, x: int, block: dict[str, Any]) -> None:
        self.header(x, block["text"]["text"])

    def _section(self, x: int, block: dict[str, Any]) -> None:
        if "fields" in block:
            column = (WIDTH - x - PAD) // 2
            fields = block["fields"]
            for i in range(0, len(fields), 2):
                row_top, bottom = self.y, self.y
                for j, field in enumerate(fields[i : i + 2]):
                    label, _, value = plain(field["text"]).partition("\n")
                    self.y = row_top
                    self.text(x + j * column, label.strip("*"), font(bold=True), width=column - 12)
                    self.text(x + j * column, value, font(), width=column - 12)
                    bottom = max(bottom, self.y)
                self.y = bottom + 6
            return
        self.mrkdwn(x, block["text"]["text"])
        self.y += 6

    def mrkdwn(self, x: int, text: str, size: int = 15, fill: str = INK) -> None:
        """Slack's mrkdwn, roughly: code blocks boxed, links as their labels, a line that opens
        with *bold* in bold, an emoji circle first."""
        for n, part in enumerate(text.split("```")):
            if n % 2:
                self.code(x, plain(part))
                continue
            for line in part.strip("\n").split("\n"):
                if not line:
                    continue
                line = plain(re.sub(r"<[^|>]+\|([^>]+)>", r"\1", line))
                line = line.replace(":wrench:", "\u2692").replace("`", "")
                x0 = x
                for code, colour in EMOJI.items():
                    if line.startswith(code):
                        self.draw.ellipse((x, self.y + 3, x + 14, self.y + 17), fill=colour)
                        x0, line = x + 20, line[len(code) :].strip()
                bold = line.startswith("*") and line.count("*") >= 2
                self.text(x0, line.replace("*", ""), font(bold=bold, size=size), fill)

    def code(self, x: int, code: str) -> None:
        lines: list[str] = []
        for raw in code.strip("\n").split("\n"):
            lines += wrap(self.draw, raw, font(mono=True, size=13), WIDTH - x - PAD - 20)
        height = len(lines) * 19 + 14
        self.draw.rounded_rectangle(
            (x, self.y, WIDTH - PAD, self.y + height), 4, fill=CODE_BG, outline=BORDER
        )
        self.y += 7
        for line in lines:
            self.draw.text((x + 10, self.y), line, font=font(mono=True, size=13), fill="#e01e5a")
            self.y += 19
        self.y += 10

    def _actions(self, x: int, block: dict[str, Any]) -> None:
        for element in block["elements"]:
            label = element["text"]["text"]
            width = int(self.draw.textlength(label, font=font(bold=True, size=14))) + 28
            self.draw.rounded_rectangle(
                (x, self.y, x + width, self.y + 32), 4, outline="#bbbbbb", width=1
            )
            self.draw.text((x + 14, self.y + 7), label, font=font(bold=True, size=14), fill=INK)
            x += width + 10
        self.y += 44

    def _context(self, x: int, block: dict[str, Any]) -> None:
        for element in block["elements"]:
            self.mrkdwn(x, element["text"], size=13, fill=GREY)

    def rule(self, label: str) -> None:
        self.draw.line((PAD, self.y + 9, WIDTH - PAD, self.y + 9), fill=BORDER)
        width = self.draw.textlength(label, font=font(bold=True, size=13))
        x = (WIDTH - width) // 2
        self.draw.rectangle((x - 10, self.y, x + width + 10, self.y + 20), fill="white")
        self.draw.text((x, self.y + 2), label, font=font(bold=True, size=13), fill=GREY)
        self.y += 32

    def save(self, path: Path) -> None:
        self.image.crop((0, 0, WIDTH, self.y + PAD)).save(path, optimize=True)


def main() -> None:
    parent, replies, summary = example()
    canvas = Canvas()
    canvas.rule("#data-oncall")
    canvas.message(parent, PAD, "02:14")
    canvas.text(PAD + 52, "2 replies   Last reply today at 02:31", font(bold=True, size=13), LINK)
    canvas.y += 10
    canvas.rule("Thread")
    for message, when in zip(replies, ("02:20", "02:31"), strict=True):
        canvas.message(message, PAD + 40, when, avatar=32)
    canvas.rule("#data-runs")
    canvas.message(summary, PAD, "02:32")
    out = ROOT / "docs" / "slack-message.png"
    canvas.save(out)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
