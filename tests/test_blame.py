"""Blame by operator: the host's per-op profiles, their checks, their merge over repetitions, and the gate naming
the op type that grew, on a real model variant whose DEPTHWISE_CONV_2D operators really do six times the work."""

from __future__ import annotations

import copy
import json
import re
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from harness import api, assemble
from harness.blame import blame, op_nodes, op_types
from harness.gate import GateConfig, gate, github_summary_markdown, junit_properties, verdict_line
from harness.report.html import render_html
from harness.results import CaseInfo, DeviceInfo, Latency, Repetition, Result
from harness.runners import litert_python, tool_output
from harness.runners.base import RunSettings, Staged, Task, ToolConfig
from harness.runners.benchmark_model import BenchmarkModelRunner
from harness.runners.outcome import RunnerOutcome, validate
from harness.store import open_store
from harness.suite import SuiteError, load_suite

pytest_plugins = ["harness.testing.android.fixtures"]
HEAVIER = "DEPTHWISE_CONV_2D"


def heavier_variant(model: bytes, op_type: str, copies: int = 2) -> tuple[bytes, int]:
    """``model`` with every ``op_type`` operator of its main subgraph run ``1 + copies`` times.

    Each copy reads the same inputs and weights and writes a spare tensor of the same shape: the
    interpreter runs every operator of its execution plan, so the op type does ``1 + copies`` times the
    work while the outputs stay identical. Built with LiteRT's own flatbuffer schema (the object API).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    m = fb.ModelT.InitFromPackedBuf(model, 0)
    code = getattr(fb.BuiltinOperator, op_type)
    graph, ops, n = m.subgraphs[0], [], 0
    for op in graph.operators:
        ops.append(op)
        c = m.operatorCodes[op.opcodeIndex]
        if max(c.builtinCode, c.deprecatedBuiltinCode) != code:
            continue
        for k in range(copies):
            twin = copy.copy(op)
            twin.outputs = []
            for t in op.outputs:
                spare = copy.copy(graph.tensors[t])
                spare.name = (spare.name or b"") + b"/edgeharness_twin%d" % k
                graph.tensors.append(spare)
                twin.outputs.append(len(graph.tensors) - 1)
            ops.append(twin)
            n += 1
    graph.operators = ops
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), n


# -- pure: blame from two results' profiles ----------------------------------------------------------------

METHOD = "per-op split: ...; 2 of 10 operators could not run alone and are not timed"


def result(ops: list[dict], method: str = METHOD, model: str = "m") -> Result:
    return Result(run_id="r", case=CaseInfo(case_id="c", model=model, model_sha256="s", delegate="cpu", threads=1,
                                            runner="litert-python"),
                  device=DeviceInfo(id="host", platform="linux"), status="ok",
                  latency=Latency(method="t", repetitions=(Repetition(samples_us=(1.0,)),)),
                  ops=tuple(ops), ops_method=method)


def node(kind: str, name: str, ms: float) -> dict:
    return {"table": "run_order", "node_type": kind, "name": name, "avg_ms": ms}


def test_blame_names_the_type_and_operators_that_grew_with_their_share() -> None:
    base = result([node("CONV_2D", "a", 2.0), node("CONV_2D", "b", 1.0), node("ADD", "c", 0.5)])
    cand = result([node("CONV_2D", "a", 2.1), node("CONV_2D", "b", 2.9), node("ADD", "c", 0.5),
                   node("RELU", "d", 0.1)])
    b = blame([base], [cand])
    assert b is not None and b.problem is None
    assert [(g.node_type, round(g.delta_ms, 3)) for g in b.types] == [("CONV_2D", 2.0), ("RELU", 0.1)]
    assert b.types[0].share == pytest.approx(2.0 / 2.1)
    assert [(g.node, round(g.delta_ms, 3), g.change) for g in b.nodes] == [("b", 1.9, ""), ("a", 0.1, ""),
                                                                          ("d", 0.1, "added")]
    assert "CONV_2D +2.000 ms (95%)" in b.line and "RELU d +0.100 ms (5%) [added]" in b.line
    assert json.loads(json.dumps(b.as_dict()))["types"][0]["delta_ms"] == pytest.approx(2.0)


def test_summary_rows_are_the_op_types_when_a_tool_gave_them() -> None:
    rows = [{"table": "summary", "node_type": "CONV_2D", "avg_ms": 3.0, "nodes": 2}, node("CONV_2D", "a", 1.0)]
    assert op_types(rows) == {"CONV_2D": 3.0}


def test_missing_or_different_profiles_say_why_instead_of_blaming() -> None:
    with_ops = result([node("ADD", "a", 1.0)])
    assert "no op profile in the baseline" in (getattr(blame([result([])], [with_ops]), "problem", None) or "")
    assert "profile_ops = true" in (getattr(blame([with_ops], [result([])]), "problem", None) or "")
    other = result([node("ADD", "a", 2.0)], method="the tool's own op profiler (--enable_op_profiling)")
    assert "different methods" in (getattr(blame([with_ops], [other]), "problem", None) or "")
    assert blame([result([])], [result([])]) is None  # nobody asked for profiles: the gate's lines stay as they were


def test_a_nan_or_unnamed_op_row_from_a_device_fails_the_repetition() -> None:
    ok = RunnerOutcome("ok", None, repetition=Repetition(samples_us=(1.0,)))
    for bad, field in (({"node_type": "ADD", "avg_ms": float("nan")}, "ops[0].avg_ms"),
                       ({"node_type": "", "avg_ms": 1.0}, "ops[0].node_type"),
                       ({"node_type": "ADD", "table": "bogus"}, "ops[0].table"),
                       ({"node_type": "ADD", "avg_ms": 1e9}, "ops[0].avg_ms")):
        out = validate(replace(ok, ops=(bad,)), timeout_s=60)
        assert out.status == "failed" and field in (out.reason or ""), out.reason


def test_profiles_merge_over_repetitions_by_median() -> None:
    reps = [RunnerOutcome("ok", None, ops=(node("ADD", "a", ms),)) for ms in (1.0, 9.0, 2.0)]
    (row,) = assemble.ops_over(reps)
    assert row["avg_ms"] == 2.0 and row["repetitions"] == 3
    twice = [RunnerOutcome("ok", None, ops=(node("ADD", "a", 1.0), node("ADD", "a", 5.0))) for _ in range(2)]
    assert [(r["avg_ms"], r["repetitions"]) for r in assemble.ops_over(twice)] == [(1.0, 2), (5.0, 2)]


def test_the_script_is_asked_for_op_profiles_only_when_the_suite_wants_them() -> None:
    plain = litert_python.command("python3", "s.py", "m.tflite", delegate="cpu", threads=1, warmup_runs=1,
                                  measured_runs=2)
    asked = litert_python.command("python3", "s.py", "m.tflite", delegate="cpu", threads=1, warmup_runs=1,
                                  measured_runs=2, profile_ops=10)
    assert "--profile-ops" not in plain and asked.endswith("--profile-ops 10")


# -- real: the host runtime, a real model and its heavier variant -------------------------------------------

def suite(root: Path, name: str, model: Path, reps: int) -> Path:
    path = root / f"{name}.toml"
    path.write_text(f"""
