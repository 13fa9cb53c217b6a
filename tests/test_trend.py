"""`harness trend` and the report's History section: medians and intervals per run, baselines and gate marked,
changes beyond the case's own noise flagged (a real run, then the same results slowed down)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness import api
from harness.results import Result
from harness.store import LocalStore
from harness.trend import case_trends

REPO = Path(__file__).resolve().parent.parent


def _suite(tmp_path: Path, model: Path, name: str = "mini") -> Path:
    suite = tmp_path / f"{name}.toml"
    suite.write_text(f'[suite]\nname = "{name}"\ndelegates = ["cpu"]\nthreads = [1]\nwarmup_runs = 1\n'
                     f"measured_runs = 8\nrepetitions = 5\ntimeout_s = 60\n"
                     f'[[models]]\nname = "fd"\npath = {json.dumps(str(model))}\n', encoding="utf-8")
    return suite


def _store_copy(store: LocalStore, results: list[Result], run_id: str, factor: float, model: str | None = None,
                suite: str = "mini") -> None:
    """Record ``results`` again as run ``run_id``, every sample times ``factor`` (a known change)."""
    writer = store.begin_run(run_id, suite)
    for r in results:
        reps = tuple(replace(rep, samples_us=tuple(s * factor for s in rep.samples_us))
                     for rep in r.latency.repetitions)
        case = replace(r.case, model=model) if model else r.case
        writer.append(replace(r, run_id=run_id, case=case, latency=replace(r.latency, repetitions=reps)))
    writer.close()
    store.finish_run(run_id)


@pytest.fixture(scope="module")
def history(tmp_path_factory, zoo_models) -> tuple[LocalStore, list[Result]]:
    tmp = tmp_path_factory.mktemp("trend")
    first = api.run(_suite(tmp, zoo_models["face_detection_front"]), out_dir=tmp / "out", report=False)
    store = LocalStore(tmp / "out")
    store.set_baseline("main", first.run_id)
    _store_copy(store, first.results, "20990101T000000Z-000001", 1.0)  # the same figures: no change
    # ten times as slow: beyond the noise of any host (on a busy 2-core machine one repetition's median can be
    # half the others', so the interval of 5 repetitions spans 2x)
    _store_copy(store, first.results, "20990101T000000Z-000002", 10.0)
    return store, first.results


def test_a_slowdown_beyond_the_noise_is_flagged_and_a_repeat_is_not(history):
    store, first = history
    (trend,) = case_trends(store, "mini")
    assert [p.run_id for p in trend.points] == [first[0].run_id, "20990101T000000Z-000001", "20990101T000000Z-000002"]
    base, same, slow = trend.points
    assert base.baselines == ("main",) and base.ci_low_us <= base.median_us <= base.ci_high_us
    assert same.median_us == base.median_us and same.change is None
    assert slow.median_us == pytest.approx(10 * base.median_us) and slow.change == "slower"
    assert "the 95% intervals do not overlap" in slow.why
    assert [p.run_id for p in trend.changes] == ["20990101T000000Z-000002"]
    assert case_trends(store, "mini", last=2)[0].points == [same, slow]  # --last: a window of the newest runs
    _store_copy(store, first, "20990101T000000Z-000009", 1.0, model="other-model", suite="other")
    assert case_trends(store, "mini", last=2)[0].points == [same, slow]  # ... of that suite
    assert case_trends(store, "no-such-suite") == []


def test_the_cli_table_marks_baseline_gate_and_change(history):
    store, _ = history
    gate = subprocess.run([sys.executable, "-m", "harness.cli", "gate", "--baseline", "main", "--run",
                           "20990101T000000Z-000002", "--store", str(store.root)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "trend", "mini", "--store", str(store.root)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "(3 run(s), 1 change(s) beyond noise)" in lines[0]
    assert "baseline main" in lines[2]
    verdict = "noisy" if "noisy" in gate.stdout.splitlines()[-1] else "slower"  # a busy host's scatter: noisy
    assert lines[4].split()[0] == "20990101T000000Z-000002" and f"gate: {verdict} vs main" in lines[4]
    assert "▲ SLOWER" in lines[4]


def test_stored_names_cannot_drive_the_terminal(history, tmp_path):
    store, first = history
    _store_copy(store, first, "20990101T000000Z-000003", 1.0, model="evil\x1b[2J\x1b]0;pwned\x07")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "trend", "--store", str(store.root)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "evil" in proc.stdout


def test_the_run_report_gets_a_history_section_once_the_store_has_history(zoo_models, tmp_path):
    suite = _suite(tmp_path, zoo_models["face_detection_front"])
    out = tmp_path / "out"
    api.run(suite, out_dir=out)
    assert 'id="history"' not in (out / "mini.html").read_text(encoding="utf-8")  # one run: nothing to show
    second = api.run(suite, out_dir=out)
    html = (out / "mini.html").read_text(encoding="utf-8")
    assert 'id="history"' in html and second.run_id in html and "95% interval ms" in html
    assert "<script" not in html


def test_the_folder_report_shows_each_devices_history_and_the_changes_on_its_opening_page(history, tmp_path):
    from harness.report.folder import render_folder
    from tests.browser import CHROMIUM, chromium

    store, _ = history
    slowed = store.resolve_run("20990101T000000Z-000002")
    index = render_folder([slowed.results_path], tmp_path / "r.html", trends=case_trends(store, "mini"))
    device = index.parent / "device-0001.html"
    page = device.read_text(encoding="utf-8")
    assert 'id="history"' in page and 'href="#history"' in page and "95% interval ms" in page
    assert "20990101T000000Z-000002" in page and "▲ slower" in page and "baseline main" in page
    assert page.index('id="history"') < page.index('id="details"')  # above the long case details
    opening = index.read_text(encoding="utf-8")
    assert 'id="history-changes"' in opening and 'href="device-0001.html#history"' in opening
    assert "1 of 1 case(s) stored more than once changed" in opening
    without = render_folder([slowed.results_path], tmp_path / "plain.html")  # no trends given: no section
    assert 'id="history"' not in (without.parent / "device-0001.html").read_text(encoding="utf-8")
    if CHROMIUM is None:
        pytest.skip("chromium missing: install the Debian package 'chromium'")
    dom = chromium("--dump-dom", device.as_uri())
    assert dom.returncode == 0 and 'id="history"' in dom.stdout and "▲ slower" in dom.stdout, dom.stderr[-2000:]
    shot = tmp_path / "history.png"
    proc = chromium(f"--screenshot={shot}", "--window-size=1200,1400", "--hide-scrollbars",
                    device.as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1200, 1400)
        histogram = img.convert("L").histogram()
    assert sum(1 for n in histogram if n) > 50 and histogram[255] < 0.97 * 1200 * 1400  # not blank


def test_a_run_in_the_folder_form_puts_the_suites_history_on_its_device_page(zoo_models, tmp_path):
    suite = _suite(tmp_path, zoo_models["face_detection_front"])
    out = tmp_path / "out"
    api.run(suite, out_dir=out, report_form="folder")
    second = api.run(suite, out_dir=out, report_form="folder")
    folder = second.report_path.parent
    page = (folder / "device-0001.html").read_text(encoding="utf-8")
    assert 'id="history"' in page and second.run_id in page and "<script" not in page
