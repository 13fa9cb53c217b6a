"""The arm64 virtual device: arm64 code under qemu-user, emulated labels, cross-ISA drift, the gate's refusal.

The device tests need Debian's qemu-user-static and the sysroot (`harness virtual-device build-arm64`, which
`make` and `.ci/run` run); without them they skip with that reason. The label/gate/drift rules are also
checked on synthetic records, which need neither.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness import gate as g
from harness import numerics, profiles
from harness.errors import DeviceError, EmulatedComparison, ProfileError
from harness.results import CaseInfo, DeviceInfo, Latency, Repetition, Result
from harness.terminal import RunDisplay, case_line
from harness.testing.android import arm64

pytest_plugins = ["harness.testing.android.fixtures"]

REPO = Path(__file__).resolve().parent.parent
EMULATED = "qemu-aarch64: qemu-aarch64-static 7.2.22 (binfmt_misc) on x86_64"

needs_arm64 = pytest.mark.skipif(arm64.problem() is not None, reason=f"arm64 device: {arm64.problem()}")


@pytest.fixture(autouse=True)
def private_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway adb key (never the developer's ~/.android/adbkey)."""
    key = tmp_path / "keys" / "adbkey"
    monkeypatch.setenv("HARNESS_ADB_KEY", str(key))
    return key


def _result(device: str, emulated: str = "", delegate: str = "cpu", values: tuple[float, ...] = (0.1, 0.7, 0.2),
            center_us: float = 2000.0) -> Result:
    case = CaseInfo(f"m[{device}-{delegate}-t1]", "m", "a" * 64, delegate, 1, "litert-python")
    dev = DeviceInfo(device, "android", model="Virtual Device arm64" if emulated else "Pixel", emulated=emulated)
    reps = tuple(Repetition(samples_us=(center_us * (1 + 0.01 * i), center_us * (1 - 0.01 * i), center_us))
                 for i in range(6))
    outputs = ({"name": "out", "shape": [1, 3], "stride": 1, "values": list(values), "argmax": 1},)
    return Result("r1", case, dev, "ok", latency=Latency("perf_counter_ns", reps), outputs=outputs)


# -- rules on synthetic records --------------------------------------------------------------------
def test_gate_refuses_emulated_against_another_device() -> None:
    native, emulated = _result("adb:pixel"), _result("adb:127.0.0.1:5555", EMULATED)
    with pytest.raises(EmulatedComparison, match="emulated: its latencies time the emulator"):
        g.compare([native], [emulated], g.GateConfig(n_boot=100))
    with pytest.raises(EmulatedComparison):
        g.compare([emulated], [native], g.GateConfig(n_boot=100))
    # the same emulated device against itself is a comparison like any other
    assert [v.verdict for v in g.compare([emulated], [emulated], g.GateConfig(n_boot=100))] == ["same"]


def test_emulated_latency_is_never_held_against_a_budget() -> None:
    budget = {"m": g.Budget(p50_ms=0.5, peak_memory_mb=None)}
    native, emulated = _result("adb:pixel"), _result("adb:127.0.0.1:5555", EMULATED)
    outcome = g.gate(None, [native, emulated], g.GateConfig(n_boot=100), budget)
    assert outcome.exit_code == 1  # the native device breaks its 0.5 ms budget (2 ms)
    assert any("adb:pixel" in f and "p50_ms" in f for f in outcome.failures)
    assert not any("127.0.0.1" in f for f in outcome.failures)
    assert any("127.0.0.1" in w and "not checked: the device is emulated" in w for w in outcome.warnings)


def test_terminal_labels_emulated_latencies(capsys: pytest.CaptureFixture[str]) -> None:
    native, emulated = _result("adb:pixel"), _result("adb:127.0.0.1:5555", EMULATED)
    assert case_line(emulated, 1, 1, 3.0).endswith("median 2.00 ms (emulated) (0:00:03)")
    assert "emulated" not in case_line(native, 1, 1, 3.0)
    RunDisplay(1, 2).table([native, emulated])
    out = capsys.readouterr().out
    assert "2.00 ms emulated" in out and f"emulated: adb:127.0.0.1:5555 runs translated code ({EMULATED})" in out
    assert sum("emulated" in line for line in out.splitlines() if "adb:pixel" in line) == 0


def test_cross_device_drift_pairs_the_same_case_against_the_native_device() -> None:
    host = _result("host")
    arm = _result("adb:127.0.0.1:5555", EMULATED, values=(0.1, 0.7, 0.2000001))
    other = replace(_result("adb:127.0.0.1:5555", EMULATED, delegate="xnnpack"))  # no host xnnpack case: unpaired
    assert numerics.reference_device([arm, host, other]) == "host"  # the native one, whatever the order
    rows = numerics.across_devices([arm, host, other])
    assert [(ref.device.id, res.case.delegate) for ref, res, _ in rows] == [("host", "cpu")]
    d = rows[0][2]
    assert d.problem is None and 0 < d.value("max_abs") < 1e-6 and d.value("top1") is True  # sums to 1: class scores
    table = numerics.table(rows, across_devices=True)
    assert table.splitlines()[1].split()[1] == "host"


def test_profile_emulation_is_checked(tmp_path: Path) -> None:
    assert profiles.load_profile(profiles.default_dir() / "virtual-arm64.toml").emulation == "qemu-aarch64"
    bad = tmp_path / "x.toml"
    bad.write_text('name = "x"\nplatform = "android"\nemulation = "rosetta"\n', encoding="utf-8")
    with pytest.raises(ProfileError, match=r"x.toml:3 \[emulation\]: unknown emulation 'rosetta'"):
        profiles.load_profile(bad)


