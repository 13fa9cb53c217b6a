"""The team store: the results index, baselines, gate verdicts and device leases on a PostgreSQL server.

CI runners on many hosts write one history: each run's JSONL file stays in its host's local
directory (the record of truth, named in the index with the host), and the index rows (runs,
results with their medians and intervals, baselines, gate verdicts) go to the server. ``harness
reindex`` from a host's directory rewrites the rows of the runs whose files are there and leaves
other hosts' runs alone. Device leases are session advisory locks (``pg_try_advisory_lock``),
released by the server when the holder's connection ends, however it ended.

psycopg (3) is imported here only (an import-linter contract keeps it out of the rest).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from harness.errors import LeaseError, StoreError
from harness.leases import UNKNOWN, FileLeases, Holder, Leases
from harness.names import inside
from harness.results import Result
from harness.store import (
    GATE_COLUMNS,
    RESULT_COLUMNS,
    RUN_COLUMNS,
    GateMark,
    HistoryRow,
    IndexDump,
    ReindexReport,
    RunRecord,
    Store,
    _history_sql,
    result_row,
    sql,
    with_seq,
)

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS runs_seq;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, suite TEXT, started_at TEXT, finished_at TEXT, results_path TEXT NOT NULL,
    report_path TEXT, host TEXT, harness_version TEXT, status TEXT, seq BIGINT NOT NULL, imported_from TEXT
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE, line INTEGER NOT NULL, case_id TEXT,
    model TEXT, model_sha256 TEXT, delegate TEXT, threads INTEGER, api TEXT, device_id TEXT, device_model TEXT,
    status TEXT, median_us DOUBLE PRECISION, n INTEGER, repetitions INTEGER, finished_at TEXT,
    ci_low_us DOUBLE PRECISION, ci_high_us DOUBLE PRECISION, PRIMARY KEY (run_id, line)
);
CREATE INDEX IF NOT EXISTS results_case ON results (model_sha256, delegate, threads, device_id);
CREATE TABLE IF NOT EXISTS baselines (name TEXT PRIMARY KEY, run_id TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gate_verdicts (
    run_id TEXT NOT NULL, baseline TEXT NOT NULL, baseline_run_id TEXT, case_label TEXT NOT NULL,
    model TEXT, delegate TEXT, threads INTEGER, device_id TEXT, verdict TEXT, why TEXT, recorded_at TEXT,
    PRIMARY KEY (run_id, baseline, case_label)
);
CREATE TABLE IF NOT EXISTS leases (device_id TEXT PRIMARY KEY, run_id TEXT, host TEXT, pid INTEGER, since TEXT);
"""
_SCHEMA_LOCK = 0x6564676568  # advisory lock id serialising schema creation ("edgeh")
_CONNECT_TIMEOUT_S = 10
assert RUN_COLUMNS[-2] == "seq"  # noqa: S101 - _INSERT_RUN_KEEPING_SEQ relies on it
# A rebuilt run keeps its recording order when the index had it, else it is numbered after the others.
_INSERT_RUN_KEEPING_SEQ = sql("INSERT INTO runs ({cols}) VALUES ({marks})", RUN_COLUMNS, "%s").replace(
    "%s,%s)", "COALESCE(%s, nextval('runs_seq')),%s)")  # seq is the last but one column


