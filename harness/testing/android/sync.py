"""The ``sync:`` service: STAT/LIST (and v2), SEND, RECV, QUIT over one stream.

Every path goes through :meth:`Sandbox.resolve`: a transfer (SEND/RECV) of a path
outside the device directories, or through a symlink leading out, gets ``FAIL``
and never touches the host; a stat or list of one answers like adbd does for a
path it may not read (missing / ``EACCES``), which the real client reports cleanly.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct

from harness.testing.android.sandbox import MAX_PATH_BYTES, PathRefused, Sandbox
from harness.testing.android.stream import Stream, StreamClosed

SYNC_DATA_MAX_BYTES = 64 * 1024
_OUT_FLUSH_BYTES = 256 * 1024


def _id(name: bytes) -> int:
    return int.from_bytes(name, "little")


STAT, STA2, LST2, LIST, LIS2 = _id(b"STAT"), _id(b"STA2"), _id(b"LST2"), _id(b"LIST"), _id(b"LIS2")
SEND, RECV, DATA, DONE, OKAY, FAIL, QUIT = (
    _id(n) for n in (b"SEND", b"RECV", b"DATA", b"DONE", b"OKAY", b"FAIL", b"QUIT")
)
DENT, DNT2 = _id(b"DENT"), _id(b"DNT2")
_V2_FORMAT = "<IIQQIIIIQqqq"  # id error dev ino mode nlink uid gid size atime mtime ctime


class SyncFailed(Exception):
    """A request failed; the message goes to the host in ``FAIL`` and the session ends."""


class _Out:
    """Buffers sync replies so many small packets share one ``WRTE``."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def put(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= _OUT_FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            await self._stream.write(data)


def _v2_record(ident: int, st: os.stat_result | None, error: int) -> bytes:
    if st is None:
        return struct.pack(_V2_FORMAT, ident, error, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return struct.pack(
        _V2_FORMAT, ident, 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid,
        st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime),
    )  # fmt: skip


def _v1_fields(st: os.stat_result | None) -> tuple[int, int, int]:
    if st is None:
        return 0, 0, 0
    return st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF


