"""Rendered HTML blocks kept in an unnamed temporary file instead of in memory.

The folder report renders each case's details block (~10 kB) as its line is read and puts it on
a device page later. Held as strings, 10,000 of them are 100 MB in the process, and the forked
helper that reads half the input had to pickle its half back (0.4 s). On a shelf the block is
written once, as UTF-8, and read back by offset when its page is written; any process that
inherited the file (the helper forked after it was opened) reads and writes it with
``os.pread``/buffered writes. The file has no name (``tempfile.TemporaryFile``): nothing is
left behind, whatever happens.
"""

from __future__ import annotations

import os
import tempfile


class Shelf:
    """Append-only store of text blocks; :meth:`put` gives ``(offset, length)`` for :meth:`get`."""

    def __init__(self) -> None:
        self._fh = tempfile.TemporaryFile(buffering=1 << 20)  # noqa: SIM115 - closed by close()
        self._size = 0

    def put(self, text: str) -> tuple[int, int]:
        data = text.encode("utf-8")
        self._fh.write(data)
        where = (self._size, len(data))
        self._size += len(data)
        return where

    def flush(self) -> None:
        """Make every block put so far readable by :meth:`get` (here and in other processes)."""
        self._fh.flush()

    def get(self, where: tuple[int, int]) -> str:
        return self.get_bytes(where).decode("utf-8")

    def get_bytes(self, where: tuple[int, int]) -> bytes:
        """The block as it was put, UTF-8 (what a page written as bytes copies without decoding)."""
        offset, length = where
        return os.pread(self._fh.fileno(), length, offset)

    def close(self) -> None:
        self._fh.close()
