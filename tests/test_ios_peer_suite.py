"""pymobiledevice3's own device tests, run unmodified against the fake iPhone.

The suite ships in pymobiledevice3's sdist on PyPI (GPL-3.0): it is downloaded at test time into
pytest's cache folder (``.pytest_cache/d/pmd3-peer-suite``, so a re-run is offline), never copied
into this repository. Its device tests (``-m device``, selected by its own conftest) reach the fake
through ``USBMUXD_SOCKET_ADDRESS``, with ``HOME`` in a temporary folder for the pair records. The
test asserts that every test in :data:`EXPECTED_PASS_FILE` passes and that nothing outside
:data:`EXCLUDED` fails; see ``docs/ios.md`` for what the exclusions are and why. A second run points the
suite's ``--rsd`` at the fake's RSD (iOS 18, no usbmuxd), against :data:`EXPECTED_RSD_PASS_FILE`.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("pymobiledevice3")

from harness.testing.ios import BENCH_BUNDLE_ID, FakeIPhone  # noqa: E402

pytestmark = pytest.mark.slow

PMD3_VERSION = "11.45.0"
#: Test-only requirements of the peer suite that the harness itself does not need (pinned, no deps).
PEER_TEST_DEPS = ("pytest-asyncio==1.5.0", "httpx==0.28.1", "httpcore==1.0.9")

#: Device tests a phone-shaped fake cannot pass, with the reason (test id prefix -> reason).
EXCLUDED: dict[str, str] = {
    "tests/services/instruments/test_core_profile_session.py::test_stackshot":
        "kernel stackshots (coreprofilesessiontap): real kernel data, nothing a fake can honestly produce",
    "tests/services/instruments/test_stackshot.py::":
        "kernel stackshots and their symbolication: real kernel data",
    "tests/services/instruments/test_graphics.py::test_fps":
        "GPU frame statistics (graphics.opengl): no display or GPU",
    "tests/services/instruments/test_screenshot.py::":
        "screenshots: no framebuffer (out of scope of the issue)",
    "tests/services/instruments/test_network_statistics.py::":
        "per-process network statistics (networkstatistics): no network stack to sample",
    "tests/services/instruments/test_memory.py::":
        "memory-graph channels (VM tracking, leaks, allocations): need real task ports of real processes",
    "tests/services/test_bonjour.py::":
        "mobdev2 Bonjour discovery on the local network: the fake is not on a network",
    "tests/services/test_afc_shell.py::test_create_runs_a_shell_until_exit":
        "broken upstream: AfcShell.create never closes the AfcService it opens, so the suite's own "
        "socket_hygiene check fails its teardown (the same against the fake before this change, run alone)",
}

#: Over RSD (``--rsd``) the suite asks for iOS 17+ RemoteXPC services the fake does not serve; a phone's
#: ``remoted`` lists them, the fake's ``peer_info`` does not, so they fail with InvalidService instead of skipping.
#: (The fake serves timed, notification_proxy.remote, the storage mounter bridge, installcoordination_proxy and
#: cryptexd's read-only routines; see harness/testing/ios/remote_services.py.)
EXCLUDED_RSD: dict[str, str] = {
    "tests/remote/core_device/test_file_service.py::": "CoreDevice file service (RemoteXPC): not served by the fake",
    "tests/remote/core_device/test_icon_service.py::": "CoreDevice icon service (RemoteXPC): not served by the fake",
    "tests/services/instruments/test_fetch_symbols.py::": "DVT symbol fetching (remoteFetchSymbols): no dyld cache",
}

#: Excluded tests that would only wait for their timeout (deselected to keep the run short).
DESELECTED = (
    "tests/services/instruments/test_core_profile_session.py::test_stackshot",
    "tests/services/instruments/test_stackshot.py::test_resolve_device_stackshot",
)

#: The peer tests the fake must pass (filled from a measured run; ids are pymobiledevice3's).
EXPECTED_PASS_FILE = Path(__file__).with_name("data") / "ios_peer_suite_expected.txt"
EXPECTED_RSD_PASS_FILE = Path(__file__).with_name("data") / "ios_peer_suite_rsd_expected.txt"


def _excluded(test_id: str, excluded: dict[str, str]) -> str | None:
    return next((why for prefix, why in excluded.items() if test_id.startswith(prefix)), None)


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def peer_suite(request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """(source tree of the sdist, folder of its test-only dependencies), downloaded once into the cache."""
    if importlib.metadata.version("pymobiledevice3") != PMD3_VERSION:
        pytest.skip(f"the expected results were measured with pymobiledevice3 {PMD3_VERSION}")
    cache = Path(request.config.cache.mkdir("pmd3-peer-suite"))
    src = cache / f"pymobiledevice3-{PMD3_VERSION}"
    deps = cache / "deps"
    if not (src / "tests" / "conftest.py").exists():
        sdist = cache / f"pymobiledevice3-{PMD3_VERSION}.tar.gz"
        if not sdist.exists():
            got = _pip("download", "--no-binary", ":all:", "--no-deps", f"pymobiledevice3=={PMD3_VERSION}",
                       "-d", str(cache))
            if got.returncode != 0 or not sdist.exists():
                pytest.skip(f"cannot download the pymobiledevice3 sdist from PyPI: {got.stderr.strip()[-300:]}")
        with tarfile.open(sdist) as tar:
            tar.extractall(cache, filter="data")
    if not (deps / ".complete").exists():
        got = _pip("install", "--no-deps", "--target", str(deps), *PEER_TEST_DEPS)
        if got.returncode != 0:
            pytest.skip(f"cannot install the peer suite's test dependencies: {got.stderr.strip()[-300:]}")
        (deps / ".complete").write_text("\n".join(PEER_TEST_DEPS))
    return src, deps


def _outcomes(junit: Path) -> dict[str, str]:
    """Test id -> passed/failed/skipped from a junit XML report."""
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        kinds = {child.tag for child in case}
        outcomes[test_id] = ("failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds
                             else "passed")
    return outcomes


def _run_peer_suite(src: Path, deps: Path, tmp_path: Path, phone: FakeIPhone, *args: str) -> tuple[dict, str]:
    """Run the suite's device tests against ``phone``; (test id -> outcome, the tail of its output)."""
    home = tmp_path / "home"
    home.mkdir()
    junit = tmp_path / "peer.xml"
    env = {**os.environ, "HOME": str(home), "USBMUXD_SOCKET_ADDRESS": phone.usbmux_address, "PYTHONPATH": str(deps)}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-m", "device", "-p", "no:cacheprovider",
         "-p", "no:edgeharness", "-q", "--timeout", "100", f"--junitxml={junit}", "-o", "addopts=",
         *(arg for test_id in DESELECTED for arg in ("--deselect", test_id)), *args],
        cwd=src, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert junit.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return _outcomes(junit), proc.stdout[-4000:]


