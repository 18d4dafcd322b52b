"""TLS in front of waitress: asyncio accepts and handshakes, waitress serves the requests.

waitress speaks no TLS. A TLS server that handshakes in its accept loop (the standard
library's, cheroot's) lets one client that connects and sends nothing stall every other client
for the handshake timeout; asyncio handshakes every connection at once, each with its own
timeout, on one thread. Each handshaken connection is then piped to waitress over a Unix socket
in a private folder (mode 0700), so waitress keeps doing what it does well: slow or idle
clients cost a socket, never a thread, and its limits and timeouts apply as without TLS.

The context comes from ``WebConfigWatch``, looked at every second: when a certificate rotates,
the listeners are re-opened on duplicates of the same sockets with the new context (the kernel's
queue of pending connections belongs to the socket, so none is lost) and new handshakes get the
new certificate; connections already open keep theirs. Client certificates are verified in the
handshake (RequireAndVerifyClientCert fails it without one) and their SANs checked against
``client_allowed_sans`` right after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from asyncio import FIRST_COMPLETED
from collections.abc import Sequence
from typing import Any

from exporter.webconfig import WebConfigWatch, peer_allowed

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0  # seconds a client has to finish its TLS handshake
CHUNK = 64 << 10


class TLSFront:
    """Serves TLS on ``sockets`` (bound, listening) and pipes plaintext to ``upstream``."""

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        upstream: str,
        watch: WebConfigWatch,
        connection_limit: int,
        backlog: int = 1024,
    ) -> None:
        self.sockets = list(sockets)
        self.upstream = upstream
        self.watch = watch
        self.connection_limit = connection_limit
        self.backlog = backlog
        self.open = 0
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.AbstractServer] = []
        self._context: ssl.SSLContext | None = None
        # Strong references: the event loop keeps only weak ones, and a connection's task must
        # not be collected while it waits (asyncio's "Task was destroyed but it is pending").
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def shutdown(self) -> None:
        """Stop accepting, end every connection's tasks, then the loop (from another thread)."""
        if self._loop.is_running():
            done = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
            with contextlib.suppress(Exception):
                done.result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        # Ours, and asyncio's own: a connection still in its TLS handshake is a task of the
        # loop's (_accept_connection2) that no handler has seen yet; left pending, closing the
        # loop destroys it ("Task was destroyed but it is pending!").
        tasks = [t for t in asyncio.all_tasks() | self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._listen())
        self._track(self._loop.create_task(self._watch()))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _track(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _listen(self) -> None:
        """(Re)open the listeners with the current context; the old ones stop accepting."""
        _, context = self.watch.current()
        old, self._servers = self._servers, []
        self._context = context
        for sock in self.sockets:
            self._servers.append(
                await asyncio.start_server(
                    self._handle,
                    sock=sock.dup(),
                    ssl=context,
                    ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                    backlog=self.backlog,
                    limit=CHUNK,
                )
            )
        for server in old:
            server.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                if self.watch.current()[1] is not self._context:
                    await self._listen()
            except Exception:  # the listeners in place keep serving
                log.exception("TLS: re-opening the listeners with the new certificate failed")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        if self.open >= self.connection_limit:
            writer.transport.abort()
            return
        self.open += 1
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            writer.transport.abort()  # shutting down
        finally:
            self.open -= 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config, _ = self.watch.current()
        allowed = config.tls.client_allowed_sans if config.tls is not None else ()
        if not peer_allowed(writer.get_extra_info("peercert"), allowed):
            log.warning("TLS client refused: no SAN of its certificate is in client_allowed_sans")
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.upstream, limit=CHUNK)
        except OSError as exc:
            log.error("TLS: cannot reach the HTTP server behind it: %s", exc)
            writer.transport.abort()
            return
        to_server = self._track(asyncio.ensure_future(_pump(reader, up_writer, half_close=True)))
        to_client = self._track(asyncio.ensure_future(_pump(up_reader, writer, half_close=False)))
        try:
            done, _ = await asyncio.wait({to_server, to_client}, return_when=FIRST_COMPLETED)
            if to_server in done and to_server.result() and not to_client.done():
                await to_client  # the client sent all it will: its answer may still come
        finally:
            for task in (to_server, to_client):
                task.cancel()
            for w in (up_writer, writer):
                with contextlib.suppress(Exception):
                    w.close()


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, half_close: bool) -> bool:
    """Copy until end of file (True) or an error on either side (False)."""
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
        if half_close and dst.can_write_eof():
            dst.write_eof()  # the client is done sending; its answer may still be on its way
        return True
    except (OSError, ssl.SSLError, ConnectionError):
        return False
