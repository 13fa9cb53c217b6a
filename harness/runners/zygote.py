#!/usr/bin/env python3
"""A preloaded zygote for :mod:`pyrunner` on the host: imports numpy and LiteRT once, forks one child per repetition.

Standalone (standard library, numpy, LiteRT, and ``pyrunner.py`` beside it), run by the host's Python::

    python zygote.py SOCKET_PATH

It listens on the UNIX socket ``SOCKET_PATH`` (its folder must be private: the host device makes it
0700) and, for each connection from :mod:`zygote_client`, receives the runner's arguments and the
client's stdin/stdout/stderr (``SCM_RIGHTS``), forks a child that runs exactly ``pyrunner.main(args)``
with those three descriptors, writes ``P <child pid>`` back, and ``X <exit code>`` when the child ends.

Isolation kept: one process per repetition, in its own session and process group; a crash kills the
child only. The child holds the caller's output pipe, so the host shell's kill (process group +
writers of its output pipe) reaches it; if the client goes away first, the zygote kills the child.
Memory: whether a forked child's high-water mark starts from its parent's is the kernel's business
(on Linux 6.18 it does not: a zygote at 318 MB HWM forks a child whose ru_maxrss reads 6.7 MB), so the
child does not rely on it: it writes ``5`` to ``/proc/self/clear_refs`` (resets VmHWM to its current
RSS) and pyrunner reports ``VmHWM``; a kernel that refuses the reset gives no peak rather than the
zygote's. The figure is lower than a fresh process's (no import-time transient, fewer pages touched).

Before forking its first child the zygote runs that request's model once itself (``_warm_up``): the
runtime's lazy first-use work is then shared instead of repeated after every fork.

The zygote ends when its stdin reaches EOF (the harness that started it is gone).
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import sys

MAX_REQUEST = 1 << 16
SEND_FDS = 3


def _child(conn: socket.socket, listener: socket.socket, fds: list[int], argv: list[str]) -> None:
    """In the forked child: become the runner (never returns)."""
    code = 1
    try:
        os.setsid()  # its own session and process group: a signal to the zygote's group misses it
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        conn.close()
        listener.close()
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


def serve(path: str) -> None:
    """Accept requests on ``path`` until stdin closes."""
    import ai_edge_litert.interpreter  # noqa: F401 - the point: imported once, shared by every child
    import numpy  # noqa: F401
    import pyrunner

    pyrunner._runtime()  # noqa: SLF001 - warms the runtime's version lookup too
    try:
        import ai_edge_litert.compiled_model  # noqa: F401
        import ai_edge_litert.schema_py_generated  # noqa: F401 - the op profile's model splitter (~0.5 s to import)
    except ImportError:
        pass
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    warm = [False]
    children: dict[int, socket.socket] = {}  # child pid -> its client's connection
    by_conn: dict[int, int] = {}  # connection fd -> child pid
    while True:
        ready, _, _ = select.select([listener, wake_r, sys.stdin, *children.values()], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):
            for pid in children:
                _kill(pid)
            return
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(children, by_conn)
        for conn in [c for c in ready if isinstance(c, socket.socket) and c is not listener]:
            pid = by_conn.get(conn.fileno())
            try:
                with_data = conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) if pid else b"x"
            except BlockingIOError:
                continue
            except OSError:
                with_data = b""
            if pid and not with_data:  # the client went away (killed): so does its child
                _kill(pid)
        if listener in ready:
            conn, _ = listener.accept()
            pid = _start(conn, listener, warm)
            if pid is None:
                conn.close()
            else:
                children[pid] = conn
                by_conn[conn.fileno()] = pid


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


def _start(conn: socket.socket, listener: socket.socket, warm: list[bool]) -> int | None:
    """Read one request and fork its child; None when the request is unreadable. Warms up on the first."""
    try:
        conn.settimeout(5)
        data, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, SEND_FDS)
        argv = json.loads(data.decode("utf-8"))
        if len(fds) != SEND_FDS or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ValueError("bad request")
    except (OSError, ValueError):
        return None
    if not warm[0]:
        warm[0] = True
        _warm_up(argv)
    pid = os.fork()
    if pid == 0:
        _child(conn, listener, fds, argv)
    for fd in fds:
        os.close(fd)
    try:
        conn.sendall(b"P %d\n" % pid)
    except OSError:
        _kill(pid)
    return pid


def _reap(children: dict[int, socket.socket], by_conn: dict[int, int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        by_conn.pop(conn.fileno(), None)
        try:
            conn.sendall(b"X %d\n" % os.waitstatus_to_exitcode(status))
        except OSError:
            pass
        conn.close()


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    serve(sys.argv[1])
