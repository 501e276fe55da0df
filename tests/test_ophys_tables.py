"""The 2-photon tables end to end on the tiny survey, scored against its ground truth."""

import numpy as np
import pytest

pytestmark = [pytest.mark.db, pytest.mark.slow]


@pytest.fixture(scope="module")
def processed(database, settings):
    """The tiny survey ingested and run through every 2-photon table (once for this module)."""
    from brainobs.ingest.manifest import load_manifest
    from brainobs.pipeline import populate_all
    from brainobs.schemas.loading import insert_manifest
    from brainobs.schemas.subject import Subject

    Subject.delete(prompt=False)
    insert_manifest(load_manifest(settings.data_root / "manifest.yaml", settings.data_root))
    results = populate_all(settings, display_progress=False)
    failures = {name: r["error_list"] for name, r in results.items() if r["error_list"]}
    assert not failures, failures
    return settings.data_root


def _detected_in_fov(key: dict, truth, shape: tuple[int, int]) -> list:
    """Detected ROIs moved from registered coordinates (the reference image's) into the truth's FOV ones.

    A registered frame shows FOV position p at p + c, with c = true shift - estimated offset (constant)."""
    from brainobs.schemas import ophys

    motion = (ophys.MotionCorrection & key).fetch1()
    cy = int(round(np.median(truth.shifts_y - np.asarray(motion["y_offset"]))))
    cx = int(round(np.median(truth.shifts_x - np.asarray(motion["x_offset"]))))
    detected = []
    for roi in (ophys.Segmentation.ROI & key).to_dicts(order_by="cell_roi_id"):
        ys, xs = np.asarray(roi["ypix"]) - cy, np.asarray(roi["xpix"]) - cx
        inside = (ys >= 0) & (ys < shape[0]) & (xs >= 0) & (xs < shape[1])
        detected.append((ys[inside], xs[inside], np.ones(int(inside.sum()))))
    return detected


def _experiments():
    from brainobs.schemas.acquisition import Experiment

    return Experiment.to_dicts(order_by="experiment_id")


def test_every_stage_has_one_row_per_experiment(processed):
    from brainobs.schemas import ophys

    n = len(_experiments())
    assert n == 3
    for table in (
        ophys.MotionCorrection,
        ophys.Segmentation,
        ophys.Fluorescence,
        ophys.Demixing,
        ophys.NeuropilCorrection,
        ophys.DeltaFOverF,
        ophys.EventDetection,
    ):
        assert len(table()) == n, table.__name__
    for part in (ophys.Fluorescence.Trace, ophys.DeltaFOverF.Trace, ophys.EventDetection.Event):
        assert len(part()) == len(ophys.Segmentation.ROI()), part.__name__


def test_registration_and_detection_against_truth(processed):
    from brainobs.ingest.synthetic.truth import load_ophys_truth
    from brainobs.populate.scoring.rois import registration_rmse, score_roi_detection
    from brainobs.schemas import ophys

    scores = []
    for experiment in _experiments():
        key = {"experiment_id": experiment["experiment_id"]}
        truth = load_ophys_truth(processed, experiment["experiment_id"])
        motion = (ophys.MotionCorrection & key).fetch1()
        rmse = registration_rmse(
            np.asarray(motion["y_offset"]), np.asarray(motion["x_offset"]), truth.shifts_y, truth.shifts_x
        )
        assert rmse <= 0.5, f"experiment {key}: registration RMSE {rmse:.2f} px"
        shape = (experiment["height"], experiment["width"])
        score = score_roi_detection(_detected_in_fov(key, truth, shape), truth.footprints, shape)
        scores.append((key, score.f1, score.n_detected, score.n_truth))
    assert all(f1 >= 0.9 for _, f1, _, _ in scores), f"(key, F1, detected, true cells): {scores}"


def test_corrected_traces_follow_the_true_calcium(processed):
    from brainobs.ingest.synthetic.truth import load_ophys_truth
    from brainobs.populate.scoring.rois import score_roi_detection
    from brainobs.populate.scoring.traces import trace_correlations
    from brainobs.schemas import ophys

    correlations = []
    for experiment in _experiments():
        key = {"experiment_id": experiment["experiment_id"]}
        truth = load_ophys_truth(processed, experiment["experiment_id"])
        shape = (experiment["height"], experiment["width"])
        score = score_roi_detection(_detected_in_fov(key, truth, shape), truth.footprints, shape)
        corrected = ophys.stack(ophys.NeuropilCorrection.Trace, key, "corrected_trace")
        match = [(m.detected_index, m.truth_index) for m in score.matches]
        correlations.extend(trace_correlations(corrected, truth.calcium, match))
    median = float(np.nanmedian(correlations))
    assert median >= 0.9, f"median corrected-trace correlation {median:.3f}"


def test_events_and_dff_windows(processed):
    from brainobs.schemas import ophys

    for row in ophys.EventDetection.to_dicts():
        assert row["gamma"] == pytest.approx(np.exp(-1 / (0.347 * 31.0)))
        assert row["noise_multiplier"] == 2.0
    for row in ophys.DeltaFOverF.to_dicts():
        assert row["short_window"] == 103  # 3.333 s at 31 Hz
    n_events = sum(int(np.count_nonzero(np.asarray(e))) for e in ophys.EventDetection.Event.to_arrays("events"))
    assert n_events > 0
