"""Durable results: one JSON Lines file per run (fsync per result) indexed in SQLite.

The JSONL file is the record of truth: a run killed halfway keeps every finished result,
because each line is flushed and fsynced before the next case starts. The SQLite index
(WAL mode, so several runs on one host can write at once) answers history queries and
holds baseline names. A run's files are never overwritten: each run has its own id.

``open_store(uri)`` picks a backend by URI, leaving room for a shared server database
behind the same interface (as pytest-benchmark's storage does); today ``file:`` paths only.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import statistics
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import StoreError
from harness.results import Result

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
"""


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
    status: str | None = None  #: ``finished``, ``interrupted``, or None (running, or killed outright)

    @property
    def state(self) -> str:
        """``finished``, ``interrupted``, or ``unfinished`` (still running, or killed without a word)."""
        return self.status or ("finished" if self.finished_at else "unfinished")


class ResultWriter:
    """Appends results of one run to its JSONL file (fsync per line) and indexes them."""

    def __init__(self, store: LocalStore, run_id: str, path: Path, *, index: bool = True) -> None:
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


class LocalStore:
    """JSONL files in a directory plus ``harness.sqlite`` beside them (or at ``db_path``)."""

    def __init__(self, root: str | Path = "reports", db_path: str | Path | None = None) -> None:
        self.root = Path(root)
        self.db_path = Path(db_path) if db_path else self.root / "harness.sqlite"
        self._db_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.db_path, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            _add_status_column(conn)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.db_path}: not a usable SQLite index ({exc})",
                             hint="move it away; `harness reindex` can rebuild it from the JSONL files") from None
        return conn

    def begin_run(self, run_id: str, suite: str, results_path: Path | None = None) -> ResultWriter:
        path = results_path or self.root / f"{suite}-{run_id}.jsonl"
        writer = ResultWriter(self, run_id, path)
        with self._db_lock, closing(self._connect()) as conn, conn:
            conn.execute(
                "INSERT INTO runs (run_id, suite, started_at, results_path, host, harness_version)"
                " VALUES (?,?,?,?,?,?)",
                (run_id, suite, now_iso(), str(path.resolve()), os.uname().nodename, _version()),
            )
        return writer

    def begin_part(self, run_id: str, suite: str, part: str) -> ResultWriter:
        """A worker's share of a run spread over processes (pytest-xdist): ``<suite>-<run>.<part>.jsonl``.

        Parts are durable (fsync per result) but not indexed: :meth:`merge_parts` folds them into
        the run's one file and index when every worker is done.
        """
        if not part.replace("-", "").replace("_", "").isalnum():
            raise StoreError(f"part name {part!r} must be letters, digits, '-' or '_'")
        return ResultWriter(self, run_id, self.root / f"{suite}-{run_id}.{part}.jsonl", index=False)

    def merge_parts(self, run_id: str, suite: str) -> tuple[ResultWriter, list[Result]] | None:
        """Fold every part of ``run_id`` into one run (file and index), oldest result first.

        Returns the run's open writer and its results, or None when no part exists. The part
        files are removed only once the merged file holds every result, fsynced.
        """
        parts = sorted(self.root.glob(f"{suite}-{run_id}.*.jsonl"))
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
        with self._db_lock, closing(self._connect()) as conn, conn:
            conn.execute("UPDATE runs SET finished_at=?, report_path=?, status=? WHERE run_id=?",
                         (now_iso(), str(report_path.resolve()) if report_path else None,
                          "interrupted" if interrupted else "finished", run_id))

    def _index(self, result: Result, line: int) -> None:
        lat = result.latency
        centers = [r.center_us for r in lat.repetitions if r.center_us is not None] if lat else []
        with self._db_lock, closing(self._connect()) as conn, conn:
            conn.execute(
                "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    result.run_id, line, result.case.case_id, result.case.model, result.case.model_sha256,
                    result.case.delegate, result.case.threads, result.case.api, result.device.id,
                    result.device.model, result.status,
                    statistics.median(lat.samples_us) if lat and lat.samples_us else (
                        statistics.median(centers) if centers else None),
                    lat.n_iterations if lat else 0, len(lat.repetitions) if lat else 0, result.finished_at,
                ),
            )

    def runs(self) -> list[RunRecord]:
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT run_id, suite, started_at, finished_at, results_path, report_path, status FROM runs"
                " ORDER BY run_id"
            ).fetchall()
        return [RunRecord(*row) for row in rows]

    def resolve_run(self, ref: str) -> RunRecord:
        """A run by id, unique id prefix, ``latest``, or a baseline name."""
        runs = self.runs()
        if not runs:
            raise StoreError(f"no runs recorded in {self.db_path}", hint="run `harness run SUITE` first")
        if ref == "latest":
            return runs[-1]
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
        raise StoreError(f"no run {ref!r} in {self.db_path}", hint="`harness runs` lists them")

    def load_run(self, ref: str) -> list[Result]:
        return load_results(self.resolve_run(ref).results_path)

    def set_baseline(self, name: str, run_id: str) -> None:
        with self._db_lock, closing(self._connect()) as conn, conn:
            conn.execute("INSERT OR REPLACE INTO baselines VALUES (?,?,?)", (name, run_id, now_iso()))

    def baseline_run_id(self, name: str) -> str | None:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT run_id FROM baselines WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def baselines(self) -> list[tuple[str, str, str]]:
        with closing(self._connect()) as conn:
            return conn.execute("SELECT name, run_id, created_at FROM baselines ORDER BY name").fetchall()


