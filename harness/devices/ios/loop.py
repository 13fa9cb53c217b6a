"""One event-loop owner: an asyncio loop in its own thread, driven from synchronous code.

pymobiledevice3 is asyncio; the harness is synchronous. Every pymobiledevice3 object of a device
lives on one loop, owned by one :class:`LoopOwner`. :meth:`LoopOwner.run` runs a coroutine there
and waits; when the wait times out the task is cancelled *on the loop* (so it stops using the
device) and given a moment to unwind. :meth:`LoopOwner.close` cancels and awaits every pending
task, shuts down async generators, then stops and closes the loop and joins its thread.
Nothing here touches the caller's thread's event loop, so it works under a running loop too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long a cancelled task gets to run its cleanup (``finally``, ``async with``) after a timeout.
CANCEL_GRACE_S = 2.0
#: How long :meth:`LoopOwner.close` waits for the pending tasks, then for the thread.
CLOSE_TIMEOUT_S = 10.0


class LoopClosed(RuntimeError):
    """The loop owner was closed before (or while) the coroutine ran."""


class LoopOwner:
    """An asyncio loop running in one daemon thread named ``name``; thread-safe, closable once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._closed = False
        created: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(created,), name=name, daemon=True)
        self._thread.start()
        self._loop = created.result()  # the loop is made in its own thread: the caller's thread gets none

    @staticmethod
    def _serve(created: concurrent.futures.Future[asyncio.AbstractEventLoop]) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_unretrieved_in_one_line)
        asyncio.set_event_loop(loop)
        created.set_result(loop)
        loop.run_forever()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def _check_caller(self, what: str) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError(f"{what} from the loop's own thread would deadlock; await the coroutine instead")

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run ``coro`` on the loop and return its result (or raise its exception).

        On timeout the task is cancelled on the loop, awaited up to :data:`CANCEL_GRACE_S`, and
        :class:`TimeoutError` is raised. :class:`LoopClosed` when the owner is (or gets) closed.
        """
        try:
            self._check_caller("run()")
        except RuntimeError:
            coro.close()
            raise
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[T]] = []

        def start() -> None:
            task = self._loop.create_task(coro)
            tasks.append(task)
            task.add_done_callback(lambda t: _settle(t, outcome))

        with self._lock:
            if self._closed:
                coro.close()
                raise LoopClosed(f"{self.name}: the event loop is closed")
            self._loop.call_soon_threadsafe(start)
        try:
            return outcome.result(timeout_s)
        except concurrent.futures.TimeoutError:
            with self._lock:  # start() runs before cancel(): call_soon_threadsafe keeps order
                if not self._closed:
                    self._loop.call_soon_threadsafe(lambda: tasks[0].cancel())
            concurrent.futures.wait([outcome], CANCEL_GRACE_S)
            if not outcome.done():
                log.warning("%s: a task cancelled after %s s was still unwinding after %s s", self.name, timeout_s,
                            CANCEL_GRACE_S)
            raise TimeoutError(f"{self.name}: no result within {timeout_s} s; the task was cancelled") from None

    def close(self) -> None:
        """Cancel and await every pending task, shut down async generators and the default executor, stop and
        close the loop, join its thread; idempotent."""
        self._check_caller("close()")
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread.is_alive():
            shutdown = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                shutdown.result(CLOSE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - a task that refuses to end must not block the close
                log.warning("%s: shutting the loop down: %s: %s", self.name, type(exc).__name__, exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("%s: the loop thread did not stop within %s s; leaving it", self.name, CLOSE_TIMEOUT_S)
            return
        self._loop.close()

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._loop.shutdown_asyncgens()
        await self._loop.shutdown_default_executor()

    def __enter__(self) -> LoopOwner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unretrieved_in_one_line(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A future nobody awaited that failed is one debug line, without a traceback; the rest as asyncio says.

    pymobiledevice3's AFC reader leaves such a future behind when a connection drops (``ConnectionTerminatedError``).
    Its finalizer runs whenever the garbage collector does, and on CPython 3.11 a traceback formatted inside
    ``ast.parse`` (which GC can interrupt) makes that ``ast.parse`` raise ``SystemError: AST constructor recursion
    depth mismatch``: pytest's own import hook failed a session that way.
    """
    exc = context.get("exception")
    if "never retrieved" in str(context.get("message", "")) and exc is not None:
        log.debug("an unawaited future on the device loop failed: %s: %s", type(exc).__name__, exc)
        return
    loop.default_exception_handler(context)


def _settle(task: asyncio.Task[T], outcome: concurrent.futures.Future[T]) -> None:
    """Copy a finished task into the caller's future (a cancellation not asked by ``run`` is a close)."""
    if outcome.done():
        return
    if task.cancelled():
        outcome.set_exception(LoopClosed("the task was cancelled (the loop is closing)"))
    elif task.exception() is not None:
        outcome.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        outcome.set_result(task.result())
