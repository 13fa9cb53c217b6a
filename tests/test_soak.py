"""Soak runs: the window maths (pure, fast), the suite setting, and the record's round trip."""

from __future__ import annotations

import json

import pytest

from harness.errors import SuiteError
from harness.results import Energy, Repetition, Result
from harness.soak import (
    RepetitionSeen,
    SoakRecorder,
    SoakSettingError,
    SoakSettings,
    ThrottleTest,
    iteration_times,
    summary_line,
)
from harness.suite import parse_suite
from tests.helpers import make_result, thermal_snapshot, throttled_soak_record


def test_iterations_are_placed_back_from_the_repetition_end():
    seen = RepetitionSeen(10.0, Repetition(samples_us=(1e6, 2e6, 3e6)))
    assert iteration_times(seen) == [(5.0, 1e6), (7.0, 2e6), (10.0, 3e6)]
    aggregates = RepetitionSeen(4.0, Repetition(count=50, avg_us=900.0, median_us=800.0))
    assert iteration_times(aggregates) == [(4.0, 800.0)]


def test_windows_onset_and_sustained_over_peak():
    rec = SoakRecorder(SoakSettings(40, 10), ThrottleTest(min_freq_ratio=0.9, throttle_status=2))
    rec.add_snapshot(0.0, thermal_snapshot(1.0))
    # 4 s repetitions of 1 ms iterations: fast for 20 s, then throttled at 2 ms
    for k in range(10):
        ms = 1.0 if k < 5 else 2.0
        n = int(4000 / ms)
        end = 4.0 * (k + 1)
        rec.add_repetition(end, Repetition(samples_us=tuple([ms * 1000] * n)))
        rec.add_snapshot(end, thermal_snapshot(1.0 if k < 5 else 0.6, status=0 if k < 6 else 2, temp=40 + k))
    record = rec.build(41.0)
    assert [w.index for w in record.windows] == [0, 1, 2, 3]
    w0, w3 = record.windows[0], record.windows[-1]
    assert (w0.start_s, w0.end_s) == (0.0, 10.0)
    assert w0.p50_us == pytest.approx(1000.0) and w0.throughput_ips == pytest.approx(1000.0)
    assert w3.p50_us == pytest.approx(2000.0) and w3.p90_us == pytest.approx(2000.0)
    assert w0.iterations + sum(w.iterations for w in record.windows[1:]) == 5 * 4000 + 5 * 2000
    assert w3.throttled and w3.freq_ratio == pytest.approx(0.6) and w3.thermal_status == 2
    assert w3.temps_c == {"cpu": 49.0} and not w0.throttled
    # the first snapshot with the cap is the one after repetition 6 (k = 5), at 24 s
    assert record.time_to_throttle_s == pytest.approx(24.0)
    assert "cpufreq cap 60% of max" in record.throttle_evidence
    assert record.peak_ips == pytest.approx(1000.0) and record.sustained_ips == pytest.approx(500.0)
    assert record.sustained_peak_ratio == pytest.approx(0.5) and record.sustained_windows == 1
    assert "sustained/peak throughput 0.50" in summary_line(record)
    assert "first throttle at 24.0 s" in summary_line(record)


def test_overrun_goes_to_the_last_window_and_energy_follows_repetitions():
    rec = SoakRecorder(SoakSettings(10, 5))
    rec.add_repetition(3.0, Repetition(samples_us=(1000.0,) * 10))
    rec.add_repetition(12.5, Repetition(samples_us=(1000.0,) * 10))  # ran past duration_s
    asked: list[list[int]] = []

    def energy(indices: list[int]) -> Energy:
        asked.append(indices)
        return Energy(method="m", per_inference_mj=1.5 * len(indices), samples=7, simulated=True)

    record = rec.build(12.5, energy)
    assert len(record.windows) == 2 and record.windows[1].iterations == 10
    assert asked == [[0], [1]]
    assert record.windows[0].energy_per_inference_mj == 1.5 and record.windows[0].energy_samples == 7
    assert record.energy_simulated and record.energy_method == "m"
    assert record.time_to_throttle_s is None and "no thermal snapshot" in record.throttle_evidence


def test_no_throttle_says_what_was_seen_and_sparse_windows_are_left_out():
    rec = SoakRecorder(SoakSettings(20, 10))
    rec.add_snapshot(0.0, thermal_snapshot(1.0))
    rec.add_repetition(9.0, Repetition(samples_us=(1000.0,) * 2))  # under MIN_WINDOW_ITERATIONS
    rec.add_repetition(19.0, Repetition(samples_us=(2000.0,) * 5))
    rec.add_snapshot(19.0, thermal_snapshot(0.95, temp=44))
    record = rec.build(19.5)
    assert record.time_to_throttle_s is None
    assert "not throttled in 2 snapshots (lowest cpufreq cap 95% of max" in record.throttle_evidence
    assert record.peak_ips == pytest.approx(500.0) and record.sustained_peak_ratio == pytest.approx(1.0)
    assert record.windows[1].energy_reason is None and record.windows[0].snapshots == 1


