"""The report at fleet size: the folder form (index.html + a page per device and model), from real records.

A real host run of BlazeFace (built-in kernels and XNNPACK, 3 repetitions) gives the records;
they are replicated across up to 100 devices and several model names (new ids, latencies
scaled per device, some cases failed), written as JSONL, and rendered the way `harness report`
does. Every figure checked is computed from those records here, never typed in.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from markupsafe import escape

from harness import api
from harness.report import folder, frames, scan
from harness.store import load_results
from tests.browser import CHROMIUM, chromium
from tests.helpers import throttled_soak_record

SUITE = """
[suite]
name = "fleet"
delegates = ["cpu", "xnnpack"]
repetitions = 3
measured_runs = 10
warmup_runs = 2
[[models]]
path = "{model}"
name = "blazeface"
"""
PAYLOAD = '<script>alert(1)</script> & "q"'


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, zoo_models: dict[str, Path]) -> Path:
    """The JSONL of a real host run: BlazeFace on cpu and xnnpack, 3 repetitions x 10 iterations."""
    root = tmp_path_factory.mktemp("fleet_real")
    suite = root / "fleet.toml"
    suite.write_text(SUITE.format(model=zoo_models["face_detection_front"]), encoding="utf-8")
    summary = api.run(suite, out_dir=root / "store", report=False)
    assert [r.status for r in summary.results] == ["ok", "ok"]
    return Path(summary.results_path)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fleet_file(real: Path, out: Path, devices: int, models: int, *, hostile: bool = False,
               soak: dict | None = None) -> Path:
    """``devices x models x 2`` records from the real ones: new device ids and model names, latencies scaled
    by device (so devices differ), every 7th case failed; with ``hostile``, names and reasons hold markup;
    with ``soak``, the first case is a soak run with those windows."""
    base = records(real)
    n = 0
    with out.open("w", encoding="utf-8") as fh:
        for d in range(devices):
            for m in range(models):
                for r in base:
                    r = json.loads(json.dumps(r))
                    r["device"]["id"] = f"../dev-{d:03d}" if hostile else f"dev-{d:03d}"
                    r["device"]["model"] = f"{PAYLOAD} {d}" if hostile else f"Phone {d % 7}"
                    r["case"]["model"] = f"{PAYLOAD} m{m}" if hostile else f"model_{m:02d}"
                    r["case"]["model_sha256"] = hashlib.sha256(r["case"]["model"].encode()).hexdigest()  # another model
                    factor = 1.0 + 0.1 * d + (0.5 * m if r["case"]["delegate"] == "xnnpack" else 0.0)
                    for rep in r["latency"]["repetitions"]:
                        rep["samples_us"] = [v * factor for v in rep["samples_us"]]
                    n += 1
                    if n % 7 == 0:
                        r.update(status="failed", latency=None, reason=f"tool error: {PAYLOAD}")
                    if n == 1 and soak is not None:
                        r["soak"] = soak
                    fh.write(json.dumps(r) + "\n")
    return out


def page(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# ---------------------------------------------------------------- numbers


def test_streamed_summaries_equal_the_single_file_reports(real, tmp_path):
    # The folder form's one-pass summaries are the same numbers the single-file report computes with pandas.
    src = fleet_file(real, tmp_path / "f.jsonl", 3, 2)
    cases = [c for c, _ in scan.iter_cases(scan.split([src], 1))]
    df = frames.cases_frame(load_results(src))
    assert len(cases) == len(df) == 12
    for c, row in zip(cases, df.to_dict("records")):
        assert (c.device_id, c.model, c.delegate, c.threads, c.status) == (
            row["device_id"], row["model"], row["delegate"], row["threads"], row["status"])
        assert c.device == row["device"] and c.n == row["n"] and len(c.reps) == row["repetitions"]
        for key in ("median_us", "p90_us", "p99_us", "mean_us", "std_us"):
            if c.ok:
                assert getattr(c, key) == pytest.approx(row[key], rel=1e-12), key
            else:
                assert row[key] != row[key]  # NaN in both: not measured
    sp = frames.speedup_frame(load_results(src), n_boot=10)
    from harness.report import fleet

    speed = fleet.speedups(cases)
    for row in sp.dropna(subset=["speedup"]).to_dict("records"):
        c = next(c for c in cases if (c.device_id, c.model, c.delegate, c.threads) ==
                 (row["device_id"], row["model"], row["delegate"], row["threads"]))
        assert speed[c.index].value == pytest.approx(row["speedup"], rel=1e-12)


def test_quantile_is_numpys_linear_interpolation():
    import numpy as np

    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 10, 91):
        values = sorted(rng.lognormal(8, 1, n).tolist())
        for q in (0.0, 0.1, 0.25, 0.5, 0.9, 0.99, 1.0):
            assert scan.quantile(values, q) == np.quantile(values, q)


# ---------------------------------------------------------------- the folder


@pytest.fixture(scope="module")
def hundred(real, tmp_path_factory) -> Path:
    """100 devices x 5 models x 2 delegates = 1,000 results rendered as a folder, the first a soak run (windows
    from the soak recorder, throttling); returns index.html."""
    import dataclasses

    root = tmp_path_factory.mktemp("fleet100")
    src = fleet_file(real, root / "fleet.jsonl", 100, 5, soak=dataclasses.asdict(throttled_soak_record()))
    return api.render_files([src], root / "report.html")


def test_a_big_input_becomes_a_folder_with_a_page_per_device_and_model(hundred):
    assert hundred.name == "index.html" and hundred.parent.name == "report"
    names = sorted(p.name for p in hundred.parent.iterdir())
    assert [n for n in names if n.startswith("device-")] == [f"device-{i:04d}.html" for i in range(1, 101)]
    assert [n for n in names if n.startswith("model-")] == [f"model-{i:04d}.html" for i in range(1, 6)]
    assert hundred.stat().st_size <= 2 * 2**20
    index = page(hundred)
    matrix = re.search(r'<table class="matrix" id="device-model-matrix">(.*?)</table>', index, re.S).group(1)
    assert matrix.count('<th class="dev"') == 100 and matrix.count('<th class="model"') == 5


def test_every_matrix_cell_opens_the_details_of_its_fastest_case(hundred, real):
    folder_ = hundred.parent
    index = page(hundred)
    cells = re.findall(r'<td class="c(\d)" title="([^"]*)"><a href="(device-\d+\.html)#case-(\d+)">([^<]*)<br>'
                       r'<small>([^<]*)</small>', index)
    assert len(cells) == 500  # 100 devices x 5 models: the cpu and xnnpack pair never both fail here
    pages: dict[str, str] = {}
    for _, config, target, case, median, _speedup in cells[:60]:
        text = pages.setdefault(target, page(folder_ / target))
        block = re.search(rf'<div class="case-block" id="case-{case}">(.*?)</div>', text, re.S)
        assert block, (target, case)
        delegate, threads = config.split(" · ")
        assert f"· {delegate} · {threads.split()[0]} thr" in block.group(1) and median in block.group(1)


def test_the_matrix_shows_the_fastest_case_and_its_speedup(real, tmp_path):
    from harness.report.text import fmt_ms, fmt_x

    src = fleet_file(real, tmp_path / "f.jsonl", 4, 3)
    index = page(api.render_files([src], tmp_path / "r.html", form="folder"))
    cases = frames.cases_frame([r for r in load_results(src) if r.status == "ok"])
    models = sorted(cases["model"].unique())
    for (device_id, model), group in cases.groupby(["device_id", "model"]):
        best = group.loc[group["median_us"].idxmin()]
        cpu = group[(group["delegate"] == "cpu") & (group["threads"] == best["threads"])]
        speed = fmt_x(cpu["median_us"].iloc[0] / best["median_us"]) if len(cpu) else "—"
        row = re.search(rf'<th class="dev" title="[^"]*\({re.escape(device_id)}\)">.*?</tr>', index, re.S).group(0)
        cell = re.findall(r"<td.*?</td>", row, re.S)[models.index(model)]
        assert f'title="{best["delegate"]} · {best["threads"]} thr">' in cell, (device_id, model, cell)
        assert f">{fmt_ms(best['median_us'])}<br><small>{speed}</small>" in cell, (device_id, model, cell)


def test_pages_are_self_contained_with_a_strict_policy_and_no_script(hundred):
    for path in hundred.parent.iterdir():
        text = page(path)
        assert "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline';" \
            in text, path
        assert "<script" not in text.lower() and "@import" not in text and "<link" not in text.lower()
        urls = set(re.findall(r'(?:src|href)="([^"#]*)', text))
        assert all(re.fullmatch(r"(index|problems|device-\d+|model-\d+)\.html", u) for u in urls if u), (path, urls)
        assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "https://" not in text


def test_hostile_names_are_escaped_and_never_become_file_names(real, tmp_path):
    src = fleet_file(real, tmp_path / "f.jsonl", 3, 2, hostile=True)
    index = api.render_files([src], tmp_path / "out" / "r.html", form="folder")
    written = sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == ["device-0001.html", "device-0002.html", "device-0003.html", "index.html",
                       "model-0001.html", "model-0002.html", "problems.html"]
    escaped = str(escape(PAYLOAD))  # as Jinja2 autoescaping writes it
    for path in index.parent.iterdir():
        text = page(path)
        assert "<script>" not in text and "alert(1)" in text
    assert escaped in page(index) and escaped in page(index.parent / "problems.html")
    assert html.escape("../dev-000") in page(index)


def test_bad_lines_are_skipped_with_one_warning_each_and_counted(real, tmp_path, caplog):
    good = records(real)
    bad_sample = json.loads(json.dumps(good[0]))
    bad_sample["latency"]["repetitions"][0]["samples_us"][3] = "fast"
    negative = json.loads(json.dumps(good[0]))
    negative["latency"]["repetitions"][1]["samples_us"][0] = -5.0
    nan = json.dumps(good[0]).replace('"samples_us": [', '"samples_us": [NaN, ', 1)
    lines = [json.dumps(good[0]), "not json {", json.dumps(bad_sample), json.dumps({**good[1], "status": "great"}),
             json.dumps(negative), nan, json.dumps(good[1]),
             json.dumps(good[1])[:200]]  # the last line torn, as a killed run leaves it
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="harness.report"):
        index = api.render_files([src], tmp_path / "r.html", form="folder")
    warned = [m for m in caplog.messages if "skipped, not a result record" in m]
    assert [re.search(r":(\d+): skipped", m).group(1) for m in warned] == ["2", "3", "4", "5", "6"]
    assert "samples_us: expected numbers" in warned[1] and "not one of" in warned[2]
    assert "> 0 microseconds" in warned[3] and "NaN" in warned[4]
    text = page(index)
    assert "2 cases on" in text and 'id="skipped-lines">5 line(s)' in text


def test_fork_helper_and_single_process_write_the_same_pages(real, tmp_path):
    src = fleet_file(real, tmp_path / "f.jsonl", 6, 3)
    one = folder.render_folder([src], tmp_path / "one", parallel_bytes=1 << 40)
    two = folder.render_folder([src], tmp_path / "two", parallel_bytes=0)
    names = sorted(p.name for p in one.parent.iterdir())
    assert names == sorted(p.name for p in two.parent.iterdir()) and len(names) == 11
    stamp = re.compile(r"generated [0-9-]+ [0-9:]+ UTC")
    for name in names:
        assert stamp.sub("", page(one.parent / name)) == stamp.sub("", page(two.parent / name)), name


def test_rendering_again_replaces_the_old_pages_and_refuses_a_foreign_folder(real, tmp_path):
    big = fleet_file(real, tmp_path / "big.jsonl", 5, 2)
    small = fleet_file(real, tmp_path / "small.jsonl", 2, 1)
    out = tmp_path / "r.html"
    folder.render_folder([big], out)
    folder.render_folder([small], out)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "device-0001.html", "device-0002.html", "index.html", "model-0001.html", "problems.html"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(folder.UsageError, match="not an edgeharness report"):
        folder.render_folder([small], other)
    assert (other / "notes.txt").read_text(encoding="utf-8") == "keep me"


# ---------------------------------------------------------------- choosing the form


def harness_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())", *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_picks_the_folder_above_the_threshold_and_obeys_the_flag(real, tmp_path):
    small = fleet_file(real, tmp_path / "small.jsonl", 2, 2)  # 8 results
    big = fleet_file(real, tmp_path / "big.jsonl", 11, 10)  # 220 results > 200
    assert folder.FOLDER_THRESHOLD == 200
    proc = harness_cli("report", str(small), "-o", str(tmp_path / "s.html"))
    assert proc.returncode == 0 and proc.stdout.strip() == f"report: {tmp_path / 's.html'}"
    assert "device-model-matrix" not in page(tmp_path / "s.html") and 'id="details"' in page(tmp_path / "s.html")
    proc = harness_cli("report", str(big), "-o", str(tmp_path / "b.html"))
    assert proc.returncode == 0 and proc.stdout.strip() == f"report: {tmp_path / 'b' / 'index.html'}"
    proc = harness_cli("report", str(small), "-o", str(tmp_path / "f.html"), "--form", "folder")
    assert proc.stdout.strip() == f"report: {tmp_path / 'f' / 'index.html'}"
    proc = harness_cli("report", str(big), "-o", str(tmp_path / "one.html"), "--form", "file")
    assert proc.stdout.strip() == f"report: {tmp_path / 'one.html'}" and (tmp_path / "one.html").is_file()
    proc = harness_cli("report", str(small), "-o", str(tmp_path / "g.html"), "--form", "folder",
                       "--baseline", "main", "--store", str(tmp_path / "store"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: the folder form of the report has no gate section")


def test_run_writes_the_folder_and_a_latest_page_that_links_to_it(tmp_path, zoo_models):
    suite = tmp_path / "fleet.toml"
    suite.write_text(SUITE.format(model=zoo_models["face_detection_front"]).replace("repetitions = 3",
                                                                                   "repetitions = 1"),
                     encoding="utf-8")
    summary = api.run(suite, out_dir=tmp_path / "store", report_form="folder")
    index = tmp_path / "store" / f"fleet-{summary.run_id}" / "index.html"
    assert summary.report_path == index and index.is_file()
    latest = page(tmp_path / "store" / "fleet.html")
    href = f"fleet-{summary.run_id}/index.html"
    assert f'<a href="{href}">' in latest and f'url={href}"' in latest and "default-src 'none'" in latest


# ---------------------------------------------------------------- a real browser


@pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: install the Debian package 'chromium'")
@pytest.mark.parametrize("name", ["index.html", "device-0001.html"])
def test_chromium_shows_the_pages_at_100_devices(hundred, name):
    target = hundred.parent / name
    dom = chromium("--dump-dom", target.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert "<script" not in text.lower() and "<svg" in text
    if name == "index.html":
        assert text.count('<th class="dev"') == 100 and 'id="device-model-matrix"' in text
        assert 'id="soak-summary"' in text and 'href="device-0001.html#soak-0"' in text
    else:
        assert text.count('class="case-block"') == 10 and 'id="cases"' in text
        assert text.count('class="soak-block"') == 1 and '<svg class="plot soak"' in text and "first throttle" in text
    shot = target.with_suffix(".png")
    proc = chromium(f"--screenshot={shot}", "--window-size=1400,1800", "--hide-scrollbars", target.as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1400, 1800)
        grey = img.convert("L")
        histogram = grey.histogram()
    # Not blank: the page is mostly white paper, but text, table lines, tints and charts cover a real share of it.
    assert sum(1 for n in histogram if n) > 50 and histogram[255] < 0.95 * 1400 * 1800


def test_esc_escapes_exactly_as_jinja2_autoescaping():
    from hypothesis import given
    from hypothesis import strategies as st

    from harness.report.text import esc

    @given(st.text())
    def same(text):
        assert esc(text) == str(escape(text))

    same()
    assert esc(PAYLOAD) == str(escape(PAYLOAD)) and "<" not in esc(PAYLOAD)
