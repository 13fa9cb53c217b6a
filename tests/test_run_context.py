"""Compare like with like: the run context in results, the gate's refusal and tolerance, the suite's
``require`` and ``tolerate`` and ``min_duration_s`` settings, and the parsers behind them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness import gate as g
from harness.errors import ContextMismatch, GateConfigError, SuiteError
from harness.results import Result
from harness.samplers import contention, context, fitness, probe
from harness.suite import parse_suite
from tests.helpers import make_result

FAST = g.GateConfig(n_boot=200)
CTX = {"harness_version": "0.1.0", "runtime": "ai-edge-litert 2.3.0", "governor": "schedutil",
       "charging": "on battery", "thermal_status": "0", "runner_kind": "shell", "host_kernel": "6.1"}


def _pair(base_ctx: dict, cand_ctx: dict) -> tuple[list[Result], list[Result]]:
    return [make_result(seed=1, context=base_ctx)], [make_result("r2", seed=2, context=cand_ctx)]


def test_a_context_difference_refuses_the_gate_naming_field_and_values():
    base, cand = _pair(CTX, {**CTX, "governor": "performance", "harness_version": "0.2.0"})
    with pytest.raises(ContextMismatch) as err:
        g.gate(base, cand, FAST)
    assert err.value.exit_code == 2
    lines = str(err.value).splitlines()
    assert "different run contexts (2 difference(s))" in lines[0]
    gov = next(line for line in lines if line.strip().startswith("governor"))
    assert "baseline 'schedutil', candidate 'performance'" in gov and "hint:" in gov and "--tolerate governor" in gov
    assert any(line.strip().startswith("harness_version") and "'0.1.0'" in line and "'0.2.0'" in line for line in lines)
    with pytest.raises(ContextMismatch):
        g.compare(base, cand, FAST)


def test_a_tolerated_difference_marks_the_verdict_context_changed():
    base, cand = _pair(CTX, {**CTX, "harness_version": "0.2.0"})
    out = g.gate(base, cand, replace(FAST, tolerate=("harness_version",)))
    assert out.exit_code == 0 and [v.verdict for v in out.verdicts] == ["same"]
    v = out.verdicts[0]
    assert v.context_changed == ("harness_version 0.1.0 -> 0.2.0",)
    assert "context changed: harness_version 0.1.0 -> 0.2.0" in v.why
    tolerated = "context changed (tolerated): harness_version 0.1.0 -> 0.2.0 in 1 case"
    assert any(w.startswith(tolerated) for w in out.warnings)
    # a tolerated field does not excuse another one
    base, cand = _pair(CTX, {**CTX, "harness_version": "0.2.0", "charging": "charging or powered"})
    with pytest.raises(ContextMismatch, match="charging"):
        g.gate(base, cand, replace(FAST, tolerate=("harness_version",)))


def test_an_old_baseline_without_context_is_noted_once_not_refused():
    base = [make_result(seed=1), make_result(seed=3, model="other", sha="b" * 64)]
    cand = [make_result("r2", seed=2, context=CTX), make_result("r2", seed=4, model="other", sha="b" * 64, context=CTX)]
    out = g.gate(base, cand, FAST)
    assert out.exit_code == 0
    notes = [w for w in out.warnings if "no run context" in w]
    assert len(notes) == 1 and notes[0].startswith("the baseline has no run context")


def test_a_field_one_side_could_not_read_is_not_a_difference():
    base, cand = _pair({k: v for k, v in CTX.items() if k != "governor"}, CTX)
    assert g.gate(base, cand, FAST).exit_code == 0


def test_tolerate_is_checked_in_the_suite_and_on_the_command_line():
    suite = parse_suite('[gate]\ntolerate = ["harness_version", "governor"]\n[[models]]\nzoo = "face_landmark"\n')
    assert suite.gate.tolerate == ("harness_version", "governor")
    with pytest.raises(SuiteError, match=r":2 \[gate.tolerate\]: .*unknown run-context field 'colour'"):
        parse_suite('[gate]\ntolerate = ["colour"]\n[[models]]\nzoo = "face_landmark"\n', "s.toml")
    cfg = g.GateConfig.from_mapping({}, overrides={"tolerate": "harness_version, runtime"})
    assert cfg.tolerate == ("harness_version", "runtime")
    with pytest.raises(GateConfigError, match="--tolerate"):
        g.GateConfig.from_mapping({}, overrides={"tolerate": "kernel"})


def test_results_without_context_still_load_and_with_it_round_trip():
    old = make_result(seed=1).to_dict()
    del old["context"]
    assert Result.from_dict(old).context == {}
    new = make_result(seed=1, context=CTX)
    assert Result.from_dict(json.loads(json.dumps(new.to_dict()))).context == CTX
    with pytest.raises(ValueError, match="context"):
        Result.from_dict({**new.to_dict(), "context": {"governor": 3}})


def test_device_part_of_the_context_is_parsed_from_the_device_command():
    text = "2000\nEH-CTX\nschedutil\nperformance\nschedutil\nEH-CTX\n5.10.198-android13\nEH-CTX\nbattery\nusb\n"
    assert context.parse_device_part(text) == {"rooted": "no", "governor": "performance,schedutil",
                                               "device_kernel": "5.10.198-android13"}
    assert context.parse_device_part("0\nEH-CTX\nEH-CTX\n6.1\nEH-CTX\n") == {
        "rooted": "yes", "device_kernel": "6.1", "charging": "no battery"}
    assert context.parse_device_part("garbage") == {"charging": "no battery"}


def test_an_endpoints_network_method_is_context_a_changed_method_refuses_the_gate():
    from harness.devices.base import Capabilities

    ctx = context.from_environment({"runtime": "remote", "network_method": "netns"}, Capabilities(endpoint=True))
    assert ctx["runner_kind"] == "endpoint" and ctx["network_method"] == "netns"
    base, cand = _pair({**CTX, "network_method": "tcp-proxy"}, {**CTX, "network_method": "netns"})
    with pytest.raises(ContextMismatch) as err:
        g.gate(base, cand, FAST)
    assert "network_method" in str(err.value) and "baseline 'tcp-proxy', candidate 'netns'" in str(err.value)


def test_frequency_caps_are_compared_in_10_percent_steps():
    assert [context.caps_text(r) for r in (1.0, 0.98, 0.6, 0.64, 0.35)] == ["100%", "100%", "60%", "60%", "40%"]


def test_require_is_validated_with_file_and_line():
    good = parse_suite('[suite]\nrequire = { battery_min = 30, thermal_status_max = 0, other_cpu_max = "25%" }\n'
                       '[[models]]\nzoo = "face_landmark"\n')
    req = good.models[0].require
    assert (req.battery_min, req.thermal_status_max, req.other_cpu_max, req.wait_s) == (30.0, 0, 0.25, 60.0)
    for bad, what in (('{ battery = 30 }', "unknown key 'battery'"), ('{ battery_min = 130 }', "from 0 to 100"),
                      ('{ other_cpu_max = "lots" }', "not a percentage"), ('{ thermal_status_max = 0.5 }', "whole"),
                      ('{ wait_s = -1 }', "wait_s must be")):
        with pytest.raises(SuiteError, match=rf"s.toml:3 \[suite.require\]: .*{what}"):
            parse_suite(f'[suite]\nname = "x"\nrequire = {bad}\n[[models]]\nzoo = "face_landmark"\n', "s.toml")


def test_require_conditions_and_readings():
    req = fitness.Requirements(battery_min=30, thermal_status_max=0, other_cpu_max=0.25)
    unmet, unchecked = fitness.check(req, fitness.Fitness(12, 2, 0.5))
    assert unmet == ["battery 12% < battery_min 30%", "thermal status 2 > thermal_status_max 0",
                     "other work kept 50% of the CPUs busy > other_cpu_max 25%"]
    assert fitness.check(req, fitness.Fitness(80, 0, 0.1)) == ([], [])
    unmet, unchecked = fitness.check(req, fitness.Fitness())
    assert unmet == [] and len(unchecked) == 3  # a desktop without battery or thermal service: not checked
    stat = "cpu  100 0 100 800 0 0 0 0 0 0\ncpu  150 0 150 900 0 0 0 0 0 0\n"
    assert fitness.busy_share(stat) == pytest.approx(0.5)
    assert fitness.busy_share("cpu 1 2 3\n") is None


def test_wait_polls_until_fit_and_gives_up_after_wait_s():
    readings = iter([fitness.Fitness(battery_pct=10), fitness.Fitness(battery_pct=20), fitness.Fitness(battery_pct=40)])
    slept: list[float] = []
    out = fitness.wait(fitness.Requirements(battery_min=30, wait_s=60, poll_s=5), lambda: next(readings),
                       sleep=slept.append)
    assert out.unmet == () and slept == [5, 5]
    out = fitness.wait(fitness.Requirements(battery_min=30, wait_s=0, poll_s=5), lambda: fitness.Fitness(5))
    assert out.unmet == ("battery 5% < battery_min 30%",)


def test_min_duration_s_is_a_checked_setting():
    suite = parse_suite('[suite]\nmin_duration_s = 1.5\n[[models]]\nzoo = "face_landmark"\nmin_duration_s = 0\n'
                        '[[models]]\nzoo = "face_detection_front"\n')
    assert [m.run.min_duration_s for m in suite.models] == [0.0, 1.5]
    assert parse_suite('[[models]]\nzoo = "face_landmark"\n').models[0].run.min_duration_s is None
    with pytest.raises(SuiteError, match=r"min_duration_s.*must be >= 0"):
        parse_suite('[suite]\nmin_duration_s = -1\n[[models]]\nzoo = "face_landmark"\n')


def test_device_cpu_share_from_the_probe_trace():
    s, e = 1_000_000_000, 2_000_000_000
    text = "\n".join([
        f"K S {s}", f"K E {e}",
        f"C {s - 10} cpu  1000 0 0 9000 0 0 0 0 0 0",
        f"T {s + 10} 42 (python3 x) R 1 2 3 4 5 6 7 8 9 10 0 0 0 0",
        f"T {e - 10} 42 (python3 x) R 1 2 3 4 5 6 7 8 9 10 80 20 0 0",
        f"C {e + 10} cpu  1150 0 50 9200 0 0 0 0 0 0",
    ])
    trace = probe.parse_trace(text)
    assert trace.proc[-1] == (e - 10, 100) and trace.cpu[0][1:] == (1000, 10000)
    # busy 200 ticks of 400, the benchmark's 100 of them: other work 100 / 400
    assert contention.device_other_share(trace) == pytest.approx(0.25)
    assert contention.device_other_share(probe.parse_trace(f"K S {s}\nK E {e}\n")) is None


def test_loop_script_polls_proc_stat_and_the_benchmark_pid(tmp_path: Path):
    """The real loop under sh: /proc/stat rows and the pid's /proc/<pid>/stat rows that parse back."""
    paths = probe.ProbePaths(str(tmp_path))
    Path(paths.pid).write_text(f"{os.getpid()}\n")
    script = probe.loop_script(paths, interval_s=0.02, max_samples=3, current_path=None, voltage_path=None,
                               poll_memory=False, poll_cpu=True)
    subprocess.run(["sh", "-c", script], check=True, timeout=30)
    trace = probe.parse_trace(Path(paths.trace).read_text())
    assert len(trace.cpu) == 3 and len(trace.proc) == 3
    assert all(busy <= total for _, busy, total in trace.cpu) and trace.cpu[-1][2] >= trace.cpu[0][2]
    assert trace.proc[-1][1] > 0  # this test process has used CPU time
    off = probe.loop_script(paths, interval_s=0.05, max_samples=3, current_path=None, voltage_path=None,
                            poll_memory=False)
    assert "/proc/stat" not in off


