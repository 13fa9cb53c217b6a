"""Stream JSONL results into per-case summaries for the folder report, in one pass.

Building a :class:`harness.results.Result` (with its full type check) costs about 1.5 ms a
record, too much for 10,000 of them, and the folder report does not need the objects. Each
line is parsed once; the fields the report computes with are checked here (identity
strings, status, thread count, latency samples: finite numbers > 0) and a record that
breaks them is skipped with one warning naming ``file:line``, as :func:`harness.store.iter_results`
does. Every other field is only displayed, as escaped text, whatever its type.

A case's quantiles, mean, std and per-repetition medians are computed from its samples
as the line is read (sorted once; the same linear-interpolation quantiles as numpy and
:mod:`harness.stats`), and the samples are dropped: memory holds summaries, not samples.
"""

from __future__ import annotations

import json
import logging
import math
import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import StoreError
from harness.report.text import device_name
from harness.results import STATUSES

log = logging.getLogger("harness.report")

_MAX_LINE_WARNINGS = 20
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
_NUMBER = (int, float)
_NUMBER_TYPES = {int, float}
_REP_FIGURES = ("init_us", "first_inference_us", "warmup_avg_us", "avg_us", "std_us", "min_us", "max_us", "median_us")


class BadRecord(ValueError):
    """A record the folder report cannot use; the message says which field and why."""


@dataclass
class Case:
    """One result: identity, status, the summary figures (us) and what its details page shows."""

    index: int
    run_id: str
    device_id: str
    device: str
    model: str
    model_key: str
    delegate: str
    threads: int
    api: str
    status: str
    reason: str
    reps: list[dict[str, Any]] = field(default_factory=list)  # per repetition: n, median, min, max, ... (us)
    repetitions: int = 0
    n: int = 0
    basis: str = ""
    median_us: float = math.nan
    p10_us: float = math.nan
    p25_us: float = math.nan
    p75_us: float = math.nan
    p90_us: float = math.nan
    p99_us: float = math.nan
    mean_us: float = math.nan
    std_us: float = math.nan
    rep_medians_us: list[float] = field(default_factory=list)
    peak_memory_mb: float | None = None
    details: tuple[int, int, int] = (0, 0, 0)  # where the folder writer put the details block: shelf, offset, length
    soak: dict[str, Any] | None = None  # a soak run's derived figures (harness.report.soak_block.summary)
    soak_block: tuple[int, int, int] | None = None  # where its soak block (curve, windows) was put, as details

    @property
    def ok(self) -> bool:
        return self.status == "ok" and not math.isnan(self.median_us)

    @property
    def config(self) -> str:
        """The delegate and thread count, as the tables label a column."""
        return f"{self.delegate} · {self.threads} thr"


@dataclass
class Tally:
    """What a scan read: cases kept and bad lines skipped."""

    cases: int = 0
    skipped: int = 0


