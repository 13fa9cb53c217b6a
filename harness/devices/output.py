"""Bounded capture of a command's output: its first and last bytes, whatever the command prints.

A tool (or a hostile device) can print without end; holding it all drove the harness to
gigabytes of memory. Both shells (host pipe, ADB stream) feed their chunks to one
:class:`BoundedOutput`, which keeps a head, a tail and the count of what fell between.
The tail is large because what matters comes last: the runner's ``EDGEHARNESS_RESULT`` line
(about 11 bytes per measured run: 1.1 MB for 100 000 runs) and the ADB exit-code sentinel.
"""

from __future__ import annotations

from collections import deque

from harness.results import RAW_TRUNCATION_MARKER

HEAD_BYTES = 64 * 1024
#: Keeps a result line of about 1.4 million measured runs whole (measured: 1.1 MB per 100 000).
TAIL_BYTES = 16 * 1024 * 1024


class BoundedOutput:
    """Collects chunks; keeps at most ``head_bytes`` + ``tail_bytes`` (+ one chunk) of them."""

    def __init__(self, head_bytes: int = HEAD_BYTES, tail_bytes: int = TAIL_BYTES) -> None:
        self.head_bytes = head_bytes
        self.tail_bytes = tail_bytes
        self.total = 0  #: bytes fed so far
        self._head = bytearray()
        self._tail: deque[bytes] = deque()
        self._tail_len = 0

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.total += len(chunk)
        room = self.head_bytes - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
            if not chunk:
                return
        self._tail.append(bytes(chunk))
        self._tail_len += len(chunk)
        while self._tail_len - len(self._tail[0]) >= self.tail_bytes:
            self._tail_len -= len(self._tail.popleft())

    def first(self, n: int) -> bytes:
        """The first ``n`` bytes (at most the head)."""
        return bytes(self._head[:n])

    @property
    def truncated(self) -> bool:
        return self.total > self.head_bytes + self.tail_bytes

    def getvalue(self) -> bytes:
        """Everything when it fit; else head, a marker with the count of bytes left out, and tail.

        The cut falls on UTF-8 character boundaries, so the text has no broken characters there.
        """
        tail = b"".join(self._tail)
        if not self.truncated:
            return bytes(self._head) + tail
        tail = tail[len(tail) - self.tail_bytes:]
        head = bytes(self._head[:_complete_utf8_end(self._head)])
        tail = tail[_utf8_start(tail):]
        dropped = self.total - len(head) - len(tail)
        return head + RAW_TRUNCATION_MARKER.format(n=dropped).encode() + tail

    def text(self) -> str:
        return self.getvalue().decode("utf-8", "replace")


def _complete_utf8_end(data: bytes | bytearray) -> int:
    """Length of ``data`` without a multi-byte character cut at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII)
            need = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
            return len(data) - back if need > back else len(data)
    return len(data)


def _utf8_start(data: bytes) -> int:
    """Offset of the first character start (skips at most 3 continuation bytes of a cut character)."""
    skip = 0
    while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
        skip += 1
    return skip
