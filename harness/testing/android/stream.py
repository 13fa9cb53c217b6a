"""One ADB stream as a service sees it: ordered bytes in, flow-controlled bytes out.

The connection feeds host ``WRTE`` payloads in and answers ``OKAY`` only when the
service has taken the bytes, so a fast host cannot flood the device's memory;
``write`` waits for the host's ``OKAY`` before sending the next ``WRTE``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable

from harness.testing.android import codec

Sender = Callable[[codec.Message], Awaitable[None]]


class StreamClosed(Exception):
    """The stream or its connection closed while a service was using it."""


class Stream:
    """A stream between device id ``local_id`` and host id ``remote_id``."""

    def __init__(self, local_id: int, remote_id: int, send: Sender, max_payload_bytes: int) -> None:
        self.local_id = local_id
        self.remote_id = remote_id
        self._send = send
        self.max_payload_bytes = max_payload_bytes
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffer = bytearray()
        self._data_ready = asyncio.Event()
        self._peer_ready = asyncio.Event()
        self._peer_ready.set()
        self.closed = asyncio.Event()
        self._sent_close = False
        self._acks_owed = 0
        #: True when the whole link dropped (not a ``CLSE`` for this stream).
        self.lost = False
        #: The connection this stream belongs to (services that open streams back to the host use it).
        self.link: object = None
        self._opened = asyncio.Event()
        if remote_id:
            self._opened.set()

    # --- called by the connection -------------------------------------------------
    def feed(self, data: bytes) -> None:
        """A host ``WRTE`` payload arrived; its ``OKAY`` is sent once the service reads it."""
        self._chunks.append(data)
        self._acks_owed += 1
        self._data_ready.set()

    def peer_okay(self) -> None:
        """The host acknowledged our last ``WRTE``."""
        self._peer_ready.set()

    @property
    def sent_close(self) -> bool:
        """True once our ``CLSE`` went out (or there is no one left to send it to)."""
        return self._sent_close

    def peer_opened(self, remote_id: int) -> None:
        """The host accepted a stream the device opened (its first ``OKAY`` names its id)."""
        self.remote_id = remote_id
        self._opened.set()

    @property
    def pending(self) -> bool:
        """True while a stream the device opened waits for the host's answer."""
        return not self._opened.is_set()

    async def wait_opened(self, timeout_s: float) -> bool:
        """Wait for the host to accept (True) or refuse (False) a stream the device opened."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._opened.wait()), timeout=timeout_s)
        return self._opened.is_set() and not self.closed.is_set()

    def peer_closed(self, *, lost: bool = False) -> None:
        """The host closed the stream (``lost``: the whole connection died)."""
        self.lost = self.lost or lost
        self._opened.set()
        self.closed.set()
        self._sent_close = True
        self._data_ready.set()
        self._peer_ready.set()

    # --- used by services ---------------------------------------------------------
    async def read(self) -> bytes:
        """Next bytes from the host, b'' once the stream is closed."""
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        while not self._chunks:
            if self.closed.is_set():
                return b""
            self._data_ready.clear()
            await self._data_ready.wait()
        data = self._chunks.popleft()
        await self._ack()
        return data

    async def read_exactly(self, size: int) -> bytes:
        """Exactly ``size`` bytes; raise :class:`StreamClosed` when the host closes first."""
        while len(self._buffer) < size:
            if not self._chunks:
                if self.closed.is_set():
                    raise StreamClosed(f"stream closed with {len(self._buffer)} of {size} bytes read")
                self._data_ready.clear()
                await self._data_ready.wait()
                continue
            self._buffer += self._chunks.popleft()
            await self._ack()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def _ack(self) -> None:
        if self._acks_owed and not self.closed.is_set():
            self._acks_owed -= 1
            await self._send(codec.Message(codec.OKAY, self.local_id, self.remote_id))

    async def write(self, data: bytes) -> None:
        """Send bytes in ``WRTE`` messages no larger than the host accepts, one ``OKAY`` at a time."""
        view = memoryview(data)
        while view:
            await self._peer_ready.wait()
            if self.closed.is_set():
                raise StreamClosed("host closed the stream")
            chunk, view = view[: self.max_payload_bytes], view[self.max_payload_bytes :]
            self._peer_ready.clear()
            await self._send(codec.Message(codec.WRTE, self.local_id, self.remote_id, bytes(chunk)))

    async def close(self) -> None:
        """Close our side (``CLSE``); the host answers with its own."""
        if not self._sent_close:
            try:  # let the host take our last WRTE before it sees CLSE
                await asyncio.wait_for(self._peer_ready.wait(), timeout=5)
            except TimeoutError:
                pass
            if self._sent_close:
                return
            self._sent_close = True
            self.closed.set()
            self._data_ready.set()
            self._peer_ready.set()
            await self._send(codec.Message(codec.CLSE, self.local_id, self.remote_id))
