"""``harness fake-iphone serve``: run the wire-level fake iPhone until interrupted.

It lets a user try the iOS path without a phone, from the shell: start it, export the
``USBMUXD_SOCKET_ADDRESS`` it prints (and, with ``--ios 17`` or later, ``HARNESS_TUNNELD``: the iOS 17+
route through tunneld and RSD), then ``harness devices`` and
``harness run SUITE --device ios:UDID`` talk to it through unmodified pymobiledevice3.
It also writes an (unsigned) ipa of the benchmark app that the fake accepts, and a
``harness.toml`` naming it, so a suite runs without further setup.
"""

from __future__ import annotations

import argparse
import re
import threading
from pathlib import Path

from harness.errors import UsageError
from harness.testing.common import wait_until_stopped

BATTERIES = ("usb", "unplugged")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fake-iphone serve``."""
    parser.add_argument("--root", default=None,
                        help="directory for the usbmuxd socket and the phone's state (default: temporary)")
    parser.add_argument("--udid", default=None, help="the phone's UDID (default: the fake's own)")
    parser.add_argument("--product-type", default=None,
                        help="lockdown ProductType, e.g. iPhone15,2 (default iPhone14,5)")
    parser.add_argument("--ios", default=None, metavar="VERSION",
                        help="ProductVersion (default 16.7.2; 17 or later: lockdown answers InvalidService for DVT, "
                             "and the phone serves RSD and a tunneld on loopback, as through a tunnel)")
    parser.add_argument("--build", default=None, metavar="BUILD",
                        help="BuildVersion to report with --ios, e.g. 22B83 for 18.1 (default: the fake's 20H115)")
    parser.add_argument("--battery", default="usb", choices=BATTERIES,
                        help="usb: on external power (energy refused, as on a cabled farm); unplugged: discharging")
    parser.add_argument("--trust", default="accept", help="how the Trust prompt answers pairing (default accept)")
    parser.add_argument("--usbmux-tcp", type=int, default=None, metavar="PORT",
                        help="also serve usbmuxd on 127.0.0.1:PORT (0: a free port), like a farm host's remote usbmuxd")


def _unplugged_battery() -> dict[str, object]:
    from harness.testing.ios.device import USB_POWERED_BATTERY

    return {**USB_POWERED_BATTERY, "ExternalConnected": False, "IsCharging": False,
            "InstantAmperage": -420, "Amperage": -420}


def build(args: argparse.Namespace):  # noqa: ANN201 - FakeIPhone needs the ios extra, imported lazily
    """A configured (not yet started) :class:`FakeIPhone` from the command-line options."""
    try:
        from harness.testing.ios.device import FakeFaults, FakeIPhone
    except ImportError as exc:
        raise UsageError(f"the fake iPhone needs pymobiledevice3 ({exc})",
                         hint="pip install 'edgeharness[ios]'") from None
    if args.ios is not None and not re.fullmatch(r"\d{1,2}(\.\d{1,3}){0,2}", args.ios):
        raise UsageError(f"--ios {args.ios!r} is not an iOS version", hint="e.g. --ios 16.7.2 or --ios 18.1")
    values = {k: v for k, v in (("ProductType", args.product_type), ("ProductVersion", args.ios),
                                ("BuildVersion", getattr(args, "build", None))) if v}
    try:
        faults = FakeFaults(trust=args.trust)
    except ValueError as exc:
        raise UsageError(f"--trust: {exc}") from None
    options = {"values": values, "faults": faults}
    if args.udid:
        options["udid"] = args.udid
    if getattr(args, "usbmux_tcp", None) is not None:
        if not 0 <= args.usbmux_tcp <= 65535:
            raise UsageError(f"--usbmux-tcp: {args.usbmux_tcp} is not a TCP port",
                             hint="use 0..65535 (0: any free port)")
        options["usbmux_tcp_port"] = args.usbmux_tcp
    if args.battery == "unplugged":
        options["battery"] = _unplugged_battery()
    if args.root:
        root = Path(args.root)
        root.mkdir(parents=True, exist_ok=True)
        options["root"] = root
    return FakeIPhone(**options)


def run(args: argparse.Namespace, *, stop: threading.Event | None = None) -> int:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set); print how to reach the phone first, flushed."""
    from harness.testing.ios.device import make_test_ipa

    stop = stop or threading.Event()
    phone = build(args).start()
    try:
        ipa = make_test_ipa(phone.root / "EdgeBench.ipa")
        config = phone.root / "harness.toml"
        config.write_text(f"[tool]\nios_app = {str(ipa)!r}\n", encoding="utf-8")
        print(f"fake iPhone {phone.device_id} listening on usbmuxd socket {phone.usbmux_address}", flush=True)
        print(f"use it with:  export USBMUXD_SOCKET_ADDRESS={phone.usbmux_address}", flush=True)
        if phone.usbmux_tcp_address:
            print(f"  or over TCP: export USBMUXD_SOCKET_ADDRESS={phone.usbmux_tcp_address}", flush=True)
        print(f"              export HARNESS_CONFIG={config}    # names the benchmark app {ipa.name}", flush=True)
        if phone.tunneld_address and phone.rsd_address:
            host, port = phone.tunneld_address
            print(f"              export HARNESS_TUNNELD={host}:{port}    # iOS 17+: DVT and the services over RSD",
                  flush=True)
            print(f"  pymobiledevice3: --rsd {phone.rsd_address[0]} {phone.rsd_address[1]}  or  "
                  f"--tunnel {phone.udid}:{port}", flush=True)
        print(f"              harness run suites/smoke.toml --device {phone.device_id}", flush=True)
        wait_until_stopped(stop)
    finally:
        phone.stop()
    return 0
