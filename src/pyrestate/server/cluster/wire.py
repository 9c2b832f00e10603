"""Framed messages between the processes of one server: 4-byte length, then a pickled tuple.

Pickle because both ends are the same program on the same machine, talking over Unix sockets in a
directory only this user can enter (0700); it carries the engine's own dataclasses and exceptions without a
second codec. A transport between machines needs a real codec instead (docs/scale-out.md).
Frames written in one event-loop turn leave in one write.
"""

from __future__ import annotations

import asyncio
import hmac
import pickle
import struct
from collections.abc import Callable
from typing import Any

_LEN = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024

Frame = tuple[Any, ...]


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
