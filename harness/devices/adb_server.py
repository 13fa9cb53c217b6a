"""Android devices under an adb server (the one Android Studio, scrcpy and device labs keep running).

The only module importing ``adbutils``, the maintained client of the server's host protocol. The
harness never starts, stops or reconfigures a server: it asks the one at the address it is given
(``adb-server:SERIAL``: the local server; ``adb-server:HOST:PORT/SERIAL``: a lab host's) for a
transport to the device and speaks shell v2 (exit codes from the device) and sync through it.

Reliability: each operation opens its own connection through the server. When the server drops
one, or says the device is not there, its state (``host:devices``) decides: a transient state
(``offline``, ``unauthorized`` while the user has not answered the prompt, not listed, the server
restarting) is waited out, like ``adb wait-for-device``, for ``reconnect_window_s``, then the
operation runs again; otherwise, or when the window passes, :class:`DeviceLost` names the state the
server reports and the fix. A shell command has a total ``timeout_s``; on expiry (or when the run is
stopped) the remote process tree is killed over a fresh connection.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from adbutils import AdbClient, AdbConnection, AdbDevice
from adbutils.errors import AdbConnectionError, AdbError

from harness.devices import adb_commands as cmds
from harness.devices.adb_servers import ServerAddress, parse_devices, state_meaning
from harness.devices.adb_staging import PULL_BUDGET_S, AdbShellDevice
from harness.devices.base import AFTER_STOP_S, ShellResult
from harness.devices.output import BoundedOutput
from harness.errors import CommandTimeout, DeviceError, DeviceLost, RunInterrupted

log = logging.getLogger(__name__)
T = TypeVar("T")

KILL_BUDGET_S = 2.0  # a lab host's server is a network hop away
CANCEL_POLL_S = 0.1
#: No message of the server or sync protocols is larger (sync data: 64 KiB); a bigger announced size
#: is a hostile or broken device, refused instead of allocated.
MAX_READ_BYTES = 1 << 20
SYNC_DATA_MAX = 64 * 1024  # the largest sync DATA payload adbd accepts
HINT_SERVER_DOWN = ("start it (`adb start-server`); for a lab host, check `adb -a -P 5037 nodaemon server` runs "
                    "there and the firewall or SSH tunnel lets this machine in")
_V2_STDOUT, _V2_STDERR, _V2_EXIT, _V2_CLOSE_STDIN = 1, 2, 3, 4
_LINK_ERRORS = (AdbError, OSError, EOFError)


# --- adbutils, without its side effects -----------------------------------------------------


class _SendAllSocket(socket.socket):
    """A socket whose ``send`` sends everything: adbutils ignores short sends (possible on a socket with a
    timeout), which would corrupt a sync stream.

    It also joins adbutils' sync ``DATA`` header (8 bytes, one ``send``) to the payload that follows (the
    next ``send``): sent apart, the server relays each as its own packet, a device round trip each, and a
    push runs at half the speed of ``adb push``.
    """

    _held = b""

    def send(self, data: bytes, flags: int = 0) -> int:  # type: ignore[override]
        size = len(data)
        if size == 8 and not self._held and bytes(data[:4]) == b"DATA":
            self._held = bytes(data)
            return size
        if self._held:
            data, self._held = self._held + bytes(data), b""
        self.sendall(data, flags)
        return size


class _Connection(AdbConnection):
    """adbutils' connection without its fallback: when the server does not answer, adbutils runs
    ``adb start-server`` (starting a server the user did not ask for); here that is an error. Also
    refuses announced sizes above :data:`MAX_READ_BYTES`."""

    def __init__(self, address: ServerAddress, connect_timeout_s: float) -> None:
        self._eh_address = address
        self._eh_connect_timeout_s = connect_timeout_s
        super().__init__(address.host, address.port)

    def _safe_connect(self) -> socket.socket:
        address = self._eh_address
        try:
            sock = socket.create_connection((address.host, address.port), timeout=self._eh_connect_timeout_s)
        except OSError as exc:
            raise AdbConnectionError(f"adb server {address} does not answer: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _SendAllSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())

    def read(self, n: int) -> bytes:
        if n > MAX_READ_BYTES:
            raise AdbError(f"the device announced a {n}-byte message (at most {MAX_READ_BYTES}); refused")
        return super().read(n)


class _Client(AdbClient):
    """adbutils' client on :class:`_Connection`, asking the server's version once instead of per operation."""

    def __init__(self, address: ServerAddress, timeout_s: float) -> None:
        super().__init__(host=address.host, port=address.port, socket_timeout=timeout_s)
        self.address = address
        self.timeout_s = timeout_s
        self._version: int | None = None

    def make_connection(self, timeout: float | None = None) -> AdbConnection:
        conn = _Connection(self.address, min(timeout or self.timeout_s, self.timeout_s))
        conn.conn.settimeout(timeout or self.timeout_s)
        return conn

    def server_version(self) -> int:
        if self._version is None:
            self._version = super().server_version()
        return self._version

    def devices(self) -> list[tuple[str, str]]:
        """``[(serial, state)]`` as ``adb devices`` prints them (states may contain spaces)."""
        with self.make_connection() as conn:
            conn.send_command("host:devices")
            conn.check_okay()
            return parse_devices(conn.read_string_block())


# --- shell streams ----------------------------------------------------------------------------


class _Gone(Exception):
    """The server dropped the connection or refused the device; its state decides what happens next."""


class _Deadline(Exception):
    """The operation's time budget ran out."""


