"""Command lines for the benchmark tools: flags per delegate, option validation, shell quoting that a
hostile model name cannot escape, and delegates missing from the device profile becoming skips."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from harness.errors import DelegateUnavailable, UsageError
from harness.runners.flags import (
    BENCHMARK_MODEL_FLAGS,
    app_params,
    build_benchmark_model_argv,
    build_litert_argv,
    to_shell,
)

HOSTILE = "a b'; $(touch x)\n.tflite"
BIN = "/data/local/tmp/benchmark_model"


def argv(delegate="cpu", **kw):
    args = dict(delegate=delegate, threads=4, warmup_runs=1, num_runs=50)
    args.update(kw)
    return build_benchmark_model_argv(BIN, "/data/local/tmp/m.tflite", **args)


@pytest.mark.parametrize(
    "delegate,flags",
    [
        ("cpu", ["--use_xnnpack=false"]),
        ("xnnpack", ["--use_xnnpack=true"]),
        ("gpu", ["--use_gpu=true"]),
        ("nnapi", ["--use_nnapi=true"]),
        ("hexagon", ["--use_hexagon=true"]),
        ("coreml", ["--use_coreml=true"]),
    ],
)
def test_delegate_flags(delegate, flags):
    assert argv(delegate) == [
        BIN,
        "--graph=/data/local/tmp/m.tflite",
        "--num_threads=4",
        "--warmup_runs=1",
        "--num_runs=50",
        *flags,
    ]


def test_options_render_per_kind():
    out = argv(
        "nnapi",
        options={
            "min_secs": 2,
            "max_secs": 30.5,
            "run_delay": 0.1,
            "nnapi_accelerator_name": "qti-dsp",
            "nnapi_allow_fp16": True,
            "enable_op_profiling": "1",
            "report_peak_memory_footprint": True,
            "memory_footprint_check_interval_ms": 20,
        },
    )
    assert out[6:] == [
        "--min_secs=2",
        "--max_secs=30.5",
        "--run_delay=0.1",
        "--nnapi_accelerator_name=qti-dsp",
        "--nnapi_allow_fp16=true",
        "--enable_op_profiling=true",
        "--report_peak_memory_footprint=true",
        "--memory_footprint_check_interval_ms=20",
    ]
    gpu = argv("gpu", options={"gpu_precision_loss_allowed": False, "gpu_backend": "cl"})
    assert gpu[-2:] == ["--gpu_precision_loss_allowed=false", "--gpu_backend=cl"]


def test_external_delegate_needs_its_path():
    out = argv("external", options={"external_delegate_path": "/usr/lib/libvx_delegate.so"})
    assert out[-1] == "--external_delegate_path=/usr/lib/libvx_delegate.so"
    with pytest.raises(UsageError, match="external_delegate_path"):
        argv("external")


def test_unknown_option_lists_allowed_ones():
    with pytest.raises(UsageError) as err:
        argv(options={"min_sec": 1})
    text = str(err.value)
    assert "min_sec" in text and all(name in text for name in BENCHMARK_MODEL_FLAGS)


@pytest.mark.parametrize(
    "options,match",
    [
        ({"gpu_backend": "vulkan"}, "cl, gl"),
        ({"min_secs": "fast"}, "float"),
        ({"memory_footprint_check_interval_ms": 1.5}, "int"),
        ({"enable_op_profiling": "maybe"}, "bool"),
        ({"nnapi_accelerator_name": "qti-dsp"}, "only applies to delegate nnapi"),
    ],
)
def test_bad_option_values(options, match):
    delegate = "gpu" if "gpu_backend" in options else "cpu"
    with pytest.raises(UsageError, match=match):
        argv(delegate, options=options)


@pytest.mark.parametrize("kw", [dict(threads=0), dict(warmup_runs=-1), dict(num_runs=0), dict(threads=True)])
def test_bad_counts(kw):
    with pytest.raises(UsageError):
        argv(**kw)


def test_unknown_delegate_is_a_usage_error():
    with pytest.raises(UsageError, match="use one of"):
        argv("tpu")


def test_delegate_missing_from_profile_is_unavailable():
    with pytest.raises(DelegateUnavailable, match="hexagon") as err:
        argv("hexagon", capabilities=["cpu", "xnnpack", "gpu", "nnapi"])
    assert "cpu, gpu, nnapi, xnnpack" in str(err.value)
    assert argv("GPU", capabilities=["cpu", "gpu"])[-1] == "--use_gpu=true"
    assert argv("cpu", capabilities=[])[-1] == "--use_xnnpack=false"  # plain CPU always runs


def test_hostile_model_name_stays_one_argument(tmp_path: Path):
    out = build_benchmark_model_argv(
        "/bin/echo", HOSTILE, delegate="gpu", threads=1, warmup_runs=0, num_runs=1, options={"gpu_backend": "gl"}
    )
    line = to_shell(out)
    assert shlex.split(line) == out
    # run it through a real shell: nothing is executed, the name comes back as one argument
    result = subprocess.run(["sh", "-c", line], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout == " ".join(out[1:]) + "\n"
    assert not (tmp_path / "x").exists()


def test_to_shell_quotes_every_argument():
    assert to_shell(["a b", "c'd", "$(x)", "plain"]) == "'a b' 'c'\"'\"'d' '$(x)' plain"


def test_litert_cpp_and_python_argv():
    cpp = build_litert_argv(
        "./benchmark_model",
        "m.tflite",
        delegate="npu",
        threads=2,
        warmup_runs=3,
        num_runs=10,
        options={"dispatch_library_path": "/vendor/lib", "require_full_delegation": True},
    )
    assert cpp == [
        "./benchmark_model",
        "--graph=m.tflite",
        "--num_threads=2",
        "--warmup_runs=3",
        "--num_runs=10",
        "--use_npu=true",
        "--dispatch_library_path=/vendor/lib",
        "--require_full_delegation=true",
    ]
    py = build_litert_argv(
        ".venv/bin/litert-benchmark",
        "m.tflite",
        delegate="gpu",
        threads=2,
        warmup_runs=3,
        num_runs=10,
        options={"require_full_delegation": True, "result_json": "out.json"},
    )
    assert py == [
        ".venv/bin/litert-benchmark",
        "--model",
        "m.tflite",
        "--num_threads",
        "2",
        "--warmup_runs",
        "3",
        "--num_runs",
        "10",
        "--use_gpu",
        "--require_full_delegation",
        "--result_json",
        "out.json",
    ]
    with pytest.raises(UsageError, match="allowed"):
        build_litert_argv(
            "litert-benchmark", "m", delegate="cpu", threads=1, warmup_runs=1, num_runs=1, options={"gpu_backend": "cl"}
        )
    with pytest.raises(DelegateUnavailable):
        build_litert_argv("bm", "m", delegate="npu", threads=1, warmup_runs=1, num_runs=1, capabilities=["cpu", "gpu"])


def test_python_argv_runs_the_real_tool_help():
    """The Python tool accepts the flags we build (argparse would exit 2 on an unknown one)."""
    tool = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "litert-benchmark"
    if not tool.exists():
        pytest.skip("litert-benchmark not installed in .venv")
    out = build_litert_argv(
        str(tool),
        "/nonexistent.tflite",
        delegate="cpu",
        threads=1,
        warmup_runs=1,
        num_runs=1,
        options={"signature_to_run_for": "serving_default"},
    )
    result = subprocess.run(out, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Model file not found" in result.stderr




def test_app_params_are_the_contract_the_app_reads():
    """One source for the benchmark app's params: booleans per delegate, counts as given, no path."""
    assert app_params("xnnpack", 4, 1, 50) == {
        "num_threads": 4, "warmup_runs": 1, "num_runs": 50, "use_xnnpack": True, "use_gpu": False, "use_coreml": False,
    }
    assert app_params("CoreML", 1, 0, 1)["use_coreml"] is True
    assert not any(v for k, v in app_params("cpu", 1, 0, 1).items() if k.startswith("use_"))
    with pytest.raises(DelegateUnavailable, match="iOS"):
        app_params("nnapi", 1, 1, 1)
    with pytest.raises(UsageError, match="threads"):
        app_params("cpu", 0, 1, 1)
