"""The benchmark app on the phone: install through installation_proxy, files in its container through
house_arrest (AFC), with a sha256 sidecar so an unchanged file is not pushed twice.

Container paths are checked here: a path from a suite or from the device never leaves the
app's container on the phone, and never picks a host path.
"""

from __future__ import annotations

import plistlib
import posixpath
import zipfile
from pathlib import Path
from typing import Any

from pymobiledevice3.lockdown_service_provider import LockdownServiceProvider
from pymobiledevice3.services.house_arrest import HouseArrestService
from pymobiledevice3.services.installation_proxy import InstallationProxyService

from harness.devices.base import sha256_file
from harness.errors import DeviceError


def read_app_bundle_info(app: Path, device: str | None = None) -> dict[str, Any]:
    """Info.plist of an ``.ipa`` (``Payload/X.app/Info.plist``) or an ``.app`` directory."""
    try:
        if app.is_dir():
            return plistlib.loads((app / "Info.plist").read_bytes())
        with zipfile.ZipFile(app) as zf:
            name = next(n for n in zf.namelist()
                        if n.startswith("Payload/") and n.endswith(".app/Info.plist") and n.count("/") == 2)
            return plistlib.loads(zf.read(name))
    except (OSError, StopIteration, KeyError, zipfile.BadZipFile, plistlib.InvalidFileException) as exc:
        raise DeviceError(f"app bundle {app}: no readable Info.plist ({type(exc).__name__}: {exc})", device=device,
                          hint="pass a signed .ipa or a .app directory") from exc


def container_path(remote: str, device: str | None = None) -> str:
    """A device path inside the app container, as AFC wants it (``/Documents/x``); rejects escapes."""
    norm = posixpath.normpath("/" + remote.lstrip("/"))
    if ".." in remote.split("/") or norm == "/":
        raise DeviceError(f"bad container path {remote!r}", device=device,
                          hint="use a relative path such as Documents/model.tflite")
    return norm


def bundle_version(info: dict[str, Any]) -> str:
    return str(info.get("CFBundleVersion") or info.get("CFBundleShortVersionString") or "")


async def install(lockdown: LockdownServiceProvider, bundle_id: str, app: Path, version: str) -> bool:
    """Install ``app``; False when ``bundle_id`` at ``version`` is already on the phone."""
    async with InstallationProxyService(lockdown) as ip:
        installed = (await ip.get_apps(bundle_identifiers=[bundle_id])).get(bundle_id)
        if installed and version and version in (str(installed.get("CFBundleVersion")),
                                                 str(installed.get("CFBundleShortVersionString"))):
            return False
        await ip.install_from_local(app)
    return True


class Container:
    """The app's container (house_arrest ``VendContainer``): one AFC session per operation.

    ``lockdown`` is the lockdown client or the phone's RSD (house_arrest's ``.shim.remote`` port).
    """

    def __init__(self, lockdown: LockdownServiceProvider, bundle_id: str) -> None:
        self.lockdown = lockdown
        self.bundle_id = bundle_id

    async def session(self) -> HouseArrestService:
        """A fresh AFC session on the container (use with ``async with``)."""
        return await HouseArrestService.create(self.lockdown, self.bundle_id)

    async def push(self, local: Path, remote: str) -> bool:
        """Copy ``local`` to ``remote``; False when the same size and sha256 are already there."""
        digest = sha256_file(local)
        sidecar = remote + ".sha256"
        async with await self.session() as ha:
            if await ha.exists(remote) and await ha.exists(sidecar):
                same_size = (await ha.stat(remote))["st_size"] == local.stat().st_size
                if same_size and (await ha.get_file_contents(sidecar)).decode().strip() == digest:
                    return False
            await ha.makedirs(posixpath.dirname(remote))
            await ha.push(str(local), remote, progress_bar=False)
            await ha.set_file_contents(sidecar, digest.encode())
        return True

    async def read(self, remote: str) -> bytes:
        async with await self.session() as ha:
            return await ha.get_file_contents(remote)

    async def exists(self, remote: str) -> bool:
        async with await self.session() as ha:
            return await ha.exists(remote)

    async def prepare_run(self, params: bytes, result_path: str) -> None:
        """Write ``benchmark_params.json`` and clear a stale result file of the same run id."""
        async with await self.session() as ha:
            await ha.set_file_contents("/Documents/benchmark_params.json", params)
            await ha.makedirs(posixpath.dirname(result_path))
            if await ha.exists(result_path):
                await ha.rm_single(result_path)