BASELINE_FORMAT = "edgeharness-baseline"
BASELINE_VERSION = 1


def export_baseline(store: LocalStore, name: str) -> dict:
    """A baseline as one JSON document (CI keeps it as an artifact or in git)."""
    run_id = store.baseline_run_id(name)
    if run_id is None:
        raise StoreError(f"no baseline named {name!r} in {store.db_path}", hint="`harness baseline list`")
    run = store.resolve_run(run_id)
    return {"format": BASELINE_FORMAT, "version": BASELINE_VERSION, "name": name, "run_id": run.run_id,
            "suite": run.suite, "results": [r.to_dict() for r in load_results(run.results_path)]}


def import_baseline(store: LocalStore, name: str, path: str | Path) -> str:
    """Store an exported baseline's results as a run (its own id kept) and name it; return the run id."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"baseline file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"baseline file {path} is not valid JSON ({exc})",
                         hint="export it again with `harness baseline export NAME`") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise StoreError(f"{path} is not an edgeharness baseline (format {found!r})")
    if int(data.get("version", 0)) > BASELINE_VERSION:
        raise StoreError(f"{path}: baseline version {data['version']} is newer than this harness understands")
    try:
        results = [Result.from_dict(r) for r in data["results"]]
        run_id = str(data["run_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{path}: corrupt baseline ({type(exc).__name__}: {exc})") from None
    if not results:
        raise StoreError(f"{path}: the baseline holds no results")
    known = {r.run_id for r in store.runs()}
    if run_id not in known:
        writer = store.begin_run(run_id, str(data.get("suite") or "baseline"),
                                 results_path=store.root / f"baseline-{name}-{run_id}.jsonl")
        try:
            for result in results:
                writer.append(result)
        finally:
            writer.close()
        store.finish_run(run_id)
    store.set_baseline(name, run_id)
    return run_id


def iter_results(path: str | Path) -> Iterator[Result]:
    """Read a JSONL results file; a torn last line (run killed mid-write) is skipped, others are errors."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise StoreError(f"results file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read results file {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield Result.from_dict(json.loads(line))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            if number == len(lines):
                continue  # torn final write of a killed run
            raise StoreError(f"{path}:{number}: not a result record ({exc})") from None


def load_results(path: str | Path) -> list[Result]:
    return list(iter_results(path))


def open_store(uri: str | Path = "reports", db_path: str | Path | None = None) -> LocalStore:
    """A store by URI: a directory path or ``file:DIR``."""
    text = str(uri)
    if text.startswith("file:"):
        text = text[5:]
    elif "://" in text:
        raise StoreError(f"unsupported store URI {text!r}", hint="only local directories (file:DIR) for now")
    return LocalStore(text, db_path)


def _add_status_column(conn: sqlite3.Connection) -> None:
    """Indexes made before runs had a status get the column (NULL for their runs)."""
    if "status" not in {row[1] for row in conn.execute("PRAGMA table_info(runs)")}:
        try:
            conn.execute("ALTER TABLE runs ADD COLUMN status TEXT")
        except sqlite3.OperationalError as exc:  # another process added it first
            if "duplicate column" not in str(exc):
                raise


def _version() -> str:
    from harness import __version__

    return __version__
