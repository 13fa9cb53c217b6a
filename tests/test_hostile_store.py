"""Hostile and broken input to the store: imported baselines, a corrupt index, damaged JSONL files.

Each test names the attack or accident and checks what the store does now: an import is validated
whole, gets a fresh local run id and is all-or-nothing; ``latest`` is the newest run measured here;
a corrupt ``harness.sqlite`` never stops a run and ``harness reindex`` rebuilds it from the files.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harness.api import load_baseline
from harness.errors import StoreError
from harness.results import CaseInfo, DeviceInfo, Latency, Repetition, Result
from harness.store import (
    BASELINE_FORMAT,
    LocalStore,
    check_baseline_name,
    export_baseline,
    import_baseline,
    load_results,
    rebuild_index,
)

LEXICALLY_LAST = "99999999T999999Z-ffffff"


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ))


def _result(run_id: str, threads: int, samples: tuple[float, ...] = (10.0, 11.0, 12.0)) -> Result:
    return Result(
        run_id=run_id,
        case=CaseInfo(case_id=f"m[host-cpu-t{threads}]", model="m", model_sha256="ab" * 32, delegate="cpu",
                      threads=threads, runner="litert-python"),
        device=DeviceInfo(id="host", platform="host"),
        status="ok",
        latency=Latency(method="test", repetitions=(Repetition(samples_us=samples),)),
        started_at="2026-01-01T00:00:00.000+00:00",
        finished_at="2026-01-01T00:00:01.000+00:00",
    )


def _measured(store: LocalStore, run_id: str, n: int = 2) -> None:
    writer = store.begin_run(run_id, "s")
    for i in range(1, n + 1):
        writer.append(_result(run_id, i))
    writer.close()
    store.finish_run(run_id)


def _baseline_file(path: Path, run_id: str, records: list[dict]) -> Path:
    path.write_text(json.dumps({"format": BASELINE_FORMAT, "version": 1, "name": "x", "run_id": run_id,
                                "suite": "s", "results": records}))
    return path


def _records(run_id: str, n: int) -> list[dict]:
    return [json.loads(json.dumps(_result(run_id, i).to_dict())) for i in range(1, n + 1)]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# -- imports -------------------------------------------------------------------------------------------
def test_import_with_traversal_run_id_writes_nothing_outside_the_store(tmp_path: Path) -> None:
    root = tmp_path / "a" / "store"
    store = LocalStore(root)
    evil = "x/../../../escaped"
    run_id = import_baseline(store, "ci", _baseline_file(tmp_path / "b.json", evil, _records(evil, 2)))
    assert not (tmp_path / "escaped.jsonl").exists()
    assert [p for p in tmp_path.rglob("*.jsonl") if root not in p.parents] == []
    assert [p.parent for p in root.rglob("*.jsonl")] == [root]
    assert run_id != evil and "/" not in run_id
    loaded = load_baseline(store, "ci")
    assert {r.run_id for r in loaded} == {run_id}
    assert {r.environment["imported_from_run"] for r in loaded} == {evil}


def test_import_of_an_existing_run_id_keeps_both_runs(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    _measured(store, "r1", n=2)
    other = [json.loads(json.dumps(_result("r1", 7).to_dict()))]  # same id, another store's results
    run_id = import_baseline(store, "theirs", _baseline_file(tmp_path / "b.json", "r1", other))
    assert run_id != "r1"
    assert [r.case.threads for r in store.load_run("r1")] == [1, 2]
    assert [r.case.threads for r in load_baseline(store, "theirs")] == [7]
    assert [r.run_id for r in store.runs()] == ["r1", run_id]


@pytest.mark.parametrize(("field", "value", "why"), [
    (("latency", "repetitions", 0, "samples_us", 1), float("nan"), "expected a finite number, got nan"),
    (("latency", "repetitions", 0, "init_us"), float("inf"), "expected a finite number, got inf"),
    (("latency", "repetitions", 0, "samples_us", 0), "fast", "expected a finite number, got 'fast'"),
    (("case", "threads"), "2", "expected int, got '2'"),
    (("latency",), 5, "int"),
    (("environment",), {"deep": [1e400]}, "expected a finite number, got inf"),
])
def test_a_bad_third_record_imports_nothing_and_a_fixed_file_then_imports(
        tmp_path: Path, field: tuple, value: object, why: str) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    _measured(store, "r1", n=1)
    before = _files(root)
    records = _records("their-run", 4)
    target = records[2]
    for key in field[:-1]:
        target = target[key]
    good, target[field[-1]] = target[field[-1]], value
    bad = _baseline_file(tmp_path / "bad.json", "their-run", records)
    with pytest.raises(StoreError, match=re.escape("[results[2]]")) as err:
        import_baseline(store, "ci", bad)
    assert why in str(err.value)
    assert [r.run_id for r in store.runs()] == ["r1"] and store.baselines() == []
    assert {p for p in _files(root) if "sqlite" not in p.name} == {p for p in before if "sqlite" not in p.name}
    target[field[-1]] = good
    fixed = _baseline_file(tmp_path / "fixed.json", "their-run", records)
    run_id = import_baseline(store, "ci", fixed)
    assert [r.case.threads for r in load_baseline(store, "ci")] == [1, 2, 3, 4]
    assert store.baseline_run_id("ci") == run_id


def test_nan_samples_in_an_import_are_one_clear_error_from_the_cli(tmp_path: Path) -> None:
    records = _records("their-run", 3)
    records[1]["latency"]["repetitions"][0]["samples_us"] = [10.0, float("nan"), 12.0]
    path = _baseline_file(tmp_path / "nan.json", "their-run", records)
    assert "NaN" in path.read_text()
    proc = harness("baseline", "import", "ci", str(path), "--store", str(tmp_path / "store"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {path} [results[1]]: ")
    assert "samples_us[1]: expected a finite number, got nan" in proc.stderr and "hint:" in proc.stderr
    assert list((tmp_path / "store").glob("*.jsonl")) == []


@pytest.mark.parametrize("name", ["../x", "a/b", "a\x00b", "x" * 300, "latest", "", ".hidden", "a\nb"])
def test_bad_baseline_names_are_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    store = LocalStore(tmp_path / "store")
    path = _baseline_file(tmp_path / "b.json", "their-run", _records("their-run", 1))
    with pytest.raises(StoreError, match="bad baseline name"):
        import_baseline(store, name, path)
    with pytest.raises(StoreError, match="bad baseline name"):
        store.set_baseline(name, "r1")
    assert not (tmp_path / "store").exists() or list((tmp_path / "store").glob("*.jsonl")) == []
    assert check_baseline_name("main-2026.1_x") == "main-2026.1_x"


def test_bad_baseline_name_from_the_cli_is_one_line(tmp_path: Path) -> None:
    path = _baseline_file(tmp_path / "b.json", "their-run", _records("their-run", 1))
    proc = harness("baseline", "import", "../../escape", str(path), "--store", str(tmp_path / "store"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: bad baseline name '../../escape'")
    assert proc.stderr.count("\n") == 1 and list(tmp_path.rglob("*.jsonl")) == []


def test_a_baseline_named_like_a_run_id_is_its_own_run(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    _measured(store, "r1", n=1)
    _measured(store, "r2", n=2)
    store.set_baseline("r2", "r1")
    assert [r.run_id for r in load_baseline(store, "r2")] == ["r1"]


# -- latest ----------------------------------------------------------------------------------------------
def test_latest_is_the_newest_recorded_run_not_the_largest_id_even_in_an_old_database(tmp_path: Path) -> None:
    db = tmp_path / "harness.sqlite"
    with sqlite3.connect(db) as conn:  # the schema before runs had seq / imported_from
        conn.executescript("""
            CREATE TABLE runs (run_id TEXT PRIMARY KEY, suite TEXT, started_at TEXT, finished_at TEXT,
                               results_path TEXT NOT NULL, report_path TEXT, host TEXT, harness_version TEXT);
            INSERT INTO runs (run_id, suite, results_path) VALUES ('zz-first', 's', 'a.jsonl');
            INSERT INTO runs (run_id, suite, results_path) VALUES ('aa-second', 's', 'b.jsonl');
        """)
    store = LocalStore(tmp_path)
    assert store.resolve_run("latest").run_id == "aa-second"
    _measured(store, "mm-third", n=1)
    assert [r.run_id for r in store.runs()] == ["zz-first", "aa-second", "mm-third"]
    assert store.resolve_run("latest").run_id == "mm-third"


def test_an_imported_baseline_never_becomes_latest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(StoreError, match="no runs"):
        store.resolve_run("latest")
    path = _baseline_file(tmp_path / "b.json", LEXICALLY_LAST, _records(LEXICALLY_LAST, 1))
    imported = import_baseline(store, "ci", path)
    with pytest.raises(StoreError, match="only imported baselines"):
        store.resolve_run("latest")
    _measured(store, "20000101T000000Z-000000", n=1)
    import_baseline(store, "ci2", path)
    assert store.resolve_run("latest").run_id == "20000101T000000Z-000000"
    assert store.runs()[0].run_id == imported and store.runs()[0].imported


def _write_tiny_suite(suite: Path, zoo_models: dict[str, Path]) -> None:
    """One real model, one delegate, two measured runs: the smallest run that stores a result."""
    suite.write_text(f"""
