"""Which iPhones usbmuxd (and a configured tunneld) list, asked on a short-lived loop owner (never
``asyncio.run`` in the caller's thread)."""

from __future__ import annotations

import logging

from pymobiledevice3 import usbmux
from pymobiledevice3.exceptions import ConnectionFailedToUsbmuxdError, TunneldConnectionError

from harness.devices.ios.loop import LoopOwner
from harness.devices.ios.tunnel import HINT_TUNNELD, TunneldAddress, tunneld_udids
from harness.devices.settings import DeviceSettings
from harness.errors import CommandTimeout, DeviceError

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 30.0


async def _list_udids(usbmux_address: str | None) -> list[str]:
    try:
        return [d.serial for d in await usbmux.list_devices(usbmux_address=usbmux_address)]
    except ConnectionFailedToUsbmuxdError:
        log.debug("no usbmuxd at %s: no iOS devices over usbmuxd", usbmux_address or "the default address")
        return []


def discover_ios_devices(usbmux_address: str | None = None, timeout_s: float = LIST_TIMEOUT_S,
                         tunneld_address: TunneldAddress | None = None) -> list[str]:
    """``ios:UDID`` of every phone usbmuxd lists (``[]`` when no usbmuxd runs here), plus the phones a
    ``tunneld`` at ``tunneld_address`` has tunnels to (iOS 17+; an unreachable tunneld is an error).

    ``usbmux_address`` is a UNIX socket path or a remote usbmuxd ``host:port`` (a farm host);
    by default pymobiledevice3 honours ``USBMUXD_SOCKET_ADDRESS``. Safe to call from inside a
    running event loop: the query runs on its own loop thread, closed before returning.
    """
    with LoopOwner("ios-discovery") as owner:
        where = f"usbmuxd at {usbmux_address or 'the default address'}"
        try:
            udids = owner.run(_list_udids(usbmux_address), timeout_s)
            if tunneld_address is not None:
                where = f"tunneld at {tunneld_address[0]}:{tunneld_address[1]}"
                udids += owner.run(tunneld_udids(tunneld_address), timeout_s)
        except TimeoutError:
            raise CommandTimeout(f"{where} did not list devices within {timeout_s} s", timeout_s=timeout_s,
                                 device="ios", hint="check usbmuxd (or the remote usbmuxd host, or tunneld) "
                                                    "is responsive") from None
        except TunneldConnectionError:
            raise DeviceError(f"{where} is not reachable", device="ios", hint=HINT_TUNNELD) from None
    return [f"ios:{u}" for u in dict.fromkeys(udids)]


def list_ios_devices(settings: DeviceSettings) -> list[str]:
    """Lister for :mod:`harness.devices.discovery`: the phones of ``settings.usbmux_address`` and its tunneld.

    An unreachable tunneld is one warning line; usbmuxd's phones are still listed.
    """
    try:
        return discover_ios_devices(settings.usbmux_address, tunneld_address=settings.tunneld_address)
    except DeviceError as exc:
        if settings.tunneld_address is None:
            raise
        log.warning("%s (hint: %s)", exc, exc.hint)
        return discover_ios_devices(settings.usbmux_address)
