"""Every real capture in tests/data/corpus (copied from the shared corpus) parses to the status and
numbers read from the sample by eye. A corpus file missing from the table fails the suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.runners.parsers.parse import NO_OUTPUT, parse_file, render_table

CORPUS = Path(__file__).parent / "data" / "corpus"
LITERT_PY = Path(__file__).parent / "data" / "litert_py"

# Per sample: the runs in order. Keys: s=status, tool, init/first/warm/inf (us), n=count of the timed
# runs, std, p50, err=substring of the error, mem=(init_mb, overall_mb, peak_mb), d={name: (applied,
# nodes_delegated, nodes_total, partitions)} or {name: applied}, acc={name: accelerator}, top=costliest op type.
E = dict
NONE = [E(s="incomplete", tool="unknown", err=NO_OUTPUT)]
EXPECTED: dict[str, list[dict]] = {
    # ---------------- classic benchmark_model ----------------
    "benchmark_model__android_arm64_unknown__cpu__old_format_tf1.x__01.txt": [
        E(s="ok", init=9933, first=127425, warm=76605.9, inf=66767.6, n=15, std=39),
        # second run cut inside the timed stats line (max=3760 < min): stats rejected, warm-up kept
        E(s="incomplete", init=4183, first=39195, warm=37625.7, inf=None, n=None),
    ],
    "benchmark_model__android_armv7_unknown__gpu_opencl__tf2.3__01.txt": [
        E(s="ok", init=870557, first=130565, warm=122373, inf=119375, n=50, std=1948,
          d={"gpu": ("full", None, None, 1)}, acc={"gpu": "opencl"}),
    ],
    "benchmark_model__android_sd820__cpu_op_summary__tf2.2_dev__01.txt": [
        E(s="incomplete", inf=None, top="CONV_2D", top_us=194236),
    ],
    "benchmark_model__android_termux__xnnpack_partial__FAIL_allocate_tensors__litert_era__01.txt": [
        E(s="failed", err="batch_matmul.cc:353", inf=None, d={"xnnpack": ("partial", 2136, 2168, 65)}),
    ],
    "benchmark_model__android_unknown__cpu_6threads_csv__tf2.2__01.txt": [
        # stops after the timed stats line, before "Inference timings"
        E(s="incomplete", init=3487, first=1289876, warm=1289876, inf=1010130, n=50, std=10693),
    ],
    "benchmark_model__android_unknown__cpu__flex_tf2.11__01.txt": [
        E(s="ok", init=58937, first=28950882, warm=28950900, inf=30249600, n=None, mem=(27.5234, 357.723, None)),
    ],
    "benchmark_model__android_unknown__cpu_op_profiling__tf2.3__01.txt": [
        E(s="ok", init=855, first=49060, warm=34825.1, inf=33209.4, n=50, std=450, mem=(0, 12.8672, None)),
    ],
    "benchmark_model__android_unknown__gpu__flex_tf2.11__01.txt": [
        E(s="ok", init=56479, first=29016342, warm=29016300, inf=30415300),
    ],
    "benchmark_model__android_unknown__gpu_op_profiling__tf2.3__01.txt": [
        E(s="ok", init=1451507, first=11147, warm=8779.68, inf=8680.33, n=110, std=591,
          mem=(63.4883, 63.4883, None), d={"gpu": "full"}, top="TfLiteGpuDelegateV2", top_us=8671),
    ],
    "benchmark_model__android_unknown__memory_footprint_cpu_vs_opencl__tf2.13__01.txt": [
        E(s="incomplete", inf=None, mem=(224.859, 260.609, None)),
        E(s="incomplete", inf=None, mem=(25.0977, 757.574, None)),
    ],
    "benchmark_model__android_unknown__xnnpack_default_cpu__tf2.1x__01.txt": [
        E(s="ok", init=102320, first=670083, warm=670083, inf=699438, n=50, std=325425, p50=576856,
          mem=(98.0977, 99.2031, None), d={"xnnpack": ("full", 49, 49, 1)}),
    ],
    "benchmark_model__linux_coral_devboard_imx8m__gpu_opencl_build__FAIL__tf2.15__01.txt": [
        E(s="failed", err="Failed to build program executable", d={"gpu": "failed"}),
    ],
    "benchmark_model__linux_imx8mp__cpu_op_profiling_full__tf2.x_nxp__01.txt": [
        E(s="ok", init=2409, first=169816, warm=164822, inf=162980, n=50, std=146, mem=(4.10156, 10.332, None),
          d={}, top="CONV_2D", top_us=143812),
    ],
    "benchmark_model__linux_imx8mp__external_vx_delegate_gpu__tf2.x_nxp__01.txt": [
        E(s="ok", init=12017, first=1583707, warm=1583710, inf=163347, n=50, std=200, mem=(7.16016, 35.4844, None),
          d={"external": "full"}, top="Vx Delegate"),
    ],
    "benchmark_model__linux_imx8mp__external_vx_delegate_npu_ssd__tf2.x_nxp__01.txt": [
        E(s="ok", init=18085, first=8416260, warm=8416260, inf=154534, n=50, std=254746, mem=(8.875, 51.2227, None),
          d={"external": ("partial", None, None, 1)}, top="Vx Delegate", top_us=152983),
    ],
    "benchmark_model__linux_imx8mp_snap__cpu__tf2.x_nxp__01.txt": [
        # "init=0 overall=0": the snap could not read /proc, so no memory figures
        E(s="ok", init=2517, first=217409, warm=213058, inf=210028, n=50, std=221, mem=None),
    ],
    "benchmark_model__linux_imx8mp_snap__nnapi_vsi-npu__tf2.x_nxp__01.txt": [
        E(s="ok", init=13386, first=11403859, warm=11403900, inf=3756.87, n=260, std=35, mem=(0, 15.3438, None),
          d={"nnapi": "full"}),
    ],
    "benchmark_model__linux_qcom_qrb2210_rb1__gpu_opencl__tf2.1x__01.txt": [
        E(s="ok", init=1361236, first=125113, warm=115344, inf=115246, n=50, std=1329, p50=115350,
          mem=(132.816, 132.816, None), d={"gpu": "full"}, acc={"gpu": "opencl"}),
    ],
    "benchmark_model__linux_qemu_riscv64__cpu_op_profiling_full__tf2.8__01.txt": [
        E(s="ok", init=17187, first=3512391, warm=3512390, inf=2950340, n=50, std=109798,
          mem=(4.21094, 46.0859, None), top="CONV_2D", top_us=2651853),
    ],
    "benchmark_model__linux_ti_am57xx_evm__cpu__old_format_tf1.12__01.txt": [
        E(s="ok", init=4452, first=146161, warm=146161, inf=137722, n=50, std=896),
    ],
    "benchmark_model__linux_ti_am62x_evm__xnnpack_partial__tf2.18__01.txt": [
        E(s="ok", init=614333, first=905463, warm=905463, inf=899641, n=50, std=1549, p50=899281,
          mem=(146.363, 150.141, None), d={"xnnpack": ("partial", None, None, 1)}),
    ],
    "benchmark_model__linux_unknown__flex_delegate_prepare_loop__FAIL__tf2.15__01.txt": [
        E(s="failed", err="Node number 1139 (TfLiteFlexDelegate) failed to prepare", d={"flex": "failed"}),
    ],
    "benchmark_model__macos_m1__cpu_1thread__tf2.5_dev__01.txt": [
        E(s="ok", init=464, first=37888, warm=19709.4, inf=18847.4, n=54, std=41, mem=None),
        E(s="incomplete", inf=None),
    ],
    "benchmark_model__pixel2__cpu__old_format_tf1.12__01.txt": [
        E(s="ok", init=38631, first=581397, warm=581397, inf=479385, n=50, std=3728),
        E(s="incomplete", inf=None),  # the second command line is all that was captured
    ],
    "benchmark_model__pixel2__gpu_op_profiling__tf1.14__02.txt": [
        E(s="ok", init=21528106, warm=27917.4, inf=23313.5, top="DELEGATE", top_us=21287),
    ],
    "benchmark_model__redmi_note7pro__hexagon__tf2.2_dev__01.txt": [
        E(s="incomplete", inf=None, d={"hexagon": None}),
    ],
    "benchmark_model__windows_pc__gpu_opencl__tf2.7__01.txt": [
        E(s="incomplete", init=10115400, first=31530, warm=28473, inf=None, d={"gpu": "full"}, acc={"gpu": "opencl"}),
    ],
    "benchmark_model__xiaomi_mi11__cpu_fp32__tf2.4__01.txt": [
        E(s="ok", init=16242, first=360262, warm=304586, inf=249684, n=50, std=1442, mem=(4.92969, 138.809, None)),
    ],
    "benchmark_model__xiaomi_mi11__cpu_int8__tf2.4__01.txt": [
        E(s="ok", init=1779, first=152949, warm=110690, inf=95788.3, n=50, std=1284, mem=(5.15625, 36.9883, None)),
    ],
    "benchmark_model__xiaomi_mi11__nnapi_qti-default__FAIL__tf2.4__01.txt": [
        E(s="failed", err="ANEURALNETWORKS_OP_FAILED at line 3779", d={"nnapi": "failed"},
          acc={"nnapi": "qti-default"}),
    ],
    "benchmark_model__xiaomi_mi11__nnapi_qti-dsp__FAIL__tf2.4__01.txt": [
        E(s="failed", err="ANEURALNETWORKS_BAD_DATA at line 1068", d={"nnapi": "failed"}, acc={"nnapi": "qti-dsp"}),
    ],
    "benchmark_model__xiaomi_mi11__nnapi_qti-gpu_fp32__tf2.4__01.txt": [
        E(s="ok", init=404292, first=188086, warm=175313, inf=156669, n=50, std=2352, mem=(6.80469, 61.0078, None)),
    ],
    # ---------------- Android APK through logcat / Android Studio ----------------
    "benchmark_model_apk_logcat__pixel3a__cpu_xnnpack_default__tf2.12__01.txt": [
        E(s="incomplete", tool="benchmark_model_apk", init=9340, first=1381510, inf=None, d={"xnnpack": None}),
    ],
    "benchmark_model_apk_logcat__pixel3a__cpu_xnnpack_whole_graph_wording__tf2.11__01.txt": [
        E(s="incomplete", tool="benchmark_model_apk", init=617085, first=1574266,
          d={"xnnpack": ("partial", 2975, None, 98)}),
    ],
    "benchmark_model_apk_logcat__unknown_android__gpu__tf2.9__01.txt": [
        E(s="incomplete", tool="benchmark_model_apk", d={"gpu": None}),
    ],
    "benchmark_model_apk_logcat__unknown_ipu_device__gpu_partial__tf2.9__01.txt": [
        # E-level "not supported by GPU delegate" lines are warnings, not a failure
        E(s="incomplete", tool="benchmark_model_apk", err=None, d={"gpu": ("partial", 294, None, None)}),
    ],
    "benchmark_model_apk_logcat__unknown_ipu_device__nnapi_not_applied__tf2.9__01.txt": [
        E(s="incomplete", tool="benchmark_model_apk", d={"nnapi": "none"}),
    ],
    "benchmark_model_apk_logcat__unknown_ipu_device__nnapi_not_applied__tf2.9__02.txt": [
        E(s="incomplete", tool="benchmark_model_apk", d={"nnapi": "none"}),
    ],
    "benchmark_model_apk_logcat_androidstudio__unknown_qcom__nnapi__2023__01.txt": [
        E(s="incomplete", tool="benchmark_model_apk", d={"nnapi": None}),
    ],
    # ---------------- LiteRT ----------------
    "benchmark_litert_model__linux_or_android_unknown__gpu__litert2.1.5__01.txt": [
        E(s="ok", tool="litert_benchmark_model", init=23744730, first=7441040, warm=7441040, inf=7430200, n=10,
          std=9920, mem=(6391.74, 6391.74, None)),
    ],
    "benchmark_litert_model__linux_x86_64__cpu__litert2.0_2025-09__01.txt": [
        # exact us from the classic lines win over the block's rounded ms
        E(s="ok", tool="litert_benchmark_model", init=5757, first=2125, warm=949.861, inf=947.132, n=1054, std=23,
          p50=942, mem=(4.06, 7.07, None)),
    ],
    "benchmark_litert_model__windows_intel_lunarlake__npu_openvino__litert2025__01.txt": [
        E(s="ok", tool="litert_benchmark_model", init=586760, first=4440, warm=520, inf=460, n=2166, std=30,
          d={"npu": None}),
    ],
    # ---------------- iOS app ----------------
    "ios_benchmark_app__iphone12_ios15.6.1__metal__tf2.10__01.txt": [
        E(s="incomplete", tool="ios_benchmark_app", d={"gpu": None}, acc={"gpu": "metal"}),
    ],
    "ios_benchmark_app__iphone_unknown__metal_partial__tf2.3__01.txt": [
        E(s="incomplete", tool="ios_benchmark_app", d={"gpu": ("partial", 29, 31, None)}, acc={"gpu": "metal"},
          params={"Benchmark name": "mobile_net_benchmark"}),
    ],
    # ---------------- other TFLite tools and app logs ----------------
    "inference_diff_tool__android_qcom__hexagon_partial__tf2.10__01.txt": [
        E(s="incomplete", tool="inference_diff",
          d={"hexagon": ("partial", 136, 139, 2), "xnnpack": ("partial", 12, None, 7)}),
    ],
    "label_image__macos_m1__coreml_delegate__tf2.5_dev__01.txt": [
        E(s="ok", tool="label_image", inf=968.58, d={"coreml": ("partial", 75, 77, 2)}),
    ],
    "app_exception__pixel6pro__gpu_failed_to_apply_delegate_opencl_missing__tf2.9__01.txt": [
        E(s="failed", tool="tflite_app", err="Can not open OpenCL library", d={"gpu": "failed"}),
    ],
    "app_exception__unknown_android__gpudelegate_v1_failed_to_apply__tf1.13__01.txt": [
        E(s="failed", tool="tflite_app", err="IllegalArgumentException: Internal error: Failed to apply delegate",
          d={"gpu": ("failed", 29, 33, None)}),
    ],
    "app_logcat__samsung_unknown__gpu_delegate_invoke_SIGABRT__2023__01.txt": [
        E(s="failed", tool="tflite_app", err="GpuDelegate must run on the same thread", d={"gpu": "failed"}),
    ],
}
TELEMETRY = [
    "android_acc_info_battery_uevent__oneplus7__lineageos20__01.txt",
    "android_dumpsys_battery__samsung_unknown__2018__01.txt",
    "android_dumpsys_battery__samsung_unknown__oneui__01.txt",
    "android_dumpsys_batterystats__htc_made_pixel_likely__android8.0__01.txt",
    "android_dumpsys_batterystats_estimated_power__unknown_android7__01.txt",
    "android_dumpsys_batterystats_history__htc_made_pixel_likely__android8.0__01.txt",
    "android_dumpsys_meminfo__unknown_android1x__app_full_with_app_summary__01.txt",
    "android_dumpsys_meminfo__unknown_android6__chrome__01.txt",
    "android_dumpsys_meminfo__unknown_android8-9__gfx_mtrack__01.txt",
    "android_dumpsys_thermalservice__nvidia_shield_tv_pro_2019__01.txt",
    "android_getprop__nexus5_hammerhead__android5.1__01.txt",
    "android_power_supply_battery_uevent__pixel3a__android9__01.txt",
    "android_proc_cpuinfo__alcatel_idol4__sd617_kernel3.10__01.txt",
    "android_proc_cpuinfo__redmi_note8pro__mediatek_helio_g90t__01.txt",
    "android_proc_cpuinfo__samsung_galaxy_j6plus__sd425_lineageos12__01.txt",
    "android_thermal_zone_types__sony_xperia_x_compact_kugo__01.txt",
    "ios_gidevice_perf_jsonl__iphone_unknown__sysmon_and_process__01.txt",
    "ios_idevicediagnostics_gasgauge__iphone_unknown__fullchargecapacity100__01.txt",
    "ios_idevicediagnostics_ioregentry_applesmartbattery__iphone_unknown__plist__01.txt",
    "ios_ideviceinfo_excerpt__iphone_xr_iphone11,8__ios13.3.1__01.txt",
    "ios_pyidevice_battery__iphone_unknown__01.txt",
    "ios_pymobiledevice3_lockdown_get_carrierbundleinfo__iphone_esim__windows__01.txt",
    "ios_pymobiledevice3_sysmon_process__iphone7_ios13.3.1__cpuUsage_None__01.txt",
    "ios_pymobiledevice3_sysmon_process_human__iphone_unknown__2026__01.txt",
    "ios_pymobiledevice3_sysmon_system__iphone_unknown__2025__01.txt",
    "ios_tidevice_perf__iphone11pro_ios16.1__no_cpu_mem_FAIL__01.txt",
    "ios_tidevice_perf__iphone_unknown__cpu_memory__01.txt",
    "ios_tidevice_perf__iphone_unknown__network_cpu_memory__01.txt",
    "linux_power_supply_battery_grep__nintendo_switch_l4t__01.txt",
    "linux_thermal_zone_types__jetson_nano_2gb__01.txt",
]
for _name in TELEMETRY:  # device telemetry holds no benchmark output: one incomplete run saying so
    EXPECTED[_name] = NONE

FIELDS = {"init": "init_us", "first": "first_inference_us", "warm": "warmup_avg_us", "inf": "inference_avg_us"}


def _close(actual: float | None, expected: float | None) -> bool:
    if expected is None or actual is None:
        return actual is expected
    return abs(actual - expected) <= 1e-6 * max(1.0, abs(expected))


def test_every_corpus_file_is_in_the_table():
    files = {p.name for p in CORPUS.glob("*.txt")}
    assert files, "corpus copy missing"
    assert sorted(files - set(EXPECTED)) == [], "corpus files without expectations"
    assert sorted(set(EXPECTED) - files) == [], "expectations for files not in the corpus"


def test_corpus_copy_keeps_headers_and_index():
    assert (CORPUS / "INDEX.md").is_file()
    for path in CORPUS.glob("*.txt"):
        head = path.read_text(encoding="utf-8").splitlines()[:6]
        assert head[0].startswith("# source:"), path.name
        assert "# ---" in head, path.name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_sample(name):
    runs = parse_file(CORPUS / name)
    expected = EXPECTED[name]
    assert [r.status for r in runs] == [e["s"] for e in expected], [r.status for r in runs]
    for run, exp in zip(runs, expected):
        assert run.tool == exp.get("tool", "benchmark_model")
        for key, attr in FIELDS.items():
            if key in exp:
                assert _close(getattr(run, attr), exp[key]), (key, getattr(run, attr), exp[key])
        if "n" in exp:
            assert (run.inference.count if run.inference else None) == exp["n"]
        for key, attr in (("std", "std_us"), ("p50", "median_us")):
            if key in exp:
                assert run.inference is not None and _close(getattr(run.inference, attr), exp[key])
        if "err" in exp:
            if exp["err"] is None:
                assert run.error is None
            else:
                assert run.error is not None and exp["err"] in run.error, run.error
        if run.status == "ok":
            assert run.error is None
        if "mem" in exp:
            if exp["mem"] is None:
                assert run.memory is None
            else:
                m = run.memory
                assert m is not None
                assert all(_close(a, b) for a, b in zip((m.init_mb, m.overall_mb, m.peak_mb), exp["mem"]))
        if "d" in exp:
            got = {d.name: d for d in run.delegates}
            assert set(got) == set(exp["d"]), got
            for name_, want in exp["d"].items():
                d = got[name_]
                if isinstance(want, tuple):
                    assert (d.applied, d.nodes_delegated, d.nodes_total, d.partitions) == want, d
                else:
                    assert d.applied == want, d
        for name_, acc in exp.get("acc", {}).items():
            assert {d.name: d.accelerator for d in run.delegates}[name_] == acc
        if "top" in exp:
            top = run.top_ops(1)
            assert top and top[0].node_type == exp["top"]
            if "top_us" in exp:
                assert _close(top[0].avg_us, exp["top_us"])
        for key, value in exp.get("params", {}).items():
            assert run.params.get(key) == value


def test_litert_python_text_and_json_agree():
    """Real captures of `litert-benchmark` on face_landmark.tflite: text and --result_json of the same run."""
    (text_run,) = parse_file(LITERT_PY / "face_landmark_cpu.txt")
    (json_run,) = parse_file(LITERT_PY / "face_landmark_cpu.json")
    data = json.loads((LITERT_PY / "face_landmark_cpu.json").read_text())
    assert text_run.tool == json_run.tool == "litert-benchmark"
    assert text_run.status == json_run.status == "ok"
    lat = data["latency"]
    for run in (text_run, json_run):
        assert _close(run.init_us, lat["init_ms"] * 1000)
        assert _close(run.inference_avg_us, lat["avg_ms"] * 1000)
        assert run.inference is not None and run.inference.count == lat["num_runs"]
        assert _close(run.inference.p95_us, lat["p95_ms"] * 1000)
        assert _close(run.inference.median_us, lat["median_ms"] * 1000)
    assert text_run.params["Accelerators"] == "CPU"


def test_litert_python_failures():
    (missing,) = parse_file(LITERT_PY / "missing_model.txt")
    assert missing.status == "failed" and "Model file not found" in (missing.error or "")
    (gpu,) = parse_file(LITERT_PY / "gpu_full_required.txt")
    assert gpu.status == "failed"
    assert "WebGPU" in (gpu.error or "")
    assert {d.name: d.applied for d in gpu.delegates} == {"gpu": "failed"}


def test_render_table_shows_runs_delegates_and_top_ops():
    names = [
        "benchmark_model__linux_imx8mp__external_vx_delegate_npu_ssd__tf2.x_nxp__01.txt",
        "benchmark_model__android_termux__xnnpack_partial__FAIL_allocate_tensors__litert_era__01.txt",
        "android_getprop__nexus5_hammerhead__android5.1__01.txt",
    ]
    table = render_table({n: parse_file(CORPUS / n) for n in names})
    assert "154.5" in table  # inference avg 154534 us shown in ms
    assert "delegate: external partial, 1 partition" in table
    assert "delegate: xnnpack (cpu) partial, 2136/2168 nodes, 65 partitions" in table
    assert "top ops: Vx Delegate" in table
    assert "error: tensorflow/lite/kernels/batch_matmul.cc:353" in table
    assert NO_OUTPUT in table


def test_to_dict_is_json_ready():
    (run,) = parse_file(CORPUS / "benchmark_model__linux_imx8mp__cpu_op_profiling_full__tf2.x_nxp__01.txt")
    data = json.loads(json.dumps(run.to_dict()))
    assert data["status"] == "ok" and data["inference"]["count"] == 50
    assert data["ops"][0]["section"] == "init"
    assert {"tool", "error", "init_us", "first_inference_us", "warmup_avg_us", "inference_avg_us", "memory",
            "delegates", "params"} <= set(data)


def test_corpus_status_counts_are_reported(capsys):
    counts: dict[str, int] = {}
    for name in sorted(EXPECTED):
        for run in parse_file(CORPUS / name):
            counts[run.status] = counts.get(run.status, 0) + 1
    with capsys.disabled():
        print(f"\ncorpus runs by status: {dict(sorted(counts.items()))}")
    assert set(counts) == {"ok", "failed", "incomplete"}


def test_cli_parse_json_and_table(capsys):
    from harness.cli import main

    sample = str(CORPUS / "benchmark_model__linux_qcom_qrb2210_rb1__gpu_opencl__tf2.1x__01.txt")
    assert main(["parse", sample, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (run,) = data[sample]
    assert (run["status"], run["inference_avg_us"], run["inference"]["p95_us"]) == ("ok", 115246.0, 116620.0)
    assert run["delegates"] == [
        {"name": "gpu", "accelerator": "opencl", "applied": "full", "nodes_delegated": None, "nodes_total": None,
         "partitions": 1}
    ]
    assert main(["parse", sample]) == 0
    out = capsys.readouterr().out
    assert "115.2" in out and "delegate: gpu (opencl) full, 1 partition" in out
    assert main(["parse", str(CORPUS / "no-such-file.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err