[suite]
name = "tiny"
delegates = ["xnnpack"]
repetitions = 1
measured_runs = 2
warmup_runs = 1
[[models]]
path = "{zoo_models['face_detection_front']}"
name = "blazeface"
""")


@pytest.fixture(scope="module")
def measured_store(tmp_path_factory: pytest.TempPathFactory, zoo_models: dict[str, Path]) -> Path:
    """One real host run of a tiny suite."""
    root = tmp_path_factory.mktemp("hostile")
    suite = root / "tiny.toml"
    _write_tiny_suite(suite, zoo_models)
    out = root / "out"
    proc = harness("run", str(suite), "--out", str(out), "--no-report")
    assert proc.returncode == 0, proc.stderr
    return out


def test_importing_a_lexically_last_baseline_never_makes_the_gate_compare_it_with_itself(
        measured_store: Path, tmp_path: Path) -> None:
    out = measured_store
    assert harness("baseline", "set", "here", "--store", str(out)).returncode == 0
    exported = tmp_path / "here.json"
    assert harness("baseline", "export", "here", "-o", str(exported), "--store", str(out)).returncode == 0
    doc = json.loads(exported.read_text())
    doc["run_id"] = LEXICALLY_LAST  # an id that sorts after every real one
    for record in doc["results"]:
        record["run_id"] = LEXICALLY_LAST
        for rep in record["latency"]["repetitions"]:
            rep["samples_us"] = [s / 1000 for s in rep["samples_us"]]  # a baseline 1000x faster than this host
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    proc = harness("baseline", "import", "fast", str(forged), "--store", str(out))
    assert proc.returncode == 0, proc.stderr
    listed = harness("runs", "--store", str(out)).stdout.splitlines()
    assert "imported" in listed[-1] and LEXICALLY_LAST in listed[-1] and "imported" not in listed[0]
    gate = harness("gate", "--baseline", "fast", "--store", str(out))
    ratios = [float(x) for x in re.findall(r"ratio (\d+\.\d+)", gate.stdout)]
    assert ratios and min(ratios) > 100, gate.stdout  # the measured run against the forged one, not 1.000
    assert gate.returncode == 1


# -- a corrupt index -------------------------------------------------------------------------------------
def test_corrupt_index_does_not_block_a_run_and_reindex_restores_it(tmp_path: Path, zoo_models: dict) -> None:
    suite = tmp_path / "tiny.toml"
    _write_tiny_suite(suite, zoo_models)
    out = tmp_path / "out"
    first = harness("run", str(suite), "--out", str(out), "--no-report")
    assert first.returncode == 0, first.stderr
    path = _baseline_file(tmp_path / "b.json", LEXICALLY_LAST, _records(LEXICALLY_LAST, 1))
    assert harness("baseline", "import", "ci", str(path), "--store", str(out)).returncode == 0
    assert harness("baseline", "set", "mine", "--store", str(out)).returncode == 0
    db = out / "harness.sqlite"
    garbage = b"this is not a database, a disk or a user overwrote it\n" * 100
    db.write_bytes(garbage)

    second = harness("run", str(suite), "--out", str(out))
    assert second.returncode == 0, second.stderr
    warnings = [line for line in second.stderr.splitlines() if "harness reindex" in line]
    assert len(warnings) == 1 and str(db) in warnings[0] and warnings[0].startswith("warning:")
    run_id = re.search(r"^run (\S+):", second.stdout, re.M).group(1)
    results = load_results(next(out.glob(f"tiny-{run_id}.jsonl")))
    assert len(results) == 1 and results[0].status == "ok" and len(results[0].latency.samples_us) == 2
    assert (out / "tiny.html").exists()

    broken = harness("runs", "--store", str(out))
    assert broken.returncode == 2 and "harness reindex" in broken.stderr

    fixed = harness("reindex", "--store", str(out))
    assert fixed.returncode == 0, fixed.stderr
    aside = list(out.glob("harness.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    assert "check `harness baseline list`" in fixed.stderr
    listed = harness("runs", "--store", str(out))
    assert listed.returncode == 0 and run_id in listed.stdout and len(listed.stdout.splitlines()) == 3
    store = LocalStore(out)
    assert store.resolve_run("latest").run_id == run_id
    assert [name for name, _, _ in store.baselines()] == ["ci", "mine"]  # from baselines.log and provenance
    assert len(load_baseline(store, "ci")) == 1
    assert [r.run_id for r in load_baseline(store, "mine")] == [store.runs()[0].run_id]


def test_reindex_of_a_readable_index_keeps_names_order_and_the_old_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    _measured(store, "zz-older", n=2)
    _measured(store, "aa-newer", n=1)
    _measured(store, "mm-deleted", n=1)
    store.set_baseline("main", "zz-older")
    store.set_baseline("gone", "mm-deleted")
    Path(store.resolve_run("mm-deleted").results_path).unlink()
    with open(store.baselines_log, "a") as fh:
        fh.write('{"name": "../evil", "run_id": "zz-older", "created_at": "x"}\n')
    report = rebuild_index(store)
    assert report.old_index_readable and report.moved_to and report.moved_to.exists()
    assert report.runs == ["zz-older", "aa-newer"] and report.results == 3 and report.baselines == ["main"]
    assert [x.split(" ")[0] for x in report.lost_baselines] == ["gone"]
    assert [x.split(" ")[:2] for x in report.skipped] == [["run", "mm-deleted:"], [f"{store.baselines_log}:3:", "not"]]
    assert "bad baseline name '../evil'" in report.skipped[1]
    assert store.resolve_run("latest").run_id == "aa-newer"
    assert [r.run_id for r in load_baseline(store, "main")] == ["zz-older"] * 2


# -- damaged JSONL ---------------------------------------------------------------------------------------
def test_a_torn_middle_line_skips_that_line_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = LocalStore(tmp_path)
    _measured(store, "r1", n=3)
    path = Path(store.resolve_run("r1").results_path)
    lines = path.read_text().split("\n")
    lines[1] = lines[1][: len(lines[1]) // 2]  # a torn write in the middle (disk damage, a bad copy)
    path.write_text("\n".join(lines))
    assert [r.case.threads for r in store.load_run("r1")] == [1, 3]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith(f"warning: {path}:2: skipped, not a result record (")


def test_line_separators_inside_a_record_do_not_split_it(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    writer = store.begin_run("r1", "s")
    raw = "tool said:\u2028next\x85line\u2029end"  # JSON leaves these unescaped; str.splitlines cuts at them
    writer.append(Result(**{**_result("r1", 1).__dict__, "raw": raw}))
    writer.append(_result("r1", 2))
    writer.close()
    assert [r.raw for r in store.load_run("r1")] == [raw, ""]


def test_export_then_import_round_trips_with_provenance(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "a")
    _measured(store, "r1", n=2)
    store.set_baseline("main", "r1")
    path = tmp_path / "main.json"
    path.write_text(json.dumps(export_baseline(store, "main")))
    other = LocalStore(tmp_path / "b")
    run_id = import_baseline(other, "main", path)
    run = other.resolve_run("main")
    assert run.run_id == run_id and json.loads(run.imported_from)["run_id"] == "r1"
    back = load_baseline(other, "main")
    assert [r.case for r in back] == [r.case for r in store.load_run("r1")]
    assert all(r.environment["imported_from_file"] == "main.json" for r in back)
