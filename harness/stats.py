"""Pure statistics for latency: summaries, hierarchical bootstrap intervals, tests, speedups.

The unit of replication is the *repetition* (one process or app launch). Iterations
inside one process share its caches, clocks, frequency and thermal state, so a thousand
of them from one lucky process are not a thousand independent observations. Here:

- intervals come from a hierarchical bootstrap: resample repetitions with replacement,
  then iterations with replacement inside each chosen repetition;
- the "slower"/"faster" test is Yuen's trimmed Welch t-test on the log of the
  per-repetition medians (one value per repetition): a ratio test whose degrees of
  freedom count processes, robust to one process that landed on a busy core;
- a tool that gives only aggregates per repetition contributes one value per repetition
  (pass it as a one-element sequence).

Input everywhere is ``reps``: a sequence of repetitions, each a sequence of latencies in
microseconds. No harness types are imported: this module is plain numpy/scipy maths.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Reps = Sequence[Sequence[float]]

DEFAULT_BOOT = 2000
DEFAULT_SEED = 0
TRIM = 0.2  # fraction trimmed from each end of the per-repetition centers by the test
_CHUNK_VALUES = 2_000_000  # bootstrap values held in memory at once (~16 MB)


def _scipy_stats():  # noqa: ANN202 - the scipy.stats module
    """``scipy.stats``, imported on first use: it costs ~0.7 s of start-up that commands without a test
    (``harness report``, ``run``, ``trend``) would pay through ``harness.gate``."""
    from scipy import stats

    return stats


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval ``[low, high]`` at ``level`` (e.g. 0.95)."""

    low: float
    high: float
    level: float = 0.95

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def including(self, value: float) -> Interval:
        """This interval widened to hold ``value``.

        A point estimate and bootstrap percentiles are computed along different float paths
        (median averaging against quantile interpolation, b/c against 1/(c/b)); when a bound
        is the point itself it can land one ulp on the wrong side. Widening is conservative.
        """
        return Interval(min(self.low, value), max(self.high, value), self.level)


@dataclass(frozen=True)
class Summary:
    """Latency summary of one run of one case, microseconds unless named otherwise.

    Quantiles, mean, std, CV and MAD are over all iterations pooled (each repetition
    weighted by its iterations); ``rep_cv`` is the between-repetition coefficient of
    variation of the per-repetition medians: the noise that matters for comparisons.
    """

    n: int
    n_repetitions: int
    median_us: float
    p90_us: float
    p95_us: float
    p99_us: float
    mean_us: float
    std_us: float
    cv: float
    mad_us: float
    min_us: float
    max_us: float
    rep_medians_us: tuple[float, ...]
    rep_cv: float | None
    rep_robust_cv: float | None
    median_ci: Interval | None = None
    p90_ci: Interval | None = None


@dataclass(frozen=True)
class Comparison:
    """Candidate vs baseline: ratio of medians (candidate/baseline, >1 is slower) and tests."""

    baseline: Summary
    candidate: Summary
    ratio: float
    ratio_ci: Interval | None
    p_slower: float
    p_faster: float

    @property
    def statement(self) -> str:
        """E.g. ``1.8x faster (1.6-2.0)``; see :func:`speedup_statement`."""
        return speedup_statement(self.ratio, self.ratio_ci)


def _check_reps(reps: Reps, what: str = "reps") -> list[np.ndarray]:
    arrays = [np.asarray(r, dtype=float).ravel() for r in reps]
    arrays = [a for a in arrays if a.size]
    if not arrays:
        raise ValueError(f"{what}: no latency values (need at least one repetition with one value)")
    for a in arrays:
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ValueError(f"{what}: latencies must be finite and > 0 microseconds")
    return arrays


def rep_centers(reps: Reps) -> np.ndarray:
    """One value per repetition: its median (a one-value repetition is its own center)."""
    return np.array([float(np.median(a)) for a in _check_reps(reps)])


def _rep_cvs(centers: np.ndarray) -> tuple[float | None, float | None]:
    if centers.size < 2:
        return None, None
    cv = float(np.std(centers, ddof=1) / np.mean(centers))
    med = float(np.median(centers))
    robust = float(1.4826 * np.median(np.abs(centers - med)) / med)
    return cv, robust