def redact(dsn: str) -> str:
    """``dsn`` without its password (for messages)."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql://(unreadable URI)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class PostgresStore(Store):
    """The index on a PostgreSQL server (``dsn``), the JSONL files in ``root`` (None: read-only history)."""

    _duplicate_errors = (pg_errors.UniqueViolation,)
    _broken_errors = (StoreError, psycopg.Error)

    def __init__(self, dsn: str, root: str | Path | None = None) -> None:
        super().__init__(root)
        self.dsn = dsn
        self._schema_ready = False
        self._location = redact(dsn)
        try:
            conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise StoreError(f"bad PostgreSQL URI {self._location}: {str(exc).splitlines()[0][:200]}",
                             hint="postgresql://USER@HOST:PORT/DBNAME (password: ~/.pgpass or PGPASSWORD)") from None

    @property
    def location(self) -> str:
        return self._location

    def _reindex_target(self) -> str:
        return f"{self._location} --dir {self._root}"

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection:
        """A new connection, the schema in place; StoreError (one line, no password) when the server is not there."""
        try:
            conn = psycopg.connect(self.dsn, connect_timeout=_CONNECT_TIMEOUT_S, autocommit=autocommit)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot reach the team store {self._location}: {first.replace(self.dsn, '...')}",
                             hint="check the server and the URI; results still go to the local JSONL files") from None
        if not self._schema_ready:
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    conn.execute(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._schema_ready = True
        return conn

    def _write(self, op: Callable[[psycopg.Connection], object]) -> None:
        with closing(self.connect()) as conn, conn.transaction():
            op(conn)

    def _read(self, query: str, params: tuple = ()) -> list[tuple]:
        try:
            with closing(self.connect()) as conn:
                return conn.execute(query, params).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"{self._location}: {str(exc).strip()[:300]}") from None

    # -- index primitives ------------------------------------------------------------------------
    def _index_begin(self, run_id: str, suite: str, started: str, results_path: str, host: str,
                     version: str) -> None:
        self._write(lambda conn: conn.execute(
            "INSERT INTO runs (run_id, suite, started_at, results_path, host, harness_version, seq)"
            " VALUES (%s,%s,%s,%s,%s,%s,nextval('runs_seq'))", (run_id, suite, started, results_path, host, version)))

    def _index_finish(self, run_id: str, finished: str, report: str | None, status: str) -> None:
        self._write(lambda conn: conn.execute(
            "UPDATE runs SET finished_at=%s, report_path=%s, status=%s WHERE run_id=%s",
            (finished, report, status, run_id)))

    def _index_result(self, result: Result, line: int) -> None:
        self._write(lambda conn: _upsert_results(conn, [result_row(result, line)]))

    def _index_import(self, run: dict, results: Sequence[Result], name: str, created: str) -> None:
        def op(conn: psycopg.Connection) -> None:
            conn.execute(
                "INSERT INTO runs (run_id, suite, started_at, finished_at, results_path, seq, imported_from, host)"
                " VALUES (%s,%s,%s,%s,%s,nextval('runs_seq'),%s,%s)",
                (run["run_id"], run["suite"], run["started_at"], run["finished_at"], run["results_path"],
                 run["imported_from"], _host()))
            _upsert_results(conn, [result_row(r, line) for line, r in enumerate(results, 1)])
            _upsert_baseline(conn, name, run["run_id"], created)
        try:
            self._write(op)
        except psycopg.Error as exc:
            raise StoreError(f"{self._location}: cannot record the import ({str(exc).strip()[:300]})") from None

    def _index_set_baseline(self, name: str, run_id: str, created: str) -> None:
        try:
            self._write(lambda conn: _upsert_baseline(conn, name, run_id, created))
        except psycopg.Error as exc:
            raise StoreError(f"{self._location}: baseline not set ({str(exc).strip()[:300]})") from None

    def runs(self) -> list[RunRecord]:
        rows = self._read("SELECT run_id, suite, started_at, finished_at, results_path, report_path, seq,"
                          " imported_from, status FROM runs ORDER BY seq")
        return [RunRecord(*row) for row in rows]

    def baseline_run_id(self, name: str) -> str | None:
        rows = self._read("SELECT run_id FROM baselines WHERE name=%s", (name,))
        return rows[0][0] if rows else None

    def baselines(self) -> list[tuple[str, str, str]]:
        return [tuple(r) for r in self._read("SELECT name, run_id, created_at FROM baselines ORDER BY name")]

    def history(self, last: int | None = None, suite: str | None = None) -> list[HistoryRow]:
        rows = self._read(_history_sql("%s").replace("%s IS NULL", "%s::text IS NULL", 1), (suite, suite, last))
        return [HistoryRow(*row[:4], row[4] is not None, *row[5:]) for row in rows]

    def record_gate(self, run_id: str, baseline: str, marks: Sequence[GateMark]) -> None:
        def op(conn: psycopg.Connection) -> None:
            conn.execute("DELETE FROM gate_verdicts WHERE run_id=%s AND baseline=%s", (run_id, baseline))
            _insert_gates(conn, [tuple(getattr(m, c) for c in GATE_COLUMNS) for m in marks])
        try:
            self._write(op)
        except psycopg.Error as exc:
            raise StoreError(f"{self._location}: gate verdicts not recorded ({str(exc).strip()[:300]})") from None

    def gate_marks(self) -> list[GateMark]:
        return [GateMark(*row) for row in self._read(sql("SELECT {cols} FROM gate_verdicts", GATE_COLUMNS))]

    def _salvage_index(self, report: ReindexReport) -> tuple[dict[str, dict], list[tuple[str, str, str]]]:
        """The rows of this host's runs whose files were in this directory; the server keeps every other run."""
        root = str(self.root.resolve())
        rows = self._read(sql("SELECT {cols} FROM runs WHERE host=%s", RUN_COLUMNS), (_host(),))
        runs = {row[0]: dict(zip(RUN_COLUMNS, row)) for row in rows if str(Path(row[4]).parent) == root}
        return runs, self.baselines()

    def _load_index(self, runs: Sequence[dict], results: dict[str, Sequence[Result]],
                    baselines: Sequence[tuple[str, str, str]]) -> None:
        self._index_broken = False

        def op(conn: psycopg.Connection) -> None:
            for run in runs:
                row = {**run, "host": run.get("host") or _host()}
                conn.execute("DELETE FROM runs WHERE run_id=%s", (row["run_id"],))  # its results go too (cascade)
                conn.execute(_INSERT_RUN_KEEPING_SEQ, tuple(row.get(c) for c in RUN_COLUMNS))
                _upsert_results(conn, [result_row(r, line) for line, r in enumerate(results[row["run_id"]], 1)])
            for name, run_id, created in baselines:
                _upsert_baseline(conn, name, run_id, created)
        self._write(op)

    def _import_rows(self, dump: IndexDump, new: Sequence[tuple]) -> None:
        added = {row[0] for row in new}

        def op(conn: psycopg.Connection) -> None:
            for row in new:  # recorded here in the source's order, after what this store already holds
                seq = conn.execute("SELECT nextval('runs_seq')").fetchone()[0]
                conn.execute(sql("INSERT INTO runs ({cols}) VALUES ({marks})", RUN_COLUMNS, "%s"),
                             with_seq(row, seq))
            _upsert_results(conn, [r for r in dump.results if r[0] in added])
            for name, run_id, created in dump.baselines:
                _upsert_baseline(conn, name, run_id, created)
            _insert_gates(conn, dump.gates)
        self._write(op)

    def leases(self, lease_dir: str | Path | None = None) -> Leases:
        """Advisory locks on the server (every host sharing it), or file locks in ``lease_dir`` when given.

        When the server cannot be reached the leases fall back to file locks beside the local results
        (this host's runs still take turns), with one warning."""
        if lease_dir is not None:
            return FileLeases(lease_dir)
        return PostgresLeases(self, fallback=FileLeases(inside(self._root, "leases")) if self._root else None)


