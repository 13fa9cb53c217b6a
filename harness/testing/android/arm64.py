"""The arm64 virtual device's userland: a small Debian arm64 sysroot whose programs qemu-user runs.

``harness virtual-device build-arm64`` builds it once into the cache (``$HARNESS_CACHE/arm64-sysroot/
<key>``, default ``~/.cache/edgeharness/...``) from Debian's arm64 packages (``apt-get download`` with a
private apt state, so the host's dpkg gets no foreign architecture) and PyPI's aarch64 wheels of the
LiteRT and numpy versions the harness runs with (``pip download --platform manylinux_2_27_aarch64``).
After that it is offline. Debian's ``qemu-user-static`` runs the programs: the device's namespace
registers it in its own binfmt_misc (a private instance, Linux >= 6.7), so the whole userland (mksh,
toybox, python3) is arm64 code; where that mount is refused, ``python3`` and ``uname`` call qemu
explicitly and the rest of the shell stays the host's.

LiteRT's CPU detection crashes under qemu-user on an x86 host's ``/proc/cpuinfo``; the sysroot holds a
Neoverse-N1-style one, which qemu's ``-L``/``QEMU_LD_PREFIX`` lookup serves to the guest first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness.errors import DeviceError

QEMU = "qemu-aarch64-static"
#: What the arm64 device runs: libc, Python 3.11, the libraries LiteRT and numpy load, Android's shell and userland.
DEBS = ("libc6", "libcrypt1", "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libexpat1",
        "zlib1g", "libffi8", "libssl3", "libstdc++6", "libgcc-s1", "libbz2-1.0", "liblzma5", "mksh", "toybox")
WHEEL_PLATFORM = "manylinux_2_27_aarch64"  # LiteRT 2.x aarch64 wheels are tagged 2_27; older tags find only 1.4
PYTHON = "/usr/bin/python3.11"
MARKER = ".edgeharness-sysroot.json"
#: The ELF header of an aarch64 executable and its mask, as Debian's qemu-user-static registers it.
BINFMT_MAGIC = r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
BINFMT_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
BUILD_HINT = "build it once with: harness virtual-device build-arm64 (needs Debian's apt-get and PyPI; ~50 MB)"
QEMU_HINT = "install Debian's qemu-user-static (apt-get install qemu-user-static)"


def cpuinfo(cores: int = 8) -> str:
    """A Neoverse-N1-style ``/proc/cpuinfo`` (implementer 0x41, part 0xd0c, asimd and dot product)."""
    features = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                "asimddp ssbs")
    blocks = [
        f"processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n"
        for i in range(cores)
    ]
    return "\n".join(blocks) + "\n"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        raise DeviceError(f"the arm64 sysroot pins {dist} to the harness's own version, and {dist} is not installed",
                          hint=f"pip install {dist}") from None


def wheel_pins() -> dict[str, str]:
    """The wheels the sysroot holds: the LiteRT and numpy versions this harness runs with."""
    return {"ai-edge-litert": _version("ai-edge-litert"), "numpy": _version("numpy")}


def cache_root() -> Path:
    """``$HARNESS_CACHE/arm64-sysroot`` (default ``~/.cache/edgeharness/arm64-sysroot``)."""
    base = os.environ.get("HARNESS_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "edgeharness") / "arm64-sysroot"


def sysroot_dir(cache: Path | None = None) -> Path:
    """Where the sysroot for the installed LiteRT/numpy lives (one per pair of versions)."""
    pins = wheel_pins()
    key = f"bookworm-litert{pins['ai-edge-litert']}-numpy{pins['numpy']}"
    return (cache or cache_root()) / key


def qemu() -> str | None:
    """The qemu-user binary's path, or None."""
    return shutil.which(QEMU)


