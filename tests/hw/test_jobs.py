"""The sweep executor (hw.jobs) on an embedded local Ray: jobs run in parallel worker
processes, outcomes come back in order, a failed job is named with its error."""

from __future__ import annotations

import os
import time

import pytest

from hw import jobs


def square_after(x: int, seconds: float) -> tuple[int, int]:
    time.sleep(seconds)
    if x < 0:
        raise ValueError(f"negative input {x}")
    return x * x, os.getpid()


def test_two_jobs_run_at_once_on_the_local_ray() -> None:
    t0 = time.time()
    out = jobs.run(square_after, [("a", (3, 2.0)), ("b", (4, 2.0))], jobs=2)
    assert [o.name for o in out] == ["a", "b"]
    (sa, pa), (sb, pb) = jobs.values(out)
    assert (sa, sb) == (9, 16) and pa != pb != os.getpid()  # two worker processes
    assert time.time() - t0 < 2.0 * 2 + 15  # overlapping, plus Ray's start


def test_a_failed_job_is_named_and_the_others_finish() -> None:
    out = jobs.run(square_after, [("good", (2, 0.0)), ("bad", (-1, 0.0))], jobs=2)
    assert out[0].value[0] == 4 and out[1].error and "negative input -1" in out[1].error
    with pytest.raises(jobs.JobError, match="1 of 2 jobs failed: bad: .*negative input -1"):
        jobs.values(out)
    assert jobs.run(square_after, [], jobs=2) == []
    with pytest.raises(jobs.JobError, match="jobs 0"):
        jobs.run(square_after, [("x", (1, 0.0))], jobs=0)
