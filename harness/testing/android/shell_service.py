"""``shell:`` (v1), ``shell,v2`` and ``exec:`` services: run a command in the device view.

v1 and ``exec:`` send stdout and stderr merged, raw, and no exit code (as adbd
does without the shell protocol). v2 frames each direction as
``id u8 + length u32 LE + data`` and ends with the exit code. A ``pty`` request
(``adb shell -t``) runs the command on a pseudo-terminal, as adbd does.

Hanging up follows adbd: when the host closes a v2 stream the command gets ``SIGHUP`` and its
pipes are closed; a raw stream (v1, ``exec:``) gets the rest of its stdin and then end-of-file,
and writing output fails (``EPIPE``), with no signal, so ``adb exec-in 'cat > f' < file`` delivers
every byte. When the whole link drops, the command's process group gets ``SIGHUP``. Whatever is
still running when the device stops or reboots is killed (:class:`ProcessTable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import struct
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from harness.testing.android.stream import Stream, StreamClosed

V2_STDIN, V2_STDOUT, V2_STDERR, V2_EXIT, V2_CLOSE_STDIN, V2_WINDOW = range(6)
_PIPE_READ_BYTES = 64 * 1024

#: Turns a shell command into (argv, env) that run it inside the device view.
Launcher = Callable[[str], tuple[list[str], dict[str, str]]]


class ProcessTable:
    """Process groups of the device's commands; :meth:`kill_all` is the device powering off."""

    def __init__(self) -> None:
        self._groups: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, pgid: int) -> None:
        self._groups.add(pgid)

    def groups(self) -> list[int]:
        """The process groups of the device's commands that still have a process (what its CPU limiter may
        signal). An empty group is forgotten here, at once: its number could otherwise, after the pids wrap
        around, name some other program's group."""
        for pgid in list(self._groups):
            self.prune(pgid)
        return list(self._groups)

    def keep(self, task: asyncio.Task[None]) -> None:
        """Hold a background task (stdin still being delivered, a process being reaped) until it ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def prune(self, pgid: int) -> None:
        """Forget a group once none of its processes is left (orphans keep it listed for :meth:`kill_all`)."""
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            self._groups.discard(pgid)

    def kill_all(self) -> None:
        """SIGKILL every group still alive and cancel background work."""
        for pgid in list(self._groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        self._groups.clear()
        for task in list(self._tasks):
            task.cancel()


@dataclass
class _Child:
    """A running command and our ends of its stdin/stdout/stderr (or of its pty)."""

    process: asyncio.subprocess.Process
    stdin: asyncio.StreamWriter
    outputs: list[asyncio.StreamReader]
    transports: list[asyncio.BaseTransport] = field(default_factory=list)
    pty_fd: int | None = None

    def close_pipes(self) -> None:
        """Close our ends: the command sees end-of-file on stdin and EPIPE on output, as after adbd's hangup."""
        with contextlib.suppress(Exception):
            self.stdin.close()
        for transport in self.transports:
            transport.close()

    def signal(self, signum: int, *, group: bool) -> None:
        if self.process.returncode is not None and not group:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.process.pid, signum)
            else:
                os.kill(self.process.pid, signum)


async def _read_end(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_PIPE_READ_BYTES * 4)
    pipe = os.fdopen(fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader, transport


async def _write_end(fd: int) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    pipe = os.fdopen(fd, "wb", buffering=0)
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), pipe
    )
    return asyncio.StreamWriter(transport, protocol, None, loop)


async def _spawn(
    launcher: Launcher, command: str, table: ProcessTable, *, merge_stderr: bool, pty: bool, term: str | None
) -> _Child:
    argv, env = launcher(command or "exec sh -i")
    if pty:
        if term:
            env["TERM"] = term
        master, slave = os.openpty()
        try:
            # setsid -c: a new session whose controlling terminal is the pty (stdin), like adbd's forkpty.
            process = await asyncio.create_subprocess_exec(
                "setsid", "-c", *argv, stdin=slave, stdout=slave, stderr=slave, env=env
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        table.add(process.pid)
        reader, transport = await _read_end(os.dup(master))
        writer = await _write_end(master)
        return _Child(process, writer, [reader], [transport], pty_fd=master)
    fds = [*os.pipe(), *os.pipe(), *(() if merge_stderr else os.pipe())]
    in_r, in_w, out_r, out_w = fds[:4]
    err_r, err_w = (out_r, out_w) if merge_stderr else (fds[4], fds[5])
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=in_r, stdout=out_w, stderr=err_w, env=env, start_new_session=True
        )
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    for fd in {in_r, out_w, err_w}:
        os.close(fd)
    table.add(process.pid)
    ends = [await _read_end(out_r)] + ([] if merge_stderr else [await _read_end(err_r)])
    return _Child(process, await _write_end(in_w), [r for r, _ in ends], [t for _, t in ends])


async def _pump(source: asyncio.StreamReader, emit: Callable[[bytes], Awaitable[None]]) -> None:
    """Copy output to the host until end-of-file (a pty reports its end as EIO)."""
    with contextlib.suppress(StreamClosed, ConnectionError):
        while True:
            try:
                chunk = await source.read(_PIPE_READ_BYTES)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return
                raise
            if not chunk:
                return
            await emit(chunk)


