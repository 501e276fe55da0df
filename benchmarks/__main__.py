"""Run the benchmarks: ``python -m benchmarks [NAME ...]`` (default: every ``bench_*`` module, with its
default options; run one module with ``python -m benchmarks.bench_<name> --help`` to choose them)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(names: list[str]) -> None:
    available = sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_")
    )
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise SystemExit(f"unknown benchmarks {unknown}; available: {available}")
    for name in names or available:
        print(f"== {name}", flush=True)
        sys.argv = [f"benchmarks.{name}"]
        importlib.import_module(f"benchmarks.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
