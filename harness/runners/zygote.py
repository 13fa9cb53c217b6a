#!/usr/bin/env python3
"""A preloaded zygote for :mod:`pyrunner` on the host: imports numpy and LiteRT once, forks one child per repetition.

Standalone (standard library, numpy, LiteRT, and ``pyrunner.py`` beside it), run by the host's Python::

    python zygote.py FOLDER

``FOLDER`` must be private (the host device makes it 0700). The zygote makes the request FIFO
``FOLDER/req`` and serves the shell client ``zygote_client.sh`` (POSIX sh: a repetition no longer
pays a Python start to reach the zygote): a client writes its arguments to ``FOLDER/q.PID`` and ``PID``
as one line to ``req``; the zygote opens the client's stdout/stderr through ``/proc/PID/fd``, forks a
child that runs exactly ``pyrunner.main(args)`` with them (stdin: ``/dev/null``), names it in
``FOLDER/PID.child`` (for the host's memory poller), and writes the child's exit code to the client's
reply FIFO ``FOLDER/r.PID`` when it ends (``F``: not taken, the client runs a fresh process).

Isolation kept: one process per repetition, in its own session and process group; a crash kills the
child only. The child holds the caller's output pipe, so the host shell's kill (process group +
writers of its output pipe) reaches it; if the client goes away first (its pidfd becomes readable),
the zygote kills the child. A child closes every descriptor of the zygote's bookkeeping, so a client
whose zygote died sees its reply pipe end.
Memory: whether a forked child's high-water mark starts from its parent's is the kernel's business
(on Linux 6.18 it does not: a zygote at 318 MB HWM forks a child whose ru_maxrss reads 6.7 MB), so the
child does not rely on it: it writes ``5`` to ``/proc/self/clear_refs`` (resets VmHWM to its current
RSS) and pyrunner reports ``VmHWM``; a kernel that refuses the reset gives no peak rather than the
zygote's. The figure is lower than a fresh process's (no import-time transient, fewer pages touched).

Before forking its first child the zygote runs that request's model once itself (``_warm_up``): the
runtime's lazy first-use work is then shared instead of repeated after every fork.

It needs Linux's ``pidfd_open`` (5.3) to follow clients; without it, it does not start (the host then
runs fresh processes). The zygote ends when its stdin reaches EOF (the harness that started it is gone).
"""

from __future__ import annotations

import gc
import os
import select
import signal
import sys

MAX_REQUEST = 1 << 16


class Request:
    """One client's request while it is served: its pid, pidfd, reply FIFO (held open) and child."""

    def __init__(self, folder: str, client: int, pidfd: int, reply: int) -> None:
        self.folder, self.client, self.pidfd, self.reply = folder, client, pidfd, reply
        self.child: int | None = None

    def answer(self, text: str) -> None:
        try:
            os.write(self.reply, text.encode("ascii") + b"\n")
        except OSError:
            pass

    def close(self) -> None:
        """The client is gone: its child (if still running) is killed, its files removed, its descriptors closed."""
        if self.child is not None:
            _kill(self.child)
        for fd in (self.pidfd, self.reply):
            os.close(fd)
        for name in (f"r.{self.client}", f"q.{self.client}", f"{self.client}.child"):
            try:
                os.unlink(os.path.join(self.folder, name))
            except OSError:
                pass


def _child(own: list[int], fds: list[int], argv: list[str]) -> None:
    """In the forked child: become the runner (never returns)."""
    code = 1
    try:
        os.setsid()  # its own session and process group: a signal to the zygote's group misses it
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for fd in own:  # the zygote's: requests, wake-up pipe, other clients' pidfds and reply pipes
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the new descriptors, same objects as a fresh process
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        import pyrunner

        pyrunner.HWM_RESET = _reset_hwm()
        if not pyrunner.HWM_RESET:  # ru_maxrss would be the zygote's: no peak rather than a wrong one
            pyrunner._peak_rss_mb = lambda: None  # noqa: SLF001
        code = pyrunner.main(argv)
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - the child must end here, never go back to the zygote's loop
        code = 1
    os._exit(code)


