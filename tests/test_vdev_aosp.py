"""AOSP's own adb device tests (``test_device.py``) against the virtual device, through Debian's real adb.

The suite is third-party (Apache-2.0) and lives beside the repository, in
``../shared/peer-suites/aosp-adb`` (``AOSP_ADB_SUITE`` overrides the path); it is copied into a
temporary directory for the run and never into the repository. A private adb server (its own port
and ``HOME``) gets the device by ``adb connect``; the suite runs as AOSP runs it on a phone, with
``ANDROID_SERIAL`` and ``ANDROID_ADB_SERVER_PORT``. Everything must pass except :data:`EXCLUDED`.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import DeviceError
from harness.testing import VirtualDevice
from harness.testing.android.client import AdbClient

REPO = Path(__file__).resolve().parent.parent
SUITE = Path(os.environ.get("AOSP_ADB_SUITE") or REPO.parent / "shared" / "peer-suites" / "aosp-adb")
TOTAL_TESTS = 50

#: Tests a virtual device cannot reasonably pass, with the reason (docs/virtual-device.md repeats them).
EXCLUDED = {
    "AbbTest.test_smoke": "abb (Android Binder Bridge) needs the device's binder services, which a host has not",
    "RootUnrootTest.test_root_unroot": "adb root/unroot restart adbd as another uid; the device runs as the host user",
    "WindowsConsoleTest.test_unicode_output": "Windows only (the suite skips it elsewhere)",
}

# Runs inside the suite's directory: loads test_device, runs it, writes {Class.test: outcome} as JSON.
_DRIVER = r"""
import json, sys, unittest
import test_device
outcomes = {}
class Result(unittest.TextTestResult):
    def _put(self, test, outcome):
        outcomes[test.id().split(".", 1)[1]] = outcome
    def addSuccess(self, test):
        super().addSuccess(test); self._put(test, "passed")
    def addFailure(self, test, err):
        super().addFailure(test, err); self._put(test, "failed")
    def addError(self, test, err):
        super().addError(test, err); self._put(test, "error")
    def addSkip(self, test, reason):
        super().addSkip(test, reason); self._put(test, "skipped")
suite = unittest.defaultTestLoader.loadTestsFromModule(test_device)
unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=Result).run(suite)
with open(sys.argv[1], "w") as out:
    json.dump(outcomes, out, indent=1, sort_keys=True)
"""


def _need(condition: bool, reason: str, *, installed_by_ci: bool = True) -> None:
    """Skip when a prerequisite is missing; in CI, which installs the Debian packages, that is a failure."""
    if not condition:
        if os.environ.get("CI") and installed_by_ci:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.slow
def test_aosp_device_suite_passes_on_the_virtual_device(tmp_path):
    _need(SUITE.joinpath("test_device.py").is_file(), f"AOSP's adb suite not found at {SUITE} (set AOSP_ADB_SUITE)",
          installed_by_ci=False)  # fmt: skip
    _need(shutil.which("mksh") is not None and shutil.which("toybox") is not None,
          "Android's shell and userland are missing: apt-get install mksh toybox")  # fmt: skip
    suite = tmp_path / "suite"
    shutil.copytree(SUITE, suite, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in (suite, *suite.rglob("*")):  # CI's shared/ is read-only; the suite writes into its folder
        path.chmod(path.stat().st_mode | 0o700 if path.is_dir() else path.stat().st_mode | 0o600)
    try:
        client = AdbClient(tmp_path / "home")
    except DeviceError as exc:
        _need(False, str(exc))
    client.start_server()
    try:
        with VirtualDevice(root=tmp_path / "device") as device:
            assert client.connect(device.address) == "device"
            env = dict(client.env, ANDROID_SERIAL=device.address, PYTHONPATH=str(suite), TMPDIR=str(tmp_path))
            env["PATH"] = os.path.dirname(client.adb) + os.pathsep + env["PATH"]  # the suite calls a bare `adb`
            report = tmp_path / "outcomes.json"
            done = subprocess.run(
                [sys.executable, "-c", _DRIVER, str(report)], cwd=suite, env=env, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            outcomes = json.loads(report.read_text()) if report.is_file() else {}
    finally:
        client.close()
    log = done.stderr[-20000:]
    assert len(outcomes) == TOTAL_TESTS, f"expected {TOTAL_TESTS} AOSP tests, ran {len(outcomes)}\n{log}"
    unexpected = {name: outcome for name, outcome in outcomes.items() if outcome != "passed" and name not in EXCLUDED}
    assert not unexpected, f"AOSP tests that did not pass: {unexpected}\n{log}"
    passed = sum(outcome == "passed" for outcome in outcomes.values())
    assert passed >= TOTAL_TESTS - len(EXCLUDED), log
