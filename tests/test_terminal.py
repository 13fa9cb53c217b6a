"""``harness run``'s terminal: plain lines off a TTY, a live display on one, the end table and ``--json``."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.store import load_results
from harness.terminal import RunDisplay
from tests.helpers import STOPPED_SUITE  # a quick case, then one that runs until stopped

SUITE = """
[suite]
name = "tiny"
delegates = ["cpu", "xnnpack"]
repetitions = 2
measured_runs = 5
warmup_runs = 1
[[models]]
zoo = "face_detection_front"
"""


def _suite(tmp_path: Path, text: str = SUITE) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def _harness(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _stored(out: Path) -> dict[str, dict]:
    """Per case id: median, p90 and n computed here from the stored samples (numpy, pooled iterations)."""
    rows = [json.loads(line) for line in next(out.glob("tiny-*.jsonl")).read_text().splitlines()]
    figures = {}
    for row in rows:
        pooled = [s for rep in (row["latency"] or {}).get("repetitions", []) for s in rep["samples_us"]]
        figures[row["case"]["case_id"]] = {
            "status": row["status"], "reason": row["reason"], "n": len(pooled),
            "median_us": float(np.median(pooled)) if pooled else None,
            "p90_us": float(np.quantile(pooled, 0.9)) if pooled else None,
        }
    return figures


def _ms(value_us: float) -> str:
    """The table's and lines' form of a latency (3 significant digits)."""
    ms = value_us / 1000
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}" if ms >= 1 else f"{ms:.3g}"


@pytest.mark.slow
def test_plain_output_has_one_line_per_case_and_the_run_table(tmp_path: Path, small_model: Path) -> None:
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a flatbuffer at all" * 10)
    suite = _suite(tmp_path, SUITE + f'[[models]]\npath = "{bad}"\nname = "broken"\ndelegates = ["cpu"]\n')
    out = tmp_path / "out"
    proc = _harness("run", str(suite), "--out", str(out), "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    stored = _stored(out)
    cpu, xnn = stored["face_detection_front[host-cpu-t1]"], stored["face_detection_front[host-xnnpack-t1]"]
    # one line per finished case, as it finishes: device, count, case, status and the median
    finished = [line for line in lines if line.startswith("[host ")]
    assert len(finished) == 3, proc.stdout
    for case, figures in stored.items():
        line = next(x for x in finished if f"] {case}: " in x)
        assert f": {figures['status']}" in line
        if figures["median_us"] is not None:
            assert f"median {_ms(figures['median_us'])} ms" in line
    # the table: header, then per case and device its median, p90, n and speedup over cpu
    head = r"\| model .*\| status \| +median \| +p90 \| +n \| speedup \|"
    header = next(i for i, line in enumerate(lines) if re.search(head, line))
    table = {cells[2]: cells for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in lines[header + 2:] if line.startswith("| "))
        if cells[0] == "face_detection_front"}
    speedup = cpu["median_us"] / xnn["median_us"]
    assert table["cpu"][4:] == ["ok", f"{_ms(cpu['median_us'])} ms", f"{_ms(cpu['p90_us'])} ms", "10", "1.00×"]
    assert table["xnnpack"][4:] == ["ok", f"{_ms(xnn['median_us'])} ms", f"{_ms(xnn['p90_us'])} ms", "10",
                                    f"{speedup:.2f}×"]
    broken = next(line for line in lines if line.startswith("| broken"))
    assert "| failed" in broken and "—" in broken
    reason = stored["broken[host-cpu-t1]"]["reason"].splitlines()[0]
    assert f"broken[host-cpu-t1]: failed: {reason}" in lines  # the failure's one-line reason under the table
    assert lines[-2].startswith("run ") and lines[-2].endswith(": 1 failed, 2 ok")


@pytest.mark.slow
def test_json_prints_only_the_summary_with_the_stored_figures(tmp_path: Path, small_model: Path) -> None:
    out = tmp_path / "out"
    proc = _harness("run", str(_suite(tmp_path)), "--out", str(out), "--no-report", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # nothing else on stdout
    stored = _stored(out)
    assert summary["suite"] == "tiny" and summary["counts"] == {"ok": 2} and summary["interrupted"] is False
    assert Path(summary["results_path"]) == next(out.glob("tiny-*.jsonl")) and summary["report_path"] is None
    cases = {c["case_id"]: c for c in summary["cases"]}
    assert set(cases) == set(stored)
    for case_id, mine in stored.items():
        got = cases[case_id]
        assert got["status"] == "ok" and got["n"] == mine["n"] == 10 and got["repetitions"] == 2
        assert got["median_us"] == pytest.approx(mine["median_us"], rel=1e-12)
        assert got["p90_us"] == pytest.approx(mine["p90_us"], rel=1e-12)
    cpu, xnn = (cases[f"face_detection_front[host-{d}-t1]"] for d in ("cpu", "xnnpack"))
    assert cpu["speedup"] == 1.0
    assert xnn["speedup"] == pytest.approx(cpu["median_us"] / xnn["median_us"], rel=1e-12)


def _pty_run(args: list[str], stop_when: str | None = None, timeout: float = 300) -> tuple[int, str]:
    """Run the CLI with a terminal as stdout and stderr; with ``stop_when``, send SIGINT once that text shows."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "LINES": "40", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline, sent = time.monotonic() + timeout, False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            if stop_when and not sent and stop_when in b"".join(chunks).decode("utf-8", "replace"):
                proc.send_signal(signal.SIGINT)
                sent = True
            if not ready and proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_a_terminal_shows_live_progress_and_the_table(tmp_path: Path, small_model: Path) -> None:
    code, text = _pty_run(["run", str(_suite(tmp_path)), "--out", str(tmp_path / "out"), "--no-report"])
    assert code == 0, text
    assert "Traceback" not in text
    assert "\x1b[1A" in text  # a live display: the cursor moves up, lines redraw
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert re.search(r"host\s.* 0/2 .*eta.* face_detection_front\[host-cpu-t1\]", plain), plain  # the case running
    assert re.search(r"all devices\s.* 2/2 ", plain), plain
    stored = _stored(tmp_path / "out")
    for case, figures in stored.items():
        assert f"] {case}: ok, median {_ms(figures['median_us'])} ms" in plain
    assert re.search(r"model\s+device\s+delegate\s+threads\s+status\s+median\s+p90\s+n\s+speedup", plain), plain
    xnn = stored["face_detection_front[host-xnnpack-t1]"]
    row = next(line for line in plain.splitlines() if "xnnpack " in line and " ok " in line)
    speedup = stored["face_detection_front[host-cpu-t1]"]["median_us"] / xnn["median_us"]
    assert f"{_ms(xnn['p90_us'])} ms" in row and f"{speedup:.2f}×" in row
    assert re.search(r"run \S+: 2 ok", plain)


