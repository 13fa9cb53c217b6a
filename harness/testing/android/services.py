"""Service names → service runners: what an ``OPEN`` may ask the virtual device for."""

from __future__ import annotations

import functools
from collections.abc import Callable

from harness.testing.android import shell_service as shell
from harness.testing.android.connection import ServiceRunner
from harness.testing.android.sandbox import Sandbox
from harness.testing.android.stream import Stream
from harness.testing.android.sync import run_sync


async def _reply(text: str, stream: Stream) -> None:
    await stream.write(text.encode())


async def _reboot(on_reboot: Callable[[], None], stream: Stream) -> None:
    on_reboot()


def make_opener(
    sandbox: Sandbox, launcher: shell.Launcher, on_reboot: Callable[[], None]
) -> Callable[[str], ServiceRunner | None]:
    """Build the service table for one device; unknown services are refused (``CLSE``)."""

    def open_service(name: str) -> ServiceRunner | None:
        if name.startswith("shell,") or name.startswith("shell:"):
            options, _, command = name.partition(":")
            if "v2" in options.split(",")[1:]:
                return functools.partial(shell.run_v2, launcher=launcher, command=command)
            return functools.partial(shell.run_raw, launcher=launcher, command=command)
        if name.startswith("exec:"):
            return functools.partial(shell.run_raw, launcher=launcher, command=name[len("exec:") :])
        if name == "sync:":
            return functools.partial(run_sync, sandbox=sandbox)
        if name.startswith("reboot:"):
            return functools.partial(_reboot, on_reboot)
        if name == "root:":
            return functools.partial(_reply, "adbd is already running as root\n")
        if name == "unroot:":
            return functools.partial(_reply, "adbd not running as root\n")
        return None

    return open_service
