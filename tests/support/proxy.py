"""A TCP proxy of the tests' own between servers and Redis, to cut the connection at will."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forwards 127.0.0.1:<port> to an upstream; `cut` resets every connection and refuses new
    ones for a while (a dropped NAT entry, a restarted load balancer, a flapping network)."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.refusing = False
        self._flowing = asyncio.Event()  # cleared: new connections wait (a black hole)
        self._flowing.set()
        self._generation = 0  # connections made before a black hole stay dead after it
        self.latency = 0.0  # seconds added to every chunk, each way
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(source, sink, self._generation))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, generation: int) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await source.read(65536):
                if generation != self._generation:
                    continue  # a connection from before the black hole: its bytes are lost
                if self.latency:
                    await asyncio.sleep(self.latency)
                sink.write(data)
                await sink.drain()
        sink.transport.abort()
        self._writers.discard(sink)

    def reset(self) -> None:
        """Abort every connection going through (both sides see a reset)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def cut(self, seconds: float) -> None:
        """Reset everything and refuse connections for `seconds`."""
        self.refusing = True
        self.reset()
        await asyncio.sleep(seconds)
        self.refusing = False

    async def blackhole(self, seconds: float) -> None:
        """A route that drops everything and resets nothing, as when a NAT or firewall forgets
        its state: connections open now go silent for good (no reset ever comes); new ones
        hang until `seconds` have passed, then work."""
        self._generation += 1
        self._flowing.clear()
        await asyncio.sleep(seconds)
        self._flowing.set()

    async def close(self) -> None:
        self._flowing.set()
        self.reset()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
