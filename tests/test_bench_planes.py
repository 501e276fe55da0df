"""bench_planes reads the workers' log: each made job's end, duration, table and key."""

from __future__ import annotations

import pytest

from benchmarks.bench_planes import made_jobs


def test_made_jobs_are_read_from_the_worker_log():
    log = (
        "2026-12-05 09:03:08,100 INFO worker 11: DataJoint 2.3.5 connected\n"
        "2026-12-05 09:03:10,500 INFO worker 11: made ophys.MotionCorrection {'subject_id': 'M0001', "
        "'session_id': 100001, 'experiment_id': 900001, 'ophys_paramset': 'allen'} in 2.25 s\n"
        "  2026-12-05 09:03:11,000 INFO worker 12: made behavior.Behavior {'session_id': 100001} in 0.04 s\n"
        "2026-12-05 09:03:12,000 WARNING worker 12: lost the database connection\n"
    )
    jobs = made_jobs(log)
    assert [(table, key.get("experiment_id"), seconds) for _, seconds, table, key in jobs] == [
        ("ophys.MotionCorrection", 900001, 2.25),
        ("behavior.Behavior", None, 0.04),
    ]
    assert jobs[1][0] - jobs[0][0] == pytest.approx(0.5)