def _check(outcomes: dict[str, str], expected_file: Path, excluded: dict[str, str], output: str) -> None:
    expected = [line.strip() for line in expected_file.read_text().splitlines() if line.strip()]
    not_passing = {t: outcomes.get(t, "missing") for t in expected if outcomes.get(t) != "passed"}
    unexpected_failures = sorted(t for t, o in outcomes.items() if o == "failed" and not _excluded(t, excluded))
    assert not not_passing and not unexpected_failures, (
        f"expected to pass but did not: {not_passing}\nfailed outside the exclusions: {unexpected_failures}\n"
        + output
    )


def test_pymobiledevice3_device_tests_pass_against_the_fake(peer_suite, tmp_path):
    src, deps = peer_suite
    with FakeIPhone(installed={BENCH_BUNDLE_ID: "1.0"}, root=tmp_path / "phone") as phone:
        outcomes, output = _run_peer_suite(src, deps, tmp_path, phone)
    _check(outcomes, EXPECTED_PASS_FILE, EXCLUDED, output)


def test_pymobiledevice3_device_tests_pass_over_rsd(peer_suite, tmp_path):
    """The same suite with ``--rsd HOST PORT`` on an iOS 18 fake whose usbmuxd socket is gone: every test that
    runs reaches the phone through its RSD alone (the ``lockdown`` fixture's tests skip: no usbmuxd)."""
    src, deps = peer_suite
    with FakeIPhone(values={"ProductVersion": "18.1", "BuildVersion": "22B83"}, installed={BENCH_BUNDLE_ID: "1.0"},
                    root=tmp_path / "phone") as phone:
        os.unlink(phone.usbmux_address)
        assert phone.rsd_address is not None
        outcomes, output = _run_peer_suite(src, deps, tmp_path, phone, "--rsd", *map(str, phone.rsd_address))
    _check(outcomes, EXPECTED_RSD_PASS_FILE, {**EXCLUDED, **EXCLUDED_RSD}, output)