class _ShellStream:
    """Parses a shell stream as it arrives: v2 frames (stdout, stderr, exit) or v1 bytes with the sentinel.

    Keeps bounded output (head and tail) whatever the command prints, and the remote pid from the
    first stdout line (printed before the command runs) so a timeout can kill the command.
    """

    def __init__(self, v2: bool, token: str) -> None:
        self.v2 = v2
        self.token = token
        self.raw = BoundedOutput()  # v1: everything; v2: the command's stdout and stderr, merged as they come
        self.pid: int | None = None
        self.exit_code: int | None = None
        self.exited = False
        self._head = b""  # v2: stdout until the pid line is complete
        self._frame = b""  # v2: a partial frame header
        self._left = 0  # v2: payload bytes still due in the current frame
        self._kind = 0

    def feed(self, data: bytes) -> None:
        if not self.v2:
            self.raw.feed(data)
            if self.pid is None:
                self.pid = cmds.pid_of(self.raw.first(96), self.token)
            return
        view = memoryview(data)
        while view and not self.exited:
            if self._left == 0:
                need = 5 - len(self._frame)
                self._frame += bytes(view[:need])
                view = view[need:]
                if len(self._frame) < 5:
                    return
                self._kind, self._left = struct.unpack("<BI", self._frame)
                self._frame = b""
                if self._left == 0 and self._kind == _V2_EXIT:
                    self.exited = True  # an exit frame without a code: the code stays unknown
                continue
            part, view = bytes(view[: self._left]), view[self._left:]
            self._left -= len(part)
            self._payload(part)

    def _payload(self, part: bytes) -> None:
        if self._kind == _V2_EXIT:
            self.exit_code, self.exited = part[0], True
        elif self._kind == _V2_STDOUT and self.pid is None and len(self._head) < 96:
            self._head += part
            line, newline, rest = self._head.partition(b"\n")
            if newline:
                self.pid = cmds.pid_of(line + b"\n", self.token)
                self.raw.feed(rest if self.pid is not None else self._head)
                self._head = b""
        elif self._kind in (_V2_STDOUT, _V2_STDERR):
            self.raw.feed(part)

    def result(self) -> tuple[str, int | None]:
        """The command's output (its own bytes only) and exit code."""
        if self.v2:
            out = self.raw.getvalue() + (self._head if self.pid is None else b"")
            return out.decode("utf-8", "replace"), self.exit_code
        parsed = cmds.parse_wrapped(self.raw.getvalue(), self.token)
        return parsed.output.decode("utf-8", "replace"), parsed.exit_code