def test_host_results_carry_a_context_and_the_cli_gate_refuses_a_changed_one(tmp_path: Path,
                                                                              zoo_models: dict[str, Path]):
    """Real host run; its baseline exported, edited as if recorded by another harness and governor, imported."""
    suite = tmp_path / "c.toml"
    suite.write_text(f'[suite]\nname = "c"\ndelegates = ["xnnpack"]\nrepetitions = 5\nmeasured_runs = 10\n'
                     f'warmup_runs = 2\n[[models]]\npath = "{zoo_models["face_detection_front"]}"\nname = "bf"\n')
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def harness(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                              timeout=600, env=env)

    assert harness("run", str(suite), "--out", str(out), "--no-report").returncode == 0
    assert harness("baseline", "set", "main", "--run", "latest", "--store", str(out)).returncode == 0
    exported = json.loads(harness("baseline", "export", "main", "--store", str(out)).stdout)
    results = exported["results"]
    ctx = results[0]["context"]
    assert ctx["runner_kind"] == "shell" and ctx["host_kernel"] == os.uname().release
    assert ctx["harness_version"] and ctx["runtime"] and ctx["device_kernel"] == os.uname().release
    for r in results:
        r["context"] = {**r["context"], "harness_version": "0.0.9", "governor": "performance"}
    edited = tmp_path / "old.json"
    edited.write_text(json.dumps(exported))
    assert harness("baseline", "import", "old", str(edited), "--store", str(out)).returncode == 0
    refused = harness("gate", "--baseline", "old", "--store", str(out))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    err = refused.stderr
    assert "different run contexts" in err and "harness_version" in err and "'0.0.9'" in err
    if "governor" in ctx:  # a host without cpufreq has no governor: only that field is then compared
        assert "governor" in err and "'performance'" in err
    tolerate = "harness_version,governor"
    passed = harness("gate", "--baseline", "old", "--store", str(out), "--tolerate", tolerate)
    assert passed.returncode in (0, 1), passed.stderr  # compared (1 only if this busy machine made it noisy)
    assert "context changed (tolerated): harness_version 0.0.9 ->" in passed.stdout


def test_min_duration_on_the_command_line_extends_host_runs(tmp_path: Path, zoo_models: dict[str, Path]):
    """An explicit minimum applies on any device (the host here, which has no power sampler of its own)."""
    suite = tmp_path / "m.toml"
    suite.write_text(f'[suite]\nname = "m"\ndelegates = ["xnnpack"]\nrepetitions = 2\nmeasured_runs = 5\n'
                     f'warmup_runs = 2\n[[models]]\npath = "{zoo_models["face_detection_front"]}"\n')
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(out), "--no-report",
                           "--min-duration", "0.2"], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    (row,) = [json.loads(line) for line in next(out.glob("m-*.jsonl")).read_text().splitlines()]
    case = row["case"]
    assert case["measured_runs"] == 5 and case["min_duration_s"] == 0.2 and case["actual_runs"] > 5
    assert [len(r["samples_us"]) for r in row["latency"]["repetitions"]] == [case["actual_runs"]] * 2
    bad = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--min-duration", "-1"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 2 and "--min-duration: must be >= 0 seconds" in bad.stderr
