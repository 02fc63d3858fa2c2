"""A fault-injecting TCP proxy on loopback: latency, stalls and cuts between the workers and their servers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
CHUNK = 65536
CONNECT_TIMEOUT = 10.0


@dataclass
class Route:
    """One listening port and the server it forwards to, with the faults in force on it."""

    name: str
    upstream: tuple[str, int]
    latency: float = 0.0  # seconds each chunk waits, each way
    flowing: asyncio.Event = field(default_factory=asyncio.Event)  # clear: nothing is forwarded (a stall)
    links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = field(default_factory=set)
    port: int = 0
    server: asyncio.Server | None = None


class FaultProxy:
    """Routes by name, served by an event loop in a thread of their own; the methods are called from other
    threads and return once the loop has done what they ask."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.routes: dict[str, Route] = {}
        self.thread = threading.Thread(target=self.loop.run_forever, name="fault-proxy", daemon=True)
        self.thread.start()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def add(self, name: str, upstream_port: int) -> int:
        """Forward a new loopback port to ``upstream_port``; the port."""
        return self._call(self._add(name, ("127.0.0.1", upstream_port)))

    async def _add(self, name: str, upstream: tuple[str, int]) -> int:
        route = Route(name, upstream)
        route.flowing.set()
        route.server = await asyncio.start_server(lambda r, w: self._link(route, r, w), "127.0.0.1", 0)
        route.port = int(route.server.sockets[0].getsockname()[1])
        self.routes[name] = route
        return route.port

    async def _link(self, route: Route, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream = await asyncio.wait_for(
                asyncio.open_connection(*route.upstream), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            client.transport.abort()  # the server is down: the client sees its connection refused at once
            return
        link = (client, upstream)
        route.links.add(link)
        try:
            await asyncio.gather(self._pump(route, client_reader, upstream), self._pump(route, upstream_reader, client))
        finally:
            route.links.discard(link)
            client.transport.abort()
            upstream.transport.abort()

    async def _pump(self, route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                if route.latency:
                    await asyncio.sleep(route.latency)
                await route.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            # One side is gone: so is the link (as when a middlebox drops a connection, both ends learn of it).
            writer.transport.abort()

    def latency(self, name: str, seconds: float, duration: float) -> None:
        """Every chunk on the route waits ``seconds``, each way, for ``duration`` seconds."""
        self._call(self._for(name, "latency", seconds, duration))

    def stall(self, name: str, duration: float) -> None:
        """Nothing on the route is forwarded for ``duration`` seconds; connections stay open (and new ones are
        accepted), so clients wait rather than fail."""
        self._call(self._for(name, "stall", 0.0, duration))

    async def _for(self, name: str, what: str, seconds: float, duration: float) -> None:
        route = self.routes[name]
        if what == "latency":
            route.latency = seconds
            self.loop.call_later(duration, setattr, route, "latency", 0.0)
        else:
            route.flowing.clear()
            self.loop.call_later(duration, route.flowing.set)

    def cut(self, name: str) -> int:
        """Abort every connection on the route (both ends see a reset); the number cut."""
        return self._call(self._cut(name))

    async def _cut(self, name: str) -> int:
        links = list(self.routes[name].links)
        for client, upstream in links:
            client.transport.abort()
            upstream.transport.abort()
        return len(links)

    def calm(self) -> None:
        """Every latency and stall lifted."""
        self._call(self._calm())

    async def _calm(self) -> None:
        for route in self.routes.values():
            route.latency = 0.0
            route.flowing.set()

    def client_ports(self, name: str) -> set[int]:
        """The local ports of the route's connections to its server: how the server knows these clients."""
        return self._call(self._client_ports(name))

    async def _client_ports(self, name: str) -> set[int]:
        ports = set()
        for _, upstream in self.routes[name].links:
            with contextlib.suppress(TypeError, IndexError):
                ports.add(int(upstream.get_extra_info("sockname")[1]))
        return ports

    def close(self) -> None:
        if not self.loop.is_running():
            return
        with contextlib.suppress(Exception):
            self._call(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    async def _close(self) -> None:
        for route in self.routes.values():
            if route.server is not None:
                route.server.close()
            await self._cut(route.name)
        await asyncio.sleep(0.2)  # the links' tasks see their connections gone and end
