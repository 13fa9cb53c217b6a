"""The folder report's second process: jobs shared as they go (:func:`harness.report.forked.share`).

Real forks, real pipes: the helper is this test process forked. What is checked: every job's answer
comes back once, in job order; both processes take jobs; a helper that fails leaves its jobs to this
process (the answers are the same); a big input read by two processes names a bad line by its
number in the file, as one process does.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time

import pytest

from harness.report import folder, forked

pytestmark = pytest.mark.skipif(not forked.available(), reason="needs fork, two CPUs and a single thread")


def test_share_answers_every_job_once_in_order_and_both_processes_work():
    def job(i: int, worker: int) -> tuple[int, int, int]:
        time.sleep(0.01)  # long enough that the other process gets to take some
        return i * i, worker, os.getpid()

    answers = forked.share(40, job)
    assert [a[0] for a in answers] == [i * i for i in range(40)]
    assert {a[1] for a in answers} == {0, 1}
    assert len({a[2] for a in answers}) == 2 and os.getpid() in {a[2] for a in answers}


def test_a_failing_helper_leaves_its_jobs_to_this_process(caplog):
    def job(i: int, worker: int) -> int:
        if worker == 1:
            raise RuntimeError("the helper breaks")
        time.sleep(0.02)  # the helper gets to take a job before this process has taken them all
        return i + 1

    with caplog.at_level(logging.WARNING, logger="harness.report"):
        assert forked.share(10, job) == list(range(1, 11))
    assert any("helper process failed" in m for m in caplog.messages)


def test_more_jobs_than_tickets_are_handed_out_in_runs():
    n = forked.MAX_TICKETS * 3 + 7
    assert forked.share(n, lambda i, worker: i) == list(range(n))


def test_a_shared_read_names_bad_lines_by_their_number_in_the_file(tmp_path, caplog):
    good = json.dumps({"run_id": "r", "status": "ok", "case": {"model": "m", "delegate": "cpu", "threads": 1},
                       "device": {"id": "d"}, "raw": "x" * 2000})
    lines = [good] * 400
    bad_at = [57, 201, 333]  # 1-based line numbers, in different parts of the file
    for n in bad_at:
        lines[n - 1] = '{"not": "a record"'
    src = tmp_path / "big.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    seen = []
    for parallel_bytes in (1 << 40, 0):  # one process, then two sharing the parts
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="harness.report"):
            index = folder.render_folder([src], tmp_path / f"r{parallel_bytes}", parallel_bytes=parallel_bytes)
        seen.append([int(re.search(r":(\d+): skipped", m).group(1)) for m in caplog.messages if "skipped" in m])
        assert "397 cases on" in index.read_text(encoding="utf-8")
    assert seen == [bad_at, bad_at]
