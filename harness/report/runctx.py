"""The reports' Run context section: per device and run, the run-context fields its results recorded.

A result's ``context`` (:attr:`harness.results.Result.context`, fields in
:data:`harness.samplers.context.FIELDS`) is what must match for two runs' figures to be comparable; the gate
refuses a comparison when it differs. Here it is shown: one row per device and run, with each field's
values (a field read per case, like ``thermal_status`` at start, can hold several: each is shown with its
number of cases). A field with one value everywhere is said once above the table; the others are columns,
and a cell is marked when its device's runs differ in that field (``ctx-runs``: e.g. a baseline and a
candidate measured with different governors) or when it differs from the value most devices have
(``ctx-odd``). Values come from records (untrusted): each is cut and its control characters shown as escapes
(:func:`harness.textsafe.clip`); the page escapes them as any text.

Light on purpose (no pandas, no numpy): the folder report counts contexts as it streams the records
(:meth:`ContextTally.add`, a dict lookup per record); both forms build the table with :meth:`ContextTally.table`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.textsafe import clip

VALUE_CHARS = 60  # characters of a value shown in a cell (the whole value is in the results file)
MAX_FIELDS = 24  # fields of one record shown at most (the known ones first): a hostile record has thousands
MAX_VALUES = 4  # distinct values shown in one cell (the most common first)
MAX_ROWS = 500  # rows of the table (a fleet of 100 devices x a few runs fits)


@dataclass
class ContextTally:
    """How often each distinct context was seen per ``(device id, run id)``, with each row's label and side."""

    seen: dict[tuple[str, str], dict[tuple[tuple[str, str], ...], int]] = field(default_factory=dict)
    labels: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # key -> (device label, side)
    _cache: dict[str, Any] | None = field(default=None, repr=False, compare=False)  # see _analysis
    _last: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)  # the last context counted

    def add(self, device_id: str, run_id: str, context: object, *, label: str = "", side: str = "") -> None:
        """Count one result's ``context`` (anything: a record's value; not a non-empty mapping -> not counted)."""
        if not context or not isinstance(context, dict):
            return
        last = self._last
        if last is not None and last[2] == context and last[0] == device_id and last[1] == run_id:
            last[3][last[4]] += 1  # the same context as the record before (the common case): ~1 us, not ~5
            return
        key = (device_id, run_id)
        counts = self.seen.get(key)
        if counts is None:
            counts = self.seen[key] = {}
            self.labels[key] = (label or device_id, side)
        self._cache = None
        items = tuple(context.items())
        if len(items) > MAX_FIELDS:
            items = items[:MAX_FIELDS]
        try:
            counts[items] = counts.get(items, 0) + 1
        except TypeError:  # an unhashable value (a list in a hostile record): count it as text
            items = tuple((str(k), str(v)) for k, v in items)
            counts[items] = counts.get(items, 0) + 1
        self._last = (device_id, run_id, context, counts, items)

    def merge(self, other: ContextTally) -> None:
        """Add ``other``'s counts (read from another part of the input)."""
        self._cache = self._last = None
        for key, counts in other.seen.items():
            mine = self.seen.setdefault(key, {})
            for items, n in counts.items():
                mine[items] = mine.get(items, 0) + n
        for key, value in other.labels.items():
            self.labels.setdefault(key, value)

    def __bool__(self) -> bool:
        return bool(self.seen)

    def table(self, *, link: Callable[[str], str | None] | None = None, devices: Iterable[str] | None = None,
              every_field: bool = False) -> dict[str, Any] | None:
        """What ``run_context.html.j2`` shows (as ``ctx``), or None when no result recorded a context.

        ``devices`` keeps only those device ids' rows (a device page); the marks compare with every row.
        ``link(device_id)`` gives a row's device a link (the folder form's device page). ``every_field`` makes
        every field a column (a device page: its own values in full), none said once above the table.
        """
        if not self.seen:
            return None
        a = self._analysis()
        rows, names, common, differs_in_runs = a["rows"], a["names"], a["common"], a["differs_in_runs"]
        varying = names if every_field else a["varying"]
        same = [] if every_field else a["same"]
        keep = set(devices) if devices is not None else None
        order = sorted((k for k in rows if keep is None or k[0] in keep),
                       key=lambda k: (self.labels[k][0], k[0], self.labels[k][1] != "baseline", k[1]))
        out_rows = []
        for key in order[:MAX_ROWS]:
            values = rows[key]
            label, side = self.labels[key]
            cells = []
            for f in varying:
                vals = values.get(f, [])
                marks = (["ctx-runs"] if (key[0], f) in differs_in_runs else []) + (
                    ["ctx-odd"] if vals and _cell_key(vals) != common[f] else [])
                cells.append({"shown": vals, "cls": " ".join(marks)})
            out_rows.append({"device": label, "href": (link(key[0]) or "") if link else "", "run": key[1], "side": side,
                             "cases": sum(self.seen[key].values()), "cells": cells})
        return {"fields": [(f, a["what"].get(f, "field of a newer record")) for f in varying], "rows": out_rows,
                "same": same, "hidden": max(0, len(order) - MAX_ROWS),
                "runs_differ": sorted({f for _, f in differs_in_runs if f in varying}),
                "devices": a["devices"]}

    def _analysis(self) -> dict[str, Any]:
        """Each row's shown values, the fields, the most common value of each, what differs: once per tally
        (a folder report asks for a table per device page; computed for every page, this was ~0.3 s at 100)."""
        if self._cache is not None:
            return self._cache
        from harness.samplers.context import FIELDS  # here: only a report with contexts pays for the import

        rows = {key: _values(counts) for key, counts in self.seen.items()}
        names = [f for f in FIELDS if any(f in r for r in rows.values())]
        extra = sorted({f for r in rows.values() for f in r} - set(FIELDS))
        names += extra[:max(0, MAX_FIELDS - len(names))]
        by_device: dict[str, list[tuple[str, str]]] = {}
        for key in rows:
            by_device.setdefault(key[0], []).append(key)
        varying = [f for f in names if len({_cell_key(r.get(f)) for r in rows.values()}) > 1]
        first = rows[next(iter(rows))]
        self._cache = {
            "rows": rows, "names": names, "varying": varying, "devices": len(by_device),
            "common": {f: _most_common(rows.values(), f) for f in names},
            "differs_in_runs": {(dev, f) for dev, keys in by_device.items() if len(keys) > 1 for f in names
                                if len({_cell_key(rows[k].get(f)) for k in keys}) > 1},
            "same": [(f, FIELDS.get(f, ("",))[0], ", ".join(v for v, _ in first[f])) for f in names
                     if f not in varying and first.get(f)],
            "what": {f: FIELDS[f][0] for f in names if f in FIELDS},
        }
        return self._cache


def _values(counts: Mapping[tuple[tuple[object, object], ...], int]) -> dict[str, list[tuple[str, int]]]:
    """Per field, its distinct shown values with their case counts, most common first (ties by value)."""
    per: dict[str, Counter[str]] = {}
    for items, n in counts.items():
        for k, v in items:
            per.setdefault(clip(k, 40), Counter())[clip(v, VALUE_CHARS)] += n
    return {k: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_VALUES] for k, c in per.items()}


def _cell_key(values: list[tuple[str, int]] | None) -> tuple[str, ...]:
    """What a cell says, without the counts (two runs with the same values are the same context)."""
    return tuple(sorted(v for v, _ in values or ()))


def _most_common(rows: Iterable[Mapping[str, list[tuple[str, int]]]], name: str) -> tuple[str, ...]:
    keys = Counter(_cell_key(r.get(name)) for r in rows if r.get(name))
    return max(keys.items(), key=lambda kv: (kv[1], kv[0]))[0] if keys else ()
