"""Draw docs/slack-message.png from the exact Block Kit the callbacks send (make docs-image).

Not a Slack screenshot (Slack is not reachable from CI): a plain rendering of the header,
fields, error, buttons and context blocks of ``airflow_callbacks.message.build``, in Slack's
layout, with the incident's thread under it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from airflow_callbacks.context import TaskFacts  # noqa: E402
from airflow_callbacks.message import build  # noqa: E402

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


def example() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    host = "https://adb-1234567890123456.7.azuredatabricks.net"
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
        databricks_url=f"{host}/?o=1234567890123456#job/1234/run/987654",
        databricks_run_id="987654",
    )
    details = [
        "Databricks: Task ingest failed with message: Workload failed, see run output.",
        f"Failed task ingest (FAILED) {host}/?o=1234567890123456#job/1234/run/987655",
    ]
    parent = build(facts, "failure", [*details, "2 updates in the thread"])
    from dataclasses import replace

    replies = [
        build(replace(facts, try_number=2), "retry", details),
        build(facts, "failure", details),
    ]
    return parent, replies


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
        self.image = Image.new("RGB", (WIDTH, 3000), "white")
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
        text = plain(block["text"]["text"])
        title, _, rest = text.partition("\n")
        self.text(x, title.strip("*"), font(bold=True))
        code = rest.strip("`")
        lines = wrap(self.draw, code, font(mono=True, size=13), WIDTH - x - PAD - 20)
        height = len(lines) * 19 + 14
        self.draw.rounded_rectangle(
            (x, self.y, WIDTH - PAD, self.y + height), 4, fill=CODE_BG, outline=BORDER
        )
        self.y += 7
        for line in lines:
            self.draw.text((x + 10, self.y), line, font=font(mono=True, size=13), fill="#e01e5a")
            self.y += 19
        self.y += 14

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
            self.text(x, plain(element["text"]), font(size=13), fill=GREY)

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
    parent, replies = example()
    canvas = Canvas()
    canvas.rule("#data-oncall")
    canvas.message(parent, PAD, "02:14")
    canvas.text(PAD + 52, "2 replies   Last reply today at 02:31", font(bold=True, size=13), LINK)
    canvas.y += 10
    canvas.rule("Thread")
    for message, when in zip(replies, ("02:20", "02:31"), strict=True):
        canvas.message(message, PAD + 40, when, avatar=32)
    out = ROOT / "docs" / "slack-message.png"
    canvas.save(out)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
