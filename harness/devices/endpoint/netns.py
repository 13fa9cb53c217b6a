"""The kernel side of the ``netns`` network method: a network namespace, a veth pair, ``tc`` qdiscs, ``setns``.

One :class:`NamespaceLink` per repetition: a uniquely named namespace (``edgeharness-PID-TOKEN``), a veth pair
``ehTOKENh`` (host side, ``169.254.X.Y+1/30``) / ``ehTOKENn`` (inside, ``.Y+2``), and per direction, on that
direction's egress end, ``tbf`` for the rate and, where the kernel has ``sch_netem``, ``netem`` for delay,
jitter and loss (``netem`` root, ``tbf`` its child). :meth:`NamespaceLink.run` calls a function in a thread of
its own that entered the namespace (``setns(2)`` is per thread; Python 3.11 has no ``os.setns``, so libc's
through ctypes, here only), so every socket that function opens is the namespace's: its traffic crosses the
veth and its qdiscs.

Teardown (``ip link del`` of the host end, which takes its peer, then ``ip netns del``) runs on close, on error,
at interpreter exit (``atexit``: the CLI turns SIGINT/SIGTERM into an orderly stop) and, for a process killed
outright, on the next run's :func:`sweep_stale` (names carry the creating PID). Every command is an argv list.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import random
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from harness.errors import NetworkMethodError, one_line

CLONE_NEWNET = 0x40000000
CAP_NET_ADMIN = 12
PREFIX = "edgeharness"
NAME_RE = re.compile(rf"^{PREFIX}-(\d+)-([0-9a-f]{{8}})$")
LOCK_PATH = "/run/lock/edgeharness-netns.lock"
MTU_FRAME = 1514
#: How long a packet may wait in a tbf queue before it is dropped (tc's ``latency``): a deep buffer, as a
#: mobile link's is (bufferbloat), so a TCP sender sees the rate rather than drops.
TBF_LATENCY_MS = 400
_TIMEOUT_S = 20.0
T = TypeVar("T")


def problem() -> str | None:
    """Why this process cannot make the namespace path, or None when it has what the method needs."""
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the netns method needs `{tool}` (iproute2), not installed"
    if not has_capability(CAP_NET_ADMIN):
        return "the netns method needs CAP_NET_ADMIN (root) to create a network namespace and tc qdiscs"
    if _libc_setns() is None:
        return "the netns method needs libc's setns(), not found"
    return None


def has_capability(bit: int) -> bool:
    """Whether ``bit`` is in this process's effective capability set (``CapEff`` in /proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _libc_setns() -> Callable[[int, int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        fn = libc.setns
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def enter(path: str) -> None:
    """Move the calling thread into the network namespace at ``path`` (for good: call it in a thread of its own)."""
    setns = _libc_setns()
    if setns is None:
        raise NetworkMethodError("libc has no setns()")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetworkMethodError(f"setns({path}) failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def tc_rate(kbit: float) -> list[str]:
    """``tbf`` arguments for ``kbit`` kbit/s: a burst of 5 ms at the rate (at least two frames), queue ``latency``."""
    burst = max(2 * MTU_FRAME, int(kbit * 1000 / 8 * 0.005))
    return ["tbf", "rate", f"{kbit:g}kbit", "burst", str(burst), "latency", f"{TBF_LATENCY_MS}ms"]


def qdisc_argv(dev: str, rate_kbit: float, netem: Sequence[str] = (), netns: str = "") -> list[list[str]]:
    """The ``tc`` commands that shape ``dev``'s egress: ``netem`` (args given) as the root with ``tbf`` its child,
    or ``tbf`` alone, or nothing when there is neither. ``netns``: the namespace ``dev`` is in."""
    base = ["tc", *(["-n", netns] if netns else []), "qdisc", "add", "dev", dev]
    if netem:
        out = [[*base, "root", "handle", "1:", "netem", *netem]]
        if rate_kbit > 0:
            out.append([*base, "parent", "1:1", "handle", "10:", *tc_rate(rate_kbit)])
        return out
    return [[*base, "root", "handle", "1:", *tc_rate(rate_kbit)]] if rate_kbit > 0 else []


def netem_args(delay_ms: float, jitter_ms: float, loss_pct: float) -> list[str]:
    """``netem`` arguments for one direction (uniform jitter, as the proxy draws it)."""
    args = ["delay", f"{delay_ms:g}ms"]
    if jitter_ms:
        args += [f"{jitter_ms:g}ms"] if delay_ms else []  # netem's default jitter is uniform
    if loss_pct:
        args += ["loss", f"{loss_pct:g}%"]
    return args


@dataclass
class Direction:
    """One direction's shaping: its rate (kbit/s, 0 = none) and netem arguments (empty = none)."""

    rate_kbit: float = 0.0
    netem: tuple[str, ...] = ()


@dataclass
class NamespaceLink:
    """A namespace joined to the host by a veth pair, shaped per direction. Use as a context manager."""

    down: Direction = field(default_factory=Direction)  # host -> namespace: the server's answers
    up: Direction = field(default_factory=Direction)  # namespace -> host: the client's requests
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    host_ip: str = ""
    ns_ip: str = ""
    qdiscs: list[str] = field(default_factory=list)
    _alive: bool = False

    @property
    def name(self) -> str:
        return f"{PREFIX}-{os.getpid()}-{self.token}"

    @property
    def host_if(self) -> str:
        return f"eh{self.token}h"

    @property
    def ns_if(self) -> str:
        return f"eh{self.token}n"

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def __enter__(self) -> NamespaceLink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Create the namespace, the veth pair, the addresses and the qdiscs; NetworkMethodError (all undone)."""
        sweep_stale()
        _track(self)
        self._alive = True
        try:
            _ip("netns", "add", self.name)
            with _address_lock():
                self.host_ip, self.ns_ip, prefix = _free_subnet()
                _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", self.name)
                _ip("addr", "add", f"{self.host_ip}/{prefix}", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("-n", self.name, "addr", "add", f"{self.ns_ip}/{prefix}", "dev", self.ns_if)
            _ip("-n", self.name, "link", "set", self.ns_if, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
            for argv in [*qdisc_argv(self.host_if, self.down.rate_kbit, self.down.netem),
                         *qdisc_argv(self.ns_if, self.up.rate_kbit, self.up.netem, self.name)]:
                _run(argv)
                self.qdiscs.append(" ".join(argv[argv.index("dev") + 1:]))
        except BaseException:
            self.close()
            raise

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a new thread inside the namespace (its sockets are the namespace's); its result or error."""
        box: dict[str, object] = {}

        def main() -> None:
            try:
                enter(self.path)
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                box["error"] = exc

        thread = threading.Thread(target=main, name=f"netns-{self.token}", daemon=True)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]

    def counters(self) -> dict[str, int]:
        """Bytes sent through each end's root qdisc (``tc -s``): ``down`` (host end), ``up`` (namespace end)."""
        return {"down": _sent_bytes(["tc", "-s", "qdisc", "show", "dev", self.host_if]),
                "up": _sent_bytes(["tc", "-n", self.name, "-s", "qdisc", "show", "dev", self.ns_if])}

    def close(self) -> None:
        """Delete the veth pair (its qdiscs go with it) and the namespace; safe to call twice."""
        if not self._alive:
            return
        self._alive = False
        remove(self.name, self.host_if)
        _LIVE.pop(self.name, None)