class SyncSession:
    """One ``sync:`` stream."""

    def __init__(self, stream: Stream, sandbox: Sandbox) -> None:
        self._stream = stream
        self._sandbox = sandbox
        self._out = _Out(stream)

    async def run(self) -> None:
        try:
            while True:
                ident, length = struct.unpack("<II", await self._stream.read_exactly(8))
                if ident == QUIT:
                    break
                if length > MAX_PATH_BYTES:
                    raise SyncFailed(f"path length {length} exceeds {MAX_PATH_BYTES}")
                path = (await self._stream.read_exactly(length)).decode("utf-8", "surrogateescape")
                await self._request(ident, path)
                await self._out.flush()
        except SyncFailed as exc:
            await self._fail(str(exc))
        except StreamClosed:
            return

    async def _fail(self, message: str) -> None:
        data = message.encode()
        with contextlib.suppress(StreamClosed, ConnectionError):
            await self._out.put(struct.pack("<II", FAIL, len(data)) + data)
            await self._out.flush()

    def _resolve(self, path: str) -> str:
        try:
            return str(self._sandbox.resolve(path))
        except PathRefused as exc:
            raise SyncFailed(str(exc)) from None

    def _stat_target(self, path: str) -> str | None:
        """Host path for a stat/list request; None when refused (answered like adbd's EACCES)."""
        try:
            return str(self._sandbox.resolve(path))
        except PathRefused:
            return None

    async def _request(self, ident: int, path: str) -> None:
        if ident == STAT:
            host = self._stat_target(path)
            st = _try_stat(host, follow=False) if host else None
            await self._out.put(struct.pack("<IIII", STAT, *_v1_fields(st)))
        elif ident in (STA2, LST2):
            host = self._stat_target(path)
            st, error = None, errno.EACCES
            if host is not None:
                try:
                    st, error = (os.stat(host) if ident == STA2 else os.lstat(host)), 0
                except OSError as exc:
                    error = exc.errno or errno.EIO
            await self._out.put(_v2_record(ident, st, error))
        elif ident in (LIST, LIS2):
            await self._list(self._stat_target(path), v2=ident == LIS2)
        elif ident == SEND:
            await self._receive_file(path)
        elif ident == RECV:
            await self._send_file(self._resolve(path))
        else:
            raise SyncFailed(f"unknown sync request 0x{ident:08x}")

    async def _list(self, host: str | None, *, v2: bool) -> None:
        try:
            names = [".", "..", *sorted(os.listdir(host))] if host else []
        except OSError:
            names = []
        for name in names:
            st = _try_stat(os.path.join(host, name), follow=False)
            if st is None:
                continue
            raw = name.encode("utf-8", "surrogateescape")
            if v2:
                await self._out.put(_v2_record(DNT2, st, 0) + struct.pack("<I", len(raw)) + raw)
            else:
                await self._out.put(struct.pack("<IIIII", DENT, *_v1_fields(st), len(raw)) + raw)
        if v2:
            await self._out.put(_v2_record(DONE, None, 0) + struct.pack("<I", 0))
        else:
            await self._out.put(struct.pack("<IIIII", DONE, 0, 0, 0, 0))

    async def _receive_file(self, spec: str) -> None:
        """SEND "path,mode": DATA chunks then DONE+mtime; a failed transfer leaves no file."""
        path, _, mode_text = spec.rpartition(",")
        try:
            mode = int(mode_text)
        except ValueError:
            path, mode = spec, 0o100644
        try:
            host = self._resolve(path)
            error = None
        except SyncFailed as exc:
            host, error = "", str(exc)
        fd = -1
        try:
            if error is None:
                try:
                    os.makedirs(os.path.dirname(host), exist_ok=True)
                    if stat.S_ISLNK(mode):
                        error = "symlinks cannot be pushed to the virtual device"
                    else:
                        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, (mode & 0o7777) or 0o644)
                except OSError as exc:
                    error = f"{path}: {exc.strerror}"
            mtime = await self._read_data(fd)
            if error is not None:
                raise SyncFailed(error)
            os.fchmod(fd, (mode & 0o7777) or 0o644)
            os.close(fd)
            fd = -1
            if mtime:
                os.utime(host, (mtime, mtime))
            await self._out.put(struct.pack("<II", OKAY, 0))
        except BaseException:
            if fd >= 0:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(host)
            raise

    async def _read_data(self, fd: int) -> int:
        """Copy DATA chunks to ``fd`` (or drop them when ``fd`` < 0); return DONE's mtime."""
        while True:
            ident, length = struct.unpack("<II", await self._stream.read_exactly(8))
            if ident == DONE:
                return length
            if ident != DATA:
                raise SyncFailed(f"expected DATA or DONE, got 0x{ident:08x}")
            if length > SYNC_DATA_MAX_BYTES:
                raise SyncFailed(f"DATA chunk of {length} bytes exceeds {SYNC_DATA_MAX_BYTES}")
            chunk = await self._stream.read_exactly(length)
            if fd >= 0:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]

    async def _send_file(self, host: str) -> None:
        try:
            handle = open(host, "rb")  # noqa: SIM115 - closed below, across awaits
        except OSError as exc:
            raise SyncFailed(f"{exc.strerror}") from None
        with handle:
            while chunk := handle.read(SYNC_DATA_MAX_BYTES):
                await self._out.put(struct.pack("<II", DATA, len(chunk)) + chunk)
        await self._out.put(struct.pack("<II", DONE, 0))


def _try_stat(host: str, *, follow: bool) -> os.stat_result | None:
    try:
        return os.stat(host) if follow else os.lstat(host)
    except OSError:
        return None


async def run_sync(stream: Stream, sandbox: Sandbox) -> None:
    """Serve one ``sync:`` stream until QUIT, FAIL or close."""
    await SyncSession(stream, sandbox).run()
