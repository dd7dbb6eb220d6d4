"""A TCP proxy for tests that cuts connections: the network failing between client and daemon."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CuttingProxy:
    """Forwards 127.0.0.1:port to a target, dropping each connection after ``cut_after`` bytes.

    Every connection is cut (both sides closed abruptly) once it has carried
    ``cut_after`` bytes in either direction, so a long transfer sees many cuts.
    ``cuts`` counts them.
    """

    def __init__(self, target_host: str, target_port: int, cut_after: int,
                 jitter: int = 0) -> None:
        self.target = (target_host, target_port)
        self.cut_after = cut_after
        self.jitter = jitter
        self.cuts = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        carried = 0
        limit = self.cut_after + (random.randrange(self.jitter) if self.jitter else 0)
        done = asyncio.Event()

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            nonlocal carried
            try:
                while not done.is_set():
                    data = await src.read(65536)
                    if not data:
                        break
                    room = limit - carried
                    if len(data) >= room:
                        dst.write(data[:max(room, 0)])
                        self.cuts += 1
                        break
                    carried += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                done.set()

        tasks = [asyncio.create_task(pump(reader, up_writer)),
                 asyncio.create_task(pump(up_reader, writer))]
        await done.wait()
        for w in (writer, up_writer):
            w.transport.abort()
        for t in tasks:
            t.cancel()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextmanager
def cutting_proxy(host: str, port: int, cut_after: int,
                  jitter: int = 0) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(host, port, cut_after, jitter)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
