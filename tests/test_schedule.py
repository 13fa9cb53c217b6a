"""The repetition schedule on its own (pure, no device): a fixed count, a soak, the ``min_duration_s`` calibration
and their edges. The orchestrator's loop over it runs in test_context_vdev, test_run_context and test_soak_vdev."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from harness.results import Repetition
from harness.runners.base import RunSettings
from harness.schedule import MAX_RUNS, TIMEOUT_SHARE, Extension, RepetitionSchedule, extended_runs
from harness.soak import SoakRecorder, SoakSettings


def took(seconds: float, runs: int) -> Repetition:
    """A repetition whose ``runs`` measured iterations took ``seconds`` in all."""
    return Repetition(samples_us=(seconds / runs * 1e6,) * runs)


def never() -> tuple[float, str] | None:
    raise AssertionError("the samplers' minimum must not be read here")


def run_through(schedule: RepetitionSchedule, measured: list[Repetition], elapsed_s: float = 0.0) -> list[int]:
    """Drive ``schedule`` as the orchestrator does; the runs each repetition got (a discarded one included)."""
    runs = []
    while schedule.another(elapsed_s):
        runs.append(schedule.runs)
        schedule.after(measured[len(runs) - 1])
    return runs


def test_a_fixed_count_runs_its_repetitions_at_the_planned_runs_whatever_the_time():
    schedule = RepetitionSchedule(RunSettings(measured_runs=30, repetitions=3, min_duration_s=0), None, never)
    assert not schedule.calibrating and schedule.minimum is None
    numbers = []
    while schedule.another(1e9):  # the clock does not end a fixed count
        numbers.append(schedule.number)
        assert schedule.runs == 30 and schedule.after(took(0.001, 30)) is None
    assert numbers == [1, 2, 3] and schedule.counted == 3
    assert schedule.min_duration_s is None and schedule.actual_runs is None


def test_no_minimum_when_the_samplers_need_none():
    asked = []
    schedule = RepetitionSchedule(RunSettings(measured_runs=5, repetitions=2), None, lambda: asked.append(1))
    assert asked == [1] and not schedule.calibrating
    assert run_through(schedule, [took(0.001, 5)] * 2) == [5, 5] and asked == [1]  # not read again


def test_a_short_calibration_extends_the_runs_and_repetition_1_is_measured_again():
    schedule = RepetitionSchedule(RunSettings(measured_runs=30, repetitions=2, min_duration_s=0.25), None, never)
    assert schedule.calibrating and schedule.number == 1
    extension = schedule.after(took(0.05, 30))
    assert extension == Extension(planned=30, runs=188, took_s=pytest.approx(0.05), minimum_s=0.25,
                                  why="the suite's min_duration_s")  # 30 x 0.25 / 0.05 x 1.25
    assert not schedule.calibrating and schedule.number == 1 and schedule.runs == 188
    assert schedule.another(0.0)
    assert schedule.after(took(0.3, 188)) is None and schedule.number == 2  # a later repetition is never extended
    assert schedule.after(took(0.01, 188)) is None and not schedule.another(0.0)
    assert schedule.actual_runs == 188 and schedule.min_duration_s == 0.25


def test_a_calibration_long_enough_counts_as_repetition_1():
    schedule = RepetitionSchedule(RunSettings(measured_runs=30, repetitions=2, min_duration_s=0.25), None, never)
    assert run_through(schedule, [took(0.5, 30), took(0.01, 30)]) == [30, 30]
    assert schedule.actual_runs is None and schedule.min_duration_s == 0.25  # the minimum applied is recorded


def test_the_samplers_minimum_is_read_again_after_the_calibration_at_the_pace_they_kept():
    needs = iter([(0.25, "5 power samples at 50 ms"), (0.315, "5 power samples at the 63 ms observed")])
    schedule = RepetitionSchedule(RunSettings(measured_runs=10, repetitions=1), None, lambda: next(needs))
    extension = schedule.after(took(0.05, 10))
    assert extension is not None and extension.minimum_s == 0.315 and extension.why.endswith("63 ms observed")
    assert extension.runs == math.ceil(10 * 0.315 / 0.05 * 1.25) and schedule.min_duration_s == 0.315
    # a second reading with no need (no samples seen) keeps the first
    needs = iter([(0.25, "first"), None])
    schedule = RepetitionSchedule(RunSettings(measured_runs=10, repetitions=1), None, lambda: next(needs))
    assert schedule.after(took(0.05, 10)).minimum_s == 0.25 and schedule.min_duration_s == 0.25


def test_the_suites_setting_wins_over_the_samplers_and_0_turns_the_minimum_off():
    suites = RepetitionSchedule(RunSettings(min_duration_s=1.5), None, never)
    assert suites.minimum == (1.5, "the suite's min_duration_s")
    schedule = RepetitionSchedule(RunSettings(measured_runs=3, repetitions=1, min_duration_s=0), None, never)
    assert run_through(schedule, [took(1e-6, 3)]) == [3] and schedule.min_duration_s is None


@pytest.mark.parametrize("measured", [
    Repetition(samples_us=(0.0,) * 30),  # each run below the clock's tick
    Repetition(count=None, avg_us=12.0),  # a tool that gives its average without a count: time unknown
])
def test_a_calibration_faster_than_a_tick_keeps_the_plan_and_counts(measured: Repetition):
    schedule = RepetitionSchedule(RunSettings(measured_runs=30, repetitions=2, min_duration_s=0.25), None, never)
    assert schedule.after(measured) is None and schedule.number == 2 and schedule.runs == 30
    assert schedule.actual_runs is None and schedule.min_duration_s == 0.25


def test_a_minimum_longer_than_the_timeout_allows_is_held_to_half_the_timeout_and_says_so():
    """An extension plans at most TIMEOUT_SHARE of ``timeout_s`` of measured runs at the calibration's pace, so the
    repetition ends in time (the minimum then is not reached, and the extension says so); MAX_RUNS bounds the rest."""
    settings = RunSettings(measured_runs=10, repetitions=1, timeout_s=120.0, min_duration_s=3600.0)
    schedule = RepetitionSchedule(settings, None, never)
    extension = schedule.after(took(1.0, 10))
    assert extension is not None and extension.capped and extension.capped_by_timeout_s == 120.0
    assert extension.runs == 600  # 0.1 s a run: 60 s = half the timeout (the minimum wanted 45,000)
    assert extension.runs * 0.1 <= TIMEOUT_SHARE * settings.timeout_s and schedule.actual_runs == 600
    uncapped = RepetitionSchedule(replace(settings, min_duration_s=5.0), None, never).after(took(1.0, 10))
    assert uncapped is not None and not uncapped.capped and uncapped.runs == 63  # 10 x 5 / 1 x 1.25
    # planned runs already past half the timeout: nothing to extend, the calibration counts as repetition 1
    held = RepetitionSchedule(replace(settings, timeout_s=1.0), None, never)
    assert held.after(took(1.0, 10)) is None and held.number == 2 and held.actual_runs is None
    schedule = RepetitionSchedule(replace(settings, timeout_s=1e12), None, never)
    assert schedule.after(took(1e-9, 10)).runs == MAX_RUNS


def test_a_soak_runs_until_its_duration_without_a_calibration():
    settings = RunSettings(measured_runs=20, repetitions=2, min_duration_s=0.25)
    schedule = RepetitionSchedule(settings, SoakSettings(duration_s=10.0, window_s=3.0), never)
    assert schedule.minimum is None and not schedule.calibrating
    for _ in range(5):  # past the count of repetitions: the clock decides
        assert schedule.another(5.0)
        assert schedule.after(took(0.001, 20)) is None  # never extended, however short
    assert schedule.counted == 5 and schedule.runs == 20 and schedule.actual_runs is None
    assert schedule.another(9.999) and not schedule.another(10.0) and not schedule.another(12.5)
    assert schedule.min_duration_s is None


def test_a_soak_ending_mid_window_finishes_the_running_repetition_in_the_last_window():
    """10 s in 3 s windows: the last window is 1 s long. A repetition begun at 9.5 s runs to its end (11.2 s);
    none follows, and the recorder puts it in the last window."""
    soak = SoakSettings(duration_s=10.0, window_s=3.0)
    schedule = RepetitionSchedule(RunSettings(measured_runs=20), soak)
    recorder = SoakRecorder(soak)
    assert schedule.another(9.5)
    repetition = took(1.5, 20)
    schedule.after(repetition)
    recorder.add_repetition(11.2, repetition)
    assert not schedule.another(11.2)
    assert soak.n_windows == 4 and recorder.window_of(11.2) == 3


def test_extended_runs_arithmetic():
    assert extended_runs(30, 0.05, 0.25) == 188  # 30 x 5 x 1.25 margin
    assert extended_runs(30, 0.5, 0.25) == 30  # long enough already
    assert extended_runs(30, 0.0, 0.25) == 30  # unknown duration: the plan stands
    assert extended_runs(10, 1e-9, 3600) == MAX_RUNS  # bounded
