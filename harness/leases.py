"""Device leases: two harness runs never benchmark on one device at the same time.

A lease per device id. Locally it is an advisory file lock (``fcntl.flock``) on
``LEASE_DIR/<device>-<hash>.lock`` (``ROOT/leases`` beside the store by default, or a directory
named for a host shared by several stores); on a team store it is a PostgreSQL session advisory
lock (:class:`harness.store_pg.PostgresLeases`). Both vanish when the holder dies: the kernel
closes a dead process's files, the server ends a dead client's session.

The holder writes who it is (run id, host, pid, since when) into the lock file or the ``leases``
table, so a run that finds the device taken says whom it waits for. :class:`LeaseKeeper` is what
a run uses: the first case on a device takes its lease (waiting up to ``timeout_s``), the run
keeps it until :meth:`LeaseKeeper.release_all`; a device still busy after the wait gets its cases
recorded ``skipped: device busy (held by ...)``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import HarnessError, LeaseError, RunInterrupted
from harness.names import inside, sanitise

log = logging.getLogger("harness")

DEFAULT_TIMEOUT_S = 600.0
_MAX_HOLDER_BYTES = 4096


@dataclass(frozen=True)
class Holder:
    """Who holds (or asks for) a device's lease."""

    run_id: str
    host: str
    pid: int
    since: str

    @classmethod
    def me(cls, run_id: str) -> Holder:
        return cls(run_id, os.uname().nodename, os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def parse(cls, data: object) -> Holder | None:
        """A holder from a lock file's or table's contents (written by another process: checked, never trusted)."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(_plain(data["run_id"], 80), _plain(data["host"], 80), int(data["pid"]),
                       _plain(data["since"], 40))
        except (KeyError, TypeError, ValueError, OverflowError):
            return None

    def describe(self) -> str:
        return f"held by run {self.run_id} on host {self.host} (pid {self.pid}) since {self.since}"


def _plain(value: object, limit: int) -> str:
    """One short printable line (a lock file may hold anything)."""
    return "".join(c if c.isprintable() else "?" for c in str(value)[:limit]) or "?"


UNKNOWN = Holder("?", "?", 0, "?")


class Leases(ABC):
    """One backend's device locks; ``try_acquire`` never waits."""

    @abstractmethod
    def try_acquire(self, device_id: str, holder: Holder) -> Holder | None:
        """Take ``device_id``'s lease for ``holder``: None when taken, else who holds it (:data:`UNKNOWN` if unsaid)."""

    @abstractmethod
    def release(self, device_id: str) -> None:
        """Give back a lease taken here (nothing when not held)."""

    def close(self) -> None:  # noqa: B027 - a backend with connections closes them
        """Give back every lease still held."""


class FileLeases(Leases):
    """``flock`` on one file per device in ``lock_dir``: freed by the kernel when the holder dies."""

    def __init__(self, lock_dir: str | Path) -> None:
        self.lock_dir = Path(lock_dir)
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def path(self, device_id: str) -> Path:
        """The lock file of ``device_id``: a safe name, and a hash so two ids never share one."""
        digest = hashlib.sha256(device_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        return inside(self.lock_dir, f"{sanitise(device_id, 'device', 60)}-{digest}.lock")

    def try_acquire(self, device_id: str, holder: Holder) -> Holder | None:
        with self._lock:
            if device_id in self._held:
                return None
        path = self.path(device_id)
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            # O_NOFOLLOW: a symlink planted as the lock file must not make us truncate its target.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LeaseError(f"cannot open device lease {path}: {exc.strerror or exc}",
                             hint="give a writable lock directory with --lease-dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                data = os.pread(fd, _MAX_HOLDER_BYTES, 0)
            finally:
                os.close(fd)
            try:
                return Holder.parse(json.loads(data.decode("utf-8"))) or UNKNOWN
            except (ValueError, UnicodeDecodeError, RecursionError):
                return UNKNOWN  # the holder is between taking the lock and saying who it is
        except OSError as exc:
            os.close(fd)
            raise LeaseError(f"cannot lock {path}: {exc.strerror or exc}") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(asdict(holder)).encode(), 0)
        except OSError as exc:  # the lock is ours even if the note of who we are did not fit
            log.debug("%s: holder not written (%s)", path, exc)
        with self._lock:
            self._held[device_id] = fd
        return None

    def release(self, device_id: str) -> None:
        with self._lock:
            fd = self._held.pop(device_id, None)
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor drops the flock

    def close(self) -> None:
        for device_id in list(self._held):
            self.release(device_id)


class LeaseKeeper:
    """A run's leases: taken on a device's first case (waiting up to ``timeout_s``), kept until the run ends.

    ``acquire`` returns None when the run may use the device, else the reason its cases are skipped.
    Once a device timed out it is not waited for again in this run. Setting ``cancel`` ends a wait
    (``RunInterrupted``).
    """

    def __init__(self, leases: Leases, run_id: str, timeout_s: float = DEFAULT_TIMEOUT_S, *,
                 poll_s: float = 0.2, cancel: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.leases = leases
        self.holder = Holder.me(run_id)
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.cancel = cancel
        self._clock = clock
        self._state: dict[str, str | None] = {}
        self._device_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def acquire(self, device_id: str) -> str | None:
        with self._lock:
            device_lock = self._device_locks.setdefault(device_id, threading.Lock())
        with device_lock:  # two threads of one run on one device (the plugin) wait once
            if device_id in self._state:
                return self._state[device_id]
            self._state[device_id] = verdict = self._wait(device_id)
            return verdict

    def _wait(self, device_id: str) -> str | None:
        deadline = self._clock() + self.timeout_s
        shown_holder: Holder | None = None
        while True:
            try:
                holder = self.leases.try_acquire(device_id, self.holder)
            except HarnessError as exc:
                return f"device lease not taken: {exc}"
            if holder is None:
                if shown_holder is not None:
                    log.info("[%s] lease taken after waiting (it was %s)", device_id, shown_holder.describe())
                return None
            if holder != shown_holder:
                log.info("[%s] device busy: %s; waiting up to %.0f s for it", device_id, holder.describe(),
                         max(0.0, deadline - self._clock()))
                shown_holder = holder
            if self._clock() >= deadline:
                return f"device busy ({holder.describe()}; waited {self.timeout_s:g} s)"
            if self.cancel is not None and self.cancel.wait(self.poll_s):
                raise RunInterrupted(f"{device_id}: stopped while waiting for the device's lease")
            if self.cancel is None:
                time.sleep(self.poll_s)

    def release(self, device_id: str) -> None:
        """Give ``device_id`` back now (a front that leases case by case); a busy verdict is kept."""
        with self._lock:
            device_lock = self._device_locks.setdefault(device_id, threading.Lock())
        with device_lock:
            if device_id in self._state and self._state[device_id] is None:
                del self._state[device_id]
                self.leases.release(device_id)

    def release_all(self) -> None:
        with self._lock:
            held = [d for d, verdict in self._state.items() if verdict is None]
            self._state.clear()
        for device_id in held:
            try:
                self.leases.release(device_id)
            except HarnessError as exc:
                log.warning("warning: device lease of %s not released (%s); it ends with this process", device_id, exc)
        self.leases.close()
