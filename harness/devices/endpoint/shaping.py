"""Which network method shapes a repetition, and the pieces it takes: the shaping proxy, a namespace, or both.

``method`` (per profile, or ``[suite.network] method`` for all):

- ``auto`` (default): ``netns`` where this process may make it (CAP_NET_ADMIN, ``ip``/``tc``), else ``tcp-proxy``;
  the recorded method says which, and why not ``netns``.
- ``netns``: the client runs inside a network namespace (:mod:`.netns`) behind a veth pair; ``tc tbf`` limits each
  direction's rate on its egress end, ``netem`` adds delay/jitter/loss where the kernel has ``sch_netem``, else the
  shaping proxy does (it listens on the veth's host address, bound to that device, and forwards to the server).
  The proxy always carries stalls and resets (no qdisc makes those) and counts the bytes.
- ``netem``: ``netns`` that must have ``netem`` (skipped without it).
- ``tcp-proxy``: the loopback shaping proxy alone, as before.

A client whose library connects from threads of its own (gRPC's C core: its event-engine threads are
process-wide, made in whichever namespace their creator was in, and ``setns`` moves one thread only) cannot be
put in the namespace by running it there. For it (``relay=True``) the ``netns`` path adds a relay: a pass-through
:class:`~.proxy.ShapingProxy` whose thread enters the namespace first, listening on a Unix socket in a private
directory (0700) and connecting over TCP, from the namespace's veth address, to the shaping proxy on the host
end. The client dials ``unix:PATH`` (:attr:`ShapedPath.unix_path`); its bytes cross the veth and its qdiscs as
any in-namespace client's do. The relay closes with the path, before the namespace.

A method that cannot run raises :class:`~harness.errors.NetworkMethodError`: the case is skipped with its reason,
never run on an unshaped network.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TypeVar

from harness.devices.endpoint import netns
from harness.devices.endpoint.network import PROFILES, NetworkProfile
from harness.devices.endpoint.proxy import UNIX, ShapingProxy
from harness.errors import NetworkMethodError

PROXY_METHOD = ("tcp-proxy: asyncio TCP proxy on loopback (per-direction delay/jitter, rate, stalls, resets; "
                "loss as retransmission delay)")
RELAY_DIR = re.compile(r"^edgeharness-relay-(\d+)-")  # + the creating PID: a killed run's is swept
RELAY_METHOD = ("the client (gRPC: its C core connects from process-wide threads setns cannot move) enters the "
                "namespace through a relay: a Unix socket in a private directory to a thread inside the namespace "
                "that connects over TCP from the namespace's veth address")
T = TypeVar("T")


@dataclass
class ShapedPath:
    """A repetition's way to the server: connect to ``address`` from inside :meth:`run`."""

    proxy: ShapingProxy
    link: netns.NamespaceLink | None
    method: str
    address: tuple[str, int] = ("127.0.0.1", 0)
    relay: ShapingProxy | None = None
    #: The Unix socket a client that connects from threads of its own dials instead of ``address`` (the relay's).
    unix_path: str | None = None

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` where the client lives: in the namespace's thread, or here for the proxy alone."""
        return self.link.run(fn) if self.link is not None else fn()

    def close(self) -> None:
        """The relay, the proxy, the namespace, the relay's directory; safe to call twice."""
        if self.relay is not None:
            self.relay.stop()
        self.proxy.stop()
        if self.link is not None:
            self.link.close()
        if self.unix_path is not None:
            _remove_relay_dir(str(Path(self.unix_path).parent))

    def __enter__(self) -> ShapedPath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_path(profile: NetworkProfile, upstream: tuple[str, int], seed: int = 0, relay: bool = False) -> ShapedPath:
    """Set up ``profile``'s method to ``upstream``; NetworkMethodError when the method it asks for cannot run.

    ``relay``: the client connects from threads of its own; a ``netns`` path gives it :attr:`ShapedPath.unix_path`.
    """
    method = profile.method
    fallback = ""
    if method != "tcp-proxy":
        reason = netns.problem()
        if reason is None and method == "netem":
            reason = netns.netem_problem()
        if reason is None:
            try:
                return _namespace_path(profile, upstream, seed, relay)
            except NetworkMethodError as exc:
                reason = exc.message
        if method != "auto":
            raise NetworkMethodError(f"network method {method!r} unavailable: {reason}")
        fallback = f" [auto: netns unavailable: {reason}]"
    proxy = ShapingProxy(upstream, profile, seed=seed)
    try:
        address = proxy.start()
    except BaseException:
        proxy.stop()
        raise
    return ShapedPath(proxy, None, f"{PROXY_METHOD}: {profile.describe()}{fallback}", address)


def _namespace_path(profile: NetworkProfile, upstream: tuple[str, int], seed: int, relay: bool) -> ShapedPath:
    wants_netem = profile.method == "netem" or bool(profile.delay_ms or profile.jitter_ms or profile.loss_pct)
    netem_reason = netns.netem_problem() if wants_netem else "not needed"
    up_rate = profile.up_rate_kbit or profile.rate_kbit
    if netem_reason is None:
        down = netns.Direction(profile.rate_kbit, tuple(netns.netem_args(profile.delay_ms, profile.jitter_ms,
                                                                          profile.loss_pct)))
        up = netns.Direction(up_rate, down.netem)
        proxied = replace(profile, delay_ms=0.0, jitter_ms=0.0, loss_pct=0.0, rate_kbit=0.0, up_rate_kbit=0.0)
    else:
        down, up = netns.Direction(profile.rate_kbit), netns.Direction(up_rate)
        proxied = replace(profile, rate_kbit=0.0, up_rate_kbit=0.0)
    link = netns.NamespaceLink(down=down, up=up)
    link.open()
    proxy = ShapingProxy(upstream, proxied, seed=seed, listen=link.host_ip, device=link.host_if,
                         allow_peer=link.ns_ip)
    path = ShapedPath(proxy, link, _describe(profile, link, netem_reason, relay))
    try:
        path.address = proxy.start()
        if relay:
            _add_relay(path, link)
    except BaseException:
        path.close()
        raise
    return path


def _add_relay(path: ShapedPath, link: netns.NamespaceLink) -> None:
    """Start ``path``'s relay: Unix socket (a fresh 0700 directory) -> a thread in ``link``'s namespace -> TCP ->
    the proxy on the veth. The relay shapes nothing (``direct``) and reuses the proxy's copy loop: asyncio turns
    Nagle off on its TCP side, a Unix socket has none."""
    sweep_stale_relays()
    folder = tempfile.mkdtemp(prefix=f"edgeharness-relay-{os.getpid()}-")  # mkdtemp: 0700, this user's only
    _RELAY_DIRS.add(folder)
    path.unix_path = str(Path(folder) / "g")  # short: a Unix socket's path has 107 bytes
    path.relay = ShapingProxy(path.address, PROFILES["direct"], listen=UNIX + path.unix_path,
                              setup=partial(netns.enter, link.path))
    try:
        path.relay.start()
    except OSError as exc:  # e.g. a TMPDIR so long the socket's path passes AF_UNIX's 107 bytes
        raise NetworkMethodError(f"the relay into the namespace could not listen on {path.unix_path}: {exc}",
                                 hint="set TMPDIR to a short directory") from None


#: Relay directories in use, removed at exit too: a run stopped while its client waits exits with its case's
#: thread still inside ``with path``.
_RELAY_DIRS: set[str] = set()


def _remove_relay_dir(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    _RELAY_DIRS.discard(folder)


def _remove_relay_dirs() -> None:
    for folder in list(_RELAY_DIRS):
        _remove_relay_dir(folder)


atexit.register(_remove_relay_dirs)  # does nothing unless a relay ran


def sweep_stale_relays() -> list[str]:
    """Remove the relay directories (ours: this user's, not symlinks) that a process no longer alive made."""
    gone = []
    for entry in Path(tempfile.gettempdir()).glob("edgeharness-relay-*"):
        m = RELAY_DIR.match(entry.name)
        try:
            st = entry.lstat()
        except OSError:
            continue
        if m and stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not netns.pid_alive(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            gone.append(str(entry))
    return gone


def _describe(profile: NetworkProfile, link: netns.NamespaceLink, netem_reason: str | None, relay: bool) -> str:
    def rate(k: float) -> str:
        return f"{k:g} kbit/s" if k > 0 else "unlimited"

    parts = [f"netns: the client in its own network namespace behind a veth pair (link-local /30); "
             f"tc tbf on each direction's egress (down {rate(link.down.rate_kbit)}, up {rate(link.up.rate_kbit)})"]
    if netem_reason is None:
        parts.append("tc netem delay/jitter/loss on both veth ends; the proxy on the veth's host address adds "
                     "stalls and resets only")
    else:
        why = "" if netem_reason == "not needed" else f" (no netem: {netem_reason})"
        parts.append("delay/jitter, loss as retransmission delay, stalls and resets by the tcp-proxy on the veth's "
                     f"host address{why}")
    if relay:
        parts.append(RELAY_METHOD)
    return "; ".join(parts) + f": {profile.describe()}"
