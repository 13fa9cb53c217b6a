"""Run device shell commands so they see the sandbox at the device paths.

Two mechanisms, measured per command on a 2-core machine (``benchmarks/
virtual_device_isolation.py``): a private mount namespace built once per device
and entered with ``nsenter`` (a few ms, no ptrace cost while the command runs),
and ``proot`` (about 10 ms, traces path syscalls). Building a namespace for every
command costs about 55 ms, so the namespace is kept alive by a holder process.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from harness.errors import DeviceError
from harness.testing.android.device_view import SYS_TOPS
from harness.testing.android.netns import BrokerNetwork, DeviceNetwork
from harness.testing.android.sandbox import CPU_DIR, DEVICE_DIRS, Sandbox, host_cpus

DEVICE_PATH = "/system/bin:/system/xbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SKIPPED_TOP = {"sys", "lost+found"} | {d.strip("/").split("/")[0] for d in DEVICE_DIRS}
_HINT = (
    "install util-linux (unshare, nsenter) on a kernel that allows unprivileged user namespaces, "
    "or install proot (Debian package 'proot')"
)


def device_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a device shell, close to Android's ``adb shell`` (plus ``extra``: the sandbox's own)."""
    env = {
        "PATH": DEVICE_PATH,
        "HOME": "/",
        "ANDROID_ROOT": "/system",
        "ANDROID_DATA": "/data",
        "EXTERNAL_STORAGE": "/sdcard",
        "TMPDIR": "/data/local/tmp",
        "SHELL": "/system/bin/sh",
        "LANG": "C.UTF-8",
    }
    env.update(extra or {})
    return env


