"""Socket services: ``tcp:``/``localabstract:`` (``adb forward`` targets) and ``reverse:`` (``adb reverse``).

Everything is opened through the device's network (:mod:`netns`): with namespace isolation that is the
device's own loopback, so a forward reaches only device-side listeners and a reverse listener is
reachable only from inside the device. ``tcp:HOST:PORT`` is refused unless HOST is a loopback name.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.testing.android.netns import DeviceNetwork
from harness.testing.android.stream import Stream, StreamClosed

if TYPE_CHECKING:
    from harness.testing.android.connection import AdbConnection

_READ_BYTES = 64 * 1024


def _loopback(host: str) -> bool:
    if host.strip("[]") in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) <= 65535 else None


def connect_request(spec: str) -> dict[str, object] | None:
    """The network request a ``tcp:``/``localabstract:`` service name asks for; None when refused."""
    if spec.startswith("tcp:"):
        host, sep, port_text = spec[4:].rpartition(":")
        port = _port(port_text)
        if port is None or port == 0 or (sep and not _loopback(host)):
            return None
        return {"op": "connect_tcp", "port": port}
    if spec.startswith("localabstract:") and len(spec) > len("localabstract:"):
        return {"op": "connect_unix", "name": spec[len("localabstract:") :], "abstract": True}
    return None


def listen_request(spec: str) -> dict[str, object] | None:
    """The network request a ``reverse`` listener spec (device side) asks for; None when unsupported."""
    if spec.startswith("tcp:"):
        port = _port(spec[4:])
        return None if port is None else {"op": "listen_tcp", "port": port}
    if spec.startswith("localabstract:") and len(spec) > len("localabstract:"):
        return {"op": "listen_unix", "name": spec[len("localabstract:") :], "abstract": True}
    return None


async def _open(network: DeviceNetwork, request: dict[str, object]) -> socket.socket:
    sock = await asyncio.get_running_loop().run_in_executor(None, network.open, request)
    sock.setblocking(False)
    return sock


async def relay(stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes both ways until either side closes; the other side is then closed too."""

    async def host_to_socket() -> None:
        with contextlib.suppress(ConnectionError):
            while data := await stream.read():
                writer.write(data)
                await writer.drain()

    async def socket_to_host() -> None:
        with contextlib.suppress(ConnectionError, StreamClosed):
            while data := await reader.read(_READ_BYTES):
                await stream.write(data)

    tasks = {asyncio.create_task(host_to_socket()), asyncio.create_task(socket_to_host())}
    try:
        _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


class Connect:
    """``tcp:PORT`` / ``localabstract:NAME``: connect inside the device, then relay.

    The connection calls :meth:`prepare` before answering the ``OPEN``, so a refused connect is a
    ``CLSE`` instead of an ``OKAY``, as with adbd.
    """

    def __init__(self, network: DeviceNetwork, request: dict[str, object]) -> None:
        self._network = network
        self._request = request
        self._sock: socket.socket | None = None

    async def prepare(self) -> bool:
        try:
            self._sock = await _open(self._network, self._request)
        except OSError:
            return False
        return True

    async def __call__(self, stream: Stream) -> None:
        if self._sock is None and not await self.prepare():
            return
        reader, writer = await asyncio.open_connection(sock=self._sock)
        await relay(stream, reader, writer)


@dataclass
class _Listener:
    server: asyncio.Server
    local: str
    remote: str


def _protocol_string(text: str) -> bytes:
    data = text.encode()
    return f"{len(data):04x}".encode() + data


class ReverseListeners:
    """The ``adb reverse`` listeners of one link (they close when the link does, as adbd's do)."""

    def __init__(self, link: AdbConnection, network: DeviceNetwork, serial: str) -> None:
        self._link = link
        self._network = network
        self._serial = serial
        self._listeners: dict[str, _Listener] = {}
        link.on_abort.append(self.close_all)

    def listing(self) -> str:
        return "".join(f"{self._serial} {entry.local} {entry.remote}\n" for entry in self._listeners.values())

    def close_all(self) -> None:
        for entry in self._listeners.values():
            entry.server.close()
        self._listeners.clear()

    def remove(self, local: str) -> bool:
        entry = self._listeners.pop(local, None)
        if entry is not None:
            entry.server.close()
        return entry is not None

    async def install(self, local: str, remote: str, *, no_rebind: bool) -> tuple[str | None, int]:
        """(error or None, resolved tcp port or 0)."""
        if local in self._listeners:
            if no_rebind:
                return "cannot rebind existing socket", 0
            self._listeners[local].remote = remote
            return None, 0
        request = listen_request(local)
        if request is None:
            return f"cannot bind listener: unsupported '{local}'", 0
        try:
            sock = await _open(self._network, request)
        except OSError as exc:
            return f"cannot bind listener: {exc.strerror or exc}", 0
        resolved = sock.getsockname()[1] if request["op"] == "listen_tcp" and request["port"] == 0 else 0
        name = f"tcp:{resolved}" if resolved else local
        entry = _Listener(None, name, remote)  # type: ignore[arg-type]

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream = await self._link.open_stream(entry.remote)
            if stream is None:
                writer.close()
                return
            try:
                await relay(stream, reader, writer)
            finally:
                with contextlib.suppress(ConnectionError):
                    await stream.close()

        entry.server = await asyncio.start_server(accept, sock=sock)
        self._listeners[name] = entry
        return None, resolved


async def run_reverse(stream: Stream, network: DeviceNetwork, command: str, serial: str) -> None:
    """``reverse:list-forward``, ``forward:[norebind:]LOCAL;REMOTE``, ``killforward:LOCAL``, ``killforward-all``."""
    link = stream.link
    if link is None:
        return
    listeners = link.state.get("reverse")  # type: ignore[attr-defined]
    if listeners is None:
        listeners = link.state["reverse"] = ReverseListeners(link, network, serial)  # type: ignore[attr-defined]
    assert isinstance(listeners, ReverseListeners)
    if command == "list-forward":
        await stream.write(_protocol_string(listeners.listing()))
    elif command == "killforward-all":
        listeners.close_all()
        await stream.write(b"OKAY")
    elif command.startswith("killforward:"):
        local = command[len("killforward:") :]
        if listeners.remove(local):
            await stream.write(b"OKAY")
        else:
            await stream.write(b"FAIL" + _protocol_string(f"listener '{local}' not found"))
    elif command.startswith("forward:"):
        spec = command[len("forward:") :]
        no_rebind = spec.startswith("norebind:")
        spec = spec[len("norebind:") :] if no_rebind else spec
        local, sep, remote = spec.partition(";")
        if not sep or not local or not remote or ";" in remote or remote.startswith("*"):
            await stream.write(b"FAIL" + _protocol_string(f"bad forward: {spec}"))
            return
        error, resolved = await listeners.install(local, remote, no_rebind=no_rebind)
        if error is not None:
            await stream.write(b"FAIL" + _protocol_string(error))
        else:
            await stream.write(b"OKAY" + (_protocol_string(str(resolved)) if resolved else b""))
    else:
        await stream.write(b"FAIL" + _protocol_string(f"unknown reverse request: {command}"))
