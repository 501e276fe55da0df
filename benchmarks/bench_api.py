"""Query API: one experiment's dF/F through ``brainobs.api.dff_traces`` against ``np.load`` of one .npy.

    python -m benchmarks.bench_api [--rois 500] [--frames 140000] [--repeats 3]

A fresh embedded PostgreSQL server in a temporary BRAINOBS_HOME (or BRAINOBS_DATABASE_URL when it names a
server) gets the brainobs schemas under a temporary prefix (set in the environment too, since the API
activates the schemas from it). One subject, session, container and experiment
are inserted, then the computed chain down to DeltaFOverF is inserted directly (``allow_direct_insert``):
upstream rows hold one-sample placeholder arrays (nothing here reads them), and DeltaFOverF.Trace holds
--rois float64 dF/F traces of --frames samples, each stored by DataJoint's own ``<npy@main>`` codec in the
folder object store, exactly as the pipeline stores them. The baseline is ``np.load`` of the same
(rois, frames) array saved as one .npy in the same temporary folder. Both read from the page cache (each is
read once before timing); best of --repeats. Target: api / np.load <= 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import load_average

EXPERIMENT = {"subject_id": "B0001", "session_id": 100001, "experiment_id": 900001}


def insert_experiment(dff: np.ndarray) -> dict:
    """The rows down to DeltaFOverF.Trace for one experiment whose dF/F is ``dff`` (n_roi, T)."""
    from brainobs.schemas import stores
    from brainobs.schemas.acquisition import Container, Experiment, Session
    from brainobs.schemas.ophys import (
        DeltaFOverF,
        Demixing,
        Fluorescence,
        MotionCorrection,
        NeuropilCorrection,
        OphysParamSet,
        OphysSelection,
        Segmentation,
    )
    from brainobs.schemas.subject import Subject

    n_roi, n_frames = dff.shape
    Subject.insert1({"subject_id": EXPERIMENT["subject_id"], "sex": "F", "indicator": "GCaMP6f"})
    Session.insert1(
        {"subject_id": EXPERIMENT["subject_id"], "session_id": EXPERIMENT["session_id"],
         "session_type": "OPHYS_1_images_A", "modality": "ophys", "session_start_time": dt.datetime(2026, 3, 2, 9, 30)}
    )  # fmt: skip
    Container.insert1(
        {"subject_id": EXPERIMENT["subject_id"], "container_id": 700001, "targeted_structure": "VISp",
         "imaging_depth": 175}
    )  # fmt: skip
    Experiment.insert1(
        {**EXPERIMENT, "container_id": 700001, "imaging_depth": 175, "targeted_structure": "VISp",
         "frame_rate": 31.0, "width": 512, "height": 512, "pixel_size_um": 0.78, "movie_file": "none.tif"}
    )  # fmt: skip
    key = {**EXPERIMENT, "ophys_paramset": OphysParamSet.insert_default()}
    OphysSelection.insert1(key)
    movie = stores.path("registered", "placeholder.bin")
    movie.write_bytes(b"\0\0")
    one, image = np.zeros(1), np.zeros((2, 2))
    MotionCorrection.insert1(
        {**key, "registered_movie": stores.relative(movie), "registered_size": 2, "registered_sha256": "0" * 64,
         "n_frames": n_frames, "x_offset": one,
         "y_offset": one, "correlation": one, "n_clipped": 0, "n_empty": 0, "frame_mean": one,
         "saturation_level": 1.0, "average_image": image, "max_image": image, "max_correction_left": 0.0,
         "max_correction_right": 0.0, "max_correction_up": 0.0, "max_correction_down": 0.0},
        allow_direct_insert=True,
    )  # fmt: skip
    ids = range(n_roi)
    direct = {"allow_direct_insert": True}
    Segmentation.insert1({**key, "n_detected": n_roi, "n_rois": n_roi, "n_valid": n_roi}, **direct)
    pix = np.zeros(1, dtype=np.int32)
    Segmentation.ROI.insert(
        ({**key, "cell_roi_id": i, "ypix": pix, "xpix": pix, "x": 0, "y": 0, "width": 1, "height": 1,
          "centroid_x": 0.0, "centroid_y": 0.0, "npix": 1, "valid_roi": True} for i in ids),
        **direct,
    )  # fmt: skip
    Fluorescence.insert1({**key, "n_frames": n_frames}, **direct)
    Fluorescence.Trace.insert(
        ({**key, "cell_roi_id": i, "roi_trace": one, "neuropil_trace": one, "neuropil_npix": 1} for i in ids),
        **direct,
    )
    Demixing.insert1(
        {**key, "n_groups": 0, "n_dropped_frames": 0, "n_negative_transient": 0, "n_negative_baseline": 0,
         "n_made_nan": 0},
        **direct,
    )  # fmt: skip
    Demixing.Trace.insert(
        ({**key, "cell_roi_id": i, "demixed_trace": one, "negative_transient": False, "negative_baseline": False,
          "zero_baseline": False, "skipped_frames": 0} for i in ids),
        **direct,
    )  # fmt: skip
    NeuropilCorrection.insert1({**key, "mean_r": 0.7}, **direct)
    NeuropilCorrection.Trace.insert(({**key, "cell_roi_id": i, "corrected_trace": one} for i in ids), **direct)
    DeltaFOverF.insert1({**key, "long_window": 18601, "short_window": 103}, **direct)
    DeltaFOverF.Trace.insert(
        ({**key, "cell_roi_id": i, "dff": dff[i], "sigma_dff": 0.05, "num_small_baseline_frames": 0} for i in ids),
        **direct,
    )
    return key


def best_seconds(function, repeats: int) -> float:
    function()  # warm the page cache and imports
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=500)
    parser.add_argument("--frames", type=int, default=140000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from brainobs import api
    from brainobs.database import EmbeddedServer
    from brainobs.schemas import activate, modules
    from brainobs.settings import Settings

    dff = np.random.default_rng(0).normal(0, 0.05, (args.rois, args.frames))
    with tempfile.TemporaryDirectory(prefix="bench-api-") as home:
        settings = Settings(
            database_url=os.environ.get("BRAINOBS_DATABASE_URL", "embedded"),
            home=Path(home),
            schema_prefix=f"benchapi{os.getpid()}_",
        )
        os.environ.update(BRAINOBS_HOME=home, BRAINOBS_SCHEMA_PREFIX=settings.schema_prefix)  # api's activate()
        activate(settings)
        try:
            started = time.perf_counter()
            insert_experiment(dff)
            insert_s = time.perf_counter() - started
            npy = Path(home) / "dff.npy"
            np.save(npy, dff)
            fetched = api.dff_traces(EXPERIMENT["experiment_id"])
            if not np.array_equal(fetched.to_numpy().T, dff):
                raise RuntimeError("api.dff_traces returned other values than were inserted")
            load = load_average()
            ours = best_seconds(lambda: api.dff_traces(EXPERIMENT["experiment_id"]), args.repeats)
            bare = best_seconds(lambda: np.load(npy), args.repeats)
            print(f"database: {settings.database}, {os.cpu_count()} CPUs; inserting the rows took {insert_s:.1f} s")
            print(
                f"dF/F of {args.rois} ROIs x {args.frames} frames ({dff.nbytes / 1e6:.0f} MB float64), best of "
                f"{args.repeats}: api.dff_traces {ours:.2f} s, np.load {bare:.2f} s, ratio {ours / bare:.2f}x "
                f"(target <= 2; load before {load}, after {load_average()})"
            )
        finally:
            for module in reversed(modules()):
                module.schema.drop(prompt=False)
            if settings.database.backend == "embedded":
                EmbeddedServer(settings.home).stop()


if __name__ == "__main__":
    main()
