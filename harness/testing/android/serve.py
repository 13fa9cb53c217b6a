"""``harness virtual-device serve``: run a virtual device until interrupted.

The lead's ``cli.py`` wires :func:`add_arguments` and :func:`run` under the
``virtual-device serve`` subcommand; ``python -m harness.testing serve`` works too.
"""

from __future__ import annotations

import argparse
import sys
import threading

from harness.errors import HarnessError
from harness.testing.android.auth import AuthMode
from harness.testing.android.device import VirtualDevice
from harness.testing.android.device_profile import DEFAULT_PROFILE
from harness.testing.android.physics import PhysicsConfig
from harness.testing.common import wait_until_stopped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``virtual-device serve``."""
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: pick a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="device profile name or .toml path")
    parser.add_argument("--root", default=None, help="sandbox directory kept after exit (default: temporary)")
    parser.add_argument("--auth", default="none", choices=[m.value for m in AuthMode], help="host authentication")
    parser.add_argument("--key", action="append", default=[], help="accepted adbkey.pub (with --auth keys)")
    parser.add_argument("--isolation", default="auto", choices=["auto", "namespace", "proot"])
    parser.add_argument("--static-sensors", action="store_true",
                        help="keep battery/thermal/cpufreq files fixed instead of the load-driven physics model")


def run(args: argparse.Namespace, *, stop: threading.Event | None = None) -> int:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set); print the address first, flushed."""
    stop = stop or threading.Event()
    device = VirtualDevice(
        port=args.port,
        host=args.host,
        profile=args.profile,
        root=args.root,
        auth=args.auth,
        keys=args.key,
        isolation=args.isolation,
        physics=None if getattr(args, "static_sensors", False) else PhysicsConfig(),
    )
    device.start()
    try:
        print(
            f"virtual device listening on {device.address} "
            f"(serial {device.serial}, profile {device.profile.name}, auth {device.policy.mode.value}, "
            f"isolation {device.isolation.name if device.isolation else '?'}, root {device.sandbox.root})",
            flush=True,
        )
        if device.emulation is not None:
            print(f"arm64 userland emulated by {device.emulation.describe()}, sysroot {device.emulation.sysroot.root}; "
                  f"latencies measured on it are emulated", flush=True)
        print(f"connect with: adb connect {device.address}", flush=True)
        wait_until_stopped(stop)
    finally:
        device.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m harness.testing``."""
    parser = argparse.ArgumentParser(prog="python -m harness.testing", description="virtual Android device")
    sub = parser.add_subparsers(dest="command", required=True)
    add_arguments(sub.add_parser("serve", help="serve a virtual device until interrupted"))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