class _Paced:
    """A file for adbutils' sync push that stops it when the deadline passes or the run is cancelled.

    ``read`` returns up to :data:`SYNC_DATA_MAX` bytes whatever it is asked: adbutils asks for 4 KiB, which
    makes 16 times the sync packets (and system calls) of ``adb push``.
    """

    def __init__(self, fh: BinaryIO, deadline: float, cancelled: Callable[[], bool]) -> None:
        self.fh = fh
        self.deadline = deadline
        self.cancelled = cancelled

    def read(self, n: int = -1) -> bytes:
        if self.cancelled():
            raise RunInterrupted("push stopped: the run was interrupted")
        if time.monotonic() > self.deadline:
            raise _Deadline()
        return self.fh.read(SYNC_DATA_MAX)


# --- the device -----------------------------------------------------------------------------


class AdbServerDevice(AdbShellDevice):
    """An Android device reached through an adb server. Thread-safe: one operation at a time per device."""

    def __init__(
        self,
        device_id: str,
        *,
        server: ServerAddress,
        serial: str,
        transport_timeout_s: float = 10.0,
        reconnect_window_s: float = 10.0,
        backoff_s: float = 0.2,
    ) -> None:
        """``server``/``serial``: where the device is; ``transport_timeout_s``: one socket wait (connect, a
        server reply, a stalled transfer); ``reconnect_window_s``: how long a device the server reports gone
        is waited for."""
        super().__init__(device_id, log)
        self.server = server
        self.serial = serial
        self.transport_timeout_s = transport_timeout_s
        self.reconnect_window_s = reconnect_window_s
        self.backoff_s = backoff_s
        self._client = _Client(server, transport_timeout_s)
        self._adb = AdbDevice(self._client, serial=serial)
        self._lock = threading.RLock()
        self._v2: bool | None = None

    # -- the server's view -------------------------------------------------------------
    def server_state(self) -> str | None:
        """The device's state as the server lists it (``''``: not listed), or None when the server does not answer."""
        try:
            return dict(self._client.devices()).get(self.serial, "")
        except _LINK_ERRORS:
            return None

    def _lost(self, what: str, state: str | None, cause: str) -> DeviceLost:
        if state is None:
            return DeviceLost(f"{what}: adb server {self.server} does not answer ({cause})", device=self.id,
                              hint=HINT_SERVER_DOWN)
        if state == "device":
            return DeviceLost(f"{what}: adb server {self.server} lists {self.serial} as ready but drops every attempt "
                              f"({cause})", device=self.id,
                              hint=f"try `adb -s {cmds.q(self.serial)} shell true` on the server's host; replug it")
        meaning = state_meaning(state)
        shown = state or "not listed"
        return DeviceLost(f"{what}: adb server {self.server} reports {self.serial} {shown}: {meaning.reason}",
                          device=self.id, hint=meaning.hint)

    def _run(self, what: str, op: Callable[[], T]) -> T:
        """Run ``op``; when the server drops it, wait for the device to be back (bounded), then run it again."""
        with self._lock:
            first_failure: float | None = None
            delay_s = self.backoff_s
            while True:
                try:
                    return op()
                except _Gone as exc:
                    cause = str(exc)
                now = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                state = self.server_state()
                while state != "device":
                    meaning = state_meaning(state) if state is not None else None
                    left_s = first_failure + self.reconnect_window_s - time.monotonic()
                    if left_s <= 0 or (meaning is not None and not meaning.transient):
                        raise self._lost(what, state, cause) from None
                    (self.log.warning if delay_s == self.backoff_s else self.log.debug)(
                        "%s: %s (server state %r); waiting up to %.1f s for the device", what, cause, state, left_s)
                    self._sleep(min(delay_s, left_s))
                    delay_s = min(delay_s * 2, 1.0)
                    state = self.server_state()
                if time.monotonic() - first_failure > self.reconnect_window_s:
                    raise self._lost(what, state, cause)  # listed, but every attempt breaks
                self._v2 = None  # a device that came back may be another build
                self._sleep(min(delay_s, 0.05))

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.cancelled():
                raise RunInterrupted(f"[{self.id}] the run was interrupted")
            time.sleep(min(left, CANCEL_POLL_S))

    def _open(self, service: str) -> AdbConnection:
        """A connection to ``service`` on the device, through the server; :class:`_Gone` when refused."""
        try:
            conn = self._adb.open_transport(timeout=self.transport_timeout_s)
        except _LINK_ERRORS as exc:
            raise _Gone(_describe(exc)) from None
        try:
            conn.send_command(service)
            conn.check_okay()
        except _LINK_ERRORS as exc:
            conn.close()
            raise _Gone(_describe(exc)) from None
        return conn

    def _shell_v2(self) -> bool:
        if self._v2 is None:
            try:
                self._v2 = "shell_v2" in self._adb.get_features().split(",")
            except _LINK_ERRORS as exc:
                raise _Gone(_describe(exc)) from None
        return self._v2

    def close(self) -> None:
        """Nothing to release: every operation opens (and closes) its own connection."""

    # -- shell --------------------------------------------------------------------------
    def shell(self, command: str, timeout_s: float = 60.0) -> ShellResult:
        """Run ``command`` with ``sh``; output is stdout and stderr merged, the exit code the device's (shell v2).

        ``timeout_s`` bounds each attempt; a command whose connection the server drops is killed and run
        again once the device is back (within ``reconnect_window_s``).
        """
        start = time.monotonic()
        orphans: list[tuple[int, str]] = []

        def attempt() -> ShellResult:
            while orphans:
                self._kill_remote(*orphans.pop())
            late = self.cancelled()  # started after the stop: a cleanup command, given AFTER_STOP_S
            deadline = time.monotonic() + (min(timeout_s, AFTER_STOP_S) if late else timeout_s)
            stream = _ShellStream(self._shell_v2(), cmds.new_token())
            wrapped = (cmds.announce_pid_command(command, stream.token) if stream.v2
                       else cmds.wrap_command(command, stream.token))
            conn = self._open(("shell,v2,raw:" if stream.v2 else "shell:") + wrapped)
            try:
                if stream.v2:
                    conn.conn.sendall(struct.pack("<BI", _V2_CLOSE_STDIN, 0))
                self._pump(conn, stream, deadline, cancellable=not late)
            except _Gone:
                orphans.extend([(stream.pid, stream.token)] if stream.pid is not None else [])
                raise
            except (_Deadline, KeyboardInterrupt) as exc:  # RunInterrupted is a KeyboardInterrupt
                # First: once the stream closes, the device may reap the shell and leave its children orphaned.
                self._kill_remote(stream.pid, stream.token)
                conn.close()
                killed = f"; remote process {stream.pid} killed" if stream.pid is not None else ""
                if isinstance(exc, KeyboardInterrupt) or late:
                    raise RunInterrupted(f"[{self.id}] command stopped: the run was interrupted{killed}") from None
                raise CommandTimeout(f"command timed out after {timeout_s:g} s{killed}", timeout_s=timeout_s,
                                     device=self.id, command=command, output=stream.result()[0]) from None
            finally:
                conn.close()
            output, code = stream.result()
            return ShellResult(command, output, code, time.monotonic() - start)

        return self._run(f"shell {command[:60]!r}", attempt)

    def _pump(self, conn: AdbConnection, stream: _ShellStream, deadline: float, *, cancellable: bool) -> None:
        """Read the shell stream into ``stream`` until the command ended, the deadline passed or the run stopped."""
        sock = conn.conn
        while not stream.exited:
            if cancellable and self.cancelled():
                raise RunInterrupted(f"[{self.id}] the run was interrupted")
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                raise _Deadline()
            try:
                readable, _, _ = select.select([sock], [], [], min(CANCEL_POLL_S, left_s))
                data = sock.recv(1 << 16) if readable else None
            except OSError as exc:
                raise _Gone(_describe(exc)) from None
            if data is None:
                continue
            if not data:
                if not stream.v2 and (stream.result()[1] is not None or self.server_state() == "device"):
                    return  # v1 ends with the stream (a command that killed its own shell has no exit code)
                raise _Gone("the adb server closed the shell before the command ended")
            stream.feed(data)

    def _kill_remote(self, pid: int | None, token: str | None = None) -> None:
        """Kill a timed-out or stopped command's process tree (and, with its ``token``, every process it started)
        over a fresh connection, within :data:`KILL_BUDGET_S`."""
        if pid is None:
            return
        try:
            conn = self._open("shell:" + cmds.kill_tree_command(pid, token))
            try:
                conn.conn.settimeout(KILL_BUDGET_S)
                conn.read_until_close(encoding=None)
            finally:
                conn.close()
            self.log.info("killed remote process %d", pid)
        except (_Gone, *_LINK_ERRORS) as exc:
            self.log.warning("could not kill remote process %d: %s", pid, _describe(exc))

    # -- files --------------------------------------------------------------------------
    def _transfer(self, what: str, budget_s: float, move: Callable[[float], None]) -> None:
        """One sync transfer within ``budget_s``; the device's refusal is a DeviceError, a drop is retried."""
        deadline = time.monotonic() + budget_s

        def op() -> None:
            try:
                move(deadline)
            except _Deadline:
                raise DeviceError(f"{what}: not done within {budget_s:g} s", device=self.id, command=what,
                                  hint="check the cable or network to the device and its server") from None
            except _LINK_ERRORS as exc:
                state = self.server_state()
                if state == "device" and isinstance(exc, AdbError) and not isinstance(exc, AdbConnectionError):
                    raise DeviceError(f"{what}: the device refused: {_describe(exc)}", device=self.id,
                                      command=what) from None
                raise _Gone(_describe(exc)) from None

        self._run(what, op)

    def _send_file(self, local: Path, remote: str, budget_s: float) -> None:
        def move(deadline: float) -> None:
            with open(local, "rb") as fh:
                self._adb.sync.push(_Paced(fh, deadline, self.cancelled), remote, mode=0o600)  # type: ignore[arg-type]

        self._transfer(f"push {remote}", budget_s, move)

    def _recv_file(self, remote: str, local: str) -> None:
        def move(deadline: float) -> None:
            with open(local, "wb") as fh:
                for chunk in self._adb.sync.iter_content(remote):
                    if self.cancelled():
                        raise RunInterrupted(f"[{self.id}] pull stopped: the run was interrupted")
                    if time.monotonic() > deadline:
                        raise _Deadline()
                    fh.write(chunk)

        self._transfer(f"pull {remote}", PULL_BUDGET_S, move)


