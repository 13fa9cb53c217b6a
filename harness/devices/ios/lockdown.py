"""Lockdown: connect, pair (the Trust dialog) and translate pymobiledevice3's errors into typed ones.

The connection of one phone is its lockdown client over usbmuxd or, when a ``tunneld`` is configured
and has a tunnel to the phone, its RSD (:mod:`.tunnel`); :meth:`Lockdown.provider` gives whichever
serves, and both are dropped together when the link breaks.

Pair records live in a folder the harness owns (``$HARNESS_CACHE/ios-pairing``, 0700, files
0600), never in ``~/.pymobiledevice3``. Every pymobiledevice3 exception that leaves the backend
becomes a :class:`~harness.errors.DeviceError` child with the device id and a hint.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from pymobiledevice3 import exceptions as px
from pymobiledevice3.lockdown import LockdownClient, create_using_usbmux
from pymobiledevice3.lockdown_service_provider import LockdownServiceProvider
from pymobiledevice3.remote.remote_service_discovery import RemoteServiceDiscoveryService

from harness.devices.ios import tunnel
from harness.devices.settings import default_cache_dir
from harness.errors import AuthError, DeviceError, DeviceLost, DeviceNotFound

log = logging.getLogger(__name__)
T = TypeVar("T")

HINT_TRUST = "unlock the phone and tap Trust on the 'Trust This Computer?' dialog, then run again"
HINT_TUNNEL = ("iOS 17+ reaches DVT only through a tunnel: start `sudo pymobiledevice3 remote tunneld` and set "
               "HARNESS_TUNNELD=HOST:PORT (or pass tunneld_address, or inject a tunnel_provider); "
               "or use a device on iOS < 17 (with its DDI mounted)")
TUNNEL_RECHECK_S = 10.0  # how long "tunneld has no tunnel to this phone" is believed
HINT_LOST = ("check the cable (and tunneld, for a phone reached through its tunnel); finished results are kept, "
             "rerun the remaining cases")


def pairing_dir(cache: str | os.PathLike[str] | None = None) -> Path:
    """The harness-owned folder of iOS pair records (0700): ``cache/ios-pairing``.

    ``cache`` is the harness's cache folder (the fronts pass ``$HARNESS_CACHE``; default ``~/.cache/edgeharness``).
    """
    base = Path(cache) if cache else default_cache_dir()
    folder = base / "ios-pairing"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def lock_down_files(folder: Path) -> None:
    """Pair records hold private keys: owner-only."""
    for path in folder.glob("*.plist"):
        path.chmod(0o600)


#: pymobiledevice3 exceptions -> (harness error, what happened, hint); first match wins.
ERROR_TABLE: tuple[tuple[tuple[type[BaseException], ...], type[DeviceError], str, str | None], ...] = (
    ((px.PairingDialogResponsePendingError,), AuthError, "the phone is waiting for the Trust dialog", HINT_TRUST),
    ((px.UserDeniedPairingError,), AuthError, "the user tapped Don't Trust",
     "reset trust on the phone (Settings > General > Transfer or Reset iPhone > Reset > Reset Location & Privacy), "
     "reconnect and tap Trust"),
    ((px.PasswordRequiredError,), DeviceError, "the phone is locked (PasswordProtected)",
     "unlock the phone; farm phones should have no passcode and Auto-Lock off"),
    ((px.InvalidServiceError,), DeviceError, "the service is not available over lockdown (InvalidService)",
     HINT_TUNNEL),
    ((px.AppNotInstalledError,), DeviceError, "the benchmark app is not installed",
     "set app = 'path/to/EdgeBench.ipa' in harness.toml or the suite"),
    ((px.AppInstallError,), DeviceError, "install failed: {exc}",
     "the ipa must be signed for this device (development profile with its UDID) and Developer Mode must be on"),
    ((px.ConnectionFailedToUsbmuxdError,), DeviceError, "usbmuxd is not reachable",
     "start usbmuxd (Linux: apt install usbmuxd) or set USBMUXD_SOCKET_ADDRESS"),
    ((px.DeviceNotFoundError, px.NoDeviceConnectedError), DeviceNotFound, "usbmuxd does not list the device",
     "check the cable and that the phone is unlocked; `harness devices` lists phones"),
    ((px.ConnectionTerminatedError, px.MuxException), DeviceLost, "the connection to the phone dropped ({name})",
     HINT_LOST),
    ((px.NotPairedError,), AuthError, "the host is not paired with the phone", HINT_TRUST),
    ((px.StartServiceError,), DeviceError, "the phone refused to start a service over RSD: {exc}",
     "unlock the phone (PasswordProtected means it is locked); farm phones should have no passcode"),
    ((px.TunneldConnectionError,), DeviceError, "tunneld is not reachable", tunnel.HINT_TUNNELD),
    ((px.RemoteXPCHandshakeTimeoutError,), DeviceLost, "the phone's RSD did not answer the RemoteXPC handshake",
     "check the tunnel (`pymobiledevice3 remote tunneld` on the farm host) and that the phone is unlocked"),
)


def is_connection_loss(exc: BaseException) -> bool:
    """True when the link to the phone is gone (the lockdown connection must be reopened)."""
    return isinstance(exc, (px.ConnectionTerminatedError, px.MuxException, ConnectionError,
                            asyncio.IncompleteReadError, px.RemoteXPCHandshakeTimeoutError))


def translate(exc: BaseException, device: str, what: str) -> DeviceError:
    """Map pymobiledevice3's exceptions to the harness's typed errors, with a hint."""
    if isinstance(exc, DeviceError):
        return exc
    for types, error, message, hint in ERROR_TABLE:
        if isinstance(exc, types):
            return error(f"{what}: " + message.format(exc=exc, name=type(exc).__name__), device=device, hint=hint)
    if isinstance(exc, (ConnectionError, asyncio.IncompleteReadError)):
        return DeviceLost(f"{what}: the connection to the phone dropped ({type(exc).__name__})", device=device,
                          hint=HINT_LOST)
    return DeviceError(f"{what}: {type(exc).__name__}: {exc}", device=device)


class Lockdown:
    """The lockdown connection of one phone: opened (and paired) once, dropped when the link breaks.

    Lives on the device's loop: every method is a coroutine run by the device's loop owner.
    """

    def __init__(self, udid: str, device_id: str, *, usbmux_address: str | None, pairing_folder: Path,
                 pair_timeout_s: float, tunneld_address: tunnel.TunneldAddress | None = None) -> None:
        self.udid = udid
        self.device_id = device_id
        self.usbmux_address = usbmux_address
        self.pairing_folder = pairing_folder
        self.pair_timeout_s = pair_timeout_s
        self.tunneld_address = tunneld_address
        self._client: LockdownClient | None = None
        self._rsd: RemoteServiceDiscoveryService | None = None
        self._no_tunnel_until = 0.0

    async def rsd(self) -> RemoteServiceDiscoveryService | None:
        """The phone's RSD through tunneld (connected once); None without tunneld or when it has no tunnel to it.

        "No tunnel" is remembered for :data:`TUNNEL_RECHECK_S` only: tunneld may bring one up later.
        """
        if self.tunneld_address is None or self._rsd is not None:
            return self._rsd
        if time.monotonic() >= self._no_tunnel_until:
            self._rsd = await tunnel.connect_rsd(self.udid, self.tunneld_address)
            if self._rsd is None:
                self._no_tunnel_until = time.monotonic() + TUNNEL_RECHECK_S
        return self._rsd

    async def provider(self) -> LockdownServiceProvider:
        """What services start through: the RSD when tunneld has a tunnel to the phone, else lockdown over usbmuxd."""
        return await self.rsd() or await self.client()

    async def client(self) -> LockdownClient:
        """The lockdown client, connected and paired once."""
        if self._client is None:
            kwargs = {"serial": self.udid, "pair_timeout": self.pair_timeout_s, "usbmux_address": self.usbmux_address,
                      "pairing_records_cache_folder": self.pairing_folder, "label": "edgeharness"}
            try:
                self._client = await create_using_usbmux(**kwargs)
            except px.ConnectionFailedToUsbmuxdError:
                # pymobiledevice3 saves a fresh pair record to the folder, then to the default usbmuxd,
                # which ignores usbmux_address; the record is on disk, so connect again.
                if self.usbmux_address is None or not any(self.pairing_folder.glob("*.plist")):
                    raise
                self._client = await create_using_usbmux(**kwargs)
            finally:
                lock_down_files(self.pairing_folder)
        return self._client

    async def drop(self) -> None:
        """Close the connections (if any); the next :meth:`client` or :meth:`provider` reconnects."""
        rsd, self._rsd, self._no_tunnel_until = self._rsd, None, 0.0
        if rsd is not None:
            try:
                await rsd.close()
            except Exception:  # noqa: BLE001 - the link is already gone
                log.debug("[%s] closing a dead RSD connection failed", self.device_id)
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except Exception:  # noqa: BLE001 - the link is already gone
                log.debug("[%s] closing a dead lockdown connection failed", self.device_id)

    async def typed(self, what: str, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro``; errors come back typed, and a broken link drops the connection first.

        A cancellation (the caller's timeout) drops it too: a request cut mid-way leaves the stream
        out of step, so the next call must not reuse it.
        """
        try:
            return await coro
        except asyncio.CancelledError:
            await self.drop()
            raise
        except Exception as exc:
            if not isinstance(exc, DeviceError) and is_connection_loss(exc):
                await self.drop()
            raise translate(exc, self.device_id, what) from exc
