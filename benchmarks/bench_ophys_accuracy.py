"""2-photon accuracy against ground truth: the demo and benchmark presets, each also with few photons.

    python -m benchmarks.bench_ophys_accuracy [--presets demo benchmark] [--sessions 1] [--low-photon 0.25]

For each preset a survey of one GCaMP6f container with --sessions sessions is generated (seed 0), then again
with ``photons_per_pixel`` multiplied by --low-photon (shot noise up, everything else the same). Each survey,
in a fresh child process, is ingested into an embedded PostgreSQL under a temporary BRAINOBS_HOME,
MotionCorrection .. EventDetection are populated, and every experiment is scored with
``brainobs.api.score_against_truth``: registration RMSE (px), ROI recall / precision / F1 (centroids within
4 px and IoU >= 0.5, FOV interior), the median correlation of corrected traces with the true calcium, and L0
event precision / recall / F1 against every true spike (+-2 frames). The tests hold the tiny preset to
F1 >= 0.9, RMSE <= 0.5 px and median r >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import ingested_survey, load_average, populate, run_child
from benchmarks.bench_ophys import OPHYS_TABLES


def generate(folder: Path, preset: str, sessions: int, photon_factor: float) -> Path:
    from brainobs.ingest.synthetic import generate_survey
    from brainobs.ingest.synthetic.presets import PRESETS, SubjectPlan

    photons = PRESETS[preset].ophys.photons_per_pixel * photon_factor
    one = (SubjectPlan(indicator="GCaMP6f", sessions=sessions),)
    return generate_survey(folder, preset, seed=0, subjects=one, photons_per_pixel=photons).manifest


def process_and_score(manifest: Path, home: Path) -> list[dict]:
    """Ingest, populate the 2-photon tables and score every experiment; the embedded server is stopped after."""
    from brainobs import api
    from brainobs.schemas.acquisition import Experiment

    with ingested_survey(manifest, home, "benchaccuracy_") as settings:
        populate(settings, OPHYS_TABLES)
        rows = []
        for experiment_id in Experiment.to_arrays("experiment_id", order_by="experiment_id"):
            s = api.score_against_truth(int(experiment_id), manifest.parent)
            d, e = s.detection, s.events
            rows.append(
                {"experiment_id": int(experiment_id), "rmse": s.registration_rmse_px, "recall": d.recall,
                 "precision": d.precision, "f1": d.f1, "matched": len(d.matches), "cells": d.n_truth,
                 "rois": d.n_detected, "trace_r": float(np.nanmedian(s.trace_correlations)),
                 "event_precision": e.precision, "event_recall": e.recall, "event_f1": e.f1}
            )  # fmt: skip
        return rows


def child_variant(preset: str, sessions: str, photon_factor: str) -> dict:
    """One survey generated, processed and scored, in a temporary folder (run in a fresh process)."""
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
        started = time.perf_counter()
        manifest = generate(Path(tmp) / "data", preset, int(sessions), float(photon_factor))
        rows = process_and_score(manifest, Path(tmp) / "home")
        return {"seconds": time.perf_counter() - started, "experiments": rows}


def report(label: str, result: dict) -> None:
    print(f"{label}: {result['seconds']:.0f} s (load {load_average()})", flush=True)
    for r in result["experiments"]:
        print(
            f"  experiment {r['experiment_id']}: registration RMSE {r['rmse']:.2f} px; ROIs recall "
            f"{r['recall']:.3f} precision {r['precision']:.3f} F1 {r['f1']:.3f} ({r['matched']} of {r['cells']} "
            f"cells, {r['rois']} ROIs); corrected-trace r median {r['trace_r']:.3f}; events precision "
            f"{r['event_precision']:.3f} recall {r['event_recall']:.3f} F1 {r['event_f1']:.3f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["demo", "benchmark"])
    parser.add_argument("--sessions", type=int, default=1, help="sessions (experiments) per preset")
    parser.add_argument("--low-photon", type=float, default=0.25, help="photons_per_pixel factor of the variant")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_variant(*args.child[1:])), flush=True)
        return
    for preset in args.presets:
        for label, factor in ((preset, 1.0), (f"{preset} low-photon x{args.low_photon:g}", args.low_photon)):
            report(label, run_child("benchmarks.bench_ophys_accuracy", "variant", preset, args.sessions, factor))


if __name__ == "__main__":
    main()
