"""Wait before a case until the device is cool enough, so every case starts from a comparable state.

Modes (suite ``[suite.cooldown] mode``): ``off``; ``pause`` (sleep ``pause_s``); ``threshold`` (poll the
watched temperature until it is at or below ``threshold_c`` -- the suite's, else the profile's
``[cooldown] threshold_c`` -- or has stopped falling: less than ``min_drop_c`` over ``stall_s``; give up
after ``timeout_s``). A progress line is logged at each poll; the wait and why it ended are recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)
MODES = ("off", "threshold", "pause")


@dataclass(frozen=True)
class CooldownConfig:
    mode: str = "off"
    threshold_c: float | None = None
    pause_s: float = 30.0
    timeout_s: float = 300.0
    poll_s: float = 2.0
    stall_s: float = 30.0
    min_drop_c: float = 0.3

    @classmethod
    def merge(cls, suite: dict | None, profile: dict | None) -> CooldownConfig:
        """Suite settings win; the profile supplies ``threshold_c`` (and poll/stall tuning) when the suite has none."""
        data = {**dict(profile or {}), **dict(suite or {})}
        known = set(cls.__dataclass_fields__)
        cfg = cls(**{k: data[k] for k in data if k in known})
        if cfg.mode not in MODES:
            raise ValueError(f"unknown cooldown mode {cfg.mode!r} (allowed: {', '.join(MODES)})")
        return cfg


@dataclass(frozen=True)
class CooldownOutcome:
    """How long we waited (s), the watched temperature at start and end (deg C), and why we stopped."""

    waited_s: float
    start_c: float | None
    end_c: float | None
    ended_by: str  # off | paused | below threshold | stopped falling | timeout | no temperature


def wait(cfg: CooldownConfig, read_c: Callable[[], float | None], *, label: str = "",
         sleep: Callable[[float], None] = time.sleep) -> CooldownOutcome:
    """Block until the device is cool (see module doc); ``read_c`` returns the watched temperature."""
    start = time.monotonic()
    if cfg.mode == "off":
        return CooldownOutcome(0.0, None, None, "off")
    if cfg.mode == "pause":
        log.info("%scooldown: pausing %.1f s", label, cfg.pause_s)
        sleep(cfg.pause_s)
        return CooldownOutcome(time.monotonic() - start, None, None, "paused")
    first = temp = read_c()
    if temp is None or cfg.threshold_c is None:
        why = "no temperature" if temp is None else "no threshold_c (suite or profile)"
        log.warning("%scooldown: %s; not waiting", label, why)
        return CooldownOutcome(0.0, first, first, "no temperature" if temp is None else "no threshold")
    history: list[tuple[float, float]] = [(start, temp)]
    while True:
        now = time.monotonic()
        if temp <= cfg.threshold_c:
            ended = "below threshold"
            break
        if now - start >= cfg.timeout_s:
            ended = "timeout"
            break
        old = [c for t, c in history if now - t >= cfg.stall_s]
        if old and old[-1] - temp < cfg.min_drop_c:
            ended = "stopped falling"
            break
        log.info("%scooldown: %.1f C > %.1f C, waited %.0f s of %.0f s", label, temp, cfg.threshold_c,
                 now - start, cfg.timeout_s)
        sleep(cfg.poll_s)
        reading = read_c()
        temp = reading if reading is not None else temp
        history.append((time.monotonic(), temp))
    waited = time.monotonic() - start
    log.info("%scooldown: %s after %.1f s (%.1f C -> %.1f C)", label, ended, waited, first, temp)
    return CooldownOutcome(waited, first, temp, ended)
