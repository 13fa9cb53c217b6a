"""Durable results: one JSON Lines file per run (fsync per result) indexed in SQLite.

The JSONL file is the record of truth: a run killed halfway keeps every finished result,
because each line is flushed and fsynced before the next case starts. The SQLite index
(WAL mode, so several runs on one host can write at once) answers history queries and
holds baseline names. A run's files are never overwritten: each run has its own id.

Runs are ordered by ``seq``, the order they were recorded in this store (never by id: an
imported id may sort anywhere). ``latest`` is the newest run *measured* here: imported
baselines are recorded too, but never count as ``latest``, so a gate against a freshly
imported baseline still judges the newest real run. A broken index never stops a run: the
results go to the JSONL file, one warning names the fix (``harness reindex``), and
:func:`rebuild_index` rebuilds the index from the files.

``open_store(uri)`` picks a backend by URI: a directory (``file:DIR``) is a :class:`LocalStore`;
``postgresql://...`` is the team store of :mod:`harness.store_pg` (the same :class:`Store`
interface, the index on a shared server, the JSONL files still in the local directory).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import statistics
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from harness import stats
from harness.errors import StoreError
from harness.names import RULE, check_name, contain, inside, problem
from harness.results import Result
from harness.textsafe import shown

if TYPE_CHECKING:
    from harness.leases import Leases

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, suite TEXT, started_at TEXT, finished_at TEXT,
    results_path TEXT NOT NULL, report_path TEXT, host TEXT, harness_version TEXT, status TEXT
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL, line INTEGER NOT NULL, case_id TEXT, model TEXT, model_sha256 TEXT,
    delegate TEXT, threads INTEGER, api TEXT, device_id TEXT, device_model TEXT, status TEXT,
    median_us REAL, n INTEGER, repetitions INTEGER, finished_at TEXT,
    PRIMARY KEY (run_id, line)
);
CREATE INDEX IF NOT EXISTS results_case ON results (model_sha256, delegate, threads, device_id);
CREATE TABLE IF NOT EXISTS baselines (
    name TEXT PRIMARY KEY, run_id TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gate_verdicts (
    run_id TEXT NOT NULL, baseline TEXT NOT NULL, baseline_run_id TEXT, case_label TEXT NOT NULL,
    model TEXT, delegate TEXT, threads INTEGER, device_id TEXT, verdict TEXT, why TEXT, recorded_at TEXT,
    PRIMARY KEY (run_id, baseline, case_label)
);
"""
#: The results index columns, in order (both backends; ci_*: the 95% interval of the median from harness.stats).
RESULT_COLUMNS = ("run_id", "line", "case_id", "model", "model_sha256", "delegate", "threads", "api", "device_id",
                  "device_model", "status", "median_us", "n", "repetitions", "finished_at", "ci_low_us", "ci_high_us")
RUN_COLUMNS = ("run_id", "suite", "started_at", "finished_at", "results_path", "report_path", "host",
               "harness_version", "status", "seq", "imported_from")
GATE_COLUMNS = ("run_id", "baseline", "baseline_run_id", "case_label", "model", "delegate", "threads", "device_id",
                "verdict", "why", "recorded_at")
# Columns added after the first release: (name, declaration), added by ALTER TABLE to older databases.
# seq: recording order in this store; imported_from: JSON provenance of an imported run (NULL: measured here).
_RUNS_COLUMNS = (("seq", "INTEGER"), ("imported_from", "TEXT"), ("status", "TEXT"))
_RESULTS_COLUMNS = (("ci_low_us", "REAL"), ("ci_high_us", "REAL"))
_REINDEX_HINT = "`harness reindex --store DIR` rebuilds it from the JSONL files"


#: In the suite name of a run holding the repetitions adaptive mode added: ``<suite>.remeasure-of-<run id>``.
REMEASURE_MARK = ".remeasure-of-"


def new_run_id() -> str:
    """Sortable and unique: UTC time plus 6 random hex digits."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    suite: str
    started_at: str
    finished_at: str | None
    results_path: str
    report_path: str | None
    seq: int | None = None
    imported_from: str | None = None  # JSON provenance of an imported baseline; None for a run measured here

    @property
    def imported(self) -> bool:
        return self.imported_from is not None
    status: str | None = None  #: ``finished``, ``interrupted``, or None (running, or killed outright)

    @property
    def state(self) -> str:
        """``finished``, ``interrupted``, or ``unfinished`` (still running, or killed without a word)."""
        return self.status or ("finished" if self.finished_at else "unfinished")


class ResultWriter:
    """Appends results of one run to its JSONL file (fsync per line) and indexes them."""

    def __init__(self, store: Store, run_id: str, path: Path, *, index: bool = True) -> None:
        self.store = store
        self.run_id = run_id
        self.path = path
        self.index = index
        self._lock = threading.Lock()
        self._line = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        # "x": never overwrite an earlier run's file.
        self._fh = open(path, "x", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def append(self, result: Result) -> None:
        line = json.dumps(result.to_dict(), ensure_ascii=False, allow_nan=False)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._line += 1
            if self.index:
                self.store._index(result, self._line)

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()


@dataclass(frozen=True)
class HistoryRow:
    """One results-index row of a run, with the run's place in the store (for trends)."""

    run_id: str
    seq: int
    suite: str
    started_at: str
    imported: bool
    case_id: str
    model: str
    delegate: str
    threads: int
    api: str
    device_id: str
    device_model: str
    status: str
    median_us: float | None
    ci_low_us: float | None
    ci_high_us: float | None
    n: int


