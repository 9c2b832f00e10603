"""The TCP links between the nodes of a cluster on PostgreSQL (`pg_node`).

Each node keeps one outgoing link per other node, carrying its requests and outbox pushes; answers,
acknowledgements and nacks come back on the same link. Frames are `wire` pickles, so a link opens with the
cluster secret (stored in the database) and the other end unpickles nothing before it has checked it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from pyrestate.server.cluster.wire import Frame, Link, PendingCalls
from pyrestate.server.config import parse_bind
from pyrestate.server.core_api import Unavailable

CONNECT_BACKOFF_S = (0.05, 1.0)


class NotOwner(Unavailable):
    """The request did not reach the owner of its partition (nothing was done): try again."""


class _NodeLink(Link):
    """A link that opens with the cluster secret: the other end hears nothing before it has checked it."""

    def __init__(
        self, secret: bytes, on_frame: Callable[[Link, Frame], None], on_lost: Callable[[Link], None]
    ):
        super().__init__(on_frame, on_lost, secret=secret)
        self._token = secret

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.send_raw(self._token)


def _host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "//" in url else f"tcp://{url}")
    if parsed.hostname is None or parsed.port is None:
        raise ValueError(f"bad node address {url!r}: expected tcp://host:port")
    return parsed.hostname, parsed.port


class Transport:
    """Links to the other nodes: one outgoing link per node, for requests and outbox pushes; answers,
    acknowledgements and nacks come back on it."""

    def __init__(
        self,
        me: str,
        secret: bytes,
        on_frame: Callable[[Link, Frame], None],
        on_connected: Callable[[str], None],
        on_lost: Callable[[Link], None],
    ) -> None:
        self.me = me
        self.secret = secret
        self._on_frame_cb = on_frame
        self._on_connected = on_connected
        self._on_lost_cb = on_lost
        self.addresses: dict[str, str] = {}
        self.links: dict[str, Link] = {}
        self._connecting: dict[str, asyncio.Task[None]] = {}
        self._connected: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._calls: PendingCalls[str] = PendingCalls()
        self._server: asyncio.AbstractServer | None = None
        self._incoming: set[Link] = set()
        self._closing = False

    def _link(self) -> Link:
        return _NodeLink(self.secret, self._on_frame, self._lost)

    async def listen(self, bind: str) -> tuple[str, int]:
        host, port = parse_bind(bind)
        self._server = await asyncio.get_running_loop().create_server(self._incoming_link, host, port)
        sock = self._server.sockets[0]
        return sock.getsockname()[0], sock.getsockname()[1]

    def _incoming_link(self) -> Link:
        link = self._link()
        self._incoming.add(link)
        return link

    async def close(self) -> None:
        self._closing = True
        for task in self._connecting.values():
            task.cancel()
        for link in [*self.links.values(), *self._incoming]:
            link.close()
        if self._server is not None:
            self._server.close()
        self._calls.fail_all(Unavailable("server shutting down"))

    def link_to(self, node: str) -> Link | None:
        """The link to `node` if it is up (else it is being set up, and `on_connected` follows)."""
        link = self.links.get(node)
        if link is None:
            self._ensure_connecting(node)
        return link

    def _ensure_connecting(self, node: str) -> None:
        if self._closing or node in self.links or node in self._connecting or node not in self.addresses:
            return
        self._connecting[node] = asyncio.get_running_loop().create_task(self._connect(node))

    async def _connect(self, node: str) -> None:
        loop = asyncio.get_running_loop()
        delay = CONNECT_BACKOFF_S[0]
        try:
            while not self._closing and node in self.addresses:
                try:
                    host, port = _host_port(self.addresses[node])
                    _, link = await loop.create_connection(self._link, host, port)
                except (OSError, ValueError):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, CONNECT_BACKOFF_S[1])
                    continue
                link.peer = node
                link.send(("h", self.me))
                self.links[node] = link
                self._connected[node].set()
                self._on_connected(node)
                return
        finally:
            self._connecting.pop(node, None)

    def _lost(self, link: Link) -> None:
        self._incoming.discard(link)
        node = link.peer
        if node is not None and self.links.get(node) is link:
            del self.links[node]
            self._connected[node].clear()
            self._calls.fail_peer(node, Unavailable(f"node {node} went away before answering"))
            self._ensure_connecting(node)
        self._on_lost_cb(link)

    def _on_frame(self, link: Link, frame: Frame) -> None:
        if frame[0] == "r":  # answer: (r, id, ok, value)
            self._calls.settle(frame)
            return
        self._on_frame_cb(link, frame)

    async def call(self, node: str, method: str, *args: Any, connect_timeout: float = 2.0) -> Any:
        link = self.links.get(node)
        if link is None:
            self._ensure_connecting(node)
            try:
                await asyncio.wait_for(self._connected[node].wait(), connect_timeout)
            except TimeoutError:
                raise NotOwner(f"node {node} is not reachable") from None
            link = self.links[node]
        rid, fut = self._calls.open(node)
        link.send(("q", rid, method, args))
        try:
            return await fut
        finally:
            self._calls.forget(rid)


__all__ = ["NotOwner", "Transport"]
