"""One host connection: handshake, authentication, stream multiplexing, faults.

The connection reads messages in order and hands stream payloads to services
(``services``); faults from :class:`~harness.testing.android.faults.FaultBox` are
applied here because they are properties of the link, not of a service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from harness.testing.android import codec
from harness.testing.android.auth import AuthMode, KeyPolicy, new_token
from harness.testing.android.faults import FaultBox
from harness.testing.android.stream import Stream

log = logging.getLogger(__name__)

#: Features we advertise; each one is implemented (see ADB.md).
FEATURES = ["shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir"]

ServiceRunner = Callable[[Stream], Awaitable[None]]
ServiceOpener = Callable[[str], ServiceRunner | None]


@dataclass
class ConnectionContext:
    """What a connection needs from its device."""

    banner: Callable[[], bytes]
    policy: KeyPolicy
    faults: FaultBox
    open_service: ServiceOpener
    name: str = "virtual-device"
    max_payload_bytes: int = codec.MAX_PAYLOAD_BYTES


class _Dropped(Exception):
    """A fault closed the connection on purpose."""


class AdbConnection:
    """Device side of one TCP connection from an adb host."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ConnectionContext) -> None:
        self._reader = reader
        self._writer = writer
        self._ctx = ctx
        self._version = codec.VERSION_CHECKSUMMED
        self._peer_max_payload = 4096
        self._online = False
        self._token = b""
        self._streams: dict[int, Stream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_id = 1
        # adbd answers a host OPEN (connect, then OKAY) before its event loop runs anything else, so an OPEN the
        # device starts meanwhile (an ``adb reverse`` listener accepting that very connect) follows the OKAY.
        # The adb server relies on that order: with the device's OPEN first it may close the forward unread.
        self._open_order = asyncio.Lock()
        self._bytes_in = 0
        self._messages_in = 0
        self._messages_out = 0
        self._stalled_until = 0.0
        #: Called once when the link ends (the ``reverse:`` listeners of this link close).
        self.on_abort: list[Callable[[], None]] = []
        #: Per-link state of services (``reverse:`` keeps its listeners here).
        self.state: dict[str, object] = {}
        peer = writer.get_extra_info("peername")
        self._log = logging.LoggerAdapter(log, {"peer": peer})

    # --- I/O with faults ----------------------------------------------------------
    async def _read_exactly(self, size: int) -> bytes:
        faults = self._ctx.faults
        limit = faults.current.drop_after_bytes
        if limit is not None and self._bytes_in + size >= limit:
            await self._reader.readexactly(max(0, limit - self._bytes_in))
            faults.fire("drop_after_bytes", f"dropped after {limit} bytes from {self._ctx.name}'s host")
            raise _Dropped
        data = await self._reader.readexactly(size)
        self._bytes_in += size
        await self._throttle(size)
        return data

    async def _throttle(self, size: int) -> None:
        rate = self._ctx.faults.current.bandwidth_bytes_per_s
        if rate:
            await asyncio.sleep(size / rate)

    async def send(self, message: codec.Message) -> None:
        """Write one message (whole, so messages never interleave), honouring faults."""
        await self._wait_stall()
        self._messages_out += 1
        faults = self._ctx.faults
        at = faults.current.corrupt_checksum_at
        corrupt = at is not None and self._messages_out >= at and bool(message.data)
        if corrupt:
            faults.fire("corrupt_checksum_at", f"corrupted checksum of device message {self._messages_out}")
        if self._writer.is_closing():
            return
        self._writer.write(message.pack(corrupt_checksum=corrupt))
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()
        await self._throttle(codec.HEADER_SIZE + len(message.data))

    async def _wait_stall(self) -> None:
        delay = self._stalled_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    # --- main loop ----------------------------------------------------------------
    async def run(self) -> None:
        """Serve until the host hangs up, a fault drops the link or the device goes offline."""
        try:
            while True:
                header = codec.unpack_header(
                    await self._read_exactly(codec.HEADER_SIZE), max_payload_bytes=self._ctx.max_payload_bytes
                )
                data = await self._read_exactly(header.data_length) if header.data_length else b""
                codec.verify_payload(header, data, self._check_version(header))
                self._messages_in += 1
                await self._apply_message_faults(header)
                await self._dispatch(header, data)
        except (asyncio.IncompleteReadError, ConnectionError, _Dropped):
            pass
        except codec.ProtocolError as exc:
            self._log.warning("protocol error from host: %s", exc)
        finally:
            await self.abort()

    def _check_version(self, header: codec.Header) -> int:
        """Protocol version that decides whether this message's checksum is checked.

        A ``CNXN`` carries its own: a host that already spoke 0x01000001 on an earlier link (the
        adb server reconnecting after ``reboot``, ``go offline`` or ``adb reconnect``) sends its
        CNXN with checksum 0, and adbd has accepted that since Android P.
        """
        if header.command == codec.CNXN:
            return min(header.arg0, codec.VERSION_SKIP_CHECKSUM)
        return self._version

    async def _apply_message_faults(self, header: codec.Header) -> None:
        faults = self._ctx.faults
        current = faults.current
        if current.drop_at_message == self._messages_in:
            faults.fire(
                "drop_at_message", f"dropped at host message {self._messages_in} ({codec.command_name(header.command)})"
            )
            raise _Dropped
        if current.stall_s:
            at = current.stall_at_message
            if at == self._messages_in or (at is None and header.command == codec.OPEN):
                faults.fire(
                    "stall_s",
                    f"stalled {current.stall_s}s at host message {self._messages_in}",
                    clear=("stall_at_message",),
                )
                self._stalled_until = time.monotonic() + current.stall_s
                await self._wait_stall()

    async def abort(self) -> None:
        """Close the TCP link and every stream (their processes are killed by the services)."""
        for stream in list(self._streams.values()):
            stream.peer_closed(lost=True)
        self._streams.clear()
        for cleanup in self.on_abort:
            with contextlib.suppress(Exception):
                cleanup()
        self.on_abort.clear()
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), timeout=3)

    # --- protocol -----------------------------------------------------------------
    async def _dispatch(self, header: codec.Header, data: bytes) -> None:
        command = header.command
        if command == codec.CNXN:
            await self._on_connect(header, data)
        elif command == codec.AUTH:
            await self._on_auth(header, data)
        elif not self._online:
            self._log.debug("ignoring %s before authentication", codec.command_name(command))
        elif command == codec.OPEN:
            await self._on_open(header.arg0, data)
        elif command == codec.WRTE:
            stream = self._streams.get(header.arg1)
            if stream is None:
                await self.send(codec.Message(codec.CLSE, 0, header.arg0))
            else:
                stream.feed(data)
        elif command == codec.OKAY:
            stream = self._streams.get(header.arg1)
            if stream is not None and stream.pending:
                stream.peer_opened(header.arg0)
            elif stream is not None:
                stream.peer_okay()
        elif command == codec.CLSE:
            stream = self._streams.pop(header.arg1, None)
            if stream is not None:
                answer = not stream.sent_close and not stream.pending
                stream.peer_closed()
                if answer:  # the host closed first: answer with our own CLSE
                    await self.send(codec.Message(codec.CLSE, stream.local_id, stream.remote_id))

    async def _on_connect(self, header: codec.Header, data: bytes) -> None:
        self._version = min(header.arg0, codec.VERSION_SKIP_CHECKSUM)
        self._peer_max_payload = max(256, min(header.arg1, self._ctx.max_payload_bytes))
        self._online = False
        policy = self._ctx.policy
        if policy.mode is AuthMode.NONE and not self._ctx.faults.current.reject_auth:
            await self._send_banner()
        else:
            await self._send_token()

    async def _send_token(self) -> None:
        self._token = new_token()
        await self.send(codec.Message(codec.AUTH, codec.AUTH_TOKEN, 0, self._token))

    async def _send_banner(self) -> None:
        self._online = True
        await self.send(codec.Message(codec.CNXN, self._version, self._ctx.max_payload_bytes, self._ctx.banner()))

    async def _on_auth(self, header: codec.Header, data: bytes) -> None:
        faults = self._ctx.faults
        rejected = faults.current.reject_auth or self._ctx.policy.mode is AuthMode.REJECT
        if header.arg0 == codec.AUTH_SIGNATURE:
            if not rejected and self._ctx.policy.signature_ok(self._token, data):
                await self._send_banner()
            else:
                await self._send_token()
        elif header.arg0 == codec.AUTH_RSAPUBLICKEY:
            if rejected:
                faults.fire("reject_auth", f"{self._ctx.name} refused the host's key", disarm=False)
            elif self._ctx.policy.offer(data):
                await self._send_banner()
            else:
                self._log.info("host key not in the accepted list: staying unauthorized")

    async def _on_open(self, remote_id: int, data: bytes) -> None:
        async with self._open_order:
            await self._open_service(remote_id, data)

    async def _open_service(self, remote_id: int, data: bytes) -> None:
        name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        runner = self._ctx.open_service(name)
        prepare = getattr(runner, "prepare", None)  # a service that can fail to open (tcp:) decides before OKAY
        if runner is not None and prepare is not None and not await prepare():
            runner = None
        if runner is None:
            self._log.info("refusing service %r", name)
            await self.send(codec.Message(codec.CLSE, 0, remote_id))
            return
        local_id = self._next_id
        self._next_id += 1
        stream = Stream(local_id, remote_id, self.send, self._peer_max_payload)
        stream.link = self
        self._streams[local_id] = stream
        await self.send(codec.Message(codec.OKAY, local_id, remote_id))
        task = asyncio.create_task(self._run_service(runner, stream, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def open_stream(self, destination: str, timeout_s: float = 10) -> Stream | None:
        """Open a stream to the host (``reverse:`` forwards this way); None when the host refuses it."""
        if not self._online or self._writer.is_closing():
            return None
        local_id = self._next_id
        self._next_id += 1
        stream = Stream(local_id, 0, self.send, self._peer_max_payload)
        stream.link = self
        self._streams[local_id] = stream
        async with self._open_order:
            await self.send(codec.Message(codec.OPEN, local_id, 0, destination.encode() + b"\0"))
        if await stream.wait_opened(timeout_s):
            return stream
        self._streams.pop(local_id, None)
        return None

    def kick(self) -> None:
        """Drop this link (the ``reconnect`` service): the host sees the device go and reconnects."""
        self._writer.close()

    async def _run_service(self, runner: ServiceRunner, stream: Stream, name: str) -> None:
        try:
            await runner(stream)
        except Exception:  # a broken service must not take the connection down
            self._log.exception("service %r failed", name)
        finally:
            with contextlib.suppress(ConnectionError):
                await stream.close()