def _text(value: object, where: str, *, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise BadRecord(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _number(value: object, where: str, key: str = "") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value):
        raise BadRecord(f"{where}{'.' if key else ''}{key}: expected a finite number, got {value!r:.40}")
    return float(value)


def _samples(values: object, where: str) -> list[float]:
    if not isinstance(values, list):
        raise BadRecord(f"{where}: expected a list, got {type(values).__name__}")
    if not set(map(type, values)) <= _NUMBER_TYPES:  # exact types: a bool is not a latency
        bad = next(v for v in values if type(v) not in _NUMBER_TYPES)
        raise BadRecord(f"{where}: expected numbers, got {bad!r:.40}")
    if values and not min(values) > 0:  # json.loads already refused NaN and Infinity (parse_constant)
        raise BadRecord(f"{where}: latencies must be > 0 microseconds")
    return values


def _refuse_constant(name: str) -> None:
    raise BadRecord(f"{name} is not a number JSON allows")


def quantile(ordered: list[float], q: float) -> float:
    """Quantile ``q`` of sorted values by linear interpolation, exactly as ``numpy.quantile`` computes it."""
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    if lo + 1 >= len(ordered):
        return float(ordered[-1])
    a, b, t = ordered[lo], ordered[lo + 1], h - lo
    return float(b - (b - a) * (1 - t)) if t >= 0.5 else float(a + (b - a) * t)


def _pooled_summary(case: Case, pooled: list[float]) -> None:
    ordered = sorted(pooled)
    case.p10_us, case.p25_us, case.median_us, case.p75_us, case.p90_us, case.p99_us = (
        quantile(ordered, q) for q in QUANTILES)
    n = len(ordered)
    mean = math.fsum(ordered) / n
    case.mean_us = mean
    dev = [x - mean for x in ordered]
    case.std_us = math.sqrt(math.fsum(map(operator.mul, dev, dev)) / (n - 1)) if n > 1 else math.nan


def _latency(case: Case, lat: object) -> None:
    """Check the latency block, summarise its samples and keep each repetition's small figures."""
    if lat is None:
        return
    if not isinstance(lat, dict):
        raise BadRecord("latency: expected an object")
    _text(lat.get("method"), "latency.method")
    reps = lat.get("repetitions") or []
    if not isinstance(reps, list):
        raise BadRecord("latency.repetitions: expected a list")
    pooled: list[float] = []
    centres: list[float] = []
    medians: list[float] = []
    for i, rep in enumerate(reps):
        where = f"latency.repetitions[{i}]"
        if not isinstance(rep, dict):
            raise BadRecord(f"{where}: expected an object")
        samples = _samples(rep.get("samples_us") or [], f"{where}.samples_us")
        info = {k: _number(rep.get(k), where, k) for k in _REP_FIGURES}
        count = rep.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise BadRecord(f"{where}.count: expected an integer")
        if samples:
            ordered = sorted(samples)
            median = quantile(ordered, 0.5)
            info.update(n=len(samples), min_us=ordered[0], max_us=ordered[-1], median_us=median)
            medians.append(median)
            pooled.extend(samples)
        else:
            info["n"] = count or 0
            centre = info["median_us"] if info["median_us"] is not None else info["avg_us"]
            if centre is not None and centre <= 0:
                raise BadRecord(f"{where}: latencies must be > 0 microseconds")
            if centre is not None:
                centres.append(centre)
        case.reps.append(info)
    case.n = sum(r["n"] for r in case.reps)
    case.repetitions = len(case.reps)
    if pooled:
        case.basis = "per-iteration samples"
        _pooled_summary(case, pooled)
        case.rep_medians_us = medians
    elif centres:  # a tool that gave only aggregates: one value per repetition (as frames.py does)
        case.basis = "tool aggregates per repetition"
        case.median_us = quantile(sorted(centres), 0.5)
        case.rep_medians_us = centres


def _memory(mem: object) -> float | None:
    if not isinstance(mem, dict):
        return None
    for key in ("peak_rss_mb", "footprint_overall_mb"):
        value = mem.get(key)
        if value is not None:
            return _number(value, f"memory.{key}")
    return None


def read_record(data: object, index: int) -> Case:
    """Check one parsed record and summarise it as case number ``index``; :class:`BadRecord` when unusable."""
    if not isinstance(data, dict):
        raise BadRecord(f"a result record is a JSON object, not {type(data).__name__}")
    case_d, dev_d = data.get("case"), data.get("device")
    if not isinstance(case_d, dict) or not isinstance(dev_d, dict):
        raise BadRecord("missing field 'case' or 'device' (objects)")
    status = data.get("status")
    if status not in STATUSES:
        raise BadRecord(f"status {status!r:.40} not one of {STATUSES}")
    threads = case_d.get("threads")
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise BadRecord("case.threads: expected an integer")
    device_id = _text(dev_d.get("id"), "device.id")
    model = _text(case_d.get("model"), "case.model")
    sha = _text(case_d.get("model_sha256"), "case.model_sha256", optional=True)
    case = Case(
        index=index,
        run_id=_text(data.get("run_id"), "run_id"),
        device_id=device_id,
        device=device_name(device_id, _text(dev_d.get("model"), "device.model", optional=True),
                           _text(dev_d.get("platform"), "device.platform", optional=True)),
        model=model,
        model_key=sha or model,
        delegate=_text(case_d.get("delegate"), "case.delegate"),
        threads=threads,
        api=_text(case_d.get("api", "interpreter"), "case.api"),
        status=status,
        reason=_text(data.get("reason"), "reason", optional=True),
    )
    _latency(case, data.get("latency"))
    case.peak_memory_mb = _memory(data.get("memory"))
    return case


@dataclass(frozen=True)
class Part:
    """A byte range ``[start, end)`` of one results file, cut at line ends; ``end`` None = to the end."""

    path: str
    start: int = 0
    end: int | None = None
    first_line: int | None = 1  # the number of the range's first line in the file (None: not counted yet)
    ends_file: bool = True

    @property
    def size(self) -> int:
        return (self.end if self.end is not None else _size(self.path)) - self.start


def _size(path: str | Path) -> int:
    try:
        return Path(path).stat().st_size
    except FileNotFoundError:
        raise StoreError(f"results file not found: {path}") from None
    except OSError as exc:
        raise StoreError(f"cannot read results file {path}: {exc.strerror or exc}") from None


def total_bytes(paths: Iterable[str | Path]) -> int:
    """The summed size of the files (a clear error when one is missing)."""
    return sum(_size(p) for p in paths)


def _open(path: str | Path):  # noqa: ANN202 - a binary file object
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise StoreError(f"results file not found: {path}") from None
    except OSError as exc:
        raise StoreError(f"cannot read results file {path}: {exc.strerror or exc}") from None


def split(paths: Iterable[str | Path], pieces: int = 2) -> list[Part]:
    """The files as parts of about equal size (a big file is cut at line ends), in input order."""
    sizes = [(str(p), _size(p)) for p in paths]
    total = sum(size for _, size in sizes)
    target = max(1, -(-total // max(pieces, 1)))
    parts: list[Part] = []
    for path, size in sizes:
        start = 0
        with _open(path) as fh:
            while size - start > target * 1.25:
                fh.seek(start + target)
                fh.readline()  # to the end of the line the cut fell in
                cut = fh.tell()
                if cut >= size:
                    break
                parts.append(Part(path, start, cut, None if start else 1, False))
                start = cut
        parts.append(Part(path, start, None, None if start else 1, True))
    return parts


def first_line(part: Part) -> int:
    """The number of ``part``'s first line in its file (counted when a warning needs it: reading is the cost)."""
    if part.first_line is not None:
        return part.first_line
    with _open(part.path) as fh:
        return 1 + sum(block.count(b"\n") for block in _blocks(fh, part.start))


def _blocks(fh, length: int) -> Iterator[bytes]:  # noqa: ANN001
    while length > 0 and (block := fh.read(min(length, 1 << 20))):
        length -= len(block)
        yield block


def iter_lines(part: Part) -> Iterator[tuple[int, bytes, bool]]:
    """``(line number within the part, from 1, line, is the file's last non-blank line)``, a line at a time.

    Lines end at ``\n`` only (binary mode), like :func:`harness.store.iter_results`.
    """
    with _open(part.path) as fh:
        fh.seek(part.start)
        left = part.end - part.start if part.end is not None else None
        held: tuple[int, bytes] | None = None
        try:
            for number, line in enumerate(fh, 1):
                if left is not None:
                    if left <= 0:
                        break
                    left -= len(line)
                if not line.strip():
                    continue
                if held is not None:
                    yield held[0], held[1], False
                held = (number, line)
        except OSError as exc:
            raise StoreError(f"cannot read results file {part.path}: {exc.strerror or exc}") from None
        if held is not None:
            yield held[0], held[1], part.ends_file


def iter_cases(parts: Iterable[Part], tally: Tally | None = None,
               warn: Callable[[str], None] | None = None) -> Iterator[tuple[Case, dict[str, Any]]]:
    """Each usable record of the parts as ``(case summary, parsed record)``, numbered from 0 in input order.

    A torn last line (a run killed mid-write) is skipped silently; any other bad line is
    skipped with a warning naming ``file:line`` (at most 20 per part, then a count) and
    counted in ``tally``. The record is the caller's to display; its samples are summarised.
    """
    tally = tally if tally is not None else Tally()
    warn = warn or log.warning
    for part in parts:
        bad, base = 0, None
        for number, line, last in iter_lines(part):
            try:
                data = json.loads(line, parse_constant=_refuse_constant)
                case = read_record(data, tally.cases)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, BadRecord
                if last:
                    continue  # torn final write of a killed run
                bad += 1
                tally.skipped += 1
                if bad <= _MAX_LINE_WARNINGS:
                    base = first_line(part) - 1 if base is None else base
                    warn(f"warning: {part.path}:{base + number}: skipped, not a result record ({str(exc)[:200]})")
                continue
            tally.cases += 1
            yield case, data
        if bad > _MAX_LINE_WARNINGS:
            warn(f"warning: {part.path}: {bad - _MAX_LINE_WARNINGS} more bad lines skipped")


def count_records(paths: Iterable[str | Path], limit: int | None = None) -> int:
    """Lines in the files (an upper bound of their records: blank and bad lines count too), read in 1 MiB blocks;
    with ``limit``, counting stops once more than ``limit`` lines are seen (what choosing the form needs)."""
    total = 0
    for path in paths:
        try:
            with open(path, "rb") as fh:
                tail = b"\n"
                while block := fh.read(1 << 20):
                    total += block.count(b"\n")
                    tail = block[-1:]
                    if limit is not None and total > limit:
                        return total
                total += tail != b"\n"
        except FileNotFoundError:
            raise StoreError(f"results file not found: {path}") from None
        except OSError as exc:
            raise StoreError(f"cannot read results file {path}: {exc.strerror or exc}") from None
    return total
