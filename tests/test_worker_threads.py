"""Local workers share the machine's cores: each gets thread pools sized to its share."""

from __future__ import annotations

import subprocess

import pytest

from brainobs.worker import threads


def test_each_worker_gets_an_even_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    assert threads.shared_thread_env(2, {}) == {name: "4" for name in threads.THREAD_VARIABLES}
    assert set(threads.shared_thread_env(16, {}).values()) == {"1"}  # never fewer than one thread
    chosen = threads.shared_thread_env(4, {"OMP_NUM_THREADS": "3"})
    assert "OMP_NUM_THREADS" not in chosen and chosen["OPENBLAS_NUM_THREADS"] == "2"  # the user's choice stands
    with pytest.raises(ValueError, match="at least 1"):
        threads.shared_thread_env(0, {})


def test_populate_starts_workers_with_their_share(monkeypatch):
    from brainobs import cli

    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    started = []

    class Worker:
        def __init__(self, command, start_new_session, env):
            started.append(env)

        def wait(self):
            return 0

        def poll(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Worker)
    assert cli._run_local_workers(2, [], []) == 0
    assert len(started) == 2
    assert all(env["OMP_NUM_THREADS"] == "2" and env["OPENBLAS_NUM_THREADS"] == "3" for env in started)
