"""Run the benchmarks: ``python -m benchmarks [--quick] [NAME ...]`` (default: every ``bench_*`` module).

Each benchmark runs in its own process (``python -m benchmarks.<name>``), so that one that stops its embedded
server cannot break the next one's connection. ``--quick`` passes each the small options of :data:`QUICK`
(a check that every benchmark runs end to end, not a measurement). Choose a module's options with
``python -m benchmarks.bench_<name> --help``. Exits with the first failing benchmark's status.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

QUICK = {
    "bench_api": ["--rois", "50", "--frames", "2000", "--repeats", "1"],
    "bench_ephys": ["--channels", "16", "--seconds", "10"],
    "bench_export": ["--rois", "20", "--frames", "2000", "--units", "50", "--seconds", "60", "--repeats", "1"],
    "bench_matching": ["--frames", "700"],
    "bench_ophys": ["--frames", "700", "--size", "256", "--cells", "60", "--rois", "5", "--hours", "0.2"],
    "bench_ophys_accuracy": ["--presets", "demo"],
    "bench_planes": ["--pairs", "1", "--size", "64"],
    "bench_workers": ["--jobs", "200", "--burn-jobs", "8", "--burn-s", "0.25"],
}


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [a for a in argv if a != "--quick"]
    unknown = sorted(set(names) - set(available()))
    if unknown:
        raise SystemExit(f"unknown benchmarks {unknown}; available: {available()}")
    failed = 0
    for name in names or available():
        options = QUICK.get(name, []) if quick else []
        print(f"== {name} {' '.join(options)}".rstrip(), flush=True)
        code = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *options]).returncode
        if code:
            print(f"== {name} exited with status {code}", flush=True)
            failed = failed or code
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
