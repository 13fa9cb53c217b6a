"""The virtual device's physical model: battery current, temperatures and CPU frequency from real load.

Model (one tick every ``tick_s``):

- load ``b`` (busy cores) = CPU seconds (user + system, psutil) the device's sandboxed processes used
  since the last tick / tick length. Sandboxed = processes in the device's mount namespace (or, without
  one, this process's descendants). A process that starts and exits between two ticks is not seen.
- frequency ratio ``f`` = the forced cap if a test set one, else ``throttle_ratio`` while throttled, else 1.
- current ``I = idle_ma + core_ma * b * f`` (mA); voltage ``V = ocv_mv - r_mohm * I / 1000`` (mV).
- SoC temperature: first order towards ``ambient_c + c_per_w * P`` with time constant ``tau_s``
  (``P = I * V``): it rises under sustained load and decays towards ambient when idle.
- throttling: above ``throttle_c`` the frequency is capped to ``throttle_ratio``; released below
  ``release_c``. Thermal status (dumpsys thermalservice) = 0 below ``status_c[0]``, then 1, 2, 3.
- the cap is real: with a CPU limiter (:mod:`harness.testing.android.cpulimit`) the device's processes get
  ``f`` of the cores they were using (``demand_cores``: busy cores averaged over ``demand_tau_s`` while
  uncapped, at least 1) whenever ``f < 1``, so latency drifts while hot and recovers as it cools. Under
  the cap ``b`` is the CPU time actually granted, so power falls with ``f**2`` (frequency and busy time).
- charging: ``status=Charging``, ``usb/online=1``, current positive (``charge_ma - I``).

Written every tick, in the sandbox: ``/sys/class/power_supply/battery/{current_now (uA, negative while
discharging),voltage_now (uV),status}``, ``usb/online``, ``/sys/class/thermal/thermal_zoneN/temp``
(cpu zone = SoC, others lag towards it), ``/sys/devices/system/cpu/cpuN/cpufreq/{scaling_cur_freq,
scaling_max_freq,cpuinfo_max_freq}`` (kHz) and ``/data/system/edgeharness/thermal_status``.
Energy measured on this device is simulated: the record and the report say so.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.testing.android.cpulimit import CpuLimiter

CPU_DIR = "/sys/devices/system/cpu"
STATUS_FILE = "/data/system/edgeharness/thermal_status"


@dataclass(frozen=True)
class PhysicsConfig:
    tick_s: float = 0.05
    ambient_c: float = 30.0
    idle_ma: float = 180.0
    core_ma: float = 650.0
    ocv_mv: float = 3950.0
    r_mohm: float = 120.0
    c_per_w: float = 9.0
    tau_s: float = 20.0
    throttle_c: float = 48.0
    release_c: float = 45.0
    throttle_ratio: float = 0.6
    status_c: tuple[float, float, float] = (42.0, 46.0, 52.0)
    max_freq_khz: int = 2_400_000
    charge_ma: float = 1500.0
    demand_tau_s: float = 1.0


#: ``--heat`` of ``virtual-device serve``: ``normal`` heats over tens of seconds of load; ``fast`` (a warm
#: room, a small heat capacity) throttles after a few seconds of one busy core, for short soak tests.
HEAT_PRESETS = {"normal": PhysicsConfig(), "fast": PhysicsConfig(ambient_c=36.0, tau_s=6.0)}


class Physics:
    """Runs the model in a background thread over a sandbox root (see module doc)."""

    def __init__(self, root: Path, config: PhysicsConfig | None = None, namespace_pid: int | None = None,
                 limiter: CpuLimiter | None = None) -> None:
        self.root = Path(root)
        self.limiter = limiter or CpuLimiter()
        self.demand_cores = 1.0
        self._applied: tuple[float, int] = (1.0, 1)
        self.config = config = config or PhysicsConfig()
        self.temp_c = config.ambient_c + 3.0
        self.charging = False
        self.forced_cap: float | None = None
        self.throttled = False
        self.busy_cores = 0.0
        self._ns = _mnt_ns(namespace_pid) if namespace_pid else None
        self._cpu_s: dict[tuple[int, float], float] = {}
        self._members: dict[tuple[int, float], bool] = {}
        self._primed = False
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # test controls write too, from their own thread
        self._limit_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpus = sorted(p.name for p in (self.root / CPU_DIR.lstrip("/")).glob("cpu[0-9]*"))

    # -- test controls ----------------------------------------------------------------------
    def set_charging(self, charging: bool) -> None:
        with self._lock:
            self.charging = charging
        self._write()

    def force_freq_cap(self, ratio: float | None) -> None:
        """Cap the CPU frequency at ``ratio`` of max regardless of temperature (None: back to the model)."""
        with self._lock:
            self.forced_cap = ratio
        self._apply_limit()
        self._write()

    def set_temperature(self, temp_c: float) -> None:
        """A hot (or cold) start: the SoC temperature from now on, then the model takes over."""
        with self._lock:
            self.temp_c = temp_c
            self.throttled = temp_c >= self.config.throttle_c
        self._apply_limit()
        self._write()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Physics:
        self._sample_cpu()
        self._write()
        self._thread = threading.Thread(target=self._run, name="vdev-physics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.config.tick_s):
            now = time.monotonic()
            cpu_s = self._sample_cpu()
            self.step(cpu_s / (now - last), now - last)
            last = now
            self._apply_limit()
            with contextlib.suppress(OSError):
                self._write()

    # -- the model ----------------------------------------------------------------------------
    @property
    def freq_ratio(self) -> float:
        if self.forced_cap is not None:
            return self.forced_cap
        return self.config.throttle_ratio if self.throttled else 1.0

    def current_ma(self) -> float:
        """Current drawn by the SoC, mA (before charging)."""
        return self.config.idle_ma + self.config.core_ma * self.busy_cores * self.freq_ratio

    def voltage_mv(self) -> float:
        return self.config.ocv_mv - self.config.r_mohm * self.current_ma() / 1000.0

    def step(self, busy_cores: float, dt_s: float) -> None:
        """Advance the model by ``dt_s`` seconds at ``busy_cores`` of load."""
        c = self.config
        with self._lock:
            self.busy_cores = max(0.0, busy_cores)
            if self.freq_ratio >= 1.0:  # what the processes ask for, seen only while nothing holds them back
                self.demand_cores += (self.busy_cores - self.demand_cores) * (1 - math.exp(-dt_s / c.demand_tau_s))
            power_w = self.current_ma() * self.voltage_mv() / 1e6
            target = c.ambient_c + c.c_per_w * power_w
            self.temp_c += (target - self.temp_c) * (1 - math.exp(-dt_s / c.tau_s))
            if self.temp_c >= c.throttle_c:
                self.throttled = True
            elif self.temp_c < c.release_c:
                self.throttled = False

    @property
    def lanes(self) -> int:
        """Cores the device's processes were keeping busy before a cap (the quota's multiplier), at least 1."""
        return max(1, round(self.demand_cores))

    def _apply_limit(self) -> None:
        """Give the device's processes the CPU share of the current frequency ratio (when it changed).

        Read and applied under one lock, so a test's control and a tick racing each other cannot leave an
        older share in force."""
        with self._limit_lock:
            with self._lock:
                wanted = (self.freq_ratio, self.lanes if self.freq_ratio < 1.0 else 1)
            if wanted != self._applied:
                self._applied = wanted
                self.limiter.set_ratio(*wanted)

    def status(self) -> int:
        return sum(self.temp_c >= t for t in self.config.status_c)

    def _sample_cpu(self) -> float:
        """CPU seconds the sandboxed processes used since the last call."""
        used = 0.0
        seen: dict[tuple[int, float], float] = {}
        for proc in self._candidates():
            try:
                key = (proc.pid, proc.create_time())
                if not self._member(proc, key):
                    continue
                t = proc.cpu_times()
                total = t.user + t.system
            except (psutil.Error, OSError):
                continue
            used += total - self._cpu_s.get(key, 0.0 if self._primed else total)
            seen[key] = total
        self._cpu_s = seen
        self._primed = True
        return max(0.0, used)

    def _candidates(self) -> list[psutil.Process]:
        if self._ns is None:
            return psutil.Process(os.getpid()).children(recursive=True)
        return list(psutil.process_iter())

    def _member(self, proc: psutil.Process, key: tuple[int, float]) -> bool:
        if self._ns is None:
            return True
        if key not in self._members:
            self._members[key] = _mnt_ns(proc.pid) == self._ns
        return self._members[key]

    # -- files ----------------------------------------------------------------------------------
    def _write(self) -> None:
        # The whole write under _write_lock, the state read inside it: the last file written is the latest state
        # (a test's set_temperature racing a tick can no longer be overwritten by the tick's older values).
        with self._write_lock:
            self._write_locked()

    def _write_locked(self) -> None:
        c = self.config
        with self._lock:
            current_ma = self.current_ma()
            current_ua = int((c.charge_ma - current_ma) * 1000) if self.charging else -int(current_ma * 1000)
            values = {
                "sys/class/power_supply/battery/current_now": str(current_ua),
                "sys/class/power_supply/battery/voltage_now": str(int(self.voltage_mv() * 1000)),
                "sys/class/power_supply/battery/status": "Charging" if self.charging else "Discharging",
                "sys/class/power_supply/usb/online": "1" if self.charging else "0",
                STATUS_FILE.lstrip("/"): str(self.status()),
            }
            for zone in sorted((self.root / "sys/class/thermal").glob("thermal_zone*")):
                kind = _read(zone / "type")
                lag = 1.0 if kind.startswith("cpu") else (0.5 if kind == "skin" else 0.3)
                values[str(zone.relative_to(self.root) / "temp")] = str(
                    int((c.ambient_c + (self.temp_c - c.ambient_c) * lag) * 1000))
            freq = int(c.max_freq_khz * self.freq_ratio)
            for cpu in self._cpus:
                base = f"{CPU_DIR.lstrip('/')}/{cpu}/cpufreq"
                values[f"{base}/scaling_cur_freq"] = str(freq)
                values[f"{base}/scaling_max_freq"] = str(freq)
                values[f"{base}/cpuinfo_max_freq"] = str(c.max_freq_khz)
        for rel, text in values.items():
            _write_atomic(self.root / rel, text)


def _mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _write_atomic(path: Path, text: str) -> None:
    """Replace a sensor file whole, so a reader never sees it half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)