@dataclass(frozen=True)
class GateMark:
    """A gate's verdict on one case of a run, as recorded by :meth:`Store.record_gate`."""

    run_id: str
    baseline: str
    baseline_run_id: str | None
    case_label: str
    model: str
    delegate: str
    threads: int
    device_id: str
    verdict: str
    why: str
    recorded_at: str


@dataclass
class IndexDump:
    """A whole index as rows (tuples in :data:`RUN_COLUMNS`, :data:`RESULT_COLUMNS`, :data:`GATE_COLUMNS` order):
    what ``harness store copy`` moves from one backend to another."""

    runs: list[tuple] = field(default_factory=list)
    results: list[tuple] = field(default_factory=list)
    baselines: list[tuple[str, str, str]] = field(default_factory=list)
    gates: list[tuple] = field(default_factory=list)


class Store(ABC):
    """Results of runs: JSONL files in ``root`` (the record of truth) and an index answering queries.

    The shared behaviour lives here (files, baselines log, run resolution); a backend implements the
    index primitives (``_index_*``, ``runs``, ``baselines``, ``history``...). A broken index never stops a
    run: :meth:`_guarded` warns once and the results still reach the JSONL file.
    """

    #: Index exceptions a backend treats as "index broken" (warn, go on) and as a caller's bug (raise).
    _broken_errors: tuple[type[BaseException], ...] = (StoreError,)
    _duplicate_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, root: str | Path | None) -> None:
        self._root = Path(root) if root is not None else None
        self._db_lock = threading.Lock()
        self._index_broken = False

    @property
    def root(self) -> Path:
        """The local directory of JSONL files (a team store opened without one cannot write runs)."""
        if self._root is None:
            raise StoreError(f"{self.location}: no local results directory given",
                             hint="give the directory of JSONL files (`--out DIR` / `--dir DIR`)")
        return self._root

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the index is, for messages (never a password)."""

    def _guarded(self, what: str, op: Callable[[], None]) -> None:
        """Run ``op`` on the index; on a broken index warn once and go on without it.

        The JSONL file is the record of truth, so a corrupt, locked, unreachable or unwritable index
        must not stop a run: its results still reach the disk and :func:`rebuild_index` recovers them.
        """
        if self._index_broken:
            return
        try:
            op()
        except self._duplicate_errors:
            raise  # a duplicate run id is a caller's bug, not a broken index
        except self._broken_errors as exc:
            self._index_broken = True
            why = str(exc).split(" (hint:")[0] if isinstance(exc, StoreError) else f"{self.location}: {exc}"
            log.warning("warning: index not updated (%s: %s); results still go to the JSONL files; "
                        "`harness reindex --store %s` rebuilds the index", what, why, self._reindex_target())

    def _reindex_target(self) -> str:
        return str(self._root)

    # -- index primitives (one implementation per backend) --------------------------------------
    @abstractmethod
    def _index_begin(self, run_id: str, suite: str, started: str, results_path: str, host: str,
                     version: str) -> None: ...

    @abstractmethod
    def _index_finish(self, run_id: str, finished: str, report: str | None, status: str) -> None: ...

    @abstractmethod
    def _index_result(self, result: Result, line: int) -> None: ...

    @abstractmethod
    def _index_import(self, run: dict, results: Sequence[Result], name: str, created: str) -> None:
        """Record an imported run, its results and its baseline name in one transaction (StoreError if not)."""

    @abstractmethod
    def _index_set_baseline(self, name: str, run_id: str, created: str) -> None: ...

    @abstractmethod
    def runs(self) -> list[RunRecord]:
        """Every run, in the order it was recorded in this store (imported baselines included)."""

    @abstractmethod
    def baseline_run_id(self, name: str) -> str | None: ...

    @abstractmethod
    def baselines(self) -> list[tuple[str, str, str]]:
        """(name, run id, created) of every baseline, by name."""

    @abstractmethod
    def history(self, last: int | None = None, suite: str | None = None) -> list[HistoryRow]:
        """The results index rows of the ``last`` runs (all when None; of ``suite`` when given), oldest run first."""

    @abstractmethod
    def record_gate(self, run_id: str, baseline: str, marks: Sequence[GateMark]) -> None:
        """Remember a gate's verdicts on a run (shown by trends); replaces an earlier gate of the same pair."""

    @abstractmethod
    def gate_marks(self) -> list[GateMark]: ...

    @abstractmethod
    def _salvage_index(self, report: ReindexReport) -> tuple[dict[str, dict], list[tuple[str, str, str]]]:
        """Before a rebuild: what the index knows (runs of this directory by id, baselines); set aside if local."""

    @abstractmethod
    def _load_index(self, runs: Sequence[dict], results: dict[str, Sequence[Result]],
                    baselines: Sequence[tuple[str, str, str]]) -> None:
        """Write rebuilt runs (recording order, ``seq`` a hint), their results and baseline names."""

    @abstractmethod
    def _read(self, query: str, params: tuple = ()) -> list[tuple]:
        """Rows of one query on the index."""

    def export_index(self) -> IndexDump:
        return IndexDump(
            runs=self._recorded_runs(),
            results=self._read(sql("SELECT {cols} FROM results ORDER BY run_id, line", RESULT_COLUMNS)),
            baselines=self.baselines(),
            gates=self._read(sql("SELECT {cols} FROM gate_verdicts", GATE_COLUMNS)))

    def _recorded_runs(self) -> list[tuple]:
        """Every ``runs`` row in recording order."""
        return self._read(sql("SELECT {cols} FROM runs ORDER BY seq", RUN_COLUMNS))

    def import_index(self, dump: IndexDump) -> tuple[int, int]:
        """Add a dump's rows (runs already here are kept); returns (runs added, runs already present)."""
        have = {r.run_id for r in self.runs()}
        new = [row for row in dump.runs if row[0] not in have]
        self._import_rows(dump, new)
        return len(new), len(dump.runs) - len(new)

    @abstractmethod
    def _import_rows(self, dump: IndexDump, new: Sequence[tuple]) -> None:
        """In one transaction: the ``new`` runs (renumbered after this store's own, in the dump's order, see
        :func:`with_seq`), their results, the dump's baselines and gate verdicts."""

    def leases(self, lease_dir: str | Path | None = None) -> Leases:
        """Device leases for runs on this store: advisory file locks in ``lease_dir`` (default ``ROOT/leases``)."""
        from harness.leases import FileLeases

        return FileLeases(Path(lease_dir) if lease_dir is not None else inside(self.root, "leases"))

    def close(self) -> None:  # noqa: B027 - a backend with connections closes them
        """Release what the store holds open."""

    # -- shared behaviour ----------------------------------------------------------------------
    def begin_run(self, run_id: str, suite: str, results_path: Path | None = None) -> ResultWriter:
        check_name(run_id, "run id")
        if results_path is not None:
            path = contain(self.root, results_path)
        else:
            path = inside(self.root, f"{check_name(suite, 'suite name')}-{run_id}.jsonl")
        writer = ResultWriter(self, run_id, path)
        started = now_iso()
        self._guarded(f"run {run_id}", lambda: self._index_begin(
            run_id, suite, started, str(path.resolve()), os.uname().nodename, _version()))
        return writer

    def begin_part(self, run_id: str, suite: str, part: str) -> ResultWriter:
        """A worker's share of a run spread over processes (pytest-xdist): ``<suite>-<run>.<part>.jsonl``.

        Parts are durable (fsync per result) but not indexed: :meth:`merge_parts` folds them into
        the run's one file and index when every worker is done.
        """
        names = (check_name(suite, "suite name"), check_name(run_id, "run id"), check_name(part, "part name"))
        return ResultWriter(self, run_id, inside(self.root, "{}-{}.{}.jsonl".format(*names)), index=False)

    def merge_parts(self, run_id: str, suite: str) -> tuple[ResultWriter, list[Result]] | None:
        """Fold every part of ``run_id`` into one run (file and index), oldest result first.

        Returns the run's open writer and its results, or None when no part exists. The part
        files are removed only once the merged file holds every result, fsynced.
        """
        stem = glob.escape(f"{check_name(suite, 'suite name')}-{check_name(run_id, 'run id')}")
        parts = sorted(self.root.glob(f"{stem}.*.jsonl"))
        if not parts:
            return None
        results = [r for path in parts for r in iter_results(path)]
        results.sort(key=lambda r: (r.finished_at or "", r.started_at or ""))
        writer = self.begin_run(run_id, suite)
        for result in results:
            writer.append(result)
        for path in parts:
            path.unlink()
        return writer, results

    def finish_run(self, run_id: str, report_path: Path | None = None, *, interrupted: bool = False) -> None:
        """Record the end of a run; ``interrupted`` marks one stopped before every case ended."""
        finished, report = now_iso(), str(report_path.resolve()) if report_path else None
        status = "interrupted" if interrupted else "finished"
        self._guarded(f"run {run_id}", lambda: self._index_finish(run_id, finished, report, status))

    def _index(self, result: Result, line: int) -> None:
        self._guarded(f"run {result.run_id}", lambda: self._index_result(result, line))

    def resolve_run(self, ref: str) -> RunRecord:
        """A run by id, unique id prefix, ``latest`` (newest run measured here), or a baseline name."""
        runs = self.runs()
        if not runs:
            raise StoreError(f"no runs recorded in {self.location}", hint="run `harness run SUITE` first")
        if ref == "latest":
            # never an imported baseline, nor the repetitions `harness gate --remeasure` added (harness.remeasure)
            measured = [r for r in runs if not r.imported and REMEASURE_MARK not in r.suite]
            if not measured:
                raise StoreError(f"no run measured in {self.location} yet (only imported baselines)",
                                 hint="`latest` never means an imported baseline; run `harness run SUITE` first")
            return measured[-1]
        exact = [r for r in runs if r.run_id == ref]
        if exact:
            return exact[0]
        baseline = self.baseline_run_id(ref)
        if baseline:
            return self.resolve_run(baseline)
        prefixed = [r for r in runs if r.run_id.startswith(ref)]
        if len(prefixed) == 1:
            return prefixed[0]
        if prefixed:
            raise StoreError(f"run id prefix {ref!r} is ambiguous ({len(prefixed)} runs)")
        raise StoreError(f"no run {ref!r} in {self.location}", hint="`harness runs` lists them")

    def load_run(self, ref: str) -> list[Result]:
        return load_results(self.resolve_run(ref).results_path)

    def load_baseline(self, name: str) -> list[Result]:
        """The results of baseline ``name``, found by its run id (a name like a run id or ``latest`` never picks
        another run); a clear error when there is no such name."""
        run_id = self.baseline_run_id(name)
        if run_id is None:
            raise StoreError(f"no baseline named {name!r} in {self.location}",
                             hint="`harness baseline set NAME --run RUN` or `harness baseline import NAME FILE`")
        return self.load_run(run_id)

    def set_baseline(self, name: str, run_id: str) -> None:
        check_baseline_name(name)
        created = now_iso()
        self._index_set_baseline(name, run_id, created)
        self._log_baseline(name, run_id, created)

    @property
    def baselines_log(self) -> Path:
        """Append-only record of baseline names (JSON lines) beside the results, so a lost index loses no name."""
        return self.root / BASELINES_LOG

    def _log_baseline(self, name: str, run_id: str, created: str) -> None:
        if self._root is None:  # a team store opened without a local directory: the server holds the name
            return
        line = json.dumps({"name": name, "run_id": run_id, "created_at": created}) + "\n"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.baselines_log, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:  # the index holds the name; only a later reindex would miss it
            log.warning("warning: %s: baseline %s not logged (%s)", self.baselines_log, name, exc.strerror or exc)


