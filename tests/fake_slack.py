"""A fake Slack on loopback: incoming webhooks and chat.postMessage, with injectable failures."""

from __future__ import annotations

import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from loopback import Loopback, QuietHandler

WEBHOOK_PATH = "/services/T000/B000/XXXXSECRETXXXX"
BOT_TOKEN = "xoxb-000-111-fakeSecretToken"


class FakeSlack(Loopback):
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []  # accepted posts (replies carry thread_ts)
        self.updates: list[dict[str, Any]] = []  # accepted chat.update calls
        self._ts = 0
        self.attempts = 0
        self.faults: list[tuple[int, dict[str, str], float]] = []  # (status, headers, delay)
        self.echo_path = False  # fail with a body that echoes the request path, as proxies do
        self.refused_channels: set[str] = set()  # chat.postMessage answers channel_not_found
        self._lock = threading.Lock()
        self._listen(self._handler())
        self.url = f"http://127.0.0.1:{self.port}"
        self.webhook_url = self.url + WEBHOOK_PATH
        self.api_base = self.url + "/api/"

    def fail_next(
        self, status: int, count: int = 1, retry_after: int | None = None, delay: float = 0
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.faults.extend([(status, headers, delay)] * count)

    @staticmethod
    def channel_id(name: str) -> str:
        """Slack answers with the channel's id, whatever name the post used."""
        return f"C{zlib.crc32(name.lstrip('#').encode()):08X}"

    def _accept(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.endswith("chat.update"):
            parents = [m for m in self.messages if m.get("ts") == body.get("ts")]
            if not parents or self.channel_id(parents[0]["channel"]) != body.get("channel"):
                return {"ok": False, "error": "message_not_found"}
            self.updates.append(body)
            return {"ok": True, "channel": body["channel"], "ts": body["ts"]}
        if body.get("channel") in self.refused_channels:
            return {"ok": False, "error": "channel_not_found"}
        thread = body.get("thread_ts")
        if thread and not any(m.get("ts") == thread for m in self.messages):
            return {"ok": False, "error": "thread_not_found"}
        self._ts += 1
        ts = f"1700000000.{self._ts:06d}"
        self.messages.append({"via": "api", **body, "ts": ts})
        return {"ok": True, "channel": self.channel_id(body.get("channel", "")), "ts": ts}

    def thread(self, ts: str) -> list[dict[str, Any]]:
        """The replies to the message ``ts``, oldest first."""
        return [m for m in self.messages if m.get("thread_ts") == ts]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        slack = self

        class Handler(QuietHandler):
            def _reply(
                self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                with slack._lock:
                    slack.attempts += 1
                    fault = slack.faults.pop(0) if slack.faults else None
                if fault is not None:
                    status, headers, delay = fault
                    time.sleep(delay)
                    body = b'{"ok": false, "error": "ratelimited"}'
                    if slack.echo_path:
                        body = f"<html>403 Forbidden: POST {self.path} denied</html>".encode()
                    self._reply(status, body, "application/json", headers)
                    return
                if self.path == WEBHOOK_PATH:
                    slack.messages.append({"via": "webhook", **json.loads(raw)})
                    self._reply(200, b"ok", "text/plain")
                    return
                if self.path in ("/api/chat.postMessage", "/api/chat.update"):
                    if self.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
                        self._reply(
                            200, b'{"ok": false, "error": "invalid_auth"}', "application/json"
                        )
                        return
                    ctype = self.headers.get("Content-Type", "")
                    body = (
                        json.loads(raw)
                        if "json" in ctype
                        else {k: v[-1] for k, v in parse_qs(raw).items()}
                    )
                    for name in ("metadata", "blocks"):
                        if isinstance(body.get(name), str):
                            body[name] = json.loads(body[name])
                    with slack._lock:
                        answer = slack._accept(self.path, body)
                    self._reply(200, json.dumps(answer).encode(), "application/json")
                    return
                self._reply(404, b"no_service", "text/plain")

        return Handler
