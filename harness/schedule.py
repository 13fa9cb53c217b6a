"""The repetition schedule of one case: how many measured runs the next repetition gets, and whether another follows.

A case is repeated in one of three ways (the orchestrator's loop asks this object, :mod:`harness.orchestrator`):

- **a fixed count**: ``repetitions`` of ``measured_runs`` each;
- **a soak** (``soak = { duration_s, window_s }``): repetitions back to back until ``duration_s`` has passed since
  the case began; the one running when the time runs out finishes (:mod:`harness.soak` puts it in the last
  window). A soak measures for its duration: no calibration, no extended runs;
- **a minimum duration** (``min_duration_s``, else what the case's samplers need): the first repetition
  calibrates. When its measured time is short of the minimum, the runs are extended to
  ``planned x minimum / measured x`` :data:`EXTEND_MARGIN` (at most :data:`MAX_RUNS`), that repetition is
  discarded and repetition 1 is measured again with the new count, which every later repetition keeps; a
  calibration long enough (or whose time is unknown: 0) counts as repetition 1.

Pure: the caller gives the elapsed time, what each repetition measured and, for the calibration, a function
that reads the samplers' minimum (read at the start, and again after the calibration at the pace the
samplers actually kept). An extension never plans more measured time than :data:`TIMEOUT_SHARE` of the case's
``timeout_s`` at the calibration's pace (the rest is for warm-up, start-up and the samplers' idle window): a
minimum the timeout cannot hold is not reached, the extension says so (:attr:`Extension.capped`), and the
repetition still ends in time instead of as a ``timeout``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from harness.results import Repetition
from harness.runners.base import RunSettings
from harness.samplers.energy import measured_s
from harness.soak import SoakSettings

#: Head room over the calibration's estimate when extending the measured runs to ``min_duration_s``.
EXTEND_MARGIN = 1.25
MAX_RUNS = 1_000_000
#: The share of ``timeout_s`` an extended repetition's measured runs may plan to take.
TIMEOUT_SHARE = 0.5

#: A minimum measured duration per repetition (s) and why it applies; None: no minimum.
Minimum = tuple[float, str] | None


def min_duration(setting: float | None, samplers_need: Callable[[], Minimum]) -> Minimum:
    """The minimum measured seconds per repetition and why: the suite's ``min_duration_s`` (0: none), else
    what the case's samplers need (``samplers_need()``, None: nothing)."""
    if setting is not None:
        return (setting, "the suite's min_duration_s") if setting > 0 else None
    return samplers_need()


def extended_runs(planned: int, measured: float, minimum_s: float) -> int:
    """Measured runs per repetition so that one repetition's measured time reaches ``minimum_s``.

    ``measured`` is what ``planned`` runs took (s); unknown (0) keeps the plan. Never fewer than planned.
    """
    if measured <= 0 or measured >= minimum_s:
        return planned
    return min(MAX_RUNS, max(planned, math.ceil(planned * minimum_s / measured * EXTEND_MARGIN)))


@dataclass(frozen=True)
class Extension:
    """A calibration that fell short: ``planned`` runs measured ``took_s`` < ``minimum_s`` (``why``), so
    repetition 1 is measured again with ``runs``."""

    planned: int
    runs: int
    took_s: float
    minimum_s: float
    why: str
    #: the runs were held to TIMEOUT_SHARE of this timeout (s); the minimum is not reached. None: not capped
    capped_by_timeout_s: float | None = None

    @property
    def capped(self) -> bool:
        return self.capped_by_timeout_s is not None


class RepetitionSchedule:
    """One case's repetitions, asked before each (:meth:`another`) and told after each that ran (:meth:`after`)."""

    def __init__(self, settings: RunSettings, soak: SoakSettings | None,
                 samplers_need: Callable[[], Minimum] = lambda: None) -> None:
        self.settings = settings
        self.soak = soak
        self._need = samplers_need
        #: the minimum applied (None: none; always None in a soak)
        self.minimum: Minimum = min_duration(settings.min_duration_s, samplers_need) if soak is None else None
        #: the next repetition is the calibration (its figures kept only when it was long enough)
        self.calibrating = self.minimum is not None
        #: measured runs per repetition: the suite's, until a calibration extends them
        self.runs = settings.measured_runs
        #: repetitions counted so far (a discarded calibration is not one)
        self.counted = 0

    @property
    def number(self) -> int:
        """The next repetition's number (1-based; a calibration measured again keeps its number)."""
        return self.counted + 1

    def another(self, elapsed_s: float) -> bool:
        """Whether another repetition runs: the count is not reached, or the soak's ``duration_s`` has not
        passed (``elapsed_s``: seconds since the case's first repetition began)."""
        if self.soak is not None:
            return elapsed_s < self.soak.duration_s
        return self.counted < self.settings.repetitions

    def after(self, repetition: Repetition | None) -> Extension | None:
        """A repetition ran (ok): counted, or, when it was a calibration short of the minimum, the extension
        (the caller discards its figures and measures the same repetition number again with :attr:`runs`)."""
        if self.calibrating and self.minimum is not None:
            self.calibrating = False
            self.minimum = min_duration(self.settings.min_duration_s, self._need) or self.minimum  # the real pace
            took_s = measured_s(repetition) if repetition is not None else 0.0
            scaled = extended_runs(self.runs, took_s, self.minimum[0])
            timeout_s = self.settings.timeout_s
            fits = math.floor(self.runs * TIMEOUT_SHARE * timeout_s / took_s) if took_s > 0 else scaled
            capped = timeout_s if fits < scaled else None
            scaled = max(self.runs, min(scaled, fits))
            if scaled > self.runs:  # (held to the plan by the timeout: the calibration counts as repetition 1)
                extension = Extension(self.runs, scaled, took_s, *self.minimum, capped_by_timeout_s=capped)
                self.runs = scaled
                return extension
        self.counted += 1
        return None

    @property
    def min_duration_s(self) -> float | None:
        """The minimum applied (s) for the record, None when none was."""
        return self.minimum[0] if self.minimum is not None else None

    @property
    def actual_runs(self) -> int | None:
        """The measured runs per repetition when a calibration extended them, else None (the suite's count)."""
        return self.runs if self.runs != self.settings.measured_runs else None
