"""The iOS backend's event-loop owner: timeouts cancel on the loop, close leaves nothing behind, and
listing phones never makes or replaces an event loop in the caller's thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

pytest.importorskip("pymobiledevice3")

from harness.devices.ios import LoopClosed, LoopOwner, discover_ios_devices  # noqa: E402
from harness.testing.ios import FakeFaults  # noqa: E402

pytest_plugins = ["harness.testing.ios.fixtures"]


def test_a_timed_out_call_is_cancelled_on_the_loop():
    seen: list[str] = []
    finished = threading.Event()

    async def slow() -> str:
        try:
            await asyncio.sleep(30)
            return "done"
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            seen.append(threading.current_thread().name)
            finished.set()

    owner = LoopOwner("test-loop")
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="cancelled"):
            owner.run(slow(), timeout_s=0.2)
        # the task's cleanup ran on the loop before run() returned, not 30 s later (or never)
        assert finished.is_set() and seen == ["cancelled", "test-loop"]
        assert time.monotonic() - started < 5
        assert owner.run(asyncio.sleep(0, result=42), timeout_s=5) == 42  # the loop still serves
    finally:
        owner.close()


def test_close_cancels_every_task_and_stops_the_thread():
    cleaned: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("task")

    async def ticker():
        try:
            while True:
                yield 1
                await asyncio.sleep(3600)
        finally:
            cleaned.append("generator")

    async def start_background() -> asyncio.Task:
        gen = ticker()
        await gen.__anext__()  # a generator left suspended mid-iteration
        start_background.gen = gen  # type: ignore[attr-defined]  # keep it alive until close
        return asyncio.get_running_loop().create_task(forever())

    owner = LoopOwner("test-close")
    task = owner.run(start_background(), timeout_s=5)
    blocked: list[BaseException] = []
    waiter = threading.Thread(target=lambda: _record(blocked, owner, asyncio.sleep(3600)))
    waiter.start()
    time.sleep(0.2)
    owner.close()
    waiter.join(5)
    assert sorted(cleaned) == ["generator", "task"] and task.cancelled()
    assert not owner.thread.is_alive() and owner._loop.is_closed()
    assert not asyncio.all_tasks(owner._loop)
    assert blocked and isinstance(blocked[0], LoopClosed)  # a caller waiting on the loop is told, not hung
    owner.close()  # idempotent
    coro = asyncio.sleep(0)
    with pytest.raises(LoopClosed):
        owner.run(coro)


def _record(into: list[BaseException], owner: LoopOwner, coro) -> None:
    try:
        owner.run(coro)
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        into.append(exc)


def test_listing_phones_makes_no_event_loop_in_the_callers_thread(fake_iphone, monkeypatch):
    made_in: list[threading.Thread] = []
    real = asyncio.events.new_event_loop

    def counting_new_event_loop():
        made_in.append(threading.current_thread())
        return real()

    monkeypatch.setattr(asyncio.events, "new_event_loop", counting_new_event_loop)
    monkeypatch.setattr(asyncio, "new_event_loop", counting_new_event_loop)
    mine = real()
    asyncio.set_event_loop(mine)
    try:
        assert discover_ios_devices() == [fake_iphone.device_id]
        assert discover_ios_devices() == [fake_iphone.device_id]
        assert threading.current_thread() not in made_in  # asyncio.run would make (and drop) one here each time
        assert asyncio.get_event_loop_policy().get_event_loop() is mine  # and unset the caller's loop after
        assert len(made_in) == 2 and not any(t.is_alive() for t in made_in)  # short-lived owners, gone
    finally:
        asyncio.set_event_loop(None)
        mine.close()


def test_listing_phones_from_inside_a_running_loop(fake_iphone):
    async def main() -> list[str]:
        return discover_ios_devices()  # asyncio.run() here raised "cannot be called from a running event loop"

    assert asyncio.run(main()) == [fake_iphone.device_id]


def test_a_device_call_that_times_out_leaves_no_task_on_the_phones_loop(make_fake_iphone):
    """Waiting for the Trust dialog past the call's timeout: CommandTimeout, and the pairing stops there and then."""
    from harness.devices.ios import open_ios_device
    from harness.devices.settings import DeviceSettings
    from harness.errors import CommandTimeout

    phone = make_fake_iphone(faults=FakeFaults(trust="pending"))
    dev = open_ios_device(phone.device_id, DeviceSettings.from_env(), pair_timeout_s=30, connect_timeout_s=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(CommandTimeout, match="cancelled") as err:
            dev.info()
        assert err.value.device == phone.device_id and time.monotonic() - started < 5
        loop = dev._loop._loop
        assert dev._loop.run(_other_tasks(), timeout_s=5) == []  # the 30 s pairing wait is gone, not left running
    finally:
        dev.close()
    assert loop.is_closed() and not dev._loop.thread.is_alive()


async def _other_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


def test_the_apps_result_file_must_be_a_json_object():
    """The result file comes from the phone: anything but a JSON object is a failed run with that reason."""
    from harness.devices.ios.device import _result_object

    assert _result_object(b'{"status": "ok", "samples_us": [1, 2]}') == {"status": "ok", "samples_us": [1, 2]}
    for junk in (b"[1, 2]", b"{not json", b"\xff\xfe", b"", b'"ok"'):
        assert _result_object(junk) is None


def test_a_failed_future_nobody_awaited_is_one_line_and_never_breaks_ast_parse(caplog):
    """pymobiledevice3's AFC reader leaves failed futures behind when a connection drops. Their finalizers run at
    garbage collection, which can fall inside an ``ast.parse`` (pytest's import hook); on CPython 3.11 a traceback
    formatted there made that ``ast.parse`` raise ``SystemError: AST constructor recursion depth mismatch``."""
    import ast
    import gc
    import logging

    caplog.set_level(logging.DEBUG)  # a handler that formats what it gets, as pytest's own does
    source = open(ast.__file__, encoding="utf-8").read()
    with LoopOwner("unretrieved") as owner:
        def recv() -> bytes:
            raise ConnectionError("Connection was terminated abruptly.")

        async def drop_failed_futures() -> None:
            for _ in range(50):
                fut = asyncio.get_running_loop().create_future()
                try:
                    data = b"" + recv()  # raised inside an expression: 3.11 points carets at it (with ast.parse)
                except ConnectionError as exc:
                    fut.set_exception(exc)
                else:
                    fut.set_result(data)
                cycle: list = [fut]
                cycle.append(cycle)  # only the garbage collector frees it: its finalizer runs when GC does
        owner.run(drop_failed_futures(), 10)
        threshold = gc.get_threshold()
        gc.set_threshold(50)
        try:
            ast.parse(source)  # raised SystemError with asyncio's default handler (it logs the traceback)
        finally:
            gc.set_threshold(*threshold)
            gc.collect()
    lines = [r for r in caplog.records if "unawaited future" in r.getMessage()]
    assert lines and all(r.levelno == logging.DEBUG and r.exc_info is None for r in lines)
    # (earlier tests' garbage may be collected here too: pymobiledevice3's own ConnectionTerminatedError futures)
    assert any("ConnectionError: Connection was terminated abruptly." in r.getMessage() for r in lines)