def _describe(exc: BaseException) -> str:
    text = " ".join(str(a) for a in exc.args if isinstance(a, str)).strip() or str(exc)
    text = " ".join(text.split())  # the server's messages span lines
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- discovery ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerListing:
    """What one server said: its devices as ``(serial, state)``, or why it did not answer."""

    server: ServerAddress
    devices: tuple[tuple[str, str], ...] = ()
    error: str | None = None


def open_adb_server_device(device_id: str, *, server: ServerAddress, serial: str,
                           **options: float) -> AdbServerDevice:
    """Opener for :mod:`harness.devices.discovery` (nothing is contacted until the first operation)."""
    return AdbServerDevice(device_id, server=server, serial=serial, **options)


def list_server(server: ServerAddress, timeout_s: float = 5.0) -> ServerListing:
    """Every device ``server`` knows, with its state (``adb -H HOST -P PORT devices``)."""
    try:
        return ServerListing(server, tuple(_Client(server, timeout_s).devices()))
    except _LINK_ERRORS as exc:
        return ServerListing(server, error=_describe(exc))


def list_servers(servers: Sequence[ServerAddress], timeout_s: float = 5.0) -> list[ServerListing]:
    """:func:`list_server` for each server, in order."""
    return [list_server(s, timeout_s) for s in dict.fromkeys(servers)]


def server_lists(server: ServerAddress, serial: str) -> bool:
    """True when ``server`` answers and lists ``serial`` (in any state)."""
    return any(s == serial for s, _ in list_server(server, timeout_s=2.0).devices)

