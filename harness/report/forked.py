"""Use the machine's second CPU for the folder report: one forked helper process, only when that is safe.

A fork copies this process as it is (no interpreter start, no imports, no data sent: the
child reads the parent's memory, copy-on-write), which is what makes a second process pay
off within a few seconds. Forking a process that runs other threads can deadlock the child
on a lock one of them held, so :func:`available` says no unless this is the only thread;
callers then do all the work themselves. The child never returns into the caller's code:
it runs one function, writes its pickled answer to a temporary file, and ``os._exit``s.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("harness.report")


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
