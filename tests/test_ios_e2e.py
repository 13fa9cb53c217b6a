"""A suite end to end on the wire-level fake iPhone, through the CLI as a user runs it.

The fake stands in for a physical iPhone only below pymobiledevice3 (usbmuxd socket upward is
pymobiledevice3's real client code); the app it "launches" runs the real model with LiteRT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pymobiledevice3")

from harness.testing.ios.device import BENCH_BUNDLE_ID, FakeIPhone  # noqa: E402

pytest_plugins = ["harness.testing.ios.fixtures"]


def _cli(*args: str, env: dict[str, str], timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout_s, env=env)


@pytest.fixture
def phone(make_fake_iphone) -> FakeIPhone:
    return make_fake_iphone(installed={BENCH_BUNDLE_ID: "1.0"}, sysmon_interval_s=0.1)


def test_devices_lists_the_fake_with_its_profile(phone: FakeIPhone) -> None:
    proc = _cli("devices", "--json", env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    entry = next(d for d in json.loads(proc.stdout) if d["id"] == phone.device_id)
    assert entry["reachable"] and entry["platform"] == "ios" and entry["profile"] == "fake-iphone"


def test_suite_runs_on_the_fake(phone: FakeIPhone, tmp_path: Path, small_model: Path) -> None:
    suite = tmp_path / "ios.toml"
    suite.write_text(f"""