def remove(name: str, host_if: str) -> None:
    """Delete a veth pair by its host end and a namespace, whichever exist."""
    for argv in (["ip", "link", "del", host_if], ["ip", "netns", "del", name]):
        with contextlib.suppress(NetworkMethodError):
            _run(argv, quiet=True)


def list_namespaces() -> list[str]:
    """The names of the namespaces ``ip netns list`` shows."""
    try:
        out = _run(["ip", "netns", "list"])
    except NetworkMethodError:
        return []
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def sweep_stale() -> list[str]:
    """Remove the namespaces (and veths) our naming says a process that no longer exists made; their names."""
    gone = []
    for name in list_namespaces():
        m = NAME_RE.match(name)
        if not m or pid_alive(int(m.group(1))):
            continue
        remove(name, f"eh{m.group(2)}h")
        gone.append(name)
    return gone


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one we may not signal does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_LIVE: dict[str, NamespaceLink] = {}


def _track(link: NamespaceLink) -> None:
    """Remember ``link`` for the exit handler (registered at the first namespace, not at import)."""
    if not _LIVE and not getattr(_track, "registered", False):
        atexit.register(_close_all)
        _track.registered = True  # type: ignore[attr-defined]
    _LIVE[link.name] = link


def _close_all() -> None:
    for link in list(_LIVE.values()):
        link.close()


def _sent_bytes(argv: list[str]) -> int:
    """The first ``Sent N bytes`` of ``tc -s qdisc show`` (the root qdisc's)."""
    m = re.search(r"Sent (\d+) bytes", _run(argv))
    return int(m.group(1)) if m else 0


@contextlib.contextmanager
def _address_lock():  # noqa: ANN202 - a context manager
    """Serialise subnet choice + assignment across concurrent harness processes on this host."""
    os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _free_subnet() -> tuple[str, str, int]:
    """(host address, namespace address, prefix length): a link-local /30 no address or route here uses.

    169.254.0.x, .169.x (cloud metadata) and .255.x are left alone."""
    used = _run(["ip", "-o", "-4", "addr", "show"]) + _run(["ip", "-o", "-4", "route", "show", "table", "all"])
    taken = set(re.findall(r"169\.254\.(\d+)\.(\d+)", used))
    rng = random.SystemRandom()
    for _ in range(200):
        third, base = rng.choice([n for n in range(1, 255) if n != 169]), 4 * rng.randrange(64)
        if not {(str(third), str(base + i)) for i in range(4)} & taken:
            return f"169.254.{third}.{base + 1}", f"169.254.{third}.{base + 2}", 30
    raise NetworkMethodError("no free link-local /30 for the veth pair")


def _ip(*args: str) -> str:
    return _run(["ip", *args])


def _run(argv: list[str], quiet: bool = False) -> str:
    """Run one iproute2 command (an argv list, never a shell); its stdout, or NetworkMethodError with stderr."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        raise NetworkMethodError(f"`{' '.join(argv)}` could not run: {one_line(exc, 200)}") from None
    if done.returncode != 0:
        raise NetworkMethodError(f"`{' '.join(argv)}` failed: {one_line(done.stderr or done.stdout, 200)}",
                                 hint=None if quiet else "the netns method needs root and iproute2")
    return done.stdout


_NETEM: dict[str, str | None] = {}


def netem_problem() -> str | None:
    """Why ``tc ... netem`` cannot shape here (probed once per process in a throwaway namespace), or None."""
    if "problem" not in _NETEM:
        reason = problem()
        if reason is None:
            link = NamespaceLink()
            try:
                link.open()
                _run(["tc", "-n", link.name, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], quiet=True)
            except NetworkMethodError as exc:  # tc's own words, without the throwaway namespace's name
                reason = f"this kernel refuses a netem qdisc (no sch_netem?): {exc.message.rsplit(' failed: ', 1)[-1]}"
            finally:
                link.close()
        _NETEM["problem"] = reason
    return _NETEM["problem"]
