"""The fake lockdownd (port 62078): values, pairing with a Trust prompt, TLS sessions, services.

Device side of the lockdown protocol pymobiledevice3's ``LockdownClient`` speaks:
``QueryType``, ``GetValue``, ``Pair`` (answered per the fake's trust setting),
``StartSession`` (then TLS in-band, the host certificate checked against the paired root),
``StartService`` (a one-shot port, TLS when the service needs it) and ``StopSession``.
Faults: a locked phone answers ``PasswordProtected``; DVT on iOS 17+ answers ``InvalidService``.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.testing.ios.wire import read_plist, write_plist

if TYPE_CHECKING:
    from harness.testing.ios.device import DeviceState

#: Keys of the default domain a host may write (a phone refuses the rest with ``InvalidKey``).
WRITABLE_KEYS = frozenset({"DeviceName", "TimeZone", "Uses24HourClock"})

DVT_SERVICES = (
    "com.apple.instruments.remoteserver.DVTSecureSocketProxy",
    "com.apple.instruments.remoteserver",
)


#: Services the fake starts with ``EnableServiceSSL`` (TLS from the first byte of the service connection).
SSL_SERVICES = DVT_SERVICES


#: The session of a ``lockdown.remote.trusted`` connection: the RSD tunnel is itself the paired, encrypted link.
TUNNEL_SESSION = "rsd-tunnel"


class Lockdownd:
    """One lockdownd connection: plain plists until ``StartSession``, then TLS.

    ``remote``: the ``com.apple.mobile.lockdown.remote.trusted`` variant behind an RSD tunnel: already in a
    session (no pairing, no TLS), and services are not started here but found in RSD's ``peer_info``.
    """

    def __init__(self, state: DeviceState, *, remote: bool = False) -> None:
        self.state = state
        self.remote = remote
        self.session_host: str | None = TUNNEL_SESSION if remote else None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests until the host closes the connection."""
        while (request := await read_plist(reader)) is not None:
            name = request.get("Request", "")
            reply: dict[str, Any] = {"Request": name}
            reply.update(await self._handle(name, request))
            await write_plist(writer, reply)
            if name == "StartSession" and reply.get("EnableSessionSSL"):
                await writer.start_tls(self.state.tls_context(request["HostID"]))

    async def _handle(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_req_{name}", None)
        if handler is None:
            return {"Error": "UnsupportedRequest"}
        return await handler(request)

    async def _req_QueryType(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802 - wire names
        return {"Type": "com.apple.mobile.lockdown"}

    async def _req_GetValue(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        domain, key = request.get("Domain"), request.get("Key")
        values = self.state.lockdown_values() if domain is None else self.state.domain_values(str(domain))
        if key is None:
            return {"Value": values} if values or domain is None else {"Error": "MissingValue"}
        if key not in values:
            return {"Error": "MissingValue"}
        return {"Key": key, "Value": values[key]}

    async def _req_SetValue(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        if self.session_host is None:
            return {"Error": "SessionInactive"}
        domain, key = request.get("Domain"), request.get("Key")
        if key is None or "Value" not in request:
            return {"Error": "MissingValue"}
        if domain is None and key not in WRITABLE_KEYS:
            return {"Error": "InvalidKey"}
        self.state.set_value(domain, str(key), request["Value"])
        return {"Domain": domain, "Key": key} if domain else {"Key": key}

    async def _req_RemoveValue(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        if self.session_host is None:
            return {"Error": "SessionInactive"}
        domain, key = request.get("Domain"), request.get("Key")
        if key is None or not self.state.remove_value(domain, str(key)):
            return {"Error": "MissingValue"}
        return {"Key": key}

    async def _req_Unpair(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        """Forget a host: its pair record stops opening sessions (as after "Reset Location & Privacy")."""
        host_id = (request.get("PairRecord") or {}).get("HostID")
        if host_id not in self.state.host_pairings:
            return {"Error": "InvalidHostID"}
        del self.state.host_pairings[host_id]
        return {}

    async def _req_EnterRecovery(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return {"Error": "NotSupported"}

    async def _req_Pair(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        answer = self.state.next_trust_answer()
        if answer == "pending":
            return {"Error": "PairingDialogResponsePending"}
        if answer == "deny":
            return {"Error": "UserDeniedPairing"}
        record = request["PairRecord"]
        self.state.host_pairings[record["HostID"]] = record
        return {"EscrowBag": os.urandom(32)}

    async def _req_StartSession(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        if self.remote:
            return {"SessionID": str(uuid.uuid4()), "EnableSessionSSL": False}
        if request.get("HostID") not in self.state.host_pairings:
            return {"Error": "InvalidHostID"}
        self.session_host = request["HostID"]
        return {"SessionID": str(uuid.uuid4()), "EnableSessionSSL": True}

    async def _req_StopSession(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        self.session_host = None
        return {"Result": "Success"}

    async def _req_StartService(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        name = request.get("Service", "")
        if self.remote:
            return {"Error": "InvalidService"}
        if self.session_host is None:
            return {"Error": "SessionInactive"}
        if self.state.faults.locked:
            return {"Error": "PasswordProtected"}
        if name in DVT_SERVICES and self.state.major_version >= 17:
            return {"Error": "InvalidService"}
        use_ssl = name in SSL_SERVICES
        port = self.state.open_service_port(name, use_ssl)
        if port is None:
            return {"Error": "InvalidService"}
        return {"Service": name, "Port": port, "EnableServiceSSL": use_ssl}


def server_tls_context(cert_pem: bytes, key_pem: bytes, host_pems: list[bytes], scratch: Path) -> ssl.SSLContext:
    """A server TLS context with the device identity that admits only the paired hosts' certificates.

    pymobiledevice3's certificates have empty names (as libimobiledevice's), which OpenSSL would call
    self-signed, so the paired HostCertificates are pinned as trust anchors (partial chain).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    path = os.path.join(scratch, f"tls-{uuid.uuid4().hex}.pem")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(cert_pem + b"\n" + key_pem)
    try:
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.load_verify_locations(cadata="\n".join(p.decode() for p in host_pems))
    return ctx
