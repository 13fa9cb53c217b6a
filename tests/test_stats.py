"""The statistics core on seeded synthetic latencies (no timing here: see benchmarks/gate_power.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness import stats


def runs(rng, n_reps, n_iter, center_us=1000.0, rep_cv=0.03, iter_cv=0.02, factor=1.0):
    """Repetitions whose medians move by ``rep_cv`` between processes (the real-world structure)."""
    out = []
    for _ in range(n_reps):
        rep_center = center_us * factor * math.exp(rng.normal(0.0, rep_cv))
        out.append(list(rep_center * np.exp(rng.normal(0.0, iter_cv, n_iter))))
    return out


def test_summary_matches_pooled_numpy_figures():
    rng = np.random.default_rng(1)
    reps = runs(rng, 6, 40)
    pooled = np.concatenate(reps)
    s = stats.summarize(reps, n_boot=200)
    assert s.n == 240 and s.n_repetitions == 6
    assert s.median_us == pytest.approx(np.median(pooled))
    assert s.p90_us == pytest.approx(np.quantile(pooled, 0.9))
    assert s.p99_us == pytest.approx(np.quantile(pooled, 0.99))
    assert s.mean_us == pytest.approx(pooled.mean())
    assert s.cv == pytest.approx(pooled.std(ddof=1) / pooled.mean())
    assert s.mad_us == pytest.approx(np.median(np.abs(pooled - np.median(pooled))))
    centers = np.array([np.median(r) for r in reps])
    assert s.rep_cv == pytest.approx(centers.std(ddof=1) / centers.mean())
    assert s.median_ci.low < s.median_us < s.median_ci.high
    assert s.p90_ci.low < s.p90_us < s.p90_ci.high


def test_bootstrap_is_seeded_and_reproducible():
    reps = runs(np.random.default_rng(2), 5, 30)
    a = stats.quantile_ci(reps, 0.5, n_boot=300, seed=7)
    b = stats.quantile_ci(reps, 0.5, n_boot=300, seed=7)
    c = stats.quantile_ci(reps, 0.5, n_boot=300, seed=8)
    assert a == b
    assert a != c


def test_one_lucky_process_does_not_look_like_certainty():
    """Between-process spread must show in the interval, however many iterations each has."""
    rng = np.random.default_rng(3)
    reps = runs(rng, 5, 1000, rep_cv=0.10, iter_cv=0.01)
    hier = stats.quantile_ci(reps, 0.5, n_boot=300)
    pooled = np.concatenate(reps)
    naive = np.quantile([np.median(rng.choice(pooled, pooled.size)) for _ in range(300)], [0.025, 0.975])
    assert (hier.high - hier.low) > 5 * (naive[1] - naive[0])
    centers = sorted(np.median(r) for r in reps)
    assert hier.high - hier.low > 0.3 * (centers[-1] - centers[0])


def test_ratio_interval_covers_the_true_ratio():
    rng = np.random.default_rng(4)
    covered = 0
    trials = 40
    for _ in range(trials):
        base = runs(rng, 8, 30)
        cand = runs(rng, 8, 30, factor=1.2)
        covered += stats.ratio_ci(base, cand, n_boot=300, seed=int(rng.integers(1 << 30))).contains(1.2)
    assert covered >= 0.85 * trials


def test_aggregate_only_repetitions_count_once_each():
    s = stats.summarize([[5.0], [6.0], [7.0]], n_boot=100)
    assert (s.n, s.n_repetitions, s.median_us) == (3, 3, 6.0)
    assert 5.0 <= s.median_ci.low <= s.median_ci.high <= 7.0


def test_ragged_repetitions_are_resampled_without_padding_leaking():
    reps = [[10.0] * 3, [20.0] * 50, [30.0]]
    boot = stats.hierarchical_bootstrap(reps, lambda x: np.nanmax(x, axis=1), n_boot=200, seed=1)
    assert set(np.unique(boot)) <= {10.0, 20.0, 30.0}
    ci = stats.quantile_ci(reps, 0.5, n_boot=200)
    assert 10.0 <= ci.low <= ci.high <= 30.0


def test_slower_test_finds_a_real_slowdown_and_not_noise():
    rng = np.random.default_rng(5)
    base = [np.median(r) for r in runs(rng, 10, 20)]
    slow = [np.median(r) for r in runs(rng, 10, 20, factor=1.15)]
    p_slower, p_faster = stats.log_ratio_test(base, slow)
    assert p_slower < 0.001 and p_faster > 0.99


def test_slower_test_keeps_its_false_alarm_rate_over_repetitions():
    rng = np.random.default_rng(6)
    alarms = sum(
        stats.log_ratio_test(
            [np.median(r) for r in runs(rng, 8, 10, rep_cv=0.08)],
            [np.median(r) for r in runs(rng, 8, 10, rep_cv=0.08)],
        )[0]
        < 0.05
        for _ in range(400)
    )
    assert alarms / 400 <= 0.08


def test_one_slow_process_does_not_swamp_the_test():
    base = [1000.0, 1004, 998, 1001, 1003, 999, 1002, 1000, 997, 1001]
    cand = [x * 1.10 for x in base[:9]] + [1600.0]
    assert stats.log_ratio_test(base, cand)[0] < 0.001


def test_degenerate_inputs_for_the_test():
    assert all(math.isnan(p) for p in stats.log_ratio_test([1.0], [2.0, 3.0]))
    assert stats.log_ratio_test([5.0, 5.0, 5.0], [6.0, 6.0, 6.0]) == (0.0, 1.0)
    assert stats.log_ratio_test([5.0, 5.0], [5.0, 5.0]) == (1.0, 1.0)


def test_compare_gives_ratio_interval_and_statement():
    rng = np.random.default_rng(7)
    base = runs(rng, 8, 30)
    fast = runs(rng, 8, 30, factor=0.55)
    c = stats.compare(base, fast, n_boot=300)
    assert c.ratio == pytest.approx(0.55, rel=0.05)
    assert c.ratio_ci.low < c.ratio < c.ratio_ci.high
    assert c.p_faster < 0.001
    assert c.statement.startswith(f"{1 / c.ratio:.1f}x faster (")
    assert stats.compare(base, fast, n_boot=0).ratio_ci is None


@pytest.mark.parametrize(
    ("ratio", "interval", "text"),
    [
        (0.55, stats.Interval(0.5, 0.625), "1.8x faster (1.6-2.0)"),
        (1.08, stats.Interval(1.05, 1.11), "1.08x slower (1.05-1.11)"),
        (2.5, None, "2.5x slower"),
        (1.0, stats.Interval(0.98, 1.02), "1.00x (same) (0.98-1.02)"),
    ],
)
def test_speedup_statement(ratio, interval, text):
    assert stats.speedup_statement(ratio, interval) == text


def test_speedup_of_two_sets_is_an_interval_statement():
    rng = np.random.default_rng(8)
    text = stats.speedup(runs(rng, 6, 20), runs(rng, 6, 20, factor=0.5), n_boot=200)
    assert text.startswith("2.0x faster (") or text.startswith("1.9x faster (") or text.startswith("2.1x faster (")


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="no latency values"):
        stats.summarize([])
    with pytest.raises(ValueError, match="> 0"):
        stats.summarize([[1.0, -2.0]])
    with pytest.raises(ValueError, match="ratio"):
        stats.speedup_statement(0.0)


def test_detectable_slowdown_shrinks_with_repetitions():
    five, ten = (stats.detectable_ratio(0.05, n, n) for n in (5, 10))
    assert ten < five
    n = stats.repetitions_needed(0.05, ten)
    assert n <= 10 and stats.detectable_ratio(0.05, n, n) <= ten
    assert stats.detectable_ratio(0.05, 1, 10) == math.inf


def test_interval_always_holds_its_point_estimate():
    """Regression: a bound equal to the point could land one ulp outside it.

    CI saw a lower bound of 2.6603231952157587 above its point 2.660323195215758.
    """
    rng = np.random.default_rng(7)
    for _ in range(40):
        m = float(rng.uniform(100.0, 5000.0))
        base = [[m], [m], [m], [3 * m]]
        cand = [[float(rng.uniform(50.0, 5000.0))]]
        c = stats.compare(base, cand, n_boot=200)
        assert c.ratio_ci is not None and c.ratio_ci.contains(c.ratio)
    widened = stats.Interval(1.0000000000000002, 2.0).including(1.0)
    assert (widened.low, widened.high, widened.level) == (1.0, 2.0, 0.95)