def summarize(reps: Reps, *, n_boot: int = DEFAULT_BOOT, seed: int = DEFAULT_SEED, level: float = 0.95) -> Summary:
    """Summary with bootstrap intervals for the median and p90 (``n_boot=0`` skips them)."""
    arrays = _check_reps(reps)
    pooled = np.concatenate(arrays)
    q50, q90, q95, q99 = np.quantile(pooled, [0.5, 0.9, 0.95, 0.99])
    mean = float(pooled.mean())
    std = float(pooled.std(ddof=1)) if pooled.size > 1 else 0.0
    centers = np.array([float(np.median(a)) for a in arrays])
    rep_cv, rep_robust = _rep_cvs(centers)
    median_ci = p90_ci = None
    if n_boot > 0:
        boot = hierarchical_bootstrap(arrays, _nan_quantile_rows([0.5, 0.9]), n_boot=n_boot, seed=seed)
        median_ci = percentile_interval(boot[:, 0], level).including(float(q50))
        p90_ci = percentile_interval(boot[:, 1], level).including(float(q90))
    return Summary(
        n=int(pooled.size),
        n_repetitions=len(arrays),
        median_us=float(q50),
        p90_us=float(q90),
        p95_us=float(q95),
        p99_us=float(q99),
        mean_us=mean,
        std_us=std,
        cv=std / mean,
        mad_us=float(np.median(np.abs(pooled - q50))),
        min_us=float(pooled.min()),
        max_us=float(pooled.max()),
        rep_medians_us=tuple(float(c) for c in centers),
        rep_cv=rep_cv,
        rep_robust_cv=rep_robust,
        median_ci=median_ci,
        p90_ci=p90_ci,
    )


