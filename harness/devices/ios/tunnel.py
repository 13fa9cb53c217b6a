"""The iOS 17+ route: a phone's RemoteServiceDiscovery (RSD) found through a running ``tunneld``.

iOS 17 moved the developer services (DVT process control, sysmontap) behind a tunnel: RemoteXPC over
HTTP/2 on the tunnel's RSD port. Creating the tunnel needs root (TUN interfaces), so the harness never
does it: a farm host runs ``sudo pymobiledevice3 remote tunneld``, which publishes its tunnels over HTTP
(default ``127.0.0.1:49151``), and the harness is pointed at it (``HARNESS_TUNNELD=HOST:PORT``). When
tunneld lists a phone, every service of a run goes over its RSD: lockdown values through
``lockdown.remote.trusted``, installation_proxy, house_arrest/AFC, syslog and diagnostics through their
``*.shim.remote`` ports, DVT through ``com.apple.instruments.dtservicehub``. A phone that tunneld does
not list is reached over usbmuxd/lockdown as before.
"""

from __future__ import annotations

import logging

from pymobiledevice3.remote.remote_service_discovery import RemoteServiceDiscoveryService
from pymobiledevice3.tunneld.api import get_tunneld_device_by_udid, get_tunneld_tunnels

log = logging.getLogger(__name__)

TunneldAddress = tuple[str, int]  # parsed from HARNESS_TUNNELD by harness.devices.settings.parse_tunneld_address
HINT_TUNNELD = ("start `sudo pymobiledevice3 remote tunneld` on the host the phones are cabled to, and set "
                "HARNESS_TUNNELD=HOST:PORT to its address (default port 49151)")


async def tunneld_udids(address: TunneldAddress) -> list[str]:
    """The UDIDs tunneld has a tunnel to (no connection is opened to the phones)."""
    return list(await get_tunneld_tunnels(address))


async def connect_rsd(udid: str, address: TunneldAddress) -> RemoteServiceDiscoveryService | None:
    """The phone's RSD, connected (handshake done, remote lockdown open); None when tunneld has no tunnel to it."""
    rsd = await get_tunneld_device_by_udid(udid, address)
    if rsd is not None:
        log.debug("[ios:%s] RSD through tunneld %s:%s at %s", udid, *address, rsd.service.address)
    return rsd
