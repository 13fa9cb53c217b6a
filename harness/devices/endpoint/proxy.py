"""A TCP proxy on loopback that shapes the link between the harness and an endpoint (``tcp-proxy`` method).

Modelled on Shopify's toxiproxy: the client connects to the proxy, the proxy to the server; each direction's
chunks are delivered after the profile's delay +/- jitter, paced at its rate (one serialising link per
direction), with loss as retransmission delay, stalls (server to client) and resets (at the start of a
request) drawn from a seeded generator, so two runs of a profile see the same draws. Delivery order is kept:
a chunk is never delivered before the one read before it (TCP does not reorder a byte stream).

Where a request starts (:class:`RequestStarts`): over HTTP/1.x, at the client's first chunk after the server
spoke; over HTTP/2 (gRPC: one long-lived connection, control frames both ways between requests), at each
HEADERS frame the client sends (a new stream), found by reading the frames' 9-byte headers.

It counts the bytes each way (exactly what crossed it, HTTP headers included) and every fault it injected.
It runs its own asyncio loop in a daemon thread and listens on 127.0.0.1 only, or, for the ``netns`` method, on
the host end of the namespace's veth pair, bound to that device (``SO_BINDTODEVICE``: nothing arriving on
another interface reaches it) and resetting every connection whose source is not ``allow_peer`` (the
namespace's end: this host's own processes connecting to that address come from the address itself). Its
upstream connections are made in the namespace its thread is in: the host's, unless ``setup`` moved it (the
``netns`` method's relay for gRPC, :mod:`.shaping`, listens on a Unix socket, ``listen="unix:/path"``, and
enters the namespace first, so its upstream connections are the namespace's).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

from harness.devices.endpoint.network import NetworkProfile

CHUNK = 64 * 1024
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 3.4: what an HTTP/2 client sends first
H2_HEADERS = 0x1  # RFC 9113 6.2: the frame type that opens a stream (a request)
UNIX = "unix:"  # a ``listen`` that starts so is a Unix socket's path


class RequestStarts:
    """Tells, chunk by chunk of the client-to-server stream, whether a request starts in it."""

    def __init__(self) -> None:
        self.h2: bool | None = None  # unknown until the first bytes show the HTTP/2 preface or not
        self.seen = b""
        self.answered = True  # HTTP/1.x: the server has spoken since the last request began
        self.header = b""  # HTTP/2: the part of a frame header read so far
        self.skip = 0  # HTTP/2: bytes of the current frame's payload (or of the preface) still to pass

    def server_spoke(self) -> None:
        self.answered = True

    def chunk(self, data: bytes) -> bool:
        if self.h2 is None:
            self.seen += data[:len(H2_PREFACE)]
            if H2_PREFACE.startswith(self.seen[:len(H2_PREFACE)]) and len(self.seen) < len(H2_PREFACE):
                return False  # too few bytes to tell yet
            self.h2 = self.seen.startswith(H2_PREFACE)
            self.skip = len(H2_PREFACE) - (len(self.seen) - min(len(data), len(H2_PREFACE)))
            if not self.h2:
                return self._http1()
        return self._frames(data) if self.h2 else self._http1()

    def _http1(self) -> bool:
        started, self.answered = self.answered, False
        return started

    def _frames(self, data: bytes) -> bool:
        started, i = False, 0
        while i < len(data):
            if self.skip:
                n = min(self.skip, len(data) - i)
                i, self.skip = i + n, self.skip - n
                continue
            take = data[i:i + 9 - len(self.header)]
            self.header, i = self.header + take, i + len(take)
            if len(self.header) == 9:
                started = started or self.header[3] == H2_HEADERS
                self.skip, self.header = int.from_bytes(self.header[:3], "big"), b""
        return started


@dataclass
class ProxyCounters:
    """What crossed the proxy and what it did (read between requests: the client is sequential)."""

    bytes_up: int = 0
    bytes_down: int = 0
    stalls: int = 0
    resets: int = 0
    retransmits: int = 0
    connections: int = 0
    refused: int = 0


class ShapingProxy:
    """Listen on ``listen`` (any free port; bound to ``device`` when given; ``unix:/path``: that Unix socket),
    forward to ``upstream`` shaped by ``profile``. ``setup`` runs first in the proxy's thread (before any socket)."""

    def __init__(self, upstream: tuple[str, int], profile: NetworkProfile, seed: int = 0,
                 listen: str = "127.0.0.1", device: str | None = None, allow_peer: str | None = None,
                 setup: Callable[[], None] | None = None) -> None:
        self.upstream = upstream
        self.listen, self.device, self.allow_peer, self.setup = listen, device, allow_peer, setup
        self.profile = profile
        self.rng = random.Random(seed)
        self.counters = ProxyCounters()
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> tuple[str, int]:
        """Start the proxy thread; return the address the client connects to."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                if self.setup is not None:
                    self.setup()
                self._server = loop.run_until_complete(asyncio.start_server(self._serve, sock=self._socket()))
                name = self._server.sockets[0].getsockname()
                self.address = (self.listen, 0) if self.listen.startswith(UNIX) else name[:2]
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                loop.close()  # never ran: stop() has nothing to do
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=main, name="shaping-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self.address

    def _socket(self) -> socket.socket:
        unix = self.listen.startswith(UNIX)
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (a 0 here made
        # every accepted connection Nagle's, +40 ms per request against the client's delayed ACK)
        sock = (socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) if unix
                else socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP))
        try:
            if unix:
                sock.bind(self.listen[len(UNIX):])
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if self.device:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.device.encode())
                sock.bind((self.listen, 0))
            sock.listen(100)
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    def stop(self) -> None:
        """Close the listener and every connection; safe to call twice."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop)
        except RuntimeError:
            return
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ShapingProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> ProxyCounters:
        with self._lock:
            return ProxyCounters(**vars(self.counters))

    # -- one connection ---------------------------------------------------------------------
    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            await self._connection(c_reader, c_writer)
        except asyncio.CancelledError:  # the proxy is stopping
            pass

    async def _connection(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        if self.allow_peer is not None and (c_writer.get_extra_info("peername") or ("",))[0] != self.allow_peer:
            with self._lock:
                self.counters.refused += 1
            _reset(c_writer)
            return
        with self._lock:
            self.counters.connections += 1
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(c_writer)
            return
        starts = RequestStarts()
        up = asyncio.ensure_future(self._pipe(c_reader, s_writer, up=True, starts=starts, peers=(c_writer, s_writer)))
        down = asyncio.ensure_future(self._pipe(s_reader, c_writer, up=False, starts=starts,
                                                peers=(c_writer, s_writer)))
        try:
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
            await asyncio.wait([up, down], timeout=30)
        finally:
            for task in (up, down):
                task.cancel()
            for w in (c_writer, s_writer):
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool,
                    starts: RequestStarts, peers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        loop = asyncio.get_running_loop()
        p = self.profile
        rate = (p.up_rate_kbit or p.rate_kbit) if up else p.rate_kbit
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        link_free = last_due = 0.0

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        sender = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(CHUNK):
                now = loop.time()
                extra_ms = 0.0
                with self._lock:
                    if up:
                        self.counters.bytes_up += len(data)
                        if starts.chunk(data) and p.reset_pct and self.rng.random() * 100 < p.reset_pct:
                            self.counters.resets += 1
                            for w in peers:
                                _reset(w)
                            return
                    else:
                        self.counters.bytes_down += len(data)
                        starts.server_spoke()
                        if p.stall_pct and self.rng.random() * 100 < p.stall_pct:
                            self.counters.stalls += 1
                            extra_ms += p.stall_ms
                    if p.loss_pct and self.rng.random() < p.loss_chance(len(data)):
                        self.counters.retransmits += 1
                        extra_ms += p.retransmit_delay_ms()
                    jitter = self.rng.uniform(-p.jitter_ms, p.jitter_ms) if p.jitter_ms else 0.0
                link_free = max(link_free, now) + (len(data) * 8 / (rate * 1000) if rate > 0 else 0.0)
                due = max(last_due, link_free + max(0.0, p.delay_ms + jitter + extra_ms) / 1000.0)
                last_due = due
                queue.put_nowait((due, data))
            queue.put_nowait(None)
            await sender
        except (ConnectionError, OSError):  # a reset (or error) on one side is passed on at once to both, as a
            for w in peers:                 # relay must: else the other side would wait for its next write
                _reset(w)
        finally:
            sender.cancel()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a dropped mobile link looks to the client."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()
