"""One error root, typed children, each carrying context and a hint for the user.

The CLI prints ``str(error)`` on one line and exits non-zero; ``--debug`` shows the
traceback. Every child names what failed (file, key, device, command) so the user
can act without reading code.
"""

from __future__ import annotations

DESCRIBE_LIMIT = 300


class HarnessError(Exception):
    """Root of every error the harness raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class UsageError(HarnessError):
    """Bad command-line usage or bad options (exit code 2)."""

    exit_code = 2


class ModelError(HarnessError):
    """A model file is missing, not TFLite, or rejected by the runtime."""

    def __init__(self, path: object, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"model {path}: {reason}", hint=hint)
        self.path = str(path)
        self.reason = reason


class FileError(HarnessError):
    """A file the user gave is malformed: names the file, the line and key, and what is wrong.

    The shared base of :class:`SuiteError` (a suite) and :class:`ConfigError` (``harness.toml``, device
    profiles, inventories); printed as ``FILE:LINE [KEY]: what (hint: ...)``.
    """

    def __init__(
        self,
        path: object,
        reason: str,
        *,
        key: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = str(path)
        if line is not None:
            where += f":{line}"
        if key:
            where += f" [{key}]"
        super().__init__(f"{where}: {reason}", hint=hint)
        self.path = str(path)
        self.key = key
        self.line = line
        self.reason = reason


class SuiteError(FileError):
    """A suite file is malformed."""


class ConfigError(FileError):
    """A settings file is malformed or missing: ``harness.toml``, a device profile, an inventory, a profile folder."""


class ProfileError(ConfigError):
    """A device profile file is malformed."""


class ZooError(HarnessError):
    """A zoo model cannot be fetched or fails verification."""


class StoreError(HarnessError):
    """A results file, baseline or the SQLite index is missing or unreadable (exit code 2: fix the reference)."""

    exit_code = 2


class LeaseError(HarnessError):
    """A device lease could not be taken or checked (an unwritable lock directory, an unreachable server)."""


class UnsafeNameError(UsageError):
    """A name that becomes a file name (suite, run id, part, baseline, model) is not one short, plain name."""

    def __init__(self, what: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"{what} {reason}", hint=hint)
        self.what = what
        self.reason = reason


class PathEscapeError(HarnessError):
    """A file about to be written resolves outside the folder the user gave (a '..' or a symlink pointing out)."""

    exit_code = 2

    def __init__(self, root: object, path: object, resolved: object) -> None:
        super().__init__(f"refusing to write {path}: it resolves to {resolved}, outside {root}",
                         hint="remove the symlink or the '..' that leads out of the output folder")
        self.root = str(root)
        self.path = str(path)
        self.resolved = str(resolved)


class DeviceError(HarnessError):
    """Something went wrong talking to a device.

    ``command_exit_code`` is the failed device command's exit status (None when it did not exit);
    ``exit_code`` (every :class:`HarnessError`'s) is what the CLI exits with.
    """

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        command: str | None = None,
        output: str | None = None,
        command_exit_code: int | None = None,
        hint: str | None = None,
    ) -> None:
        prefix = f"[{device}] " if device else ""
        super().__init__(prefix + message, hint=hint)
        self.device = device
        self.command = command
        self.output = output
        self.command_exit_code = command_exit_code  # the device command's; ``exit_code`` is the CLI's


class DeviceNotFound(DeviceError):
    """No device matches the given id."""


class DeviceLost(DeviceError):
    """The device went away (link broken, offline) and did not come back in time."""


class CommandTimeout(DeviceError):
    """A device command ran past its timeout; the remote process was killed."""

    def __init__(self, message: str, *, timeout_s: float, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.timeout_s = timeout_s


class AuthError(DeviceError):
    """The device refused our key."""


class GateError(HarnessError):
    """The gate cannot be evaluated (exit code 2): nothing to compare, or not comparable."""

    exit_code = 2


class NoCommonCases(GateError):
    """Baseline and candidate share no case (model sha256 x delegate x threads x api x device)."""


class DeviceMismatch(GateError):
    """The baseline was measured on another device: comparing would be meaningless."""


class EmulatedComparison(DeviceMismatch):
    """One side of a comparison ran on an emulated device (qemu-user): its latencies measure the emulator."""


class EmptyBaseline(GateError):
    """The baseline holds no successful result with latency."""


class ContextMismatch(GateError):
    """Baseline and candidate were measured in different run contexts (one line per differing field)."""


class GateConfigError(UsageError):
    """A bad gate setting; ``key`` names the setting so a suite error can point at its line."""

    def __init__(self, key: str, label: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"{label}: {reason}", hint=hint)
        self.key = key
        self.reason = reason


class NetworkMethodError(HarnessError):
    """A network method (a namespace, a veth pair, a tc qdisc) could not be set up here: the case is skipped."""


class DelegateUnavailable(HarnessError):
    """The requested delegate cannot run on this device (the case is skipped, not failed)."""


def one_line(value: object, limit: int = DESCRIBE_LIMIT) -> str:
    """``str(value)`` on one line (whitespace runs become one space), at most ``limit`` characters."""
    line = " ".join(str(value).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe(exc: BaseException, limit: int = DESCRIBE_LIMIT) -> str:
    """An exception on one line, ``Type: message``, at most ``limit`` characters (for a result's reason)."""
    message = one_line(exc, limit)
    return one_line(f"{type(exc).__name__}: {message}" if message else type(exc).__name__, limit)


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped (Ctrl-C, SIGTERM, or its cancellation token was set) before every case ended.

    A ``KeyboardInterrupt`` child, not a :class:`HarnessError`: it is nobody's fault, and error handling
    (``except Exception``, a case's ``except HarnessError``) must never swallow a user's stop. Device shells
    raise it once the running command's processes are killed; :func:`harness.api.run` raises it with the
    partial ``summary`` once the finished results are stored and the partial report is written.
    """

    def __init__(self, message: str, *, summary: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.summary = summary

    def __str__(self) -> str:
        return self.message


class ServerError(HarnessError):
    """The model server (``harness serve-model``) could not be started or did not become ready."""
