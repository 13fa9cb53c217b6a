"""The PostgreSQL team store against a real server: runs, results index, baselines, reindex, copy, failures."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from harness import api
from harness.store import LocalStore, open_store, rebuild_index
from harness.trend import case_trends

REPO = Path(__file__).resolve().parent.parent


def mini_suite(tmp_path: Path, model: Path, name: str = "mini", repetitions: int = 3) -> Path:
    suite = tmp_path / f"{name}.toml"
    suite.write_text(f'[suite]\nname = "{name}"\ndelegates = ["cpu"]\nthreads = [1]\nwarmup_runs = 1\n'
                     f"measured_runs = 5\nrepetitions = {repetitions}\ntimeout_s = 60\n"
                     f'[[models]]\nname = "fd"\npath = {json.dumps(str(model))}\n', encoding="utf-8")
    return suite


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_a_run_records_its_index_on_the_server_and_its_results_in_the_local_files(pg_dsn, small_model, tmp_path):
    out = tmp_path / "out"
    first = api.run(mini_suite(tmp_path, small_model), out_dir=out, db_path=pg_dsn, report=False)
    second = api.run(mini_suite(tmp_path, small_model), out_dir=out, db_path=pg_dsn, report=False)
    store = open_store(pg_dsn)  # no directory: reads the history the server holds
    runs = store.runs()
    assert [r.run_id for r in runs] == [first.run_id, second.run_id]
    assert runs[0].results_path == str(first.results_path.resolve()) and runs[0].state == "finished"
    assert store.resolve_run("latest").run_id == second.run_id
    assert [r.case.case_id for r in store.load_run("latest")] == [r.case.case_id for r in second.results]
    store.set_baseline("main", first.run_id)
    assert store.baselines()[0][:2] == ("main", first.run_id)
    history = store.history()
    assert len(history) == 2 and all(h.ci_low_us <= h.median_us <= h.ci_high_us for h in history)
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        host, path = conn.execute("SELECT host, results_path FROM runs WHERE run_id=%s", (first.run_id,)).fetchone()
    assert host == socket.gethostname() and Path(path).parent == out.resolve()


def test_reindex_rebuilds_this_directorys_runs_and_leaves_other_hosts_runs(pg_dsn, small_model, tmp_path):
    import psycopg

    out = tmp_path / "out"
    done = api.run(mini_suite(tmp_path, small_model), out_dir=out, db_path=pg_dsn, report=False)
    store = open_store(out, pg_dsn)
    store.set_baseline("main", done.run_id)
    with psycopg.connect(pg_dsn) as conn:  # another CI host's run, and this host's rows lost
        conn.execute("INSERT INTO runs (run_id, suite, started_at, results_path, host, seq) VALUES ('other-run',"
                     " 'mini', '2026', '/elsewhere/mini-other-run.jsonl', 'ci-host-7', nextval('runs_seq'))")
        conn.execute("DELETE FROM runs WHERE run_id=%s", (done.run_id,))
        conn.execute("DELETE FROM baselines")
    assert [r.run_id for r in store.runs()] == ["other-run"]
    report = rebuild_index(store)
    assert report.runs == [done.run_id] and report.results == 1 and report.baselines == ["main"]
    assert {r.run_id for r in store.runs()} == {"other-run", done.run_id}
    assert store.baseline_run_id("main") == done.run_id
    assert [r.case.case_id for r in store.load_run(done.run_id)] == [r.case.case_id for r in done.results]
    # the CLI: the same rebuild, run twice, changes nothing
    proc = cli("reindex", "--store", pg_dsn, "--dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "1 runs, 1 results, baselines: main" in proc.stdout
    assert sorted(r.run_id for r in store.runs()) == sorted(["other-run", done.run_id])


def test_store_copy_moves_a_history_from_sqlite_to_postgresql_and_back(pg_dsn, small_model, tmp_path):
    out = tmp_path / "out"
    runs = [api.run(mini_suite(tmp_path, small_model), out_dir=out, report=False) for _ in range(2)]
    local = LocalStore(out)
    local.set_baseline("main", runs[0].run_id)
    proc = cli("store", "copy", str(out), pg_dsn)
    assert proc.returncode == 0, proc.stderr
    assert "2 run(s) added, 0 already there, 2 result row(s) read, 1 baseline(s)" in proc.stdout
    pg = open_store(pg_dsn)
    assert [r.run_id for r in pg.runs()] == [r.run_id for r in runs]
    assert pg.export_index().results == local.export_index().results
    assert pg.baseline_run_id("main") == runs[0].run_id
    again = cli("store", "copy", str(out), pg_dsn)
    assert "0 run(s) added, 2 already there" in again.stdout
    back = tmp_path / "back"
    proc = cli("store", "copy", pg_dsn, str(back))
    assert proc.returncode == 0, proc.stderr
    copy = LocalStore(back)
    assert copy.export_index().results == local.export_index().results
    assert [(r.run_id, r.results_path) for r in copy.runs()] == [(r.run_id, r.results_path) for r in local.runs()]
    trends = case_trends(copy, "mini")
    assert len(trends) == 1 and [p.baselines for p in trends[0].points] == [("main",), ()]


def test_an_unreachable_server_loses_no_result_and_says_how_to_recover(small_model, tmp_path, caplog):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"postgresql://harness:s3cret-pw@127.0.0.1:{port}/nowhere"
    out = tmp_path / "out"
    summary = api.run(mini_suite(tmp_path, small_model), out_dir=out, db_path=dsn, report=False)
    assert [r.status for r in summary.results] == ["ok"]
    fallback = [r.getMessage() for r in caplog.records if "device leases on this host only" in r.getMessage()]
    assert len(fallback) == 1 and str(out / "leases") in fallback[0] and "s3cret-pw" not in fallback[0]
    assert len(summary.results_path.read_text().splitlines()) == 1
    warnings = [r.getMessage() for r in caplog.records if "index not updated" in r.getMessage()]
    assert len(warnings) == 1 and "harness reindex" in warnings[0] and "s3cret-pw" not in warnings[0]
    proc = cli("runs", "--store", dsn)
    assert proc.returncode == 2 and "s3cret-pw" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: cannot reach the team store postgresql://harness@127.0.0.1:{port}/nowhere")


def test_a_bad_store_uri_is_one_line(tmp_path):
    proc = cli("runs", "--store", "mysql://x/y")
    assert proc.returncode == 2 and proc.stderr.startswith("error: unsupported store URI")
    assert "Traceback" not in proc.stderr
    proc = cli("runs", "--store", "postgresql://u:pw@h:notaport/db")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "pw@" not in proc.stderr


def test_gate_verdicts_are_recorded_and_a_slowdown_is_flagged_on_the_team_store(pg_dsn, small_model, tmp_path):
    out = tmp_path / "out"
    base = api.run(mini_suite(tmp_path, small_model, repetitions=5), out_dir=out, db_path=pg_dsn, report=False)
    store = open_store(out, pg_dsn)
    store.set_baseline("main", base.run_id)
    slow = [replace(r, run_id="20990101T000000Z-aaaaaa", latency=replace(r.latency, repetitions=tuple(
        replace(rep, samples_us=tuple(s * 10 for s in rep.samples_us)) for rep in r.latency.repetitions)))
        for r in base.results]
    writer = store.begin_run("20990101T000000Z-aaaaaa", "mini")
    for r in slow:
        writer.append(r)
    writer.close()
    store.finish_run("20990101T000000Z-aaaaaa")
    outcome = api.gate_run(store, "main", "latest")
    assert outcome.exit_code == 1
    (trend,) = case_trends(open_store(pg_dsn), "mini")
    first, last = trend.points
    assert first.baselines == ("main",) and first.change is None
    # what the gate said is recorded (slower, or noisy when this busy host's repetitions scatter); ten times
    # slower is beyond the noise either way
    assert last.gate == (f"{outcome.verdicts[0].verdict} vs main",) and last.change == "slower"
    proc = cli("trend", "mini", "--store", pg_dsn)
    assert proc.returncode == 0 and "▲ SLOWER" in proc.stdout and "baseline main" in proc.stdout