class LocalStore(Store):
    """JSONL files in a directory plus ``harness.sqlite`` beside them (or at ``db_path``)."""

    _duplicate_errors = (sqlite3.IntegrityError,)

    def _recorded_runs(self) -> list[tuple]:
        return self._read(sql("SELECT {cols} FROM runs ORDER BY seq, rowid", RUN_COLUMNS))  # ties: older files
    _broken_errors = (StoreError, sqlite3.DatabaseError)

    def __init__(self, root: str | Path = "reports", db_path: str | Path | None = None) -> None:
        super().__init__(root)
        self.db_path = Path(db_path) if db_path else inside(self.root, "harness.sqlite")

    @property
    def location(self) -> str:
        return str(self.db_path)

    def _connect(self) -> sqlite3.Connection:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.db_path, timeout=30)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                _migrate(conn)
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.db_path}: not a usable SQLite index ({exc})",
                             hint=_REINDEX_HINT.replace("DIR", str(self.root))) from None
        return conn

    def _write(self, op: Callable[[sqlite3.Connection], object]) -> None:
        """Run ``op`` in one transaction."""
        with self._db_lock, closing(self._connect()) as conn, conn:
            op(conn)

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with closing(self._connect()) as conn:
            return conn.execute(sql, params).fetchall()

    def _index_begin(self, run_id: str, suite: str, started: str, results_path: str, host: str,
                     version: str) -> None:
        self._write(lambda conn: conn.execute(
            "INSERT INTO runs (run_id, suite, started_at, results_path, host, harness_version, seq)"
            " VALUES (?,?,?,?,?,?,(SELECT COALESCE(MAX(seq), 0) + 1 FROM runs))",
            (run_id, suite, started, results_path, host, version)))

    def _index_finish(self, run_id: str, finished: str, report: str | None, status: str) -> None:
        self._write(lambda conn: conn.execute(
            "UPDATE runs SET finished_at=?, report_path=?, status=? WHERE run_id=?",
            (finished, report, status, run_id)))

    def _index_result(self, result: Result, line: int) -> None:
        self._write(lambda conn: _insert_result(conn, result, line))

    def _index_import(self, run: dict, results: Sequence[Result], name: str, created: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO runs (run_id, suite, started_at, finished_at, results_path, seq, imported_from)"
                " VALUES (?,?,?,?,?,(SELECT COALESCE(MAX(seq), 0) + 1 FROM runs),?)",
                (run["run_id"], run["suite"], run["started_at"], run["finished_at"], run["results_path"],
                 run["imported_from"]))
            for line, result in enumerate(results, 1):
                _insert_result(conn, result, line)
            conn.execute("INSERT OR REPLACE INTO baselines VALUES (?,?,?)", (name, run["run_id"], created))
        try:
            self._write(op)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.db_path}: cannot record the import ({exc})",
                             hint=_REINDEX_HINT.replace("DIR", str(self.root))) from None

    def _index_set_baseline(self, name: str, run_id: str, created: str) -> None:
        self._write(lambda conn: conn.execute("INSERT OR REPLACE INTO baselines VALUES (?,?,?)",
                                              (name, run_id, created)))

    def runs(self) -> list[RunRecord]:
        """Every run, in the order it was recorded in this store (imported baselines included)."""
        rows = self._read("SELECT run_id, suite, started_at, finished_at, results_path, report_path, seq,"
                          " imported_from, status FROM runs ORDER BY seq, rowid")
        return [RunRecord(*row) for row in rows]

    def baseline_run_id(self, name: str) -> str | None:
        rows = self._read("SELECT run_id FROM baselines WHERE name=?", (name,))
        return rows[0][0] if rows else None

    def baselines(self) -> list[tuple[str, str, str]]:
        return self._read("SELECT name, run_id, created_at FROM baselines ORDER BY name")

    def history(self, last: int | None = None, suite: str | None = None) -> list[HistoryRow]:
        rows = self._read(_history_sql(), (suite, suite, -1 if last is None else last))
        return [HistoryRow(*row[:4], row[4] is not None, *row[5:]) for row in rows]

    def record_gate(self, run_id: str, baseline: str, marks: Sequence[GateMark]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM gate_verdicts WHERE run_id=? AND baseline=?", (run_id, baseline))
            conn.executemany(sql("INSERT OR REPLACE INTO gate_verdicts ({cols}) VALUES ({marks})", GATE_COLUMNS, "?"),
                             [_gate_row(m) for m in marks])
        self._write(op)

    def gate_marks(self) -> list[GateMark]:
        return [GateMark(*row) for row in self._read(sql("SELECT {cols} FROM gate_verdicts", GATE_COLUMNS))]

    def _salvage_index(self, report: ReindexReport) -> tuple[dict[str, dict], list[tuple[str, str, str]]]:
        report.old_index_readable = _index_readable(self.db_path)
        if self.db_path.exists():
            report.moved_to = _move_aside(self.db_path, "old" if report.old_index_readable else "corrupt")
        return _salvage(report.moved_to) if report.moved_to else ({}, [])

    def _load_index(self, runs: Sequence[dict], results: dict[str, Sequence[Result]],
                    baselines: Sequence[tuple[str, str, str]]) -> None:
        self._index_broken = False

        def op(conn: sqlite3.Connection) -> None:
            for seq, run in enumerate(runs, 1):
                row = {**run, "seq": seq}
                conn.execute(sql("INSERT INTO runs ({cols}) VALUES ({marks})", RUN_COLUMNS, "?"),
                             tuple(row.get(c) for c in RUN_COLUMNS))
                for line, result in enumerate(results[run["run_id"]], 1):
                    _insert_result(conn, result, line)
            for name, run_id, created in baselines:
                conn.execute("INSERT OR REPLACE INTO baselines VALUES (?,?,?)", (name, run_id, created))
        self._write(op)

    def _import_rows(self, dump: IndexDump, new: Sequence[tuple]) -> None:
        added = {row[0] for row in new}

        def op(conn: sqlite3.Connection) -> None:
            top = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM runs").fetchone()[0]
            for i, row in enumerate(new, 1):
                conn.execute(sql("INSERT INTO runs ({cols}) VALUES ({marks})", RUN_COLUMNS, "?"),
                             with_seq(row, top + i))
            conn.executemany(sql("INSERT OR REPLACE INTO results ({cols}) VALUES ({marks})", RESULT_COLUMNS, "?"),
                             [r for r in dump.results if r[0] in added])
            conn.executemany("INSERT OR REPLACE INTO baselines VALUES (?,?,?)", dump.baselines)
            conn.executemany(sql("INSERT OR REPLACE INTO gate_verdicts ({cols}) VALUES ({marks})", GATE_COLUMNS, "?"),
                             dump.gates)
        self._write(op)


def with_seq(run_row: Sequence, seq: int) -> tuple:
    """A ``runs`` row (in :data:`RUN_COLUMNS` order) with its recording number replaced."""
    at = RUN_COLUMNS.index("seq")
    return (*run_row[:at], seq, *run_row[at + 1:])


def sql(template: str, columns: Sequence[str], mark: str = "?") -> str:
    """``template`` with ``{cols}`` (the fixed column names) and ``{marks}`` (one placeholder each); values are
    always bound, never formatted in."""
    return template.format(cols=", ".join(columns), marks=",".join([mark] * len(columns)))


def _gate_row(mark: GateMark) -> tuple:
    return tuple(getattr(mark, c) for c in GATE_COLUMNS)


def _history_sql(mark: str = "?") -> str:
    """Index rows of the newest runs (of one suite, or all when the suite is NULL; ``LIMIT -1``/``NULL``: all
    runs) joined with their run; both backends. Parameters: suite, suite, limit."""
    return (
        "SELECT r.run_id, r.seq, r.suite, r.started_at, r.imported_from, x.case_id, x.model, x.delegate, x.threads,"
        " x.api, x.device_id, x.device_model, x.status, x.median_us, x.ci_low_us, x.ci_high_us, x.n"
        " FROM results x JOIN (SELECT * FROM runs WHERE ({m} IS NULL OR suite = {m}) ORDER BY seq DESC LIMIT {m}) r"
        " ON r.run_id = x.run_id ORDER BY r.seq, x.line").replace("{m}", mark)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an older index up to date: add the columns it lacks, number its runs in rowid order."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for table, columns, present in (("runs", _RUNS_COLUMNS, have), ("results", _RESULTS_COLUMNS, None)):
        present = present if present is not None else {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns:
            if name not in present:
                try:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
                except sqlite3.OperationalError as exc:  # another process added it first
                    if "duplicate column" not in str(exc):
                        raise
    if "seq" not in have:
        with conn:
            conn.execute("UPDATE runs SET seq = rowid WHERE seq IS NULL")


def result_row(result: Result, line: int) -> tuple:
    """The results index row of ``result`` (:data:`RESULT_COLUMNS`): its median and the 95% interval of it."""
    lat = result.latency
    centers = [r.center_us for r in lat.repetitions if r.center_us is not None] if lat else []
    median = (statistics.median(lat.samples_us) if lat and lat.samples_us else
              (statistics.median(centers) if centers else None))
    low = high = None
    reps = [tuple(r.samples_us) if r.samples_us else (float(r.center_us),)
            for r in (lat.repetitions if lat else ()) if r.samples_us or r.center_us is not None]
    if result.status == "ok" and reps:
        try:
            interval = stats.summarize(reps, n_boot=_INDEX_BOOT).median_ci
            low, high = (interval.low, interval.high) if interval else (None, None)
        except (ValueError, FloatingPointError):  # figures stats will not take: the row keeps its median only
            pass
    return (result.run_id, line, result.case.case_id, result.case.model, result.case.model_sha256,
            result.case.delegate, result.case.threads, result.case.api, result.device.id,
            result.device.model, result.status, median,
            lat.n_iterations if lat else 0, len(lat.repetitions) if lat else 0, result.finished_at, low, high)


# Bootstrap resamples for the indexed interval (the trend's noise band; compare draws its own 2000): about 20 ms a
# result on a busy 2-core host, paid once as the result is written (and again by a reindex).
_INDEX_BOOT = 500


def _insert_result(conn: sqlite3.Connection, result: Result, line: int) -> None:
    conn.execute(sql("INSERT OR REPLACE INTO results ({cols}) VALUES ({marks})", RESULT_COLUMNS, "?"),
                 result_row(result, line))

_RESERVED_NAMES = ("latest",)


def check_baseline_name(name: str) -> str:
    """A baseline name follows :data:`harness.names.RULE` (it becomes part of a file name) and is not ``latest``
    (it would shadow the newest run)."""
    reason = problem(name) or ("is reserved" if name in _RESERVED_NAMES else None)
    if reason is not None:
        raise StoreError(f"bad baseline name {shown(name)} ({reason})",
                         hint=f"use {RULE}; not 'latest' (it always means the newest measured run)")
    return name


BASELINES_LOG = "baselines.log"
BASELINE_FORMAT = "edgeharness-baseline"
BASELINE_VERSION = 1


def export_baseline(store: Store, name: str) -> dict:
    """A baseline as one JSON document (CI keeps it as an artifact or in git)."""
    run_id = store.baseline_run_id(name)
    if run_id is None:
        raise StoreError(f"no baseline named {name!r} in {store.location}", hint="`harness baseline list`")
    run = store.resolve_run(run_id)
    return {"format": BASELINE_FORMAT, "version": BASELINE_VERSION, "name": name, "run_id": run.run_id,
            "suite": run.suite, "results": [r.to_dict() for r in load_results(run.results_path)]}


MAX_BASELINE_BYTES = 512 * 2**20  # an exported baseline of thousands of results is a few MB
_MAX_LINE_WARNINGS = 5
_IMPORT_HINT = "nothing was imported; export the baseline again with `harness baseline export NAME`"


def import_baseline(store: Store, name: str, path: str | Path) -> str:
    """Store an exported baseline file as a NEW run of this store, named ``name``; return its run id.

    The file is untrusted. It is validated whole before anything is written (every record's
    shape, types and finite numbers). The run gets a fresh local id, so the file's own id can
    neither collide with a run here nor sort as ``latest``; that id, the file and the import time
    are kept as provenance (``runs.imported_from`` and ``imported_*`` keys of each result's
    environment). It is all-or-nothing: the results go to a temp file in the store directory
    (fsynced, then linked into place) and are indexed in one SQLite transaction; on any failure
    nothing is registered and no file is left.
    """
    check_baseline_name(name)
    path = Path(path)
    raw = _read_baseline_bytes(path)
    original_id, suite, results = _validate_baseline(path, raw)
    run_id, imported_at = new_run_id(), now_iso()
    provenance = {"run_id": original_id, "file": str(path.resolve()), "sha256": hashlib.sha256(raw).hexdigest(),
                  "imported_at": imported_at, "baseline": name}
    stamp = {"imported_from_run": original_id, "imported_from_file": path.name, "imported_at": imported_at,
             "imported_as": name}
    results = [replace(r, run_id=run_id, environment={**r.environment, **stamp}) for r in results]
    final = store.root / f"baseline-{name}-{run_id}.jsonl"
    _write_new_file(final, "".join(json.dumps(r.to_dict(), ensure_ascii=False, allow_nan=False) + "\n"
                                   for r in results))
    started = min((r.started_at for r in results if r.started_at), default=imported_at)
    finished = max((r.finished_at for r in results if r.finished_at), default=imported_at)
    run = {"run_id": run_id, "suite": suite, "started_at": started, "finished_at": finished,
           "results_path": str(final.resolve()), "imported_from": json.dumps(provenance)}
    try:
        store._index_import(run, results, name, imported_at)
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    store._log_baseline(name, run_id, imported_at)
    return run_id


def _read_baseline_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_BASELINE_BYTES:
            raise StoreError(f"{path}: {size} bytes is larger than a baseline can be ({MAX_BASELINE_BYTES} bytes)")
        return path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"baseline file not found: {path}") from None
    except OSError as exc:
        raise StoreError(f"cannot read baseline file {path}: {exc.strerror or exc}") from None


def _short_text(value: object, what: str, path: Path, default: str | None = None) -> str:
    """A one-line printable string of at most 200 characters (it is shown in listings)."""
    if value is None and default is not None:
        return default
    if not isinstance(value, str) or not value or len(value) > 200 or not value.isprintable():
        raise StoreError(f"{path} [{what}]: expected a one-line text of 1-200 printable characters, "
                         f"got {value!r:.60}", hint=_IMPORT_HINT)
    return value


def _validate_baseline(path: Path, raw: bytes) -> tuple[str, str, list[Result]]:
    """The file's own run id, its suite name and its results, every record checked; StoreError otherwise."""
    hint = _IMPORT_HINT
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise StoreError(f"baseline file {path} is not valid JSON ({str(exc)[:200]})", hint=hint) from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise StoreError(f"{path} is not an edgeharness baseline (format {found!r:.60})")
    version = data.get("version", BASELINE_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise StoreError(f"{path} [version]: expected a positive integer, got {version!r:.60}", hint=hint)
    if version > BASELINE_VERSION:
        raise StoreError(f"{path}: baseline version {version} is newer than this harness understands")
    original_id = _short_text(data.get("run_id"), "run_id", path)
    suite = _short_text(data.get("suite"), "suite", path, default="baseline")
    records = data.get("results")
    if not isinstance(records, list):
        raise StoreError(f"{path} [results]: expected a list of result records", hint=hint)
    if not records:
        raise StoreError(f"{path}: the baseline holds no results")
    results = []
    for i, record in enumerate(records):
        try:
            results.append(Result.from_dict(record))
        except (ValueError, RecursionError) as exc:
            raise StoreError(f"{path} [results[{i}]]: {str(exc)[:300]}", hint=hint) from None
    return original_id, suite, results


def _write_new_file(final: Path, text: str) -> None:
    """Write ``final`` whole or not at all, never over an existing file: temp file, fsync, link, fsync dir."""
    tmp = final.with_name(f".{final.name}.tmp-{secrets.token_hex(4)}")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, final)  # atomic and refuses to replace an existing file
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links
            if final.exists():
                raise FileExistsError(final) from None
            os.replace(tmp, final)
    except OSError as exc:
        raise StoreError(f"cannot write {final}: {exc.strerror or exc}") from None
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
    with suppress(OSError):
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def iter_results(path: str | Path) -> Iterator[Result]:
    """Read a JSONL results file, skipping what is not a result record.

    A torn last line (a run killed mid-write) is skipped silently. A bad line elsewhere (disk
    damage, a hand edit, a record from a newer harness) is skipped with one warning naming
    ``file:line`` and why, so it never hides the rest of the run. Lines end at a newline only:
    ``str.splitlines`` would also cut at U+2028 or U+0085, which JSON leaves unescaped in strings.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoreError(f"results file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read results file {path}: {exc}") from None
    lines = text.split("\n")
    last = max((i for i, line in enumerate(lines, 1) if line.strip()), default=0)
    bad = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            result = Result.from_dict(json.loads(line))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            if number == last:
                continue  # torn final write of a killed run
            bad += 1
            if bad <= _MAX_LINE_WARNINGS:
                log.warning("warning: %s:%d: skipped, not a result record (%s)", path, number, str(exc)[:200])
            continue
        yield result
    if bad > _MAX_LINE_WARNINGS:
        log.warning("warning: %s: %d more bad lines skipped", path, bad - _MAX_LINE_WARNINGS)


def load_results(path: str | Path) -> list[Result]:
    return list(iter_results(path))


@dataclass
class ReindexReport:
    """What :func:`rebuild_index` did: where the old index went and what it could (not) recover."""

    db_path: Path | str  # the index: a SQLite file, or a team store's location
    moved_to: Path | None = None
    old_index_readable: bool = True
    runs: list[str] = field(default_factory=list)
    results: int = 0
    baselines: list[str] = field(default_factory=list)
    lost_baselines: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def rebuild_index(store: Store) -> ReindexReport:
    """Rebuild the index from the JSONL files in the store directory; nothing is deleted.

    A team store (PostgreSQL) is shared by many hosts: its rebuild replaces the rows of the runs whose
    files are in this directory and leaves other runs alone. For ``harness.sqlite``:

    The old database (with its WAL files) is moved aside as ``harness.sqlite.corrupt-TIMESTAMP``
    when it does not read, ``harness.sqlite.old-TIMESTAMP`` otherwise; what still reads of it
    (suite names, times, recording order, baseline names) is carried over. Imported baselines
    come back from the provenance their records carry. Baselines that cannot be recovered are
    listed in the report. Run it while no run is writing to the store.
    """
    report = ReindexReport(store.location)
    old_runs, old_baselines = store._salvage_index(report)
    found: dict[str, tuple[Path, list[Result]]] = {}
    for path in sorted(store.root.glob("*.jsonl")):
        try:
            results = load_results(path)
        except StoreError as exc:
            report.skipped.append(f"{path}: {exc}")
            continue
        if not results:
            report.skipped.append(f"{path}: no result records")
            continue
        run_id = results[0].run_id
        if not path.stem.endswith(run_id):
            report.skipped.append(f"{path}: not a run's results file (its records say run {run_id}; "
                                  "a worker's unmerged part or a renamed file)")
        elif run_id in found:
            report.skipped.append(f"{path}: run {run_id} is already indexed from {found[run_id][0]}")
        else:
            found[run_id] = (path, results)
    for run_id, old in old_runs.items():
        if run_id not in found:
            report.skipped.append(f"run {run_id}: its results file {old.get('results_path')} is not in {store.root}; "
                                  "not indexed (its record stays in the old index)")

    def recorded(run_id: str) -> tuple[int, float, str]:
        old = old_runs.get(run_id, {})
        results = found[run_id][1]
        when = results[0].environment.get("imported_at") or min((r.started_at for r in results), default="")
        return (0, old["seq"], "") if old.get("seq") is not None else (1, 0, str(when))

    rows: list[dict] = []
    for run_id in sorted(found, key=recorded):
        path, results = found[run_id]
        old = old_runs.get(run_id, {})
        stamp = results[0].environment
        imported_from = old.get("imported_from") or (json.dumps(
            {"run_id": stamp["imported_from_run"], "file": stamp.get("imported_from_file"),
             "imported_at": stamp.get("imported_at"), "baseline": stamp.get("imported_as")})
            if "imported_from_run" in stamp else None)
        rows.append({
            "run_id": run_id, "suite": old.get("suite") or _suite_from_file(path, run_id),
            "started_at": old.get("started_at") or min(r.started_at for r in results),
            "finished_at": old.get("finished_at") or max(r.finished_at for r in results),
            "results_path": str(path.resolve()), "report_path": old.get("report_path"), "seq": old.get("seq"),
            "imported_from": imported_from, "host": old.get("host"), "harness_version": old.get("harness_version"),
            "status": old.get("status")})
        report.runs.append(run_id)
        report.results += len(results)
    names: dict[str, tuple[str, str]] = {}
    # newest wins: imported runs carry their name, baselines.log has every name set or imported ...
    claims = [(stamp.get("imported_as"), run_id, str(stamp.get("imported_at") or ""))
              for run_id in report.runs for stamp in [found[run_id][1][0].environment]]
    for name, run_id, when in claims + _read_baselines_log(store.baselines_log, report):
        if not isinstance(name, str) or (name in names and names[name][1] > when):
            continue
        if run_id in found:
            names[name] = (run_id, when)
        else:
            report.lost_baselines.append(f"{name} (run {run_id}: no results file for it in {store.root})")
    for name, run_id, created in old_baselines:  # ... and the old index knows best, when it still reads
        if run_id in found:
            names[name] = (run_id, created)
        elif name not in names:
            report.lost_baselines.append(f"{name} (run {run_id}: no results file for it in {store.root})")
    report.lost_baselines = [x for x in dict.fromkeys(report.lost_baselines) if x.split(" ")[0] not in names]
    store._load_index(rows, {run_id: found[run_id][1] for run_id in found},
                      [(name, run_id, created or now_iso()) for name, (run_id, created) in sorted(names.items())])
    report.baselines = sorted(names)
    return report


def _read_baselines_log(path: Path, report: ReindexReport) -> list[tuple[str, str, str]]:
    """(name, run id, created) entries of ``baselines.log``, in order; bad lines are reported and skipped."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        report.skipped.append(f"{path}: {exc}")
        return []
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            name, run_id, created = (entry["name"], entry["run_id"], entry["created_at"])
            if not (isinstance(run_id, str) and isinstance(created, str)):
                raise ValueError("run_id and created_at must be strings")
            entries.append((check_baseline_name(name), run_id, created))
        except (ValueError, KeyError, TypeError, RecursionError, StoreError) as exc:
            report.skipped.append(f"{path}:{number}: not a baseline entry ({str(exc)[:120]})")
    return entries


def _index_readable(db_path: Path) -> bool:
    if not db_path.exists():
        return True
    try:
        with closing(sqlite3.connect(db_path, timeout=30)) as conn:
            return conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    except sqlite3.DatabaseError:
        return False


def _move_aside(db_path: Path, why: str) -> Path:
    """Rename the database and its ``-wal``/``-shm`` companions to ``NAME.WHY-TIMESTAMP`` (never over a file)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = db_path.with_name(f"{db_path.name}.{why}-{stamp}")
    while any(Path(f"{target}{sfx}").exists() for sfx in ("", "-wal", "-shm")):
        target = db_path.with_name(f"{db_path.name}.{why}-{stamp}-{secrets.token_hex(2)}")
    for suffix in ("-wal", "-shm", ""):
        companion = Path(f"{db_path}{suffix}")
        if companion.exists():
            os.rename(companion, f"{target}{suffix}")
    return target


def _salvage(db_path: Path) -> tuple[dict[str, dict], list[tuple[str, str, str]]]:
    """Whatever still reads of an old index: runs by id, and baselines (name, run id, created)."""
    runs: dict[str, dict] = {}
    baselines: list[tuple[str, str, str]] = []
    try:
        with closing(sqlite3.connect(db_path, timeout=30)) as conn:
            conn.row_factory = sqlite3.Row
            runs = {row["run_id"]: dict(row) for row in conn.execute("SELECT * FROM runs")}
            baselines = [tuple(row) for row in conn.execute("SELECT name, run_id, created_at FROM baselines")]
    except sqlite3.DatabaseError as exc:
        log.debug("old index %s: %s", db_path, exc)
    return runs, baselines


def _suite_from_file(path: Path, run_id: str) -> str:
    stem = path.stem[: -len(run_id)].rstrip("-")
    if stem.startswith("baseline-"):
        return "baseline"
    return stem or "unknown"


def is_server_uri(uri: str | Path | None) -> bool:
    """A PostgreSQL team store URI (``postgresql://...`` or ``postgres://...``)."""
    return str(uri or "").startswith(("postgresql://", "postgres://"))


def open_store(uri: str | Path = "reports", db_path: str | Path | None = None) -> Store:
    """A store by URI: a directory path or ``file:DIR`` (SQLite index ``db_path`` or ``DIR/harness.sqlite``),
    or ``postgresql://...`` (the team store; ``db_path`` may be that URI instead, ``uri`` then the directory
    of JSONL files). A server store opened without a directory reads history but cannot record runs."""
    if is_server_uri(db_path) or is_server_uri(uri):
        from harness.store_pg import PostgresStore  # psycopg is imported only for a server store

        dsn, root = (str(db_path), uri) if is_server_uri(db_path) else (str(uri), None)
        return PostgresStore(dsn, None if root is None or is_server_uri(root) else _local_dir(root))
    return LocalStore(_local_dir(uri), db_path)


def _local_dir(uri: str | Path) -> str:
    text = str(uri)
    if text.startswith("file:"):
        text = text[5:]
    elif "://" in text:
        raise StoreError(f"unsupported store URI {shown(text)}",
                         hint="a directory (file:DIR) or a PostgreSQL URI (postgresql://user@host/db)")
    return text


def _version() -> str:
    from harness import __version__

    return __version__
