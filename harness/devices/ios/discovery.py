"""Which iPhones usbmuxd lists, asked on a short-lived loop owner (never ``asyncio.run`` in the caller's thread)."""

from __future__ import annotations

import logging

from pymobiledevice3 import usbmux
from pymobiledevice3.exceptions import ConnectionFailedToUsbmuxdError

from harness.devices.ios.loop import LoopOwner
from harness.devices.settings import DeviceSettings
from harness.errors import CommandTimeout

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 30.0


async def _list_udids(usbmux_address: str | None) -> list[str]:
    return [d.serial for d in await usbmux.list_devices(usbmux_address=usbmux_address)]


def discover_ios_devices(usbmux_address: str | None = None, timeout_s: float = LIST_TIMEOUT_S) -> list[str]:
    """``ios:UDID`` of every phone usbmuxd lists (``[]`` when no usbmuxd runs here).

    ``usbmux_address`` is a UNIX socket path or a remote usbmuxd ``host:port`` (a farm host);
    by default pymobiledevice3 honours ``USBMUXD_SOCKET_ADDRESS``. Safe to call from inside a
    running event loop: the query runs on its own loop thread, closed before returning.
    """
    with LoopOwner("ios-discovery") as owner:
        try:
            udids = owner.run(_list_udids(usbmux_address), timeout_s)
        except ConnectionFailedToUsbmuxdError:
            log.debug("no usbmuxd at %s: no iOS devices", usbmux_address or "the default address")
            return []
        except TimeoutError:
            raise CommandTimeout(f"usbmuxd at {usbmux_address or 'the default address'} did not list devices "
                                 f"within {timeout_s} s", timeout_s=timeout_s, device="ios",
                                 hint="check usbmuxd (or the remote usbmuxd host) is responsive") from None
    return [f"ios:{u}" for u in dict.fromkeys(udids)]


def list_ios_devices(settings: DeviceSettings) -> list[str]:
    """Lister for :mod:`harness.devices.discovery`: the phones of ``settings.usbmux_address``."""
    return discover_ios_devices(settings.usbmux_address)