@dataclass(frozen=True)
class Sysroot:
    """A built sysroot and the qemu that runs it."""

    root: Path
    qemu: str
    manifest: dict[str, object]

    @property
    def python(self) -> Path:
        return self.root / PYTHON.lstrip("/")

    def explicit(self, program: str) -> list[str]:
        """argv running an arm64 ``program`` (a path inside the sysroot) through qemu, without binfmt_misc."""
        return [self.qemu, "-L", str(self.root), str(self.root / program.lstrip("/"))]

    def binfmt_rule(self) -> str:
        """The binfmt_misc registration (F: the interpreter is opened now, so it works after a chroot too)."""
        return f":qemu-aarch64:M::{BINFMT_MAGIC}:{BINFMT_MASK}:{self.qemu}:F"


def problem(root: Path | None = None) -> str | None:
    """None when the arm64 device can start, else one line saying what is missing and how to fix it."""
    if qemu() is None:
        return f"{QEMU} not found ({QEMU_HINT})"
    root = root or sysroot_dir()
    if not (root / MARKER).is_file():
        return f"no arm64 sysroot at {root} ({BUILD_HINT})"
    return None


def open_sysroot(root: Path | None = None) -> Sysroot:
    """The built sysroot, or a :class:`DeviceError` naming what is missing."""
    root = root or sysroot_dir()
    found = problem(root)
    if found is not None:
        raise DeviceError(f"arm64 virtual device: {found.split(' (')[0]}",
                          hint=QEMU_HINT if qemu() is None else BUILD_HINT)
    manifest = json.loads((root / MARKER).read_text(encoding="utf-8"))
    return Sysroot(root, str(qemu()), manifest)


def _apt(state: Path, *args: str, cwd: Path | None = None) -> None:
    """``apt-get`` with a private arm64 state and cache: the host's dpkg and lists are untouched."""
    opts = ["-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64", "-o", f"Dir::State={state}",
            "-o", "Dir::State::status=/dev/null", "-o", f"Dir::Cache={state / 'cache'}", "-o", "Debug::NoLocking=1"]
    done = subprocess.run(["apt-get", "-q", *opts, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DeviceError(f"apt-get {args[0]} (arm64) failed: {tail[0]}",
                          hint="the host needs Debian's package sources reachable for the first build")


def _download_debs(work: Path, dest: Path) -> list[str]:
    state = work / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    update_error = None
    try:
        _apt(state, "update")
    except DeviceError as exc:  # one unreachable third-party source fails the whole update; Debian's may be there
        update_error = exc.message
    try:
        _apt(state, "download", *DEBS, cwd=dest)
    except DeviceError as exc:
        if update_error is None:
            raise
        raise DeviceError(f"{exc.message}; before it, {update_error}", hint=exc.hint) from None
    return sorted(p.name for p in dest.glob("*.deb"))


def _download_wheels(dest: Path, pins: dict[str, str]) -> list[str]:
    argv = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--platform",
            WHEEL_PLATFORM, "--python-version", "3.11", "--only-binary=:all:", "-d", str(dest),
            *(f"{name}=={version}" for name, version in pins.items())]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tail = [ln for ln in done.stderr.splitlines() if ln.startswith("ERROR")][:1] or ["no output"]
        raise DeviceError(f"pip download of the aarch64 wheels failed: {tail[0]}",
                          hint=f"an aarch64 wheel ({WHEEL_PLATFORM}, CPython 3.11) must exist for {pins}")
    return sorted(p.name for p in dest.glob("*.whl"))


def build(cache: Path | None = None, *, force: bool = False, log: Callable[[str], None] = print) -> Sysroot:
    """Build the sysroot once (downloads ~50 MB); a finished one is reused unless ``force``.

    Built in a temporary folder beside the target and renamed into place, so an interrupted build
    leaves nothing that looks finished.
    """
    if qemu() is None:
        raise DeviceError(f"{QEMU} not found", hint=QEMU_HINT)
    root = sysroot_dir(cache)
    if (root / MARKER).is_file() and not force:
        log(f"arm64 sysroot already built: {root}")
        return open_sysroot(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    pins = wheel_pins()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=root.parent) as tmp:
        work = Path(tmp)
        new, debs, wheels = work / "root", work / "debs", work / "wheels"
        for d in (new, debs, wheels):
            d.mkdir()
        log(f"downloading {len(DEBS)} Debian arm64 packages ...")
        deb_names = _download_debs(work, debs)
        log(f"downloading aarch64 wheels {', '.join(f'{k}=={v}' for k, v in pins.items())} ...")
        wheel_names = _download_wheels(wheels, pins)
        download_bytes = sum(p.stat().st_size for p in (*debs.iterdir(), *wheels.iterdir()))
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(new)], check=True, capture_output=True, timeout=300)
        site = new / "usr/lib/python3/dist-packages"
        site.mkdir(parents=True, exist_ok=True)
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(site)  # pip-built wheels from PyPI; names checked by zipfile against '..'
        (new / "proc").mkdir(exist_ok=True)
        (new / "proc/cpuinfo").write_text(cpuinfo(), encoding="utf-8")
        version = subprocess.run([str(qemu()), "--version"], capture_output=True, text=True, timeout=30)
        manifest = {
            "debs": deb_names, "wheels": wheel_names, "pins": pins, "download_bytes": download_bytes,
            "qemu_version": (version.stdout.split() or ["?", "?", "?"])[2],
            "built_s": round(time.monotonic() - started, 1),
        }
        manifest["size_bytes"] = sum(p.lstat().st_size for p in new.rglob("*"))
        check = subprocess.run([str(qemu()), "-L", str(new), str(new / PYTHON.lstrip("/")), "-c",
                                "import platform, numpy, ai_edge_litert.interpreter; print(platform.machine())"],
                               capture_output=True, text=True, timeout=300)
        if check.returncode != 0 or check.stdout.strip() != "aarch64":
            raise DeviceError(f"the arm64 sysroot's python does not start: {check.stderr.strip()[-200:]}",
                              hint="rebuild with --force")
        (new / MARKER).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        if root.exists():
            shutil.rmtree(root)
        new.rename(root)
    log(f"arm64 sysroot built in {manifest['built_s']} s: {root} ({manifest['size_bytes'] / 2**20:.0f} MiB, "
        f"{download_bytes / 2**20:.0f} MiB downloaded)")
    return open_sysroot(root)


