"""One worker's links to the other workers of the server.

Three things travel between workers, each on the sender's own connection to the receiver:

* requests routed to a partition's owner (`call`: ingress and admin operations), answered on the same link;
* outbox messages (`send_outbox`): kept in memory per receiver, in commit order, until the receiver
  acknowledges its commit (`ack`). After a reconnect every unacknowledged message is sent again, in order,
  before anything new; with nothing acknowledged for a while they are sent again too. Receivers drop what
  they applied before (the high-water mark per source partition), so a message is applied exactly once.
  The sender's outbox row is deleted only after the acknowledgement (`on_acked`), so a crash of either
  side loses nothing: a restarted sender reloads its outbox rows and sends them again;
* acknowledgements of those commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pyrestate.server.cluster.layout import Layout
from pyrestate.server.cluster.wire import Frame, Link, PendingCalls, answer
from pyrestate.server.core_api import Unavailable
from pyrestate.server.partition.model import Command

log = logging.getLogger(__name__)

RETRANSMIT_AFTER_S = 5.0  # unacknowledged this long, with no acknowledgement meanwhile: send again
CONNECT_BACKOFF_S = (0.02, 0.5)

OutboxKey = tuple[int, int]  # (destination partition, sequence number)


def socket_path(sockdir: Path, worker: int) -> Path:
    return Path(sockdir) / f"w{worker}.sock"


class Node:
    def __init__(
        self,
        me: int,
        layout: Layout,
        sockdir: Path,
        *,
        handle_request: Callable[[str, tuple[Any, ...]], Awaitable[Any]],
        on_deliver: Callable[[int, int, Command], None],
        on_acked: Callable[[list[OutboxKey]], None],
    ) -> None:
        self.me = me
        self.layout = layout
        self.owners = layout.owners()
        self.sockdir = Path(sockdir)
        self._handle_request = handle_request
        self._on_deliver = on_deliver
        self._on_acked = on_acked
        self._peers = [w for w in range(layout.workers) if w != me]
        self._links: dict[int, Link] = {}
        self._connecting: dict[int, asyncio.Task[None]] = {}
        self._connected: dict[int, asyncio.Event] = {w: asyncio.Event() for w in self._peers}
        self._calls: PendingCalls[int] = PendingCalls()
        self._pending: dict[int, dict[OutboxKey, Command]] = {w: {} for w in self._peers}
        self._progress: dict[int, float] = dict.fromkeys(self._peers, 0.0)
        self._incoming: set[Link] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._retransmitter: asyncio.Task[None] | None = None
        self._closing = False
        self.forwarded = 0  # requests sent to another worker

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        path = socket_path(self.sockdir, self.me)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by this worker's previous life
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: Link(self._on_frame, self._on_lost), str(path))
        self._retransmitter = loop.create_task(self._retransmit_loop(), name="outbox-retransmit")
        for w in self._peers:
            self._ensure_connecting(w)

    async def stop(self) -> None:
        self._closing = True
        for task in [*self._connecting.values(), *self._tasks]:
            task.cancel()
        if self._retransmitter is not None:
            self._retransmitter.cancel()
        for link in [*self._links.values(), *self._incoming]:
            link.close()
        if self._server is not None:
            self._server.close()
        self._calls.fail_all(Unavailable("server shutting down"))

    # ------------------------------------------------------------------ connections

    def _ensure_connecting(self, w: int) -> None:
        if self._closing or w in self._links or w in self._connecting:
            return
        task = asyncio.get_running_loop().create_task(self._connect(w), name=f"link-{w}")
        self._connecting[w] = task

    async def _connect(self, w: int) -> None:
        loop = asyncio.get_running_loop()
        delay = CONNECT_BACKOFF_S[0]
        try:
            while not self._closing:
                try:
                    _, link = await loop.create_unix_connection(
                        lambda: Link(self._on_frame, self._on_lost), str(socket_path(self.sockdir, w))
                    )
                except OSError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, CONNECT_BACKOFF_S[1])
                    continue
                link.peer = w
                link.send(("h", self.me))
                self._links[w] = link
                # Everything unacknowledged first, in commit order, then whatever comes next.
                pending = self._pending[w]
                if pending:
                    link.send(("d", [(d, s, c) for (d, s), c in pending.items()]))
                self._progress[w] = time.monotonic()
                self._connected[w].set()
                return
        finally:
            self._connecting.pop(w, None)

    def _on_lost(self, link: Link) -> None:
        self._incoming.discard(link)
        w = link.peer
        if w is None or self._links.get(w) is not link:
            return
        del self._links[w]
        self._connected[w].clear()
        self._calls.fail_peer(w, Unavailable(f"worker {w} went away before answering"))
        self._ensure_connecting(w)

    async def _link(self, w: int, timeout: float) -> Link:
        link = self._links.get(w)
        if link is not None:
            return link
        self._ensure_connecting(w)
        try:
            await asyncio.wait_for(self._connected[w].wait(), timeout)
        except TimeoutError:
            raise Unavailable(f"worker {w} is not reachable") from None
        return self._links[w]

    # ------------------------------------------------------------------ frames

    def _on_frame(self, link: Link, frame: Frame) -> None:
        kind = frame[0]
        if kind == "q":  # request: (q, id, method, args)
            work = self._handle_request(frame[2], frame[3])
            task = asyncio.get_running_loop().create_task(answer(link, frame[1], work))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == "r":  # answer: (r, id, ok, value)
            self._calls.settle(frame)
        elif kind == "d":  # outbox messages: (d, [(partition, seq, command)])
            for partition, seq, command in frame[1]:
                self._on_deliver(partition, seq, command)
        elif kind == "a":  # acknowledgements: (a, sender worker, [(partition, seq)])
            pending = self._pending.get(frame[1])
            if pending is not None:
                for key in frame[2]:
                    pending.pop(key, None)
                self._progress[frame[1]] = time.monotonic()
            self._on_acked(frame[2])
        elif kind == "h":  # hello from an incoming link
            self._incoming.add(link)

    # ------------------------------------------------------------------ API

    async def call(self, w: int, method: str, *args: Any, connect_timeout: float = 10.0) -> Any:
        """Run `method` on worker `w`; its exception (NotFound, Conflict, …) is raised here."""
        link = await self._link(w, connect_timeout)
        rid, fut = self._calls.open(w)
        self.forwarded += 1
        link.send(("q", rid, method, args))
        try:
            return await fut
        finally:
            self._calls.forget(rid)

    async def broadcast(self, method: str, *args: Any) -> None:
        """Tell every other worker; one that is down learns it when it starts (it asks worker 0)."""

        async def one(w: int) -> None:
            try:
                await self.call(w, method, *args, connect_timeout=1.0)
            except Exception as e:
                log.warning("worker %d did not take %s: %s", w, method, e)

        await asyncio.gather(*(one(w) for w in self._peers))

    def send_outbox(self, partition: int, seq: int, command: Command) -> None:
        w = self.owners[partition]
        pending = self._pending[w]
        if (partition, seq) in pending:
            return
        if not pending:
            self._progress[w] = time.monotonic()
        pending[(partition, seq)] = command
        link = self._links.get(w)
        if link is not None:
            link.send(("d", [(partition, seq, command)]))
        else:
            self._ensure_connecting(w)

    def ack(self, w: int, keys: list[OutboxKey]) -> None:
        """Tell worker `w` that these messages of its are committed here. A lost acknowledgement is
        harmless: the sender sends again and the high-water mark drops the copy."""
        link = self._links.get(w)
        if link is not None:
            link.send(("a", self.me, keys))
        else:
            self._ensure_connecting(w)

    def drop_incoming(self) -> None:
        """Close every link other workers opened to this one: nothing more is read from them, and their
        senders reconnect and send all they have not had acknowledged, in order."""
        for link in list(self._incoming):
            link.close()
        self._incoming.clear()

    def owner_of(self, partition: int) -> int:
        return self.owners[partition]

    async def _retransmit_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for w, pending in self._pending.items():
                link = self._links.get(w)
                if pending and link is not None and now - self._progress[w] > RETRANSMIT_AFTER_S:
                    log.info("resending %d unacknowledged messages to worker %d", len(pending), w)
                    link.send(("d", [(d, s, c) for (d, s), c in pending.items()]))
                    self._progress[w] = now