def hierarchical_bootstrap(
    reps: Reps,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    n_boot: int = DEFAULT_BOOT,
    seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Bootstrap distribution of ``statistic`` resampling repetitions, then iterations in each.

    ``statistic`` maps a ``(draws, values)`` array to one row per draw (shape ``(draws,)``
    or ``(draws, k)``); NaN marks padding when repetitions differ in length, so a
    statistic for ragged input must ignore NaN (the built-in ones do). Each chosen
    repetition contributes as many values as it has, so repetitions weigh as in the
    pooled point estimate. Seeded: the same input and seed give the same output.
    """
    arrays = _check_reps(reps)
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    rng = np.random.default_rng(seed)
    n_reps = len(arrays)
    lengths = np.array([a.size for a in arrays])
    width = int(lengths.max())
    table = np.full((n_reps, width), np.nan)
    for i, a in enumerate(arrays):
        table[i, : a.size] = a
    ragged = bool(np.any(lengths != width))
    chunk = max(1, _CHUNK_VALUES // (n_reps * width))
    out = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        chosen = rng.integers(0, n_reps, size=(b, n_reps))
        n_chosen = lengths[chosen][:, :, None]
        cols = np.floor(rng.random((b, n_reps, width)) * n_chosen).astype(np.int64)
        draws = table[chosen[:, :, None], cols]
        if ragged:
            draws[np.arange(width)[None, None, :] >= n_chosen] = np.nan
        out.append(np.asarray(statistic(draws.reshape(b, n_reps * width))))
    return np.concatenate(out, axis=0)


def _nan_quantile_rows(q: float | list[float]) -> Callable[[np.ndarray], np.ndarray]:
    """Row-wise quantile(s) ignoring NaN padding; shape ``(draws,)`` or ``(draws, len(q))``."""

    def stat(x: np.ndarray) -> np.ndarray:
        quant = np.nanquantile if np.isnan(x).any() else np.quantile
        return np.asarray(quant(x, q, axis=1)).T

    return stat


def percentile_interval(boot: np.ndarray, level: float = 0.95) -> Interval:
    """Percentile bootstrap interval of a 1-D bootstrap distribution."""
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(np.asarray(boot, dtype=float), [tail, 1.0 - tail])
    return Interval(float(low), float(high), level)


def quantile_ci(
    reps: Reps, q: float, *, n_boot: int = DEFAULT_BOOT, seed: int = DEFAULT_SEED, level: float = 0.95
) -> Interval:
    """Hierarchical-bootstrap interval for the pooled quantile ``q`` (0.5 = median), microseconds."""
    return percentile_interval(hierarchical_bootstrap(reps, _nan_quantile_rows(q), n_boot=n_boot, seed=seed), level)


def ratio_ci(
    baseline: Reps,
    candidate: Reps,
    *,
    q: float = 0.5,
    n_boot: int = DEFAULT_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> Interval:
    """Interval for quantile(candidate)/quantile(baseline), both runs bootstrapped hierarchically."""
    stat = _nan_quantile_rows(q)
    base = hierarchical_bootstrap(baseline, stat, n_boot=n_boot, seed=seed)
    cand = hierarchical_bootstrap(candidate, stat, n_boot=n_boot, seed=seed + 1)
    return percentile_interval(cand / base, level)


def log_ratio_test(
    baseline_centers: Sequence[float], candidate_centers: Sequence[float], *, trim: float = TRIM
) -> tuple[float, float]:
    """One-sided p-values ``(p_slower, p_faster)`` on the log of per-repetition centers.

    Each repetition is one observation. The test is Yuen's trimmed Welch t-test (20% trimmed
    by default): as efficient as Welch's t on well-behaved runs, but one process that landed
    on a busy core does not swamp the variance. Fewer than two repetitions on a side gives
    ``(nan, nan)``: no test is possible. Both sides without spread: 0 or 1 by their order.
    """
    b = np.log(np.asarray(baseline_centers, dtype=float))
    c = np.log(np.asarray(candidate_centers, dtype=float))
    if b.size < 2 or c.size < 2:
        return math.nan, math.nan
    p_slower = math.nan
    if np.ptp(b) > 0 or np.ptp(c) > 0:
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p_slower = float(_scipy_stats().ttest_ind(c, b, equal_var=False, trim=trim, alternative="greater").pvalue)
    if math.isnan(p_slower):
        diff = float(_scipy_stats().trim_mean(c, trim) - _scipy_stats().trim_mean(b, trim))
        if abs(diff) <= 1e-12:
            return 1.0, 1.0
        return (0.0, 1.0) if diff > 0 else (1.0, 0.0)
    return p_slower, 1.0 - p_slower


def compare(
    baseline: Reps,
    candidate: Reps,
    *,
    n_boot: int = DEFAULT_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> Comparison:
    """Ratio of pooled medians (candidate/baseline), its bootstrap interval and one-sided tests.

    ``n_boot=0`` skips every bootstrap (point estimates and tests only), which is what
    simulations use: the verdict does not depend on the intervals.
    """
    b_sum = summarize(baseline, n_boot=n_boot, seed=seed, level=level)
    c_sum = summarize(candidate, n_boot=n_boot, seed=seed + 1, level=level)
    p_slower, p_faster = log_ratio_test(b_sum.rep_medians_us, c_sum.rep_medians_us)
    ratio = c_sum.median_us / b_sum.median_us
    interval = ratio_ci(baseline, candidate, n_boot=n_boot, seed=seed, level=level) if n_boot > 0 else None
    return Comparison(
        baseline=b_sum,
        candidate=c_sum,
        ratio=ratio,
        ratio_ci=interval.including(ratio) if interval else None,
        p_slower=p_slower,
        p_faster=p_faster,
    )


SPENDING = ("pocock", "obf")


def alpha_spent(t: float, alpha: float, kind: str = "pocock") -> float:
    """Type-I error spent by information fraction ``t`` (0..1) of a sequential test of level ``alpha``.

    Lan-DeMets spending functions: ``pocock`` (``alpha * ln(1 + (e - 1) t)``: spends early, so a clear
    change stops at the first looks) and ``obf`` (O'Brien-Fleming type, ``2 - 2 Phi(z_{alpha/2} / sqrt t)``:
    almost nothing early, nearly all of ``alpha`` at the last look). Both reach ``alpha`` at ``t = 1``.
    Testing look ``k`` at the increment ``alpha_spent(t_k) - alpha_spent(t_{k-1})`` keeps the chance of
    any false alarm over all looks at or below ``alpha`` whatever the correlation between looks (union bound).
    """
    if kind not in SPENDING:
        raise ValueError(f"spending {kind!r} is not one of {', '.join(SPENDING)}")
    t = min(max(float(t), 0.0), 1.0)
    if t <= 0.0:
        return 0.0
    if kind == "pocock":
        return alpha * math.log1p((math.e - 1.0) * t)
    return min(alpha, float(2.0 * _scipy_stats().norm.sf(_scipy_stats().norm.isf(alpha / 2.0) / math.sqrt(t))))


def p_within(baseline_centers: Sequence[float], candidate_centers: Sequence[float], limit: float) -> float:
    """One-sided p-value against "the candidate is ``limit`` x the baseline or slower" (same log-ratio test).

    Small: the slowdown is shown to stay below ``limit`` (a non-inferiority test; the gate's "same" when
    the runs are noisy). Fewer than two repetitions on a side gives NaN.
    """
    shifted = [c / limit for c in candidate_centers]
    return log_ratio_test(baseline_centers, shifted)[1]


def speedup_statement(ratio: float, interval: Interval | None = None) -> str:
    """Say a time ratio (candidate/baseline) as a speedup with its interval.

    ``0.55`` with ``(0.5, 0.62)`` reads ``1.8x faster (1.6-2.0)``; ``1.08`` reads
    ``1.08x slower (1.05-1.11)``; a ratio of exactly 1 reads ``1.00x (same)``.
    """
    if ratio <= 0 or not math.isfinite(ratio):
        raise ValueError(f"ratio must be finite and > 0, got {ratio}")
    factor = 1.0 / ratio if ratio < 1.0 else ratio
    digits = 1 if factor >= 1.5 else 2
    word = "faster" if ratio < 1.0 else "slower" if ratio > 1.0 else "(same)"
    text = f"{factor:.{digits}f}x {word}"
    if interval is None:
        return text
    low, high = (1.0 / interval.high, 1.0 / interval.low) if ratio < 1.0 else (interval.low, interval.high)
    return f"{text} ({low:.{digits}f}-{high:.{digits}f})"


def speedup(
    baseline: Reps, candidate: Reps, *, n_boot: int = DEFAULT_BOOT, seed: int = DEFAULT_SEED, level: float = 0.95
) -> str:
    """ "Delegate X makes model Y 1.8x faster (1.6-2.0)": the statement for two sets of repetitions."""
    result = compare(baseline, candidate, n_boot=max(n_boot, 1), seed=seed, level=level)
    return result.statement


def detectable_ratio(
    rep_cv: float, n_baseline: int, n_candidate: int, *, alpha: float = 0.01, power: float = 0.95
) -> float:
    """Smallest slowdown (as a fraction, 0.1 = 10%) the log-ratio test detects with ``power``.

    Normal approximation with t quantiles on ``n_baseline + n_candidate - 2`` degrees of
    freedom; ``rep_cv`` is the between-repetition CV. Use it to choose repetitions.
    """
    if n_baseline < 2 or n_candidate < 2:
        return math.inf
    df = n_baseline + n_candidate - 2
    se = rep_cv * math.sqrt(1.0 / n_baseline + 1.0 / n_candidate)
    return math.expm1((_scipy_stats().t.ppf(1 - alpha, df) + _scipy_stats().t.ppf(power, df)) * se)


def repetitions_needed(rep_cv: float, slowdown: float, *, alpha: float = 0.01, power: float = 0.95) -> int:
    """Repetitions per run (same on both sides) to detect ``slowdown`` (0.1 = 10%) with ``power``."""
    if slowdown <= 0:
        raise ValueError("slowdown must be > 0 (a fraction: 0.1 = 10%)")
    for n in range(2, 1001):
        if detectable_ratio(rep_cv, n, n, alpha=alpha, power=power) <= slowdown:
            return n
    return 1000
