"""Use the machine's second CPU for the folder report: one forked helper process, only when that is safe.

A fork copies this process as it is (no interpreter start, no imports, no data sent: the
child reads the parent's memory, copy-on-write), which is what makes a second process pay
off within a few seconds. Forking a process that runs other threads can deadlock the child
on a lock one of them held, so :func:`available` says no unless this is the only thread;
callers then do all the work themselves. The child never returns into the caller's code:
it runs one function, writes its pickled answer to a temporary file, and ``os._exit``s.

:func:`share` splits a list of jobs between this process and a helper *as they go*: each
takes the next job number from a pipe filled before the fork, so whichever runs faster (the
other CPU may be busy with someone else's work) does more, and both finish together.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import tempfile
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("harness.report")
T = TypeVar("T")
#: At most this many tickets (2 bytes each, 512 bytes: the pipe takes them all before anyone reads); more jobs
#: are handed out in runs of neighbours.
MAX_TICKETS = 256
_TICKET = struct.Struct("=H")


def available() -> bool:
    """True when forking is possible and safe (POSIX, more than one CPU, no other thread)."""
    return hasattr(os, "fork") and (os.cpu_count() or 1) > 1 and threading.active_count() == 1


class Helper:
    """``work()`` running in a forked child; :meth:`result` waits for it and returns its answer."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self._answer = tempfile.TemporaryFile()  # noqa: SIM115 - closed in result()
        self.pid = os.fork()
        if self.pid == 0:  # the child: run, answer, leave without running the parent's cleanup
            code = 1
            try:
                pickle.dump(work(), self._answer, protocol=pickle.HIGHEST_PROTOCOL)
                self._answer.flush()
                code = 0
            except BaseException:  # noqa: BLE001, S110 - reported to the parent by the exit code
                pass
            finally:
                os._exit(code)

    def result(self) -> tuple[bool, Any]:
        """``(True, answer)`` when the child finished its work, ``(False, None)`` when it failed or died."""
        try:
            _, status = os.waitpid(self.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                log.warning("warning: the report's helper process failed (status %s); doing its share here", status)
                return False, None
            self._answer.seek(0)
            return True, pickle.load(self._answer)  # noqa: S301 - written by our own child, just now
        finally:
            self._answer.close()

    def kill(self) -> None:
        """Stop the child (the caller failed) and reap it."""
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self._answer.close()


class Tickets:
    """The numbers ``0..n-1`` (n <= :data:`MAX_TICKETS`), each handed to whichever process asks first.

    A pipe written in full before the fork (one write of at most 512 bytes, POSIX's least PIPE_BUF: it never
    blocks), its write end closed; each read asks for one ticket's size, which the kernel serves under the
    pipe's lock (never split between readers), and an empty pipe with no writer reads as the end.
    """

    def __init__(self, n: int) -> None:
        if not 0 <= n <= MAX_TICKETS:
            raise ValueError(f"{n} tickets: at most {MAX_TICKETS}")
        self._read, write = os.pipe()
        try:
            os.write(write, b"".join(_TICKET.pack(i) for i in range(n)))
        finally:
            os.close(write)

    def take(self) -> int | None:
        """The next number, None when none is left."""
        data = os.read(self._read, _TICKET.size)
        if len(data) != _TICKET.size:
            return None  # the end (a short read cannot happen: every write and read is one ticket's size)
        return _TICKET.unpack(data)[0]

    def close(self) -> None:
        os.close(self._read)


def share(n: int, job: Callable[[int, int], T]) -> list[T]:
    """``[job(i, worker) for i in range(n)]``, computed by this process (worker 0) and a forked helper (worker 1).

    Each takes the next job as it finishes one, so neither waits long for the other; jobs are
    best ordered big first. When the helper fails or dies, this process does what it did not
    return. The caller checks :func:`available` first.
    """
    runs = [range(i * n // MAX_TICKETS, (i + 1) * n // MAX_TICKETS) for i in range(MAX_TICKETS)] \
        if n > MAX_TICKETS else [range(i, i + 1) for i in range(n)]
    tickets = Tickets(len(runs))

    def work(worker: int) -> list[tuple[int, T]]:
        return [(i, job(i, worker)) for t in iter(tickets.take, None) for i in runs[t]]

    try:
        helper = Helper(lambda: work(1))
        try:
            mine = work(0)
        except BaseException:
            helper.kill()
            raise
    finally:
        tickets.close()
    done, theirs = helper.result()
    got = dict(mine)
    if done:
        got.update(theirs)
    return [got[i] if i in got else job(i, 0) for i in range(n)]