@pytest.mark.parametrize(("table", "key", "why"), [
    ({"duration_s": 60}, "window_s", "needs window_s"),
    ({"duration_s": 10, "window_s": 30}, "window_s", "longer than duration_s"),
    ({"duration_s": 0, "window_s": 1}, "duration_s", "> 0"),
    ({"duration_s": float("nan"), "window_s": 1}, "duration_s", "number of seconds"),
    ({"duration_s": True, "window_s": 1}, "duration_s", "number of seconds"),
    ({"duration_s": 600, "window_s": 0.01}, "window_s", "at most 10000"),
    ({"duration_s": 600, "window_s": 30, "every": 2}, "every", "unknown soak key"),
])
def test_bad_soak_settings_are_named(table, key, why):
    with pytest.raises(SoakSettingError) as err:
        SoakSettings.from_mapping(table)
    assert err.value.key == key and why in err.value.reason


def test_suite_soak_setting_per_suite_and_per_model():
    suite = parse_suite('[suite]\nsoak = { duration_s = 600, window_s = 30 }\n[[models]]\nzoo = "face_landmark"\n'
                        '[[models]]\nzoo = "face_detection_front"\nsoak = { duration_s = 60, window_s = 5 }\n')
    assert suite.models[0].soak == SoakSettings(600.0, 30.0)
    assert suite.models[1].soak == SoakSettings(60.0, 5.0)
    assert suite.models[1].settings_record()["soak"] == {"duration_s": 60.0, "window_s": 5.0}
    assert parse_suite('[[models]]\nzoo = "face_landmark"\n').models[0].soak is None
    with pytest.raises(SuiteError) as err:
        parse_suite('[suite]\nname = "s"\n\nsoak = { duration_s = 5, window_s = 30 }\n'
                    '[[models]]\nzoo = "face_landmark"\n', "s.toml")
    text = str(err.value)
    assert "s.toml:4 [suite.soak]" in text and "longer than duration_s" in text and "hint" in text


def test_soak_record_round_trips_and_old_records_load():
    rec = SoakRecorder(SoakSettings(10, 5))
    rec.add_snapshot(0.0, thermal_snapshot(1.0))
    rec.add_repetition(4.0, Repetition(samples_us=(1000.0,) * 5))
    base = make_result(n_reps=2)
    result = make_result(n_reps=2, soak=rec.build(10.2))
    back = Result.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.soak == result.soak
    old = base.to_dict()
    old.pop("soak")
    assert Result.from_dict(old).soak is None
    bad = result.to_dict()
    bad["soak"]["windows"][0]["p50_us"] = "fast"
    with pytest.raises(ValueError, match="soak.windows"):
        Result.from_dict(bad)


def test_throughput_is_the_inverse_of_the_mean_latency():
    rec = SoakRecorder(SoakSettings(10, 10))
    rec.add_repetition(5.0, Repetition(samples_us=(1000.0, 1000.0, 1000.0, 5000.0)))
    window = rec.build(5.0).windows[0]
    assert window.p50_us == pytest.approx(1000.0) and window.mean_us == pytest.approx(2000.0)
    assert window.throughput_ips == pytest.approx(500.0)  # a stall counts in the total time, not in the median


def test_report_has_the_soak_curve_and_table(tmp_path):
    from harness.report.html import render_report

    result = make_result(n_reps=6, soak=throttled_soak_record())
    page = render_report([result, make_result(model="plain")], tmp_path / "r.html").read_text()
    assert page.count('<section id="soak">') == 1 and "<svg" in page[page.index('<section id="soak">'):]
    soak = page[page.index('<section id="soak">'):page.index("</section>", page.index('<section id="soak">'))]
    assert "Time to first throttle:</strong> 15.0 s (cpufreq cap 60% of max (&lt; 90%))" in soak
    assert "Sustained / peak throughput:</strong> 0.50" in soak
    assert soak.count('<tr class="throttled">') == 2 and "first throttle (15.0 s)" in soak
    assert "<script" not in page


def test_run_table_ends_with_the_soak_figures():
    import io

    from harness.terminal import RunDisplay

    out = io.StringIO()
    RunDisplay(1, 1, stream=out).table([make_result(n_reps=6, soak=throttled_soak_record())])
    line = [t for t in out.getvalue().splitlines() if "soak" in t][0]
    assert line.startswith("test_case[mobilenet-cpu]: soak 30 s in 3 windows of 10 s: first throttle at 15.0 s")
    assert "sustained/peak throughput 0.50 (500.0 vs 1000.0 inferences/s" in line
    from harness.terminal import case_rows

    figures = case_rows([make_result(n_reps=6, soak=throttled_soak_record()), make_result(model="plain")])
    assert figures[0].soak["time_to_throttle_s"] == 15.0 and figures[0].soak["sustained_peak_ratio"] == 0.5
    assert figures[0].soak["windows"] == 3 and figures[1].soak is None


def test_the_shipped_soak_suite_loads():
    from pathlib import Path

    from harness.suite import load_suite

    suite = load_suite(Path(__file__).resolve().parents[1] / "suites" / "soak.toml")
    assert [m.soak for m in suite.models] == [SoakSettings(90.0, 10.0)] and len(suite.cases()) == 1
