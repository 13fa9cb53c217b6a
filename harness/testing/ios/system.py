"""What a stock iPhone has before anyone installs anything: system apps, daemons, media folders, values.

The fake's lockdownd, installation_proxy, AFC, syslog and DVT read these tables so that a client
sees a phone-shaped device while it is idle (``launchd``, ``lockdownd`` and ``SpringBoard`` running,
``DCIM`` on the media partition, ``MobileSafari`` installed). The processes listed here are
bookkeeping only, with modest synthetic sysmontap figures; only the apps the fake launches are
real host processes with measured CPU and memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SystemApp:
    """A built-in app: launchable (it idles until killed), listed as ``ApplicationType: System``."""

    bundle_id: str
    name: str
    path: str

    def info(self) -> dict[str, Any]:
        return {
            "CFBundleIdentifier": self.bundle_id,
            "CFBundleName": self.name,
            "CFBundleDisplayName": self.name,
            "CFBundleExecutable": self.name,
            "CFBundleShortVersionString": "16.0",
            "CFBundleVersion": "8614.1.25.0.31",
            "ApplicationType": "System",
            "Path": self.path,
            "UIFileSharingEnabled": False,
        }


SYSTEM_APPS: tuple[SystemApp, ...] = (
    SystemApp("com.apple.mobilesafari", "MobileSafari", "/Applications/MobileSafari.app"),
    SystemApp("com.apple.Preferences", "Preferences", "/Applications/Preferences.app"),
    SystemApp("com.apple.mobileslideshow", "MobileSlideShow", "/Applications/MobileSlideShow.app"),
    SystemApp("com.apple.camera", "Camera", "/Applications/Camera.app"),
    SystemApp("com.apple.MobileSMS", "MobileSMS", "/Applications/MobileSMS.app"),
    SystemApp("com.apple.mobilenotes", "MobileNotes", "/Applications/MobileNotes.app"),
)

#: App extensions DVT's applicationlisting reports next to the apps (``Type: PluginKit``).
PLUGINS: tuple[dict[str, Any], ...] = (
    {
        "CFBundleIdentifier": "com.apple.stocks.widget",
        "DisplayName": "StocksWidget",
        "ExecutableName": "StocksWidget",
        "BundlePath": "/private/var/containers/Bundle/Application/Stocks.app/PlugIns/StocksWidget.appex",
        "Restricted": 1,
        "Type": "PluginKit",
        "PluginIdentifier": "com.apple.stocks.widget",
        "ContainerBundleIdentifier": "com.apple.stocks",
    },
)


@dataclass
class SystemProcess:
    """A daemon or the springboard: listed by DVT, sampled by sysmontap, respawned by launchd when killed."""

    name: str
    path: str
    is_application: bool = False
    bundle_id: str | None = None
    start: float = field(default_factory=time.time)
    footprint: int = 8 << 20


#: (name, executable path, resident footprint) of the daemons an idle phone shows.
SYSTEM_DAEMONS: tuple[tuple[str, str, int], ...] = (
    ("launchd", "/sbin/launchd", 6 << 20),
    ("syslogd", "/usr/sbin/syslogd", 3 << 20),
    ("lockdownd", "/usr/libexec/lockdownd", 5 << 20),
    ("installd", "/usr/libexec/installd", 7 << 20),
    ("backboardd", "/usr/libexec/backboardd", 40 << 20),
    ("SpringBoard", "/System/Library/CoreServices/SpringBoard.app/SpringBoard", 90 << 20),
    ("DTServiceHub", "/Developer/Library/PrivateFrameworks/DVTInstrumentsFoundation.framework/DTServiceHub", 12 << 20),
)

#: Folders of the media partition (``com.apple.afc``) on a stock phone.
MEDIA_FOLDERS = ("DCIM", "Downloads", "Books", "PhotoData", "Photos", "Purchases", "Recordings", "iTunes_Control")

#: The root of the device file system as DVT's ``directoryListingForPath:`` shows it.
ROOT_LISTING = ("Applications", "Developer", "Library", "System", "bin", "cores", "dev", "etc", "private", "sbin",
                "tmp", "usr", "var")


def domain_values(values: dict[str, Any], battery: dict[str, Any], disk: tuple[int, int]) -> dict[str, dict[str, Any]]:
    """Lockdown's named domains that common clients (``lockdown info``, backup, AFC tests) read."""
    total, free = disk
    return {
        "com.apple.disk_usage": {
            "TotalDiskCapacity": total,
            "TotalDataCapacity": total,
            "TotalDataAvailable": free,
            "AmountDataAvailable": free,
            "TotalSystemCapacity": 8 << 30,
            "TotalSystemAvailable": 1 << 30,
        },
        "com.apple.mobile.battery": {
            "BatteryCurrentCapacity": battery.get("CurrentCapacity", 80),
            "BatteryIsCharging": bool(battery.get("IsCharging", False)),
            "ExternalConnected": bool(battery.get("ExternalConnected", False)),
            "FullyCharged": bool(battery.get("FullyCharged", False)),
        },
        "com.apple.international": {"Language": "en", "Locale": "en_US", "SupportedLanguages": ["en", "de", "fr"]},
        "com.apple.mobile.wireless_lockdown": {"EnableWifiConnections": False, "EnableWifiDebugging": False},
        "com.apple.security.mac.amfi": {"DeveloperModeStatus": True},
        "com.apple.mobile.backup": {"WillEncrypt": False},
        "com.apple.Accessibility": {
            "VoiceOverTouchEnabledByiTunes": False,
            "InvertDisplayEnabledByiTunes": False,
            "AssistiveTouchEnabledByiTunes": False,
        },
        "com.apple.mobile.iTunes": {"MinITunesVersion": "10.5"},
        "com.apple.PurpleBuddy": {"SetupDone": True},
        "com.apple.fairplay": {"FairPlayGUID": values.get("UniqueDeviceID", "")},
    }


def default_values() -> dict[str, Any]:
    """Default-domain values every phone reports besides its identity (which the fake fills in)."""
    return {
        "ProductName": "iPhone OS",
        "PasswordProtected": False,
        "TrustedHostAttached": True,
        "BrickState": False,
        "HasSiDP": True,
        "TimeZone": "Europe/Berlin",
        "TimeZoneOffsetFromUTC": 3600.0,
        "Uses24HourClock": True,
        "RegionInfo": "LL/A",
        "ModelNumber": "MLPF3",
        "FirmwareVersion": "iBoot-8422.142.2",
        "BasebandVersion": "2.40.02",
        "BluetoothAddress": "02:00:00:ed:9e:02",
        "EthernetAddress": "02:00:00:ed:9e:03",
        "ProtocolVersion": "2",
        "SupportedDeviceFamilies": [1],
        "DeviceColor": "1",
        "ProductionSOC": True,
        "BoardId": 14,
        "TelephonyCapability": True,
        "NonVolatileRAM": {},
    }