@dataclass(frozen=True)
class Emulation:
    """How one arm64 virtual device runs its programs: the sysroot, and binfmt_misc or explicit qemu calls."""

    sysroot: Sysroot
    binfmt: bool  # the device namespace registers qemu in its own binfmt_misc: every arm64 ELF runs directly

    def environment(self) -> dict[str, str]:
        """What a device command's environment needs (qemu finds the arm64 loader, libraries and cpuinfo there)."""
        return {"QEMU_LD_PREFIX": str(self.sysroot.root)}

    def describe(self) -> str:
        """The ``edgeharness.emulated`` property: ``qemu-aarch64-static 7.2.22 (binfmt_misc) on x86_64``."""
        mode = "binfmt_misc" if self.binfmt else "explicit qemu calls"
        return f"{Path(self.sysroot.qemu).name} {self.sysroot.manifest.get('qemu_version', '?')} ({mode}) " \
               f"on {os.uname().machine}"


def binfmt_problem() -> str | None:
    """None when a user namespace may mount its own binfmt_misc (Linux >= 6.7), else why not.

    The mount and its registration live only in a throwaway namespace here, as later in the device's.
    """
    if not shutil.which("unshare"):
        return "unshare not found"
    try:
        done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                               "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


def start_emulation(isolation: str = "auto") -> Emulation:
    """The built sysroot (or a one-line :class:`DeviceError` with a hint) and the mode this host allows."""
    sysroot = open_sysroot()
    binfmt = isolation != "proot" and binfmt_problem() is None
    return Emulation(sysroot, binfmt)