[suite]
name = "ios"
delegates = ["cpu", "xnnpack", "gpu", "coreml"]
repetitions = 2
measured_runs = 4
warmup_runs = 1
timeout_s = 60
[[models]]
path = "{small_model}"
name = "blazeface"
""")
    out = tmp_path / "out"
    proc = _cli("run", str(suite), "--device", phone.device_id, "--out", str(out), env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    rows = {json.loads(x)["case"]["delegate"]: json.loads(x)
            for x in next(out.glob("ios-*.jsonl")).read_text().splitlines()}
    for delegate in ("cpu", "xnnpack"):
        row = rows[delegate]
        assert row["status"] == "ok", row["reason"]
        assert row["device"]["platform"] == "ios" and row["device"]["profile"] == "fake-iphone"
        reps = row["latency"]["repetitions"]
        assert len(reps) == 2 and all(len(r["samples_us"]) == (row["case"].get("actual_runs") or 4) for r in reps)
        assert "EDGEHARNESS_DONE" in row["raw"]
        # the fake phone is on USB power: energy is refused with that reason, never estimated
        assert row["energy"]["per_inference_mj"] is None and row["energy"]["gross_per_inference_mj"] is None
        assert "external power" in row["energy"]["reason"]
        assert "Sysmontap" in row["memory"]["method"] and row["memory"]["steady_rss_mb"] > 0
    for delegate in ("gpu", "coreml"):
        assert rows[delegate]["status"] == "skipped"
        assert "fake iPhone has no" in rows[delegate]["reason"]
    assert (out / "ios.html").exists()


def test_app_from_harness_toml_is_installed_once(make_fake_iphone, bench_ipa: Path, tmp_path: Path,
                                                 small_model: Path) -> None:
    """No app on the phone: harness.toml names the .ipa; the harness installs it, then runs every case."""
    phone = make_fake_iphone()
    (tmp_path / "harness.toml").write_text(f'[tool]\nios_app = "{bench_ipa}"\n')
    suite = tmp_path / "s.toml"
    suite.write_text(f'[suite]\nname = "app"\ndelegates = ["xnnpack"]\nthreads = [1, 2]\nrepetitions = 2\n'
                     f'measured_runs = 3\nwarmup_runs = 1\n[[models]]\npath = "{small_model}"\nname = "m"\n')
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--device", phone.device_id,
                           "--out", str(tmp_path / "out"), "--no-report"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert "2 ok" in proc.stdout
    installs = [line for line in phone.syslog if "installd[" in line and "installed com.edgeharness" in line]
    assert len(installs) == 1, installs


def test_battery_energy_per_inference_from_discharging_readings() -> None:
    from harness.samplers.app import BatteryReading, app_energy

    readings = [BatteryReading(t_s=float(i), current_ma=-500.0 - 10 * i, voltage_mv=4000.0, external_connected=False,
                               is_charging=False, temperature_c=30.0) for i in range(5)]
    energy = app_energy(readings, None, measured_s=2.0, iterations=100)
    mean_mw = sum(r.power_mw for r in readings) / 5  # 2080 mW
    assert energy.reason is None and energy.samples == 5
    assert abs(energy.gross_per_inference_mj - mean_mw * 2.0 / 100) < 1e-9
    assert energy.per_inference_mj is None  # no idle baseline on iOS: net is not claimed
    refused = app_energy(readings, "the phone was on external power", 2.0, 100)
    assert refused.gross_per_inference_mj is None and "external power" in refused.reason


def test_fake_iphone_serve_as_a_user_runs_it(tmp_path: Path, small_model: Path) -> None:
    """`harness fake-iphone serve` prints the exports; with them a suite installs the app and runs, unplugged."""
    import shlex
    import signal

    serve = subprocess.Popen([sys.executable, "-m", "harness.cli", "fake-iphone", "serve", "--root",
                              str(tmp_path / "phone"), "--battery", "unplugged", "--product-type", "iPhone15,2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:  # the ProductType is an iPhone 14 Pro's, but the fake's own profile still wins: it has no GPU
        lines = [serve.stdout.readline() for _ in range(4)]
        assert lines[0].startswith("fake iPhone ios:"), "".join(lines) + serve.stderr.read()
        device_id = lines[0].split()[2]
        env = dict(os.environ, HARNESS_CACHE=str(tmp_path / "cache"))
        for line in lines[1:3]:
            name, value = shlex.split(line.split("#")[0].replace("use it with:", ""))[1].split("=", 1)
            env[name] = value
        devices = json.loads(_cli("devices", "--json", env=env).stdout)
        entry = next(d for d in devices if d["id"] == device_id)
        assert entry["reachable"] and entry["profile"] == "fake-iphone" and "iPhone15,2" in json.dumps(entry)
        suite = tmp_path / "one.toml"
        suite.write_text(f'[suite]\nname = "one"\ndelegates = ["xnnpack"]\nrepetitions = 1\nmeasured_runs = 2500\n'
                         f'warmup_runs = 1\n[[models]]\npath = "{small_model}"\n')
        proc = _cli("run", str(suite), "--device", device_id, "--out", str(tmp_path / "out"), env=env)
        assert proc.returncode == 0, proc.stderr
        row = json.loads(next((tmp_path / "out").glob("one-*.jsonl")).read_text().splitlines()[0])
        assert row["status"] == "ok", row["reason"]
        # unplugged, over ~2 s of inference: the battery is read every second and energy is measured (gross)
        energy = row["energy"]
        assert energy["gross_per_inference_mj"] > 0 and energy["samples"] >= 2, energy
        assert energy["per_inference_mj"] is None and "gross" in energy["method"]
    finally:
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=20) == 0


def test_remote_usbmuxd_over_loopback_tcp(make_fake_iphone, tmp_path: Path, small_model: Path) -> None:
    """A farm host exposes usbmuxd over TCP: ``harness devices`` and a run reach the phone through it alone."""
    phone = make_fake_iphone(installed={BENCH_BUNDLE_ID: "1.0"}, sysmon_interval_s=0.1, usbmux_tcp_port=0)
    os.unlink(phone.usbmux_address)          # the UNIX socket is gone: only the TCP usbmuxd can answer
    env = {**os.environ, "USBMUXD_SOCKET_ADDRESS": str(phone.usbmux_tcp_address)}
    proc = _cli("devices", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    entry = next(d for d in json.loads(proc.stdout) if d["id"] == phone.device_id)
    assert entry["reachable"] and entry["profile"] == "fake-iphone"
    suite = tmp_path / "tcp.toml"
    suite.write_text(f'[suite]\nname = "tcp"\ndelegates = ["cpu"]\nrepetitions = 1\nmeasured_runs = 2\n'
                     f'warmup_runs = 1\ntimeout_s = 60\n[[models]]\npath = "{small_model}"\nname = "m"\n')
    out = tmp_path / "out"
    proc = _cli("run", str(suite), "--device", phone.device_id, "--out", str(out), "--no-report", env=env)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(next(out.rglob("*.jsonl")).read_text().splitlines()[0])
    assert row["status"] == "ok", row["reason"]
    assert len(row["latency"]["repetitions"][0]["samples_us"]) == (row["case"].get("actual_runs") or 2)


@pytest.mark.slow
def test_smoke_suite_on_ios18_through_tunneld(tmp_path: Path, isolated_cache: Path) -> None:
    """`fake-iphone serve --ios 18.1` as a user runs it: with only the HARNESS_TUNNELD route left (its usbmuxd
    socket removed), `harness devices` finds the phone through tunneld and the smoke suite runs over RSD."""
    import shlex
    import signal

    serve = subprocess.Popen([sys.executable, "-m", "harness.cli", "fake-iphone", "serve", "--ios", "18.1",
                              "--root", str(tmp_path / "phone")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [serve.stdout.readline() for _ in range(6)]
        assert lines[0].startswith("fake iPhone ios:"), "".join(lines) + serve.stderr.read()
        device_id = lines[0].split()[2]
        env = dict(os.environ)
        for line in lines[1:4]:
            name, value = shlex.split(line.split("#")[0].replace("use it with:", ""))[1].split("=", 1)
            env[name] = value
        assert env["HARNESS_TUNNELD"].startswith("127.0.0.1:") and "--rsd 127.0.0.1 " in lines[4]
        os.unlink(env["USBMUXD_SOCKET_ADDRESS"])      # from here on, only tunneld and RSD reach the phone
        devices = json.loads(_cli("devices", "--json", env=env).stdout)
        entry = next(d for d in devices if d["id"] == device_id)
        assert entry["reachable"] and entry["profile"] == "fake-iphone", entry
        smoke = Path(__file__).resolve().parents[1] / "suites" / "smoke.toml"
        out = tmp_path / "out"
        # runs extended to two Sysmontap ticks: about 150-190 s at load average 8-10 on 2 cores (51 s before)
        proc = _cli("run", str(smoke), "--device", device_id, "--out", str(out), env=env, timeout_s=540)
        assert proc.returncode == 0, proc.stderr
        rows = [json.loads(x) for x in next(out.glob("smoke-*.jsonl")).read_text().splitlines()]
        assert len(rows) == 12 and all(r["status"] == "ok" for r in rows), [(r["case"], r["reason"]) for r in rows]
        for row in rows:
            assert row["device"]["extra"]["link"] == "rsd" and row["device"]["os"].startswith("iOS 18.1")
            runs = row["case"].get("actual_runs") or 30
            assert all(len(r["samples_us"]) == runs for r in row["latency"]["repetitions"])
            # Sysmontap over dtservicehub: the CLI's fake ticks every 0.5 s, longer than a 30-run app lives, so
            # the measured runs are extended to two ticks (min_duration_s) and every case gets rows naming its app
            assert "Sysmontap" in row["memory"]["method"] and row["memory"]["steady_rss_mb"] > 0, row["memory"]
            assert row["case"]["min_duration_s"] >= 0.5, row["case"]
        assert (out / "smoke.html").exists()
    finally:
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=20) == 0
