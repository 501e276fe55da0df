"""bench_ephys's memory figure counts the processes a job starts (the sorter's), not only the worker."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks.bench_ephys import PeakMemory, _tree_pss

CHILD = "import time, numpy; a = numpy.ones(40_000_000); print('ready', flush=True); time.sleep(1.0)"


@pytest.mark.skipif(sys.platform != "linux", reason="PeakMemory reads /proc")
def test_peak_memory_counts_a_child_process_while_it_runs():
    with PeakMemory(interval_s=0.05) as memory:
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        alive = _tree_pss(os.getpid())
        child.wait()
    assert alive >= 320e6  # the child's 320 MB array is in the tree's Pss while it runs
    assert memory.sampled >= 320e6  # and the sampler saw it, not only ru_maxrss after the child ended
    assert memory.peak() >= memory.sampled