def test_missing_sysroot_is_one_line_with_a_hint(tmp_path: Path) -> None:
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "empty")}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "virtual-device", "serve", "--profile",
                           "virtual-arm64"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: arm64 virtual device: ")
    if arm64.qemu() is not None:
        assert "no arm64 sysroot at" in lines[0] and "harness virtual-device build-arm64" in lines[0]
    else:
        assert "apt-get install qemu-user-static" in lines[0]


# -- the device itself -----------------------------------------------------------------------------
@needs_arm64
def test_the_device_runs_arm64_code(virtual_device_factory) -> None:
    from harness.devices.android import AndroidDevice

    dev = virtual_device_factory(profile="virtual-arm64")
    with AndroidDevice(f"adb:{dev.address}") as device:
        info = device.info()
        assert (info.abi, info.profile) == ("arm64-v8a", "virtual-arm64")
        assert info.emulated.startswith("qemu-aarch64: qemu-aarch64-static")
        out = device.shell("uname -m; getprop ro.product.cpu.abi; grep -m1 'CPU part' /proc/cpuinfo; "
                           "python3 -c 'import platform, sys; print(platform.machine(), sys.version_info[:2])'",
                           timeout_s=120).output.split("\n")
        assert out[:4] == ["aarch64", "arm64-v8a", "CPU part\t: 0xd0c", "aarch64 (3, 11)"]
        if dev.emulation.binfmt:  # the shell itself is arm64 code: its ELF header says so
            head = device.shell("head -c 20 /system/bin/sh | od -An -tx1 | tr -d ' \\n'", timeout_s=60).output
            head = head.strip()  # a 64-bit ELF whose e_machine (bytes 18-19) is 0xb7, EM_AARCH64
            assert head.startswith("7f454c4602") and head[-4:] == "b700"


@needs_arm64
def test_without_binfmt_python_and_uname_call_qemu_explicitly(virtual_device_factory, monkeypatch) -> None:
    from harness.devices.android import AndroidDevice

    monkeypatch.setattr(arm64, "binfmt_problem", lambda: "binfmt_misc refused (test)")
    dev = virtual_device_factory(profile="virtual-arm64")
    assert dev.emulation is not None and not dev.emulation.binfmt
    with AndroidDevice(f"adb:{dev.address}") as device:
        assert "(explicit qemu calls)" in device.info().emulated
        out = device.shell("uname -m; grep -c 'CPU part.*0xd0c' /proc/cpuinfo; python3 -c 'import platform; "
                           "print(platform.machine())'; head -c 20 /system/bin/sh | od -An -tx1 | tr -d ' \\n'",
                           timeout_s=120).output.split("\n")
        assert out[0] == "aarch64" and int(out[1]) >= 1 and out[2] == "aarch64"
        assert out[3].strip()[-4:] != "b700"  # the shell itself stays the host's in this mode


@pytest.mark.slow
@needs_arm64
def test_arm64_suite_end_to_end_with_cross_isa_drift(virtual_device_factory, zoo_models, tmp_path: Path) -> None:
    """The device and the host in one run: ok results, arm64-v8a, emulated labels, small cross-ISA drift."""
    dev = virtual_device_factory(profile="virtual-arm64")
    suite = tmp_path / "arm64.toml"
    suite.write_text('[suite]\nname = "arm64"\ndelegates = ["cpu", "xnnpack"]\nthreads = [1]\nwarmup_runs = 1\n'
                     'measured_runs = 2\nrepetitions = 1\ntimeout_s = 300\n\n'
                     '[[models]]\nzoo = "face_detection_front"\n', encoding="utf-8")
    out = tmp_path / "out"
    device_id = f"adb:{dev.address}"
    run = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--device", device_id, "--device",
                          "host", "--out", str(out), "--strict"],
                         capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 ok" in run.stdout and f"emulated: {device_id} runs translated code" in run.stdout
    rows = [json.loads(line) for line in next(out.glob("arm64-*.jsonl")).read_text().splitlines()]
    arm = [r for r in rows if r["device"]["id"] == device_id]
    assert len(rows) == 4 and len(arm) == 2 and {r["status"] for r in rows} == {"ok"}
    for r in arm:
        assert r["device"]["abi"] == "arm64-v8a" and r["device"]["emulated"].startswith("qemu-aarch64")
        # a loaded machine may extend the runs so the battery sampler gets its samples (min_duration_s)
        assert len(r["latency"]["repetitions"][0]["samples_us"]) == (r["case"].get("actual_runs") or 2)
    assert all(r["device"]["emulated"] == "" for r in rows if r["device"]["id"] == "host")
    # cross-ISA drift: every output tensor of each arm64 case against the host's, figures present and small
    drift = subprocess.run([sys.executable, "-m", "harness.cli", "drift", "--store", str(out), "--across-devices"],
                           capture_output=True, text=True, timeout=120)
    assert drift.returncode == 0, drift.stdout + drift.stderr
    lines = [ln.split() for ln in drift.stdout.splitlines()[2:]]
    assert len(lines) == 4  # 2 delegates x 2 output tensors of face_detection_front
    for cols in lines:
        assert cols[1] == "host"
        max_abs, cosine = float(cols[-5]), float(cols[-3])
        assert max_abs < 1e-3 and cosine > 0.99999
    html = (out / "arm64.html").read_text(encoding="utf-8")
    assert "Cross-ISA drift against host" in html and "[emulated]" in html
    # the gate never compares the emulated device with the host
    from harness.store import open_store

    results = open_store(out).load_run("latest")
    with pytest.raises(EmulatedComparison):
        g.compare([r for r in results if r.device.id == device_id], [r for r in results if r.device.id == "host"])


def test_build_refuses_without_qemu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(arm64, "qemu", lambda: None)
    with pytest.raises(DeviceError, match="qemu-aarch64-static not found"):
        arm64.build(tmp_path)