[suite]
name = "{name}"
delegates = ["cpu"]
repetitions = {reps}
measured_runs = 10
warmup_runs = 2
[gate]
profile_ops = true
[[models]]
path = "{model}"
name = "face_landmark"
""")
    return path


@pytest.fixture(scope="module")
def base_and_variant(tmp_path_factory: pytest.TempPathFactory,
                     zoo_models: dict[str, Path]) -> tuple[list[Result], list[Result], int]:
    """face_landmark, and the same model with each DEPTHWISE_CONV_2D run six times, measured on the host."""
    root = tmp_path_factory.mktemp("blame")
    variant, twins = heavier_variant(zoo_models["face_landmark"].read_bytes(), HEAVIER, copies=5)
    (root / "variant.tflite").write_bytes(variant)
    runs = []
    for name, model in (("base", zoo_models["face_landmark"]), ("variant", root / "variant.tflite")):
        summary = api.run(suite(root, name, model, 8), out_dir=root / "out", report=False)
        runs.append(open_store(root / "out").load_run(summary.run_id))
    return runs[0], runs[1], twins


@pytest.mark.slow
def test_host_runs_carry_per_op_profiles_of_the_real_runtime(base_and_variant: tuple) -> None:
    base, _, _ = base_and_variant
    (r,) = base
    assert r.status == "ok", r.reason
    assert r.ops_method.startswith("per-op split") and "mean of 10 invoke()s" in r.ops_method
    nodes = [o for o in r.ops if o["table"] == "run_order"]
    types = {o["node_type"]: o for o in r.ops if o["table"] == "summary"}
    assert len(nodes) == r.case.settings["model_ops"] == 97  # every operator of face_landmark timed
    assert types[HEAVIER]["nodes"] == 20 and all(o["repetitions"] == 8 for o in r.ops)
    # the same unit and order of magnitude as the whole inference (the one-op models lose cross-op cache effects
    # and add one invoke() each, so the sum is not the latency; a unit slip would be off 1000-fold)
    median_ms = statistics.median(s for rep in r.latency.repetitions for s in rep.samples_us) / 1000.0
    assert 0.25 < sum(t["avg_ms"] for t in types.values()) / median_ms < 4
    assert r.memory is not None and r.memory.peak_rss_mb  # read before the profile's own interpreters


@pytest.mark.slow
def test_a_heavier_op_type_is_blamed_on_that_op_type(base_and_variant: tuple) -> None:
    base, variant, twins = base_and_variant
    assert twins == 100 and variant[0].case.settings["model_ops"] == 97 + twins
    # The gate pairs cases on the model's bytes; the variant stands for a change (runtime, kernel) that made
    # one op type slower, so the test pairs the two cases itself: every figure stays the runs' own.
    paired = [replace(r, case=replace(r.case, model_sha256=base[0].case.model_sha256)) for r in variant]
    outcome = gate(base, paired, GateConfig(max_regression=0.05, max_cv=3.0))
    (v,) = outcome.verdicts
    # Whether contention on this shared machine lets the gate decide is the noise handling's subject, not this
    # test's: a case above the margin but not shown slower (noisy, or not significant) still names what grew,
    # said as a lead ("if the slowdown is real").
    assert v.verdict in ("slower", "noisy", "same") and (v.ratio or 0) > 1.05, verdict_line(v)
    assert v.blame is not None and v.blame.problem is None and v.blame.tentative == (v.verdict != "slower")
    top = v.blame.types[0]
    assert top.node_type == HEAVIER, v.blame.line
    assert top.cand_ms > 3 * top.base_ms and top.share is not None and top.share > 0.5
    # per operator: the 100 added copies are matched as new DEPTHWISE_CONV_2D operators and carry most of the growth
    # (which 3 single operators top the list is left to chance: each copy is small, and a CONV_2D may wobble more)
    assert len(v.blame.nodes) == 3 and all(g.delta_ms > 0 for g in v.blame.nodes)
    b_nodes, c_nodes = op_nodes(base[0].ops), op_nodes(variant[0].ops)
    added = {k: ms for k, ms in c_nodes.items() if k not in b_nodes}
    assert len(added) == twins and all(kind == HEAVIER and "edgeharness_twin" in name for kind, name in added)
    assert sum(added.values()) > 0.5 * top.delta_ms
    assert f"grew most (ms per inference, share of the profiled growth): {HEAVIER} +" in verdict_line(v)
    assert v.verdict != "slower" or outcome.failures == (verdict_line(v),)
    assert ("blame", v.blame.line) in junit_properties(v)
    assert "**Blame by operator**" in github_summary_markdown(outcome.verdicts)
    page = render_html(paired, gate=outcome, baseline=base)
    table = re.search(r'<table id="gate-blame">(.*?)</table>', page, re.S)
    assert table and f"<strong>{HEAVIER}</strong> <small>(op type)</small>" in table.group(1)
    assert "per-op split" in table.group(1) and "..." not in table.group(1)  # the method, whole
    ops = re.search(r'<section id="ops">(.*?)</section>', page, re.S)
    assert ops and "(6 of 6 ops)" in ops.group(1) and "How: per-op split" in ops.group(1)  # op types, and how


# -- native tools: benchmark_model's own op profiler ---------------------------------------------------------

CORPUS = Path(__file__).parent / "data" / "corpus"


def test_a_native_capture_keeps_every_op_type_and_every_node_for_blame() -> None:
    text = (CORPUS / "benchmark_model__linux_imx8mp__cpu_op_profiling_full__tf2.x_nxp__01.txt").read_text()
    out = tool_output.outcome(tool_output.BENCHMARK_MODEL, text, 0)
    assert out.status == "ok" and out.ops_method == tool_output.OPS_METHOD
    types = op_types(out.ops)  # the tool's "Summary by node type" of the timed runs, not of initialization
    assert types == {"CONV_2D": 143.812, "DEPTHWISE_CONV_2D": 18.91, "AVERAGE_POOL_2D": 0.148, "SOFTMAX": 0.022,
                     "RESHAPE": 0.003}
    nodes = op_nodes(out.ops)
    assert len(nodes) == 31 and sum(nodes.values()) == pytest.approx(sum(types.values()), abs=0.05)


def test_benchmark_model_is_asked_for_its_op_profiler_when_the_suite_wants_profiles() -> None:
    runner = BenchmarkModelRunner()
    staged = Staged("/data/local/tmp/m.tflite", {"binary": "/data/local/tmp/benchmark_model"})
    task = Task("cpu", 1, RunSettings(), ToolConfig(), "arm64-v8a")
    assert "--enable_op_profiling" not in runner.invocation(task, staged).command
    assert "--enable_op_profiling=true" in runner.invocation(replace(task, profile_ops=True), staged).command


def test_a_suite_asks_for_profiles_in_its_gate_table_and_a_bad_value_is_one_line(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[suite]\nname = "p"\n[gate]\nprofile_ops = true\n[[models]]\npath = "m.tflite"\n')
    loaded = load_suite(good)
    assert loaded.gate.profile_ops and loaded.models[0].gate.as_table() == {"profile_ops": True}
    bad = tmp_path / "bad.toml"
    bad.write_text('[suite]\nname = "p"\n[gate]\nprofile_ops = "yes"\n[[models]]\npath = "m.tflite"\n')
    with pytest.raises(SuiteError) as err:
        load_suite(bad)
    assert str(err.value).startswith(f"{bad}:4 [gate.profile_ops]: expected true or false"), str(err.value)


@pytest.mark.slow
def test_the_virtual_android_device_returns_per_op_profiles_over_adb(virtual_device, zoo_models: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    """The script pushed to the device and run by its Python over adb profiles too (the device kind does not matter)."""
    path = suite(tmp_path, "vdev", zoo_models["face_landmark"], 2)
    summary = api.run(path, devices=[f"adb:{virtual_device.address}"], out_dir=tmp_path / "out", report=False)
    (r,) = open_store(tmp_path / "out").load_run(summary.run_id)
    assert r.status == "ok" and r.device.platform == "android", r.reason
    assert r.ops_method.startswith("per-op split")
    types = {o["node_type"]: o for o in r.ops if o["table"] == "summary"}
    assert types[HEAVIER]["nodes"] == 20 and sum(o["nodes"] for o in types.values()) == 97


def test_a_profile_that_cannot_be_made_says_why_and_never_fails_the_run(tmp_path: Path,
                                                                        zoo_models: dict[str, Path]) -> None:
    from harness.runners import pyrunner

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\0" * 64)
    assert pyrunner.profile_ops(str(junk), "cpu", 1, 0, 1)["ops_problem"].startswith("could not split the model")
    npu = pyrunner.profile_ops(str(zoo_models["face_landmark"]), "npu", 1, 0, 1)
    assert npu == {"ops_problem": "per-op profiling on the host covers the CPU delegates (cpu, xnnpack), not npu"}
    out = litert_python.from_payload({"status": "ok", "samples_us": [1.0], "ops_problem": npu["ops_problem"]})
    assert out.status == "ok" and out.ops == () and out.ops_method.startswith("no op profile: per-op profiling")
