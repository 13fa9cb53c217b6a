"""Android backend: phones (and Linux boards) over ADB, driven with adb-shell 0.4.4.

The only module importing ``adb_shell``. Reaches devices over TCP (``adb tcpip`` phones,
DeviceFarmer/STF endpoints, the virtual device) and over USB by serial when libusb
(``adb_shell.transport.usb_transport``) is importable. No adb server is needed.

Reliability: every operation runs on a link that is reopened on demand; a broken link
(reset, EOF, bad checksum, stalled socket) is retried with exponential backoff for
``reconnect_window_s``, then :class:`DeviceLost` is raised with the last cause. A shell
command has its own total ``timeout_s`` (an absolute deadline enforced by the transport,
so it holds even when the device stalls mid-message); on expiry the remote process tree
is killed over a fresh link and :class:`CommandTimeout` is raised.

Keys: the ``key`` given (the fronts pass ``$HARNESS_ADB_KEY``), else ``~/.android/adbkey`` (the Android
SDK's, so a phone that trusts ``adb`` trusts the harness), created 0600 when missing; key material is never
logged. Nothing here reads the environment: :class:`~harness.devices.settings.DeviceSettings` does, at the front.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from adb_shell import adb_message
from adb_shell import constants as adb_constants
from adb_shell import exceptions as adb_errors
from adb_shell.adb_device import AdbDevice, _AdbIOManager
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_pythonrsa import PythonRSASigner
from adb_shell.transport.tcp_transport import TcpTransport

from harness.devices import adb_commands as cmds
from harness.devices.adb_staging import (  # noqa: F401 - device_info, WORKDIR: public names of this module too
    HINT_ACCEPT_KEY,
    PULL_BUDGET_S,
    WORKDIR,
    AdbShellDevice,
    device_info,
)
from harness.devices.base import AFTER_STOP_S, ShellResult
from harness.devices.discovery import inventory_ids
from harness.devices.output import BoundedOutput
from harness.devices.settings import DEFAULT_RECONNECT_S, DeviceSettings, default_cache_dir, sdk_key_path
from harness.errors import (
    AuthError,
    CommandTimeout,
    DeviceError,
    DeviceLost,
    DeviceNotFound,
    HarnessError,
    RunInterrupted,
)

try:  # USB needs libusb1 (the ``usb1`` module); TCP works without it.
    from adb_shell.transport.usb_transport import UsbTransport
except ImportError:  # pragma: no cover - depends on the machine
    UsbTransport = None  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_PORT = 5555
KILL_BUDGET_S = 0.75
CANCEL_POLL_S = 0.1  # how often a wait on the device looks at the run's cancellation token
_LINK_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError,
    adb_errors.TcpTimeoutException, adb_errors.AdbTimeoutError, adb_errors.AdbConnectionError,
    adb_errors.InvalidResponseError, adb_errors.InvalidChecksumError, adb_errors.InvalidCommandError,
    adb_errors.UsbReadFailedError, adb_errors.UsbWriteFailedError,
)  # fmt: skip


# --- addresses and keys ---------------------------------------------------------------------


def parse_device_id(device_id: str) -> tuple[str, int] | str:
    """``adb:HOST[:PORT]`` or ``HOST:PORT`` → ``(host, port)`` (TCP); a bare serial → the serial (USB)."""
    rest = device_id[4:] if device_id.startswith("adb:") else device_id
    if not rest:
        raise DeviceNotFound(f"empty adb device id {device_id!r}", hint="use adb:HOST:PORT or a USB serial")
    if rest.startswith("["):  # [IPv6]:PORT
        host, _, port = rest[1:].partition("]")
        return host, int(port.lstrip(":") or DEFAULT_PORT)
    host, sep, port = rest.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    if device_id.startswith("adb:") or sep:
        return rest, DEFAULT_PORT
    return rest


def ensure_key(path: Path | None = None, cache_dir: Path | None = None) -> Path:
    """Reuse an existing key, else create one (private part 0600) at ``path`` (default: the SDK's).

    When that folder is not writable, the key goes to the harness's own ``cache_dir/adb`` folder.
    """
    path = path or sdk_key_path()
    if path.is_file():
        return path
    for target in (path, (cache_dir or default_cache_dir()) / "adb" / "adbkey"):
        if target.is_file():
            return target
        try:
            _create_key(target)
            return target
        except OSError as exc:
            log.warning("cannot create an adb key in %s (%s); trying the harness folder", target.parent, exc.strerror)
    raise AuthError(f"cannot create an adb key at {path}", hint="set HARNESS_ADB_KEY to a writable path")


def _create_key(target: Path) -> None:
    """Generate in a private temporary folder next to ``target``, then rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    work = Path(tempfile.mkdtemp(prefix=".eh-keygen-", dir=target.parent))
    try:
        keygen(str(work / "adbkey"))
        (work / "adbkey").chmod(0o600)
        (work / "adbkey.pub").chmod(0o644)
        os.replace(work / "adbkey.pub", target.with_name(target.name + ".pub"))
        os.replace(work / "adbkey", target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("created adb key %s (0600)", target)


# --- transport ------------------------------------------------------------------------------


class _DeadlineTcpTransport(TcpTransport):
    """adb-shell's TCP transport plus an absolute deadline and EOF detection.

    adb-shell's per-call ``transport_timeout_s`` restarts on every read, so a device that
    trickles output (or stalls mid-message) could hold a command far past its timeout; and
    its reader spins on a closed socket until ``read_timeout_s``. Here every wait is cut at
    ``deadline`` (``time.monotonic()`` seconds) and EOF raises at once.
    """

    def __init__(self, host: str, port: int, cancelled: Callable[[], bool] | None = None) -> None:
        super().__init__(host, port)
        self.deadline: float | None = None
        self.cancelled = cancelled or (lambda: False)
        self.cancellable = True  # False while a cleanup command runs after the stop

    def _wait_s(self, transport_timeout_s: float | None) -> float | None:
        if self.deadline is None:
            return transport_timeout_s
        left = max(0.0, self.deadline - time.monotonic())
        return left if transport_timeout_s is None else min(left, transport_timeout_s)

    def _ready(self, readers: list, writers: list, transport_timeout_s: float | None) -> bool:
        """Wait for the socket in slices, so a cancelled run stops a quiet command at once (RunInterrupted)."""
        limit = self._wait_s(transport_timeout_s)
        end = None if limit is None else time.monotonic() + limit
        while True:
            if self.cancellable and self.cancelled():
                raise RunInterrupted(f"{self._host}:{self._port}: the run was interrupted")
            step = CANCEL_POLL_S if end is None else min(CANCEL_POLL_S, max(0.0, end - time.monotonic()))
            readable, writeable, _ = select.select(readers, writers, [], step)
            if readable or writeable:
                return True
            if end is not None and time.monotonic() >= end:
                return False

    def connect(self, transport_timeout_s: float | None) -> None:
        super().connect(transport_timeout_s)
        if self._connection is not None:
            self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
        if self._connection is None:
            raise ConnectionResetError("adb link is closed")
        if not self._ready([self._connection], [], transport_timeout_s):
            raise adb_errors.TcpTimeoutException(f"reading from {self._host}:{self._port} timed out")
        data = self._connection.recv(numbytes)
        if not data:
            raise ConnectionResetError(f"{self._host}:{self._port} closed the connection")
        return data

    def bulk_write(self, data: bytes, transport_timeout_s: float | None) -> int:
        """Send all of ``data``: adb-shell ignores short sends on its non-blocking socket (a corrupt stream)."""
        if self._connection is None:
            raise ConnectionResetError("adb link is closed")
        view = memoryview(data)
        while view:
            if not self._ready([], [self._connection], transport_timeout_s):
                raise adb_errors.TcpTimeoutException(f"sending to {self._host}:{self._port} timed out")
            try:
                view = view[self._connection.send(view):]
            except BlockingIOError:
                continue
        return len(data)


def _fast_checksum(data: bytes | bytearray | str) -> int:
    """adb-shell's ``checksum`` (byte sum mod 2**32), vectorised: 8 ms/MB in pure Python, under 1 ms with numpy."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return int(np.frombuffer(raw, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


class _FastChecksumIO(_AdbIOManager):
    """adb-shell's I/O manager with :func:`_fast_checksum` for the payloads it packs and verifies.

    adb-shell sums payloads with a module-level pure-Python function called from these two methods
    (via ``AdbMessage.pack`` when sending). Overriding them on our own links, instead of replacing that
    function, leaves every other adb-shell user in the process alone. If an adb-shell release renames
    them, its own code runs: slower, same bytes.
    """

    def _send(self, msg: adb_message.AdbMessage, adb_info: Any) -> None:
        header = struct.pack(adb_constants.MESSAGE_FORMAT, msg.command, msg.arg0, msg.arg1, len(msg.data),
                             _fast_checksum(msg.data), msg.magic)
        self._transport.bulk_write(header, adb_info.transport_timeout_s)
        if msg.data:
            self._transport.bulk_write(msg.data, adb_info.transport_timeout_s)

    def _read_packet_from_device(self, adb_info: Any) -> tuple[bytes, int, int, bytes]:
        header = self._read_bytes_from_device(adb_constants.MESSAGE_SIZE, adb_info)
        cmd, arg0, arg1, data_length, data_checksum = adb_message.unpack(header)
        command = adb_constants.WIRE_TO_ID.get(cmd)
        if not command:
            raise adb_errors.InvalidCommandError(f"Unknown command: {cmd} = {adb_message.int_to_cmd(cmd)!r}")
        if data_length == 0:
            return command, arg0, arg1, b""
        data = self._read_bytes_from_device(data_length, adb_info)
        actual = _fast_checksum(data)
        if actual != data_checksum:
            raise adb_errors.InvalidChecksumError(f"Received checksum {actual} != {data_checksum}")
        return command, arg0, arg1, data


class _AdbDevice(AdbDevice):
    """adb-shell's ``AdbDevice`` on a :class:`_FastChecksumIO` (push throughput: 8 ms/MB less per direction)."""

    def __init__(self, transport: Any, **options: Any) -> None:
        super().__init__(transport, **options)
        self._io_manager = _FastChecksumIO(transport)


class _Link:
    """One open ADB connection (adb-shell device + our transport)."""

    def __init__(self, adb: AdbDevice, transport: Any) -> None:
        self.adb = adb
        self.transport = transport

    def set_deadline(self, deadline: float | None, *, cancellable: bool = True) -> None:
        if isinstance(self.transport, _DeadlineTcpTransport):
            self.transport.deadline = deadline
            self.transport.cancellable = cancellable

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead socket must never mask the real error
            self.adb.close()


# --- the device -----------------------------------------------------------------------------


class AndroidDevice(AdbShellDevice):
    """An Android device over ADB (TCP or USB). Thread-safe: one operation at a time per device."""

    def __init__(
        self,
        device_id: str,
        *,
        key: str | Path | None = None,
        cache_dir: Path | None = None,
        transport_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        auth_timeout_s: float = 10.0,
        reconnect_window_s: float = DEFAULT_RECONNECT_S,
        backoff_s: float = 0.2,
    ) -> None:
        """``key``: the adb private key (default the SDK's); ``cache_dir``: where a key goes when the key's
        folder is not writable; ``transport_timeout_s``: one socket read/write; ``read_timeout_s``: waiting
        for one protocol reply; ``auth_timeout_s``: waiting for the user to accept our key;
        ``reconnect_window_s``: how long a broken link is retried."""
        super().__init__(device_id, log)
        self.address = parse_device_id(device_id)
        self.key = Path(key) if key else None
        self.cache_dir = cache_dir
        self.transport_timeout_s = transport_timeout_s
        self.read_timeout_s = read_timeout_s
        self.auth_timeout_s = auth_timeout_s
        self.reconnect_window_s = reconnect_window_s
        self.backoff_s = backoff_s
        self._lock = threading.RLock()
        self._link: _Link | None = None
        self._signer: PythonRSASigner | None = None

    # -- links --------------------------------------------------------------------------
    def _signer_for_auth(self) -> PythonRSASigner:
        if self._signer is None:
            path = ensure_key(self.key, self.cache_dir)
            try:
                self._signer = PythonRSASigner.FromRSAKeyPath(str(path))
            except (OSError, ValueError) as exc:
                raise AuthError(f"cannot load adb key {path}: {exc}", device=self.id,
                                hint="delete the key pair to have a new one created, or set HARNESS_ADB_KEY") from None
        return self._signer

    def _open_link(self, timeout_s: float | None = None, *, cancellable: bool = True) -> _Link:
        """Connect and authenticate; ``timeout_s`` overrides the transport and read timeouts (a quick kill).

        A ``cancellable`` link stops waiting once the run is cancelled; the link that kills a stopped
        command is not, nor one opened after the stop (for cleanup, with AFTER_STOP_S timeouts).
        """
        if self.cancelled():
            timeout_s, cancellable = min(timeout_s or AFTER_STOP_S, AFTER_STOP_S), False
        transport_s = timeout_s or self.transport_timeout_s
        read_s = timeout_s or self.read_timeout_s
        if isinstance(self.address, tuple):
            host, port = self.address
            transport: Any = _DeadlineTcpTransport(host, port, self.cancelled if cancellable else None)
        else:
            if UsbTransport is None:
                raise DeviceNotFound(f"cannot open USB device {self.address!r}: libusb support is not installed",
                                     device=self.id, hint="pip install libusb1, or use adb tcpip and adb:HOST:PORT")
            try:
                transport = UsbTransport.find_adb(self.address, None, transport_s)
            except adb_errors.UsbDeviceNotFoundError as exc:
                raise DeviceNotFound(f"no USB device with serial {self.address!r}: {exc}", device=self.id,
                                     hint="check the cable and `lsusb`; stop any adb server holding it") from None
        adb = _AdbDevice(transport, default_transport_timeout_s=transport_s, banner="edgeharness")
        offered: list[bool] = []
        try:
            adb.connect(rsa_keys=[self._signer_for_auth()], transport_timeout_s=transport_s,
                        auth_timeout_s=self.auth_timeout_s, read_timeout_s=read_s,
                        auth_callback=lambda _dev: offered.append(True))
        except adb_errors.DeviceAuthError as exc:
            adb.close()
            raise AuthError(f"device requires authentication: {exc}", device=self.id, hint=HINT_ACCEPT_KEY) from None
        except _LINK_ERRORS as exc:
            adb.close()
            if offered:
                raise AuthError(f"device did not accept our adb key within {self.auth_timeout_s:g} s",
                                device=self.id, hint=HINT_ACCEPT_KEY) from None
            raise _Broken(f"cannot connect: {_describe(exc)}") from exc
        except BaseException:
            adb.close()
            raise
        self.log.debug("connected")
        return _Link(adb, transport)

    def _drop_link(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    def _run(self, what: str, op: Callable[[_Link], T]) -> T:
        """Run ``op`` on a live link; reconnect with backoff on a broken link, then raise DeviceLost."""
        with self._lock:
            first_failure: float | None = None
            delay_s = self.backoff_s
            while True:
                try:
                    if self._link is None:
                        self._link = self._open_link()
                    return op(self._link)
                except KeyboardInterrupt:  # the link is mid-transaction: never reuse it
                    self._drop_link()
                    raise
                except (_Broken, *_LINK_ERRORS) as exc:
                    self._drop_link()
                    now = time.monotonic()
                    first_failure = first_failure if first_failure is not None else now
                    left_s = first_failure + self.reconnect_window_s - now
                    if left_s <= 0:
                        raise DeviceLost(f"{what}: link lost and not back after {self.reconnect_window_s:g} s "
                                         f"({_describe(exc)})", device=self.id,
                                         hint="check the device is on, connected and reachable") from None
                    self.log.warning("%s: link broken (%s); reconnecting in %.2f s", what, _describe(exc), delay_s)
                    time.sleep(min(delay_s, left_s))
                    delay_s = min(delay_s * 2, 2.0)

    def close(self) -> None:
        with self._lock:
            self._drop_link()

    # -- shell --------------------------------------------------------------------------
    def shell(self, command: str, timeout_s: float = 60.0) -> ShellResult:
        """Run ``command`` with ``sh``; output is stdout and stderr merged (adb shell v1), exit code from the sentinel.

        ``timeout_s`` bounds each attempt; a link that breaks mid-command is reopened, the old
        process tree killed, and the command run again (within ``reconnect_window_s``).
        """
        start = time.monotonic()
        token = cmds.new_token()
        wrapped = cmds.wrap_command(command, token)
        orphans: list[int] = []  # pids of attempts whose link broke while they ran

        def attempt(link: _Link) -> ShellResult:
            while orphans:
                self._raw_shell(link, cmds.kill_tree_command(orphans[-1], token), KILL_BUDGET_S)
                orphans.pop()
            late = self.cancelled()  # started after the stop: a cleanup command, given AFTER_STOP_S
            deadline = time.monotonic() + (min(timeout_s, AFTER_STOP_S) if late else timeout_s)
            raw = BoundedOutput()  # head (pid line) and tail (exit sentinel) whatever the command prints
            pid: int | None = None
            link.set_deadline(deadline, cancellable=not late)
            try:
                for chunk in link.adb.streaming_shell(wrapped, transport_timeout_s=timeout_s,
                                                      read_timeout_s=timeout_s, decode=False):
                    raw.feed(chunk)
                    if pid is None:
                        pid = cmds.pid_of(raw.first(96), token)
                    if time.monotonic() >= deadline:
                        raise adb_errors.TcpTimeoutException("command deadline passed")
                    if not late and self.cancelled():
                        raise RunInterrupted(f"[{self.id}] the run was interrupted")
            except KeyboardInterrupt:  # the run was cancelled (or Ctrl-C): the command must not live on
                self._drop_link()
                self._kill_remote(pid, token)
                raise
            except _LINK_ERRORS:
                if time.monotonic() < deadline - 0.01:
                    orphans.extend([pid] if pid is not None else [])
                    raise
                self._drop_link()
                self._kill_remote(pid, token)
                killed = f"; remote process {pid} killed" if pid is not None else ""
                if late:
                    raise RunInterrupted(f"[{self.id}] command stopped: the run was interrupted{killed}") from None
                partial = cmds.parse_wrapped(raw.getvalue(), token).output.decode("utf-8", "replace")
                raise CommandTimeout(f"command timed out after {timeout_s:g} s{killed}", timeout_s=timeout_s,
                                     device=self.id, command=command, output=partial) from None
            finally:
                link.set_deadline(None)
            parsed = cmds.parse_wrapped(raw.getvalue(), token)
            return ShellResult(command, parsed.output.decode("utf-8", "replace"), parsed.exit_code,
                               time.monotonic() - start)

        return self._run(f"shell {command[:60]!r}", attempt)

    def _raw_shell(self, link: _Link, command: str, budget_s: float) -> bytes:
        """A short helper command on ``link`` within ``budget_s`` (no sentinel: its output is ours)."""
        link.set_deadline(time.monotonic() + budget_s)
        try:
            return link.adb.shell(command, transport_timeout_s=budget_s, read_timeout_s=budget_s, decode=False)
        finally:
            link.set_deadline(None)

    def _kill_remote(self, pid: int | None, token: str | None = None) -> None:
        """Kill a timed-out or stopped command's process tree (and, with its ``token``, every process it started)
        over a fresh link, within :data:`KILL_BUDGET_S`."""
        if pid is None:
            return
        budget_end = time.monotonic() + KILL_BUDGET_S
        try:
            link = self._open_link(KILL_BUDGET_S / 2, cancellable=False)
            try:
                self._raw_shell(link, cmds.kill_tree_command(pid, token), max(0.05, budget_end - time.monotonic()))
            finally:
                link.close()
            self.log.info("killed remote process %d", pid)
        except (HarnessError, _Broken, *_LINK_ERRORS) as exc:
            self.log.warning("could not kill remote process %d: %s", pid, _describe(exc))

    # -- files --------------------------------------------------------------------------
    def _send_file(self, local: Path, remote: str, budget_s: float) -> None:
        self._sync(f"push {remote}", budget_s, adb_errors.PushFailedError, lambda adb: adb.push(
            str(local), remote, st_mode=0o100600, transport_timeout_s=self.transport_timeout_s,
            read_timeout_s=self.read_timeout_s))

    def _recv_file(self, remote: str, local: str) -> None:
        self._sync(f"pull {remote}", PULL_BUDGET_S, adb_errors.AdbCommandFailureException, lambda adb: adb.pull(
            remote, local, transport_timeout_s=self.transport_timeout_s, read_timeout_s=self.read_timeout_s))

    def _sync(self, what: str, budget_s: float, refused: type[Exception], call: Callable[[AdbDevice], None]) -> None:
        """One sync transfer within ``budget_s``, retried on a broken link; the device's ``FAIL`` is a DeviceError."""

        def op(link: _Link) -> None:
            link.set_deadline(time.monotonic() + budget_s)
            try:
                call(link.adb)
            except refused as exc:
                raise DeviceError(f"{what}: the device refused: {_text(exc)}", device=self.id, command=what) from None
            finally:
                link.set_deadline(None)

        self._run(what, op)


class _Broken(Exception):
    """A link that could not be (re)opened; retried like any broken link."""


def _describe(exc: BaseException) -> str:
    text = _text(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else ""
    if isinstance(arg, (bytes, bytearray)):
        return arg.decode("utf-8", "replace")
    return str(exc)


# --- discovery ------------------------------------------------------------------------------


def open_android_device(device_id: str, settings: DeviceSettings | None = None, **options: Any) -> AndroidDevice:
    """Opener for :mod:`harness.devices.discovery` (the link opens on first use); ``options`` win over
    ``settings`` (key, cache folder, reconnect window)."""
    settings = settings or DeviceSettings.defaults()
    options = {"key": settings.adb_key, "cache_dir": settings.cache_dir,
               "reconnect_window_s": settings.adb_reconnect_s, **options}
    return AndroidDevice(device_id, **options)


def list_android_devices(settings: DeviceSettings | None = None) -> Iterable[str]:
    """Configured adb devices: ``settings.adb_devices`` (``$HARNESS_ADB_DEVICES``) and the adb entries of
    the ``settings.inventory`` file (``$HARNESS_INVENTORY``). The network is never scanned."""
    settings = settings or DeviceSettings.defaults()
    ids = list(settings.adb_devices)
    if settings.inventory:
        ids += [i for i in inventory_ids(settings.inventory) if _is_adb_id(i)]
    return list(dict.fromkeys(ids))


def _is_adb_id(device_id: str) -> bool:
    return device_id.startswith("adb:") or (device_id != "host" and not device_id.startswith("ios:"))


