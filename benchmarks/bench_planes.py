"""Multi-plane sessions: the planes of a session processed in parallel by workers.

    python -m benchmarks.bench_planes [--pairs 1 2] [--workers 1 2] [--size 192] [--seed 0]

For each pair count a `multiplane` survey (one mesoscope session, 2 pairs at 11 Hz) is generated with planes of
--size x --size px (64 in the preset; cells at the preset's density) and cut to its first ``pairs`` pairs, then, for
each worker count, ingested into a fresh embedded PostgreSQL in a temporary folder and run through every table by
``brainobs populate --workers N``. From the workers' "made" log lines (each job's end time and duration): the
session's wall time (first job start to last job end, so process start-up does not count), each plane's chain (the
summed durations of the jobs keyed by its experiment_id: MotionCorrection, Segmentation, Decrosstalk, traces, dF/F,
events, QC, ...) and the slowest plane's. Session-level jobs (behavior, session QC) count in the wall time only.

Reading it: with as many workers as planes, and as many idle cores, the session should take about its slowest
plane (issue #21: 8 planes on 8 workers); with fewer cores the planes queue for them. The 2-core build machine
can show this for one pair on two workers; the load average before each run is printed beside it. A worker
finds the next stage's jobs at its next scheduler step (about 1 s), so a session also waits about 1 s per stage
whatever its planes' size: on the preset's 64 px planes (2-4 s of work each) that wait dominates.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import yaml

from benchmarks import MALLOC, REPO, ingested_survey, load_average, run_child

MODULE = "benchmarks.bench_planes"
MADE = re.compile(r"^(\S+ \S+) INFO worker \d+: made (\S+) (\{.*\}) in ([\d.]+) s$")


def survey(folder: Path, pairs: int, size: int, seed: int) -> Path:
    """A `multiplane` survey of ``size`` px planes with only its first ``pairs`` pairs in the manifest; its
    manifest's path."""
    from brainobs.ingest.synthetic import generate_survey
    from brainobs.ingest.synthetic.presets import resolve_preset

    cells = round(resolve_preset("multiplane").ophys.n_cells * (size / 64) ** 2)
    manifest = generate_survey(folder, "multiplane", seed=seed, height=size, width=size, n_cells=cells).manifest
    document = yaml.safe_load(manifest.read_text())
    document["experiments"] = [row for row in document["experiments"] if row["plane_group"] < pairs]
    kept = {row["container_id"] for row in document["experiments"]}
    document["containers"] = [row for row in document["containers"] if row["container_id"] in kept]
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))
    return manifest


def made_jobs(log: str) -> list[tuple[float, float, str, dict]]:
    """(end, seconds, table, key) of every job the workers' log says they made."""
    jobs = []
    for line in log.splitlines():
        found = MADE.match(line.strip())
        if found:
            stamp, table, key, seconds = found.groups()
            end = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            jobs.append((end, float(seconds), table, ast.literal_eval(key)))
    return jobs


def child_run(manifest: str, workers: str, home: str) -> dict:
    """Populate everything with ``workers`` workers under a fresh ``home``; the session's wall time and each
    plane's chain (run in a fresh process: the embedded server is this run's alone)."""
    manifest, workers, home = Path(manifest), int(workers), Path(home)
    prefix = "benchplanes_"
    with ingested_survey(manifest, home, prefix):
        load = load_average()
        command = [sys.executable, "-m", "brainobs.cli", "populate", "--workers", str(workers)]
        env = {**os.environ, **MALLOC, "BRAINOBS_SCHEMA_PREFIX": prefix, "BRAINOBS_LOG_LEVEL": "INFO"}
        started = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"populate failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    jobs = made_jobs(done.stdout + "\n" + done.stderr)
    if not jobs:
        raise RuntimeError("the workers logged no made job:\n" + done.stderr[-3000:])
    chains: defaultdict[str, float] = defaultdict(float)
    for _, seconds, _, key in jobs:
        if "experiment_id" in key:
            chains[str(key["experiment_id"])] += seconds
    wall = max(end for end, *_ in jobs) - min(end - seconds for end, seconds, *_ in jobs)
    return {"wall": wall, "elapsed": elapsed, "chains": dict(chains), "jobs": len(jobs), "load": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", type=int, default=[1, 2], choices=[1, 2])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--size", type=int, default=192, help="plane height and width, px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_run(*args.child[1:])), flush=True)
        return
    for pairs in args.pairs:
        with tempfile.TemporaryDirectory(prefix="bench-planes-") as tmp:
            manifest = survey(Path(tmp) / "data", pairs, args.size, args.seed)
            for workers in args.workers:
                result = run_child(MODULE, "run", manifest, workers, Path(tmp) / f"home-{workers}")
                chains = result["chains"]
                slowest = max(chains.values())
                print(
                    f"{2 * pairs} planes of {args.size} px, {workers} worker(s): session {result['wall']:.1f} s "
                    f"from first job start to last job end ({result['jobs']} jobs; populate "
                    f"{result['elapsed']:.1f} s with start-up), "
                    f"slowest plane {slowest:.1f} s, all planes {sum(chains.values()):.1f} s; session / slowest "
                    f"plane {result['wall'] / slowest:.2f}x (load before {result['load']})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