async def _reap(child: _Child, table: ProcessTable) -> None:
    with contextlib.suppress(Exception):
        await child.process.wait()
    table.prune(child.process.pid)


async def _run(
    stream: Stream,
    child: _Child,
    table: ProcessTable,
    pumps: list[asyncio.Task[None]],
    stdin_task: asyncio.Task[None],
    *,
    shell_protocol: bool,
) -> int | None:
    """Pass data until the output ends (then the exit code) or the host hangs up (then hang up the command)."""
    closed = asyncio.create_task(stream.closed.wait())
    try:
        output_done = asyncio.gather(*pumps)
        await asyncio.wait({closed, output_done}, return_when=asyncio.FIRST_COMPLETED)
        if not closed.done():
            exited = asyncio.ensure_future(child.process.wait())
            await asyncio.wait({closed, exited}, return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                child.close_pipes()
                stdin_task.cancel()
                table.prune(child.process.pid)
                return exited.result()
        _hang_up(stream, child, shell_protocol=shell_protocol)
        if shell_protocol or stream.lost:
            stdin_task.cancel()
        else:
            table.keep(stdin_task)  # a raw stream still gets the stdin the host sent before closing
        for pump in pumps:
            pump.cancel()
        table.keep(asyncio.create_task(_reap(child, table)))
        return None
    finally:
        closed.cancel()


def _hang_up(stream: Stream, child: _Child, *, shell_protocol: bool) -> None:
    if stream.lost:
        child.signal(signal.SIGHUP, group=True)
    elif shell_protocol:
        child.signal(signal.SIGHUP, group=False)
    for transport in child.transports:  # output now fails with EPIPE; stdin is closed by its feeder
        transport.close()
    if shell_protocol or stream.lost:
        child.close_pipes()


async def _feed_stdin_raw(stream: Stream, child: _Child) -> None:
    with contextlib.suppress(ConnectionError, BrokenPipeError):
        while data := await stream.read():
            child.stdin.write(data)
            await child.stdin.drain()
    with contextlib.suppress(Exception):
        child.stdin.close()


async def run_raw(stream: Stream, launcher: Launcher, command: str, table: ProcessTable, pty: bool = False) -> None:
    """``shell:CMD`` v1 and ``exec:CMD``: merged output, no exit code (an interactive ``shell:`` gets a pty)."""
    child = await _spawn(launcher, command, table, merge_stderr=True, pty=pty, term=None)
    stdin_task = asyncio.create_task(_feed_stdin_raw(stream, child))
    pumps = [asyncio.create_task(_pump(child.outputs[0], stream.write))]
    await _run(stream, child, table, pumps, stdin_task, shell_protocol=False)


def _packet(packet_id: int, data: bytes) -> bytes:
    return struct.pack("<BI", packet_id, len(data)) + data


async def _feed_stdin_v2(stream: Stream, child: _Child) -> None:
    with contextlib.suppress(ConnectionError, BrokenPipeError, StreamClosed):
        while True:
            packet_id, length = struct.unpack("<BI", await stream.read_exactly(5))
            data = await stream.read_exactly(length) if length else b""
            if packet_id == V2_STDIN:
                child.stdin.write(data)
                await child.stdin.drain()
            elif packet_id == V2_CLOSE_STDIN and child.pty_fd is None:  # a pty cannot close input alone
                child.stdin.close()
            elif packet_id == V2_WINDOW and child.pty_fd is not None:
                _set_window(child.pty_fd, data)


def _set_window(fd: int, data: bytes) -> None:
    """``ROWSxCOLS,XPIXxYPIX`` from the host's window-size packet → TIOCSWINSZ."""
    try:
        size, _, pixels = data.rstrip(b"\0").decode().partition(",")
        rows, cols = (int(v) for v in size.split("x"))
        xpix, ypix = (int(v) for v in pixels.split("x")) if pixels else (0, 0)
    except ValueError:
        return
    with contextlib.suppress(OSError, OverflowError, struct.error):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, xpix, ypix))


async def run_v2(
    stream: Stream, launcher: Launcher, command: str, table: ProcessTable, pty: bool = False, term: str | None = None
) -> None:
    """``shell,v2,…:CMD``: framed stdout/stderr, then the exit code."""
    child = await _spawn(launcher, command, table, merge_stderr=False, pty=pty, term=term)
    lock = asyncio.Lock()

    def emitter(packet_id: int) -> Callable[[bytes], Awaitable[None]]:
        async def emit(chunk: bytes) -> None:
            async with lock:
                await stream.write(_packet(packet_id, chunk))

        return emit

    stdin_task = asyncio.create_task(_feed_stdin_v2(stream, child))
    pumps = [asyncio.create_task(_pump(child.outputs[0], emitter(V2_STDOUT)))]
    if len(child.outputs) > 1:
        pumps.append(asyncio.create_task(_pump(child.outputs[1], emitter(V2_STDERR))))
    code = await _run(stream, child, table, pumps, stdin_task, shell_protocol=True)
    if code is not None and not stream.closed.is_set():
        with contextlib.suppress(StreamClosed, ConnectionError):
            await stream.write(_packet(V2_EXIT, bytes([code & 0xFF if code >= 0 else (128 - code) & 0xFF])))