def _reset_hwm() -> bool:
    """Reset this process's VmHWM (Linux >= 4.0); False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def serve(folder: str) -> None:
    """Serve requests on ``folder/req`` until stdin closes."""
    import ai_edge_litert.interpreter  # noqa: F401 - the point: imported once, shared by every child
    import numpy  # noqa: F401
    import pyrunner

    pyrunner._runtime()  # noqa: SLF001 - warms the runtime's version lookup too
    try:
        import ai_edge_litert.compiled_model  # noqa: F401
        import ai_edge_litert.schema_py_generated  # noqa: F401 - the op profile's model splitter (~0.5 s to import)
    except ImportError:
        pass
    os.close(os.pidfd_open(os.getpid()))  # no pidfd (Linux < 5.3): fail now, the host runs fresh processes
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    path = os.path.join(folder, "req")
    os.mkfifo(path, 0o600)
    requests = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # read and write: never at EOF, never blocks
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    warm = [False]
    served: dict[int, Request] = {}  # pidfd -> request
    by_child: dict[int, Request] = {}
    pending = b""
    while True:
        ready, _, _ = select.select([requests, wake_r, sys.stdin, *served], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):
            for request in served.values():
                request.close()
            return
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(by_child)
        for pidfd in [fd for fd in ready if fd in served]:  # a client ended (answered, or killed)
            request = served.pop(pidfd)
            if request.child is not None:
                by_child.pop(request.child, None)
            request.close()
        if requests in ready:
            try:
                pending += os.read(requests, 4096)
            except BlockingIOError:
                pass
            *lines, pending = pending.split(b"\n")
            pending = pending[-64:]  # a request line is a pid: a longer unfinished one is not a request
            for line in lines:
                own = [requests, wake_r, wake_w, *served, *(r.reply for r in served.values())]
                request = _start(folder, line, own, warm)
                if request is not None:
                    served[request.pidfd] = request
                    if request.child is not None:
                        by_child[request.child] = request


def _warm_up(argv: list[str]) -> None:
    """Run the first request's model once in the zygote itself (1 warm-up, 1 run, output discarded).

    What a runtime initialises lazily on first use (XNNPACK's tables, the allocator's arenas, numpy's
    generator) is then done once and shared, instead of being paid after every fork outside the timed
    parts; ``gc.freeze`` keeps the collector from touching (copying) the zygote's objects in children.
    """
    import pyrunner

    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        args = pyrunner.build_parser().parse_args(argv)
        if args.delegate in ("cpu", "xnnpack"):
            args.runs, args.warmup = 1, 1
            pyrunner.run(args)
    except (Exception, SystemExit):  # noqa: BLE001, S110 - a bad first request only means no warm-up
        pass
    finally:
        sys.stdout.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
    gc.collect()
    gc.freeze()


def _start(folder: str, line: bytes, own: list[int], warm: list[bool]) -> Request | None:
    """Take one request line (a client's pid): fork its child, or answer ``F``. Warms up on the first."""
    if not line.strip().isdigit():
        return None
    client = int(line)
    try:
        pidfd = os.pidfd_open(client)
    except OSError:  # gone already
        return None
    try:
        reply = os.open(os.path.join(folder, f"r.{client}"), os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        os.close(pidfd)
        return None
    request = Request(folder, client, pidfd, reply)
    fds: list[int] = []
    try:
        with open(os.path.join(folder, f"q.{client}"), "rb") as fh:
            data = fh.read(MAX_REQUEST + 1)
        if len(data) > MAX_REQUEST or not data.endswith(b"\0"):
            raise ValueError("bad request")
        argv = [a.decode("utf-8", "surrogateescape") for a in data[:-1].split(b"\0")]
        fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))  # the client reads its reply on its fd 0
        fds += [os.open(f"/proc/{client}/fd/{fd}", os.O_WRONLY | os.O_CLOEXEC) for fd in (1, 2)]
    except (OSError, ValueError):
        for fd in fds:
            os.close(fd)
        request.answer("F")  # the client runs a fresh process
        return request
    if not warm[0]:
        warm[0] = True
        _warm_up(argv)
    pid = os.fork()
    if pid == 0:
        _child([*own, pidfd, reply], fds, argv)
    for fd in fds:
        os.close(fd)
    request.child = pid
    try:
        with open(os.path.join(folder, f"{client}.child"), "w", encoding="ascii") as fh:
            fh.write(str(pid))
    except OSError:
        pass
    return request


def _reap(by_child: dict[int, Request]) -> None:
    """Collect every ended child (killed ones too); answer the clients still waiting."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        request = by_child.pop(pid, None)
        if request is None:
            continue
        request.child = None
        code = os.waitstatus_to_exitcode(status)
        request.answer(str(code & 0xFF if code >= 0 else 128 - code))


def _kill(pid: int) -> None:  # the child's process group (it is its session leader)
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    serve(sys.argv[1])
