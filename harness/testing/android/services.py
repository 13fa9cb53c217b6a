"""Service names → service runners: what an ``OPEN`` may ask the virtual device for."""

from __future__ import annotations

import functools
from collections.abc import Callable

from harness.testing.android import forward
from harness.testing.android import shell_service as shell
from harness.testing.android.connection import ServiceRunner
from harness.testing.android.netns import DeviceNetwork
from harness.testing.android.sandbox import Sandbox
from harness.testing.android.stream import Stream
from harness.testing.android.sync import run_sync


async def _reply(text: str, stream: Stream) -> None:
    await stream.write(text.encode())


async def _reboot(on_reboot: Callable[[], None], stream: Stream) -> None:
    on_reboot()


async def _reconnect(stream: Stream) -> None:
    """adbd's ``reconnect``: answer, then drop this link so the host reconnects."""
    await stream.write(b"done")
    await stream.close()
    if stream.link is not None:
        stream.link.kick()  # type: ignore[attr-defined]


def _shell(options: list[str], command: str, launcher: shell.Launcher, table: shell.ProcessTable) -> ServiceRunner:
    """``shell[,v2][,TERM=…][,raw|,pty]:CMD``; without raw/pty, a pty only for an interactive shell (as adbd)."""
    pty = "pty" in options if ("pty" in options or "raw" in options) else not command
    term = next((o[len("TERM=") :] for o in options if o.startswith("TERM=")), None)
    if "v2" in options:
        return functools.partial(shell.run_v2, launcher=launcher, command=command, table=table, pty=pty, term=term)
    return functools.partial(shell.run_raw, launcher=launcher, command=command, table=table, pty=pty)


def make_opener(
    sandbox: Sandbox,
    launcher: shell.Launcher,
    on_reboot: Callable[[], None],
    table: shell.ProcessTable,
    network: Callable[[], DeviceNetwork],
    serial: Callable[[], str],
) -> Callable[[str], ServiceRunner | None]:
    """Build the service table for one device; unknown services are refused (``CLSE``)."""

    def open_service(name: str) -> ServiceRunner | None:
        if name.startswith("shell,") or name.startswith("shell:"):
            options, _, command = name.partition(":")
            return _shell(options.split(",")[1:], command, launcher, table)
        if name.startswith("exec:"):
            return functools.partial(shell.run_raw, launcher=launcher, command=name[len("exec:") :], table=table)
        if name == "sync:":
            return functools.partial(run_sync, sandbox=sandbox)
        if name.startswith("reboot:"):
            return functools.partial(_reboot, on_reboot)
        if name == "reconnect":
            return _reconnect
        if name == "root:":
            return functools.partial(_reply, "adbd is already running as root\n")
        if name == "unroot:":
            return functools.partial(_reply, "adbd not running as root\n")
        if name.startswith("tcp:") or name.startswith("localabstract:"):
            request = forward.connect_request(name)
            if request is None:
                return None
            return forward.Connect(network(), request)
        if name.startswith("reverse:"):
            return functools.partial(forward.run_reverse, network=network(), command=name[8:], serial=serial())
        return None

    return open_service
