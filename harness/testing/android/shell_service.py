"""``shell:`` (v1), ``shell,v2`` and ``exec:`` services: run a command in the device view.

v1 and ``exec:`` send stdout and stderr merged, raw, and no exit code (as adbd
does without the shell protocol). v2 frames each direction as
``id u8 + length u32 LE + data`` and ends with the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import struct
from collections.abc import Callable

from harness.testing.android.stream import Stream, StreamClosed

V2_STDIN, V2_STDOUT, V2_STDERR, V2_EXIT, V2_CLOSE_STDIN, V2_WINDOW = range(6)
_PIPE_READ_BYTES = 64 * 1024

#: Turns a shell command into (argv, env) that run it inside the device view.
Launcher = Callable[[str], tuple[list[str], dict[str, str]]]


async def _spawn(launcher: Launcher, command: str, *, merge_stderr: bool) -> asyncio.subprocess.Process:
    argv, env = launcher(command or "exec /bin/sh -i")
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,
    )


def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill the command and everything it started (its own process group)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


async def _pump(source: asyncio.StreamReader, emit: Callable[[bytes], asyncio.Future | object]) -> None:
    while chunk := await source.read(_PIPE_READ_BYTES):
        await emit(chunk)  # type: ignore[misc]


async def _supervise(process: asyncio.subprocess.Process, stream: Stream, work: list[asyncio.Task]) -> int | None:
    """Wait for output pumps and exit, killing the process if the host closes the stream first."""
    closed = asyncio.create_task(stream.closed.wait())
    done_work = asyncio.gather(*work)
    try:
        await asyncio.wait({closed, done_work}, return_when=asyncio.FIRST_COMPLETED)
        if not done_work.done():
            _kill(process)
        with contextlib.suppress(StreamClosed, ConnectionError, BrokenPipeError):
            await done_work
        return await process.wait()
    finally:
        closed.cancel()
        _kill(process)


async def _feed_stdin_raw(stream: Stream, process: asyncio.subprocess.Process) -> None:
    assert process.stdin is not None
    with contextlib.suppress(ConnectionError, BrokenPipeError):
        while data := await stream.read():
            process.stdin.write(data)
            await process.stdin.drain()


async def run_raw(stream: Stream, launcher: Launcher, command: str) -> None:
    """``shell:CMD`` v1 and ``exec:CMD``: merged output, no exit code."""
    process = await _spawn(launcher, command, merge_stderr=True)
    assert process.stdout is not None
    stdin_task = asyncio.create_task(_feed_stdin_raw(stream, process))
    try:
        await _supervise(process, stream, [asyncio.create_task(_pump(process.stdout, stream.write))])
    finally:
        stdin_task.cancel()


def _packet(packet_id: int, data: bytes) -> bytes:
    return struct.pack("<BI", packet_id, len(data)) + data


async def _feed_stdin_v2(stream: Stream, process: asyncio.subprocess.Process) -> None:
    assert process.stdin is not None
    with contextlib.suppress(ConnectionError, BrokenPipeError, StreamClosed):
        while True:
            packet_id, length = struct.unpack("<BI", await stream.read_exactly(5))
            data = await stream.read_exactly(length) if length else b""
            if packet_id == V2_STDIN:
                process.stdin.write(data)
                await process.stdin.drain()
            elif packet_id == V2_CLOSE_STDIN:
                process.stdin.close()


async def run_v2(stream: Stream, launcher: Launcher, command: str) -> None:
    """``shell,v2,…:CMD``: framed stdout/stderr, then the exit code (pty requests run raw)."""
    process = await _spawn(launcher, command, merge_stderr=False)
    assert process.stdout is not None and process.stderr is not None
    lock = asyncio.Lock()

    def emitter(packet_id: int) -> Callable[[bytes], object]:
        async def emit(chunk: bytes) -> None:
            async with lock:
                await stream.write(_packet(packet_id, chunk))

        return emit

    stdin_task = asyncio.create_task(_feed_stdin_v2(stream, process))
    pumps = [
        asyncio.create_task(_pump(process.stdout, emitter(V2_STDOUT))),
        asyncio.create_task(_pump(process.stderr, emitter(V2_STDERR))),
    ]
    try:
        code = await _supervise(process, stream, pumps)
        if code is not None and not stream.closed.is_set():
            with contextlib.suppress(StreamClosed, ConnectionError):
                await stream.write(_packet(V2_EXIT, bytes([code & 0xFF if code >= 0 else (128 - code) & 0xFF])))
    finally:
        stdin_task.cancel()
