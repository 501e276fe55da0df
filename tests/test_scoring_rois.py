"""Scoring of ROI detection and registration (brainobs.ingest.synthetic.scoring.rois)."""

from __future__ import annotations

import numpy as np
import pytest

from brainobs.ingest.synthetic.scoring.rois import (
    MASK_FRACTION,
    MAX_CENTROID_DISTANCE_PX,
    MIN_IOU,
    binarize_footprints,
    footprints_in_reference_frame,
    registration_rmse,
    score_roi_detection,
)

SHAPE = (40, 50)


def _disk(cy: float, cx: float, radius: float, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2).astype(float)


def _gaussian(cy: float, cx: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


def _pixels(footprint: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ypix, xpix = np.nonzero(footprint)
    return ypix, xpix, footprint[ypix, xpix]


def test_pinned_matching_criteria() -> None:
    assert (MAX_CENTROID_DISTANCE_PX, MIN_IOU, MASK_FRACTION) == (4.0, 0.5, 0.2)


def test_binarize_at_a_fraction_of_each_peak() -> None:
    footprints = np.stack([_gaussian(10, 10, 2.0), 5 * _gaussian(30, 30, 2.0)])
    masks = binarize_footprints(footprints, SHAPE, 0.2).toarray().reshape(2, *SHAPE)
    # exp(-r^2 / 8) > 0.2  <=>  r^2 < 8 ln 5 = 12.9: the 37 pixels within that radius
    assert masks.sum(axis=(1, 2)).tolist() == [37, 37]
    sparse_masks = binarize_footprints([_pixels(f) for f in footprints], SHAPE, 0.2)
    np.testing.assert_array_equal(sparse_masks.toarray(), masks.reshape(2, -1))


def test_binarize_refuses_mismatched_frames() -> None:
    with pytest.raises(ValueError, match="not \\(n, 40, 50\\)"):
        binarize_footprints(np.zeros((1, 4, 4)), SHAPE, 0.2)
    with pytest.raises(ValueError, match="footprint 0 has pixels outside"):
        binarize_footprints([(np.array([40]), np.array([0]), np.array([1.0]))], SHAPE, 0.2)


def test_perfect_detection() -> None:
    truth = np.stack([_gaussian(10, 10, 2.5), _gaussian(25, 35, 2.5)])
    score = score_roi_detection(truth[::-1], truth, SHAPE)
    assert (score.recall, score.precision, score.f1) == (1.0, 1.0, 1.0)
    assert sorted((m.detected_index, m.truth_index) for m in score.matches) == [(0, 1), (1, 0)]
    assert all(m.iou == 1.0 and m.centroid_distance_px == 0.0 for m in score.matches)


def test_recall_precision_f1_with_a_miss_and_a_false_positive() -> None:
    truth = np.stack([_disk(10, 10, 4), _disk(25, 35, 4), _disk(30, 10, 4)])
    detected = np.stack([_disk(10, 11, 4), _disk(25, 35, 4), _disk(5, 45, 3), _disk(35, 25, 3)])
    score = score_roi_detection(detected, truth, SHAPE)
    assert (score.n_detected, score.n_truth, len(score.matches)) == (4, 3, 2)
    assert score.recall == pytest.approx(2 / 3)
    assert score.precision == pytest.approx(2 / 4)
    assert score.f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert score.unmatched_truth == [2] and score.unmatched_detected == [2, 3]


def test_a_match_needs_both_iou_and_centroid_distance() -> None:
    truth = _disk(20, 20, 6)[None]
    shifted = _disk(20, 25, 6)[None]  # centroid 5 px away
    assert score_roi_detection(shifted, truth, SHAPE).matches == []
    ring_with_core = np.clip(_disk(20, 20, 12) - _disk(20, 20, 9) + _disk(20, 20, 2), 0, 1)[None]
    assert score_roi_detection(ring_with_core, truth, SHAPE).matches == []  # same centroid, IoU < 0.5
    near = _disk(20, 22, 6)[None]
    assert len(score_roi_detection(near, truth, SHAPE).matches) == 1


def test_suite2p_like_halo_is_cut_like_the_truth() -> None:
    truth = _gaussian(20, 20, 2.5)[None]
    halo = _gaussian(20, 20, 2.5) + 0.05 * _disk(20, 20, 9)  # faint correlated pixels far out
    assert len(score_roi_detection([_pixels(halo)], truth, SHAPE).matches) == 1


def test_one_to_one_matching_prefers_the_larger_iou() -> None:
    truth = np.stack([_disk(20, 20, 5), _disk(20, 23, 5)])
    detected = _disk(20, 21, 5)[None]
    score = score_roi_detection(detected, truth, SHAPE)
    assert [(m.detected_index, m.truth_index) for m in score.matches] == [(0, 0)]
    assert score.recall == 0.5 and score.precision == 1.0


def test_empty_inputs() -> None:
    truth = _disk(20, 20, 5)[None]
    none = np.zeros((0, *SHAPE))
    assert score_roi_detection(none, truth, SHAPE).f1 == 0.0
    assert score_roi_detection([], truth, SHAPE).recall == 0.0
    assert score_roi_detection(truth, none, SHAPE).precision == 0.0


def test_registration_rmse_removes_the_constant_offset() -> None:
    rng = np.random.default_rng(0)
    true_y, true_x = rng.integers(-5, 6, 100), rng.integers(-5, 6, 100)
    assert registration_rmse(true_y + 3, true_x - 2, true_y, true_x) == 0.0
    assert registration_rmse(-true_y + 1, -true_x, true_y, true_x, sign=-1) == 0.0


def test_registration_rmse_value_and_valid_frames() -> None:
    true = np.zeros(100)
    estimated_x = np.zeros(100)
    estimated_x[:4] = 3.0  # 4 % of frames off by 3 px: rmse = sqrt(0.04 * 9) = 0.6
    assert registration_rmse(true, estimated_x, true, true) == pytest.approx(0.6)
    valid = np.ones(100, bool)
    valid[:4] = False
    assert registration_rmse(true, estimated_x, true, true, valid=valid) == 0.0
    with pytest.raises(ValueError, match="no frames"):
        registration_rmse(true, true, true, true, valid=np.zeros(100, bool))


def test_footprints_follow_the_registration_reference() -> None:
    rng = np.random.default_rng(1)
    true_y, true_x = rng.normal(0, 2, 50), rng.normal(0, 2, 50)
    estimated_y, estimated_x = np.rint(true_y) + 2, np.rint(true_x) - 3  # reference 2 px down, 3 px left
    moved = footprints_in_reference_frame(_disk(20, 20, 4)[None], estimated_y, estimated_x, true_y, true_x)
    rows, cols = np.nonzero(moved[0] > 0.5)
    assert abs(rows.mean() - 18) < 0.3 and abs(cols.mean() - 23) < 0.3
    flipped = footprints_in_reference_frame(_disk(20, 20, 4)[None], estimated_y, estimated_x, -true_y, -true_x, -1)
    np.testing.assert_allclose(flipped, moved)


def test_frame_displacement_adds_the_mean_of_the_non_rigid_field() -> None:
    from types import SimpleNamespace

    from brainobs.ingest.synthetic.ophys import NONRIGID_GRID, interpolation_matrix
    from brainobs.ingest.synthetic.scoring.experiment import frame_displacement

    shifts = np.array([0.0, 1.0, -2.0])
    constant = np.full((3, NONRIGID_GRID, NONRIGID_GRID), 0.25)
    ramp = np.zeros((3, NONRIGID_GRID, NONRIGID_GRID))
    ramp[:, :, 2] = 1.0  # right-hand control points move 1 px: 0 over the left half, rising to 1 at the right edge
    truth = SimpleNamespace(
        footprints=np.zeros((1, 41, 81)), shifts_y=shifts, shifts_x=-shifts, nonrigid_y=constant, nonrigid_x=ramp
    )
    y, x = frame_displacement(truth)
    np.testing.assert_allclose(y, shifts + 0.25)
    field = interpolation_matrix(NONRIGID_GRID, 41) @ ramp[0] @ interpolation_matrix(NONRIGID_GRID, 81).T
    np.testing.assert_allclose(x, -shifts + field.mean())
    assert field.mean() == pytest.approx(0.25, abs=0.01)
    still = SimpleNamespace(**{**vars(truth), "nonrigid_y": 0 * constant, "nonrigid_x": 0 * ramp})
    np.testing.assert_array_equal(frame_displacement(still)[0], shifts)