def _host() -> str:
    return os.uname().nodename


def _upsert_results(conn: psycopg.Connection, rows: Sequence[tuple]) -> None:
    if not rows:
        return
    updates = ", ".join(f"{c}=EXCLUDED.{c}" for c in RESULT_COLUMNS[2:])
    with conn.cursor() as cur:
        cur.executemany(sql("INSERT INTO results ({cols}) VALUES ({marks}) ON CONFLICT (run_id, line) DO UPDATE SET ",
                            RESULT_COLUMNS, "%s") + updates, rows)


def _upsert_baseline(conn: psycopg.Connection, name: str, run_id: str, created: str) -> None:
    conn.execute("INSERT INTO baselines (name, run_id, created_at) VALUES (%s,%s,%s) ON CONFLICT (name)"
                 " DO UPDATE SET run_id=EXCLUDED.run_id, created_at=EXCLUDED.created_at", (name, run_id, created))


def _insert_gates(conn: psycopg.Connection, rows: Sequence[tuple]) -> None:
    if not rows:
        return
    updates = ", ".join(f"{c}=EXCLUDED.{c}" for c in GATE_COLUMNS[4:])
    with conn.cursor() as cur:
        cur.executemany(sql("INSERT INTO gate_verdicts ({cols}) VALUES ({marks}) ON CONFLICT "
                            "(run_id, baseline, case_label) DO UPDATE SET ", GATE_COLUMNS, "%s") + updates, rows)


