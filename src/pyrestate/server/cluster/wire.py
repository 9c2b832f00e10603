"""Framed messages between the processes of one server: 4-byte length, then a pickled tuple.

Pickle because both ends are the same program on the same machine, talking over Unix sockets in a
directory only this user can enter (0700); it carries the engine's own dataclasses and exceptions without a
second codec. A transport between machines needs a real codec instead (docs/scale-out.md).
Frames written in one event-loop turn leave in one write.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import pickle
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from pyrestate.server.core_api import Unavailable

_LEN = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024

Frame = tuple[Any, ...]
Peer = TypeVar("Peer")


class PendingCalls(Generic[Peer]):
    """Requests sent as `("q", id, method, args)` and not answered yet, each with the peer that must answer
    (`("r", id, ok, value)`): shared by the links between workers and those between nodes."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._calls: dict[int, tuple[asyncio.Future[Any], Peer]] = {}

    def open(self, peer: Peer) -> tuple[int, asyncio.Future[Any]]:
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[rid] = (fut, peer)
        return rid, fut

    def forget(self, rid: int) -> None:
        self._calls.pop(rid, None)

    def settle(self, frame: Frame) -> None:
        entry = self._calls.pop(frame[1], None)
        if entry is not None and not entry[0].done():
            if frame[2]:
                entry[0].set_result(frame[3])
            else:
                entry[0].set_exception(frame[3])

    def fail_peer(self, peer: Peer, error: BaseException) -> None:
        for rid, (fut, target) in list(self._calls.items()):
            if target == peer and not fut.done():
                fut.set_exception(error)
                del self._calls[rid]

    def fail_all(self, error: BaseException) -> None:
        for fut, _ in self._calls.values():
            if not fut.done():
                fut.set_exception(error)


async def answer(link: Link, rid: int, work: Awaitable[Any]) -> None:
    """Run a peer's request and send its answer: the value, or the exception it raised (the caller re-raises
    it); an answer that does not pickle becomes `Unavailable`."""
    try:
        value = await work
    except Exception as e:
        frame: Frame = ("r", rid, False, e)
    else:
        frame = ("r", rid, True, value)
    try:
        link.send(frame)
    except Exception as e:
        link.send(("r", rid, False, Unavailable(f"{type(e).__name__}: {e}")))


class Link(asyncio.Protocol):
    """One connection; `on_frame(link, frame)` for every frame received, `on_lost(link)` once at the end."""

    def __init__(
        self,
        on_frame: Callable[[Link, Frame], None],
        on_lost: Callable[[Link], None],
        *,
        secret: bytes | None = None,
    ) -> None:
        """`secret`: the first frame received must be these raw bytes, or the link closes before anything
        is unpickled (links between machines: only holders of the cluster secret are heard)."""
        self._on_frame = on_frame
        self._secret = secret
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.closed = False
        self.peer: Any = None  # the other end (worker index, node id), once known

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._on_lost(self)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if size > MAX_FRAME:
                self.close()
                return
            if n - pos - 4 < size:
                break
            if self._secret is not None:
                token = bytes(buf[pos + 4 : pos + 4 + size])
                if not hmac.compare_digest(token, self._secret):
                    self.close()
                    return
                self._secret = None
                pos += 4 + size
                continue
            frame = pickle.loads(buf[pos + 4 : pos + 4 + size])
            pos += 4 + size
            self._on_frame(self, frame)
        if pos:
            del buf[:pos]

    def send(self, frame: Frame) -> None:
        self.send_raw(pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL))

    def send_raw(self, body: bytes) -> None:
        if self.closed:
            return
        self._out.append(_LEN.pack(len(body)))
        self._out.append(body)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._transport is not None and not self.closed and self._out:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._flush()
            self._transport.close()
