"""The ``sync:`` service: STAT/LIST (and v2), SEND, RECV, QUIT over one stream.

Every path goes through the device view (:mod:`device_view`), the same filesystem the device's
shell sees: reads and listings reach what the shell can read; a SEND outside ``/data`` and
``/sdcard`` (or through a symlink leading out of them) gets ``FAIL`` "Read-only file system" and
never touches the host. adbd's file service runs as the unprivileged shell user, so permission
bits are honoured even when the host user is root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct

from harness.testing.android.device_view import DeviceView, may_access
from harness.testing.android.sandbox import MAX_PATH_BYTES, Sandbox
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
        self._view = DeviceView(sandbox)
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

    def _stat_target(self, path: str, *, follow: bool) -> str | None:
        """Host path for a stat request; None when the device has no such path."""
        try:
            return str(self._view.for_read(path, follow_last=follow))
        except OSError:
            return None

    async def _request(self, ident: int, path: str) -> None:
        if ident == STAT:
            host = self._stat_target(path, follow=False)
            st = _try_stat(host, follow=False) if host else None
            await self._out.put(struct.pack("<IIII", STAT, *_v1_fields(st)))
        elif ident in (STA2, LST2):
            st, error = None, errno.ENOENT
            try:
                host = self._view.for_read(path, follow_last=ident == STA2)
                st, error = (os.stat(host) if ident == STA2 else os.lstat(host)), 0
            except OSError as exc:
                error = exc.errno or errno.EIO
            await self._out.put(_v2_record(ident, st, error))
        elif ident in (LIST, LIS2):
            await self._list(path, v2=ident == LIS2)
        elif ident == SEND:
            await self._receive_file(path)
        elif ident == RECV:
            await self._send_file(path)
        else:
            raise SyncFailed(f"unknown sync request 0x{ident:08x}")

    async def _list(self, path: str, *, v2: bool) -> None:
        try:
            entries = self._view.listing(path)
            here = self._view.for_read(path)
            entries = [(".", here), ("..", here.parent), *entries]
        except OSError:
            entries = []
        for name, host in entries:
            st = _try_stat(str(host), follow=False)
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
        host, error = "", None
        try:
            host = str(self._view.for_write(path))
        except OSError as exc:
            error = f"couldn't create file: {exc.strerror}"
        if error is None and stat.S_ISLNK(mode):
            await self._receive_link(path, host)
            return
        fd = -1
        try:
            if error is None:
                try:
                    os.makedirs(os.path.dirname(host), exist_ok=True)
                    existing = _try_stat(host, follow=False)
                    if existing is not None and not may_access(existing, os.W_OK):
                        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
                    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                    fd = os.open(host, flags, (mode & 0o7777) or 0o644)
                except OSError as exc:
                    error = f"couldn't create file: {exc.strerror}"
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

    async def _receive_link(self, path: str, host: str) -> None:
        """SEND of a symlink (mode S_IFLNK): the DATA is the link's target, as adbd's handle_send_link."""
        target = bytearray()
        while True:
            ident, length = struct.unpack("<II", await self._stream.read_exactly(8))
            if ident == DONE:
                break
            if ident != DATA or length > SYNC_DATA_MAX_BYTES or len(target) + length > MAX_PATH_BYTES:
                raise SyncFailed("bad symlink data")
            target += await self._stream.read_exactly(length)
        try:
            os.makedirs(os.path.dirname(host), exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(host)
            os.symlink(os.fsdecode(bytes(target).rstrip(b"\0")), host)
        except OSError as exc:
            raise SyncFailed(f"{path}: couldn't create symlink: {exc.strerror}") from None
        await self._out.put(struct.pack("<II", OKAY, 0))

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

    async def _send_file(self, path: str) -> None:
        try:
            host = self._view.for_read(path)
            st = os.stat(host)
            if not may_access(st, os.R_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            handle = open(host, "rb")  # noqa: SIM115 - closed below, across awaits
        except OSError as exc:
            raise SyncFailed(f"open failed: {exc.strerror}") from None
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