def lease_key(device_id: str) -> int:
    """The advisory lock id of a device: 64 bits of its id's SHA-256 (signed, as PostgreSQL's bigint)."""
    return int.from_bytes(hashlib.sha256(b"edgeharness-lease:" + device_id.encode()).digest()[:8], "big", signed=True)


class PostgresLeases(Leases):
    """``pg_try_advisory_lock`` per device on its own connection: the server frees it when the holder dies."""

    def __init__(self, store: PostgresStore, fallback: FileLeases | None = None) -> None:
        self.store = store
        self.fallback = fallback
        self._held: dict[str, psycopg.Connection] = {}
        self._lock = threading.Lock()
        self._warned = False

    def try_acquire(self, device_id: str, holder: Holder) -> Holder | None:
        with self._lock:
            if device_id in self._held:
                return None
        try:
            conn = self.store.connect(autocommit=True)
        except StoreError as exc:
            why = str(exc).split(" (hint:")[0]
            if self.fallback is None:
                raise LeaseError(why, hint="or lease on this host only: --lease-dir DIR") from None
            if not self._warned:
                self._warned = True
                log.warning("warning: device leases on this host only (%s): %s", self.fallback.lock_dir, why)
            return self.fallback.try_acquire(device_id, holder)
        try:
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (lease_key(device_id),)).fetchone()[0]:
                conn.execute("INSERT INTO leases VALUES (%s,%s,%s,%s,%s) ON CONFLICT (device_id) DO UPDATE SET"
                             " run_id=EXCLUDED.run_id, host=EXCLUDED.host, pid=EXCLUDED.pid, since=EXCLUDED.since",
                             (device_id, holder.run_id, holder.host, holder.pid, holder.since))
                with self._lock:
                    self._held[device_id] = conn
                return None
            row = conn.execute("SELECT run_id, host, pid, since FROM leases WHERE device_id=%s",
                               (device_id,)).fetchone()
            conn.close()
            return Holder.parse(dict(zip(("run_id", "host", "pid", "since"), row))) if row else UNKNOWN
        except psycopg.Error as exc:
            conn.close()
            raise LeaseError(f"{self.store.location}: device lease of {device_id}: {str(exc).strip()[:200]}") from None

    def release(self, device_id: str) -> None:
        with self._lock:
            conn = self._held.pop(device_id, None)
        if conn is None:
            if self.fallback is not None:
                self.fallback.release(device_id)
            return
        try:
            conn.execute("DELETE FROM leases WHERE device_id=%s AND pid=%s", (device_id, _pid()))
            conn.execute("SELECT pg_advisory_unlock(%s)", (lease_key(device_id),))
        except psycopg.Error:
            pass  # closing the session below frees the lock all the same
        finally:
            conn.close()

    def close(self) -> None:
        for device_id in list(self._held):
            self.release(device_id)
        if self.fallback is not None:
            self.fallback.close()


def _pid() -> int:
    return os.getpid()