@pytest.mark.slow
def test_ctrl_c_stops_the_live_display_and_still_prints_the_interrupted_table(tmp_path: Path, zoo_models) -> None:
    suite = tmp_path / "stopped.toml"
    suite.write_text(STOPPED_SUITE)
    code, text = _pty_run(["run", str(suite), "--out", str(tmp_path / "out")], stop_when="[host 1/2] quick")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert code == 130, plain
    assert "Traceback" not in plain
    assert re.search(r"run \S+ interrupted by SIGINT: 1 ok", plain), plain
    assert re.search(r"quick\s+host\s+xnnpack\s+1\s+ok\s", plain), plain  # the table of what finished
    assert "interrupted by SIGINT: running commands killed" in plain
    assert "\x1b[?25h" in text  # the live display stopped: the cursor is shown again


def test_stored_and_device_strings_cannot_drive_the_terminal(tmp_path: Path, small_model: Path) -> None:
    """A device id and a reason holding escape sequences print as visible escapes, in the lines and the table."""
    out = tmp_path / "out"
    proc = _harness("run", str(_suite(tmp_path)), "--out", str(out), "--no-report", "--json")
    assert proc.returncode == 0, proc.stderr
    evil = "phone\x1b]0;pwned\x07\x1b[2J"
    results = [replace(r, device=replace(r.device, id=evil)) for r in load_results(next(out.glob("tiny-*.jsonl")))]
    results[1] = replace(results[1], status="failed", reason="died\x1b[31m red\r\nsecond line", latency=None)
    stream = io.StringIO()
    display = RunDisplay(2, 1, stream=stream)
    assert not display.live  # not a terminal
    with display:
        for r in results:
            display.finished(r)
    display.table(results)
    text = stream.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "phone\\x1b]0;pwned\\x07\\x1b[2J" in text and "died\\x1b[31m red\\x0d" in text
    assert "second line" not in text  # a reason is its first line
    assert re.search(r"\| xnnpack +\| +1 \| failed \|", text)