class Isolation:
    """Base: turns a shell command into an argv that runs it inside the device view."""

    name = "none"
    #: Where the device's sockets are opened (its own loopback with a network namespace).
    network: DeviceNetwork = DeviceNetwork()
    #: What the sandbox adds to every command's environment (``Sandbox.shell_environment``).
    sandbox_environment: dict[str, str] = {}

    def argv(self, command: str) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the mechanism (holder process, mounts); safe to call twice."""


class NamespaceIsolation(Isolation):
    """A mount namespace (in a user namespace) whose root has the sandbox bind-mounted in."""

    name = "namespace"

    def __init__(self, sandbox: Sandbox, *, net: bool = True) -> None:
        """``net``: give the device its own network namespace (loopback only); else it shares the host's."""
        self._newroot = Path(tempfile.mkdtemp(prefix="eh-vdev-root-"))
        self._net = net
        self.sandbox_environment = sandbox.shell_environment()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        script = _namespace_script(sandbox, self._newroot, control_fd=theirs.fileno())
        namespaces = ["--mount", "--net"] if net else ["--mount"]
        try:
            self._holder = subprocess.Popen(
                ["unshare", *namespaces, "--map-root-user", "--fork", "sh", "-c", script],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        assert self._holder.stdout is not None
        line = self._holder.stdout.readline().decode(errors="replace").split()
        if len(line) != 2 or line[0] != "READY":
            err = self._holder.stderr.read().decode(errors="replace") if self._holder.stderr else ""
            ours.close()
            self.close()
            raise DeviceError(f"cannot build the device mount namespace: {err.strip() or 'no output'}", hint=_HINT)
        self.pid = int(line[1])
        self.network = BrokerNetwork(ours)

    def argv(self, command: str) -> list[str]:
        return [
            "nsenter", "-t", str(self.pid), "-U", "-m", *(["-n"] if self._net else []), "-r", "-w",
            "--preserve-credentials", "--", "/system/bin/sh", "-c", command,
        ]  # fmt: skip

    def close(self) -> None:
        self.network.close()
        holder = getattr(self, "_holder", None)
        if holder is not None and holder.poll() is None:
            if holder.stdin:
                holder.stdin.close()
            try:
                holder.wait(timeout=2)
            except subprocess.TimeoutExpired:
                os.killpg(holder.pid, 9)
                holder.wait()
        for stream in (holder.stdout, holder.stderr) if holder else ():
            if stream:
                stream.close()
        shutil.rmtree(self._newroot, ignore_errors=True)


class ProotIsolation(Isolation):
    """``proot`` with one bind per device directory; no privileges, some ptrace overhead."""

    name = "proot"

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox_environment = sandbox.shell_environment()
        self._binds: list[str] = []
        for device_dir in DEVICE_DIRS:
            self._binds += ["-b", f"{sandbox.host_dir(device_dir)}:{device_dir}"]
        for cpu in host_cpus():
            cpufreq = f"{CPU_DIR}/{cpu}/cpufreq"
            self._binds += ["-b", f"{sandbox.root / cpufreq.lstrip('/')}:{cpufreq}"]

    def argv(self, command: str) -> list[str]:
        return ["proot", *self._binds, "-w", "/", "/system/bin/sh", "-c", command]


def _namespace_script(sandbox: Sandbox, newroot: Path, *, control_fd: int) -> str:
    """Shell script run once inside ``unshare``: build the root, then become the socket broker (the holder)."""
    q = shlex.quote
    nr = q(str(newroot))
    lines = ["set -e", f"mount -t tmpfs -o mode=755 edgeharness {nr}"]
    for entry in sorted(os.listdir("/")):
        host = Path("/") / entry
        if entry in _SKIPPED_TOP:
            continue
        if host.is_symlink():
            lines.append(f"ln -s {q(os.readlink(host))} {nr}/{q(entry)}")
        elif host.is_dir():
            lines.append(f"mkdir {nr}/{q(entry)} && mount --rbind {q(str(host))} {nr}/{q(entry)}")
    lines.append(f"mkdir -p {nr}/sys/class && mount -t tmpfs -o mode=755 sysfs-view {nr}/sys && mkdir {nr}/sys/class")
    for top in SYS_TOPS:
        if Path("/sys", top).is_dir():
            lines.append(f"mkdir {nr}/sys/{top} && mount --rbind /sys/{top} {nr}/sys/{top}")
    lines += _cpu_view_lines(sandbox, nr)
    for device_dir in DEVICE_DIRS:
        target = f"{nr}{q(device_dir)}"
        lines.append(f"mkdir -p {target} && mount --bind {q(str(sandbox.host_dir(device_dir)))} {target}")
    lines.append(f"mount -o remount,bind,ro {nr}/system")  # a phone's /system is read-only
    if sandbox.emulation is not None:  # every reader (the host's tools too) sees the arm64 cpuinfo, as on the device
        cpuinfo = sandbox.emulation.sysroot.root / "proc/cpuinfo"
        lines.append(f"mount --bind {q(str(cpuinfo))} {nr}/proc/cpuinfo || true")
    if sandbox.emulation is not None and sandbox.emulation.binfmt:
        # The namespace's own binfmt_misc (Linux >= 6.7): arm64 programs run through qemu for this device only.
        binfmt = f"{nr}/proc/sys/fs/binfmt_misc"
        lines.append(f"mount -t binfmt_misc binfmt_misc {binfmt}")
        lines.append(f"printf '%s' {q(sandbox.emulation.sysroot.binfmt_rule())} > {binfmt}/register")
    # READY comes from inside the chroot, so nsenter -r never sees the pre-chroot root.
    broker = resources.files("harness.testing.android").joinpath("netbroker_main.py").read_text(encoding="utf-8")
    lines.append(f"exec chroot {nr} {q(sys.executable)} -I -S -c {q(broker)} {control_fd}")
    return "\n".join(lines)


def _cpu_view_lines(sandbox: Sandbox, nr: str) -> list[str]:
    """``/sys/devices/system/cpu`` as the host's (each entry bound) plus the sandbox's ``cpuN/cpufreq``.

    sysfs cannot get new directories, so a tmpfs replaces the CPU directory and every host entry is
    bound back into it; only ``cpufreq`` comes from the sandbox (the simulated frequencies).
    """
    q = shlex.quote
    host_dir = Path(CPU_DIR)
    if not host_dir.is_dir():
        return []
    view = f"{nr}{CPU_DIR}"
    lines = [f"mount -t tmpfs -o mode=755 cpu-view {view}"]
    cpus = set(host_cpus())

    def bind(src: Path, dst: str) -> None:
        make = "mkdir" if src.is_dir() else "touch"
        lines.append(f"{make} {dst} && mount --rbind {q(str(src))} {dst} || true")

    for entry in sorted(host_dir.iterdir()):
        if entry.name not in cpus:
            bind(entry, f"{view}/{q(entry.name)}")
            continue
        lines.append(f"mkdir {view}/{entry.name}")
        for child in sorted(entry.iterdir()):
            if child.name != "cpufreq":
                bind(child, f"{view}/{entry.name}/{q(child.name)}")
        cpufreq = sandbox.root / CPU_DIR.lstrip("/") / entry.name / "cpufreq"
        lines.append(f"mkdir {view}/{entry.name}/cpufreq && mount --bind {q(str(cpufreq))} {view}/{entry.name}/cpufreq")
    return lines


def _self_test(isolation: Isolation) -> str | None:
    """None when a command sees the device tree, else why not."""
    try:
        done = subprocess.run(
            isolation.argv("test -d /data/local/tmp && test -x /system/bin/getprop"),
            capture_output=True,
            timeout=10,
            env=device_environment(isolation.sandbox_environment),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    return f"test command exited {done.returncode}: {done.stderr.decode(errors='replace').strip()[:200]}"


def _namespace(sandbox: Sandbox) -> NamespaceIsolation:
    """A namespace with the device's own network, or sharing the host's where network namespaces are refused."""
    try:
        return NamespaceIsolation(sandbox, net=True)
    except DeviceError:
        return NamespaceIsolation(sandbox, net=False)


def start_isolation(sandbox: Sandbox, kind: str = "auto") -> Isolation:
    """Start the first mechanism that works (``auto``: namespace, then proot), or raise with a hint."""
    kinds = ["namespace", "proot"] if kind == "auto" else [kind]
    errors: list[str] = []
    for name in kinds:
        if name == "namespace" and not (shutil.which("unshare") and shutil.which("nsenter")):
            errors.append("namespace: unshare/nsenter not found")
            continue
        if name == "proot" and not shutil.which("proot"):
            errors.append("proot: not installed")
            continue
        if name not in ("namespace", "proot"):
            raise DeviceError(f"unknown isolation {name!r}", hint="use auto, namespace or proot")
        try:
            isolation: Isolation = _namespace(sandbox) if name == "namespace" else ProotIsolation(sandbox)
        except DeviceError as exc:
            errors.append(f"{name}: {exc.message}")
            continue
        problem = _self_test(isolation)
        if problem is None:
            return isolation
        isolation.close()
        errors.append(f"{name}: {problem}")
    raise DeviceError("virtual device cannot isolate shell commands: " + "; ".join(errors), hint=_HINT)
