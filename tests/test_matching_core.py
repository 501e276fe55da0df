"""Cross-session cell matching core: registration, pairwise assignment, n-way merge, containers, tables.

The tissue below is built here: ~30 elliptical cells on a textured background, seen in each session through
a rigid transform (shift up to `max_shift` px, rotation up to `max_rotation_deg` about the FOV centre), with
~10% of cells silent, two new cells and one non-cell ROI per session, a gain/offset change and noise; each
session's ROI footprints are jittered (size x0.85-1.15, centre ~0.7 px) as segmentation would.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from scipy import ndimage

from brainobs.ingest.synthetic.scoring.matching import score_matching
from brainobs.populate.matching import (
    ExperimentROIs,
    MatchingInputError,
    MatchingParams,
    MatchOutcome,
    PairMatch,
    RegistrationError,
    RoiPair,
    RoiPixels,
    cell_specimen_id,
    match_and_summarize,
    match_container,
)
from brainobs.populate.matching.nway import merge_lines
from brainobs.populate.matching.pairwise import footprints_in_frame, match_pair
from brainobs.populate.matching.registration import register_pair, scaled_settings
from brainobs.populate.matching.summary import summarize

FOV = (160, 160)
MIN_SEPARATION_PX = 11.0


def _rigid(angle_deg: float, shift: tuple[float, float], center: np.ndarray) -> np.ndarray:
    """World (x, y) -> session (x, y): rotation about the FOV centre, then a shift."""
    t = math.radians(angle_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return np.hstack([rot, (center + np.asarray(shift) - rot @ center)[:, None]])


def _place(rng: np.random.Generator, occupied: list[np.ndarray], n: int, fov: tuple[int, int]) -> list:
    """n new positions at least MIN_SEPARATION_PX from each other and from `occupied` (which grows)."""
    placed = []
    while len(placed) < n:
        p = rng.uniform([4.0, 4.0], [fov[1] - 4.0, fov[0] - 4.0])
        if all(np.hypot(*(p - q)) >= MIN_SEPARATION_PX for q in occupied):
            occupied.append(p)
            placed.append(p)
    return placed


def _ellipse(rng: np.random.Generator, p: np.ndarray) -> tuple[float, ...]:
    """(cx, cy, semi-axis a, semi-axis b, orientation, brightness)"""
    return (
        p[0],
        p[1],
        rng.uniform(4.0, 6.0),
        rng.uniform(3.0, 4.5),
        rng.uniform(0, math.pi),
        rng.uniform(0.6, 1.2),
    )


def _radius2(dx: np.ndarray, dy: np.ndarray, a: float, b: float, theta: float) -> np.ndarray:
    """Squared elliptical radius: <= 1 inside the ellipse."""
    u = (dx * math.cos(theta) + dy * math.sin(theta)) / a
    v = (-dx * math.sin(theta) + dy * math.cos(theta)) / b
    return u**2 + v**2


def make_container(
    seed: int = 0,
    n_sessions: int = 4,
    max_shift: float = 10.0,
    max_rotation_deg: float = 2.0,
    n_cells: int = 30,
    fov: tuple[int, int] = FOV,
) -> tuple[list[ExperimentROIs], dict[int, dict[int, int]], list[np.ndarray]]:
    """Experiments, truth (experiment_id -> {cell_roi_id: true cell or -1}) and world -> session transforms."""
    rng = np.random.default_rng(seed)
    ly, lx = fov
    center = np.array([(lx - 1) / 2, (ly - 1) / 2])
    occupied: list[np.ndarray] = []
    cells = {k: _ellipse(rng, p) for k, p in enumerate(_place(rng, occupied, n_cells, fov))}
    pad = 40
    texture = ndimage.gaussian_filter(rng.normal(size=(ly + 2 * pad, lx + 2 * pad)), 4) * 6.0
    texture += ndimage.gaussian_filter(rng.normal(size=texture.shape), 1.5) * 1.5
    ys, xs = np.mgrid[0:ly, 0:lx].astype(float)
    experiments, truth, to_sessions = [], {}, []
    next_cell, next_noncell = n_cells, -1
    for s in range(n_sessions):
        experiment_id = 100 + s
        r, phi = rng.uniform(0, max_shift), rng.uniform(0, 2 * math.pi)
        angle = rng.uniform(-max_rotation_deg, max_rotation_deg)
        to_session = _rigid(angle, (r * math.cos(phi), r * math.sin(phi)), center)
        to_sessions.append(to_session)
        to_world = np.linalg.inv(np.vstack([to_session, [0, 0, 1]]))[:2]
        wx = to_world[0, 0] * xs + to_world[0, 1] * ys + to_world[0, 2]
        wy = to_world[1, 0] * xs + to_world[1, 1] * ys + to_world[1, 2]
        present = {k: c for k, c in cells.items() if rng.random() >= 0.1}
        for p in _place(rng, occupied, 2, fov):
            present[next_cell] = _ellipse(rng, p)
            next_cell += 1
        for p in _place(rng, occupied, 1, fov):
            present[next_noncell] = _ellipse(rng, p)
            next_noncell -= 1
        image = ndimage.map_coordinates(texture, [wy + pad, wx + pad], order=1)
        found = []
        for k, (cx, cy, a, b, th, brightness) in present.items():
            if k >= 0:
                image += 3.0 * brightness * np.clip(1.3 - _radius2(wx - cx, wy - cy, a, b, th), 0, 1)
            # the segmented footprint differs between sessions: jittered size and centre
            jx, jy = rng.normal(0, 0.7, 2)
            inside = (
                _radius2(wx - cx - jx, wy - cy - jy, a * rng.uniform(0.85, 1.15), b * rng.uniform(0.85, 1.15), th) <= 1
            )
            if inside.sum() >= 15:
                found.append((k, inside))
        image = image * rng.uniform(0.8, 1.2) + rng.uniform(0, 2) + rng.normal(0, 0.3, image.shape)
        rois, ids = [], {}
        for n, i in enumerate(rng.permutation(len(found))):
            cell_roi_id = experiment_id * 1000 + n
            rois.append(RoiPixels.from_mask(cell_roi_id, found[i][1], valid=bool(rng.random() > 0.1)))
            ids[cell_roi_id] = max(found[i][0], -1)
        experiments.append(ExperimentROIs(experiment_id, image, tuple(rois)))
        truth[experiment_id] = ids
    return experiments, truth, to_sessions


def _true_matrix(to_sessions: list[np.ndarray], fixed: int, moving: int) -> np.ndarray:
    full = [np.vstack([m, [0.0, 0.0, 1.0]]) for m in to_sessions]
    return (full[fixed] @ np.linalg.inv(full[moving]))[:2]


def _max_error_px(a: np.ndarray, b: np.ndarray, fov: tuple[int, int] = FOV) -> float:
    corners = np.array([[0, 0, 1], [fov[1], 0, 1], [0, fov[0], 1], [fov[1], fov[0], 1]], float)
    return float(np.abs(corners @ a.T - corners @ b.T).max())


def _square(cell_roi_id: int, x0: int, y0: int, side: int = 6) -> RoiPixels:
    ys, xs = np.mgrid[y0 : y0 + side, x0 : x0 + side]
    return RoiPixels(cell_roi_id, ys.ravel(), xs.ravel())


# --- parameters ------------------------------------------------------------------------------------------


def test_params_pin_the_allen_values():
    p = MatchingParams()
    assert (p.max_distance_px, p.far_pair_cost, p.min_edge_weight, p.missing_pair_cost) == (
        10,
        999,
        0.002,
        1000,
    )
    assert (p.clahe_grid, p.clahe_clip, p.edge_buffer_px) == (24, 2.5, 40)
    assert p.ecc_max_iterations > 0 and p.ecc_gauss_filter % 2 == 1
    with pytest.raises(ValueError, match="max_distance_px must be > 0"):
        MatchingParams(max_distance_px=0)
    with pytest.raises(ValueError, match="ecc_gauss_filter must be odd"):
        MatchingParams(ecc_gauss_filter=4)


def test_registration_settings_scale_down_with_small_images_only():
    p = MatchingParams()
    assert scaled_settings((512, 512), p) == (40, 24, 20.0)
    assert scaled_settings((1024, 796), p) == (40, 24, 20.0)
    assert scaled_settings((160, 200), p) == (12, 8, 6.25)
    assert scaled_settings((64, 64), p) == (5, 3, 2.5)


# --- registration ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_register_pair_recovers_the_rigid_transform(seed):
    experiments, _, to_sessions = make_container(seed=seed, max_shift=15, max_rotation_deg=3)
    for moving in (1, 3):
        t = register_pair(
            experiments[0].average_projection,
            experiments[moving].average_projection,
            MatchingParams(),
            100,
            100 + moving,
        )
        assert _max_error_px(t.matrix, _true_matrix(to_sessions, 0, moving)) < 1.0
        assert t.matrix.shape == (2, 3) and t.method in t.candidate_ssim
        assert t.ssim == max(v for v in t.candidate_ssim.values() if np.isfinite(v)) > 0.5


def test_failed_registration_is_an_error_naming_the_pair():
    experiments, _, _ = make_container(seed=0)
    other, _, _ = make_container(seed=7)
    with pytest.raises(RegistrationError, match=r"experiment 2 onto experiment 1 .*below min_ssim"):
        register_pair(experiments[0].average_projection, other[1].average_projection, MatchingParams(), 1, 2)
    flat = np.full(FOV, 3.0)
    with pytest.raises(ValueError, match=r"experiment 9 onto experiment 100 failed: the moving .* is flat"):
        register_pair(experiments[0].average_projection, flat, MatchingParams(), 100, 9)
    broken = ExperimentROIs(9, other[1].average_projection, experiments[1].rois)
    with pytest.raises(RegistrationError, match="experiment 9 onto experiment 100"):
        match_container([experiments[0], broken])


# --- pairwise assignment ---------------------------------------------------------------------------------


def test_footprints_follow_the_transform_and_drop_pixels_outside():
    roi = _square(1, 10, 20)
    flat = np.sort((roi.ys * 50 + roi.xs).astype(np.int64))
    assert np.array_equal(footprints_in_frame((roi,), np.eye(2, 3), (50, 50))[0], flat)
    shifted = footprints_in_frame((roi,), np.array([[1.0, 0, 3], [0, 1.0, -2]]), (50, 50))[0]
    assert np.array_equal(shifted, np.sort((roi.ys - 2) * 50 + roi.xs + 3))
    clipped = footprints_in_frame((roi,), np.array([[1.0, 0, 37], [0, 1.0, 0]]), (50, 50))[0]
    assert clipped.size == 6 * 3 and np.all(clipped % 50 >= 47)
    rotated = footprints_in_frame((_square(2, 20, 20, 10),), _rigid(90, (0, 0), np.array([24.5, 24.5])), (50, 50))
    assert rotated[0].size == 100


def test_pair_cost_is_distance_over_10_plus_one_minus_iou():
    image = np.random.default_rng(0).normal(size=(50, 50))
    fixed = ExperimentROIs(1, image, (_square(11, 10, 10), _square(12, 30, 30)))
    moving = ExperimentROIs(2, image, (_square(21, 13, 10), _square(22, 30, 41)))
    pair = match_pair(fixed, moving, np.eye(2, 3), MatchingParams())
    # 11 vs 21: 3 px apart, overlap 3x6 of union 9x6 -> cost 0.3 + (1 - 1/3); 12 vs 22: 11 px apart -> no edge
    assert pair.candidate_costs == {(11, 21): pytest.approx(0.3 + 2 / 3)}
    assert [(m.fixed_roi_id, m.moving_roi_id) for m in pair.matches] == [(11, 21)]
    assert pair.matches[0].distance_px == pytest.approx(3) and pair.matches[0].iou == pytest.approx(1 / 3)
    assert (pair.n_matched, pair.match_fraction, pair.mean_cost) == (1, 0.5, pytest.approx(0.3 + 2 / 3))


def test_assignment_maximises_total_weight():
    image = np.ones((60, 60))
    # Fixed 1 (x 20) is nearest moving 3 (x 21: weight 0.72) and also reaches moving 4 (x 15: 0.42); fixed 2
    # (x 26) reaches only moving 3 (0.42). Greedy takes 1-3 (0.72); the maximum-weight matching 1-4 + 2-3.
    fixed = ExperimentROIs(1, image, (_square(1, 20, 20), _square(2, 26, 20)))
    moving = ExperimentROIs(2, image, (_square(3, 21, 20), _square(4, 15, 20)))
    pair = match_pair(fixed, moving, np.eye(2, 3), MatchingParams())
    assert sorted((m.fixed_roi_id, m.moving_roi_id) for m in pair.matches) == [(1, 4), (2, 3)]


# --- n-way merge -----------------------------------------------------------------------------------------


def _pair(fixed: int, moving: int, matched: dict[tuple[int, int], float], others=None) -> PairMatch:
    candidates = {**matched, **(others or {})}
    matches = tuple(RoiPair(f, m, 0.0, 1.0, c) for (f, m), c in matched.items())
    return PairMatch(fixed, moving, 5, 5, matches, candidates)


def test_consistent_chain_is_one_line():
    pairs = [_pair(1, 2, {(10, 20): 0.1}), _pair(2, 3, {(20, 30): 0.2}), _pair(1, 3, {})]
    assert merge_lines([1, 2, 3], pairs, 1000) == [frozenset({(1, 10), (2, 20), (3, 30)})]


def test_inconsistent_matches_keep_the_lowest_cost_line():
    # 1:10-2:20 and 2:20-3:30 are matched, but 1:10 was matched to 3:31 in the (1, 3) pair, with 1:10-3:30 a
    # rejected candidate. Line {10, 20, 30} has all three pairs linked (cost 0.1 + 0.2 + 0.9); line
    # {10, 20, 31} lacks the 20-31 pair (+1000): the first wins and 3:31 stays a singleton.
    pairs = [
        _pair(1, 2, {(10, 20): 0.1}),
        _pair(2, 3, {(20, 30): 0.2}),
        _pair(1, 3, {(10, 31): 0.3}, others={(10, 30): 0.9}),
    ]
    assert merge_lines([1, 2, 3], pairs, 1000) == [frozenset({(1, 10), (2, 20), (3, 30)})]


def test_two_rois_of_one_experiment_split_by_cost():
    # chain 1:10 - 2:20 - 3:30 - 1:11 holds two ROIs of experiment 1; 1:11 is closer to 3:30 and 2:20.
    pairs = [
        _pair(1, 2, {(10, 20): 0.8}, others={(11, 20): 0.2}),
        _pair(2, 3, {(20, 30): 0.1}),
        _pair(1, 3, {(11, 30): 0.1}, others={(10, 30): 0.9}),
    ]
    lines = merge_lines([1, 2, 3], pairs, 1000)
    assert lines == [frozenset({(1, 11), (2, 20), (3, 30)})]


# --- containers ------------------------------------------------------------------------------------------


@functools.cache
def matched(seed: int, max_shift: float = 10.0, max_rotation_deg: float = 2.0):
    """A container of 4 sessions, its truth and its match (built once per argument set)."""
    experiments, truth, _ = make_container(seed=seed, max_shift=max_shift, max_rotation_deg=max_rotation_deg)
    return experiments, truth, match_container(experiments)


@pytest.mark.parametrize("seed", [0, 1])
def test_container_matching_recovers_identities(seed):
    experiments, truth, match = matched(seed)
    score = score_matching(match.line_of(), truth)
    assert match.outcome is MatchOutcome.MATCHED
    assert score.pair_recall >= 0.9 and score.nway_recall >= 0.9
    assert score.pair_false_merge_rate <= 0.05 and score.nway_false_merge_rate <= 0.05
    assert len(match.transforms) == len(match.pairs) == 6
    every = {(e.experiment_id, r.cell_roi_id) for e in experiments for r in e.rois}
    assert set(match.line_of()) == every
    for line in match.lines():
        assert len({e for e, _ in line}) == len(line)


@pytest.mark.parametrize("seed", [0, 1])
def test_container_matching_harder_motion(seed):
    """Shifts up to 15 px and rotations up to 3 degrees per session (twice that between two sessions)."""
    _, truth, match = matched(seed, 15.0, 3.0)
    score = score_matching(match.line_of(), truth)
    assert score.pair_recall >= 0.9 and score.nway_recall >= 0.9
    assert score.pair_false_merge_rate <= 0.05 and score.nway_false_merge_rate <= 0.05


def test_line_numbering_is_reproducible():
    experiments, _, _ = make_container(seed=3, n_sessions=2)
    first, second = match_container(experiments), match_container(experiments)
    assert first.rois == second.rois and first.transforms[0].method == second.transforms[0].method
    assert [r.line for r in first.rois[:3]] == [0, 1, 2]


def test_single_experiment_is_not_matched():
    experiments, _, _ = make_container(seed=0, n_sessions=1)
    match = match_container(experiments)
    assert match.outcome is MatchOutcome.SINGLE_EXPERIMENT and match.outcome == "single_experiment"
    assert match.transforms == () and match.pairs == ()
    assert [r.line for r in match.rois] == list(range(len(experiments[0].rois)))
    summary = summarize(1, match, 1)
    assert summary.pairs == () and summary.lowest_match_fraction is None and summary.lowest_ssim is None
    assert summary.n_cells == summary.n_cells_all_sessions == len(experiments[0].rois)


def test_experiment_without_rois_takes_no_part():
    experiments, truth, _ = make_container(seed=1, n_sessions=3)
    empty = ExperimentROIs(experiments[1].experiment_id, np.zeros(FOV), ())
    match = match_container([experiments[0], empty, experiments[2]])
    alone = match_container([experiments[0], experiments[2]])
    assert match.outcome is MatchOutcome.MATCHED and match.lines() == alone.lines()
    assert [(t.fixed_experiment_id, t.moving_experiment_id) for t in match.transforms] == [(100, 102)]
    del truth[101]
    assert score_matching(match.line_of(), truth).pair_recall >= 0.9


def test_different_field_of_view_sizes():
    experiments, truth, _ = make_container(seed=4, n_sessions=3)
    # experiment 101 loses 9 rows at the top and 14 columns at the right; experiment 102 gains 12 columns.
    e1 = experiments[1]
    cropped = e1.average_projection[9:, :-14]
    rois, kept = [], {}
    for roi in e1.rois:
        inside = (roi.ys >= 9) & (roi.xs < FOV[1] - 14)
        if inside.sum() >= 15:
            rois.append(RoiPixels(roi.cell_roi_id, roi.ys[inside] - 9, roi.xs[inside], roi.valid))
            kept[roi.cell_roi_id] = truth[101][roi.cell_roi_id]
    truth[101] = kept
    e2 = experiments[2]
    wider = np.hstack([e2.average_projection, e2.average_projection[:, -12:][:, ::-1]])
    experiments[1] = ExperimentROIs(101, cropped, tuple(rois))
    experiments[2] = ExperimentROIs(102, wider, e2.rois)
    score = score_matching(match_container(experiments).line_of(), truth)
    assert score.pair_recall >= 0.9 and score.pair_false_merge_rate <= 0.05
    assert score.nway_recall >= 0.9 and score.nway_false_merge_rate <= 0.05


def test_bad_input_is_refused_with_the_experiment_named():
    image = np.zeros((32, 32))
    from_lists = ExperimentROIs(5, image, (RoiPixels(3, [1, 2], [4, 4]),)).rois[0]
    assert from_lists.ys.dtype == np.int64 and from_lists.xs.tolist() == [4, 4]
    with pytest.raises(MatchingInputError, match="experiment 5: cell_roi_id 1 appears twice"):
        ExperimentROIs(5, image, (_square(1, 0, 0), _square(1, 10, 10)))
    with pytest.raises(MatchingInputError, match="experiment 5: ROI 2 has pixels outside"):
        ExperimentROIs(5, image, (_square(2, 30, 0),))
    with pytest.raises(MatchingInputError, match="experiment 5: average projection must be 2-D"):
        ExperimentROIs(5, np.zeros(10))
    with pytest.raises(MatchingInputError, match="2 masks, 1 cell_roi_ids"):
        ExperimentROIs.from_masks(5, image, np.zeros((2, 32, 32), bool), [1])
    with pytest.raises(MatchingInputError, match="no experiments"):
        match_container([])
    with pytest.raises(MatchingInputError, match="repeat"):
        match_container([ExperimentROIs(5, image), ExperimentROIs(5, image)])


# --- tables ----------------------------------------------------------------------------------------------


def test_summary_numbers_cells_per_container_and_keeps_pair_statistics():
    experiments, truth, match = matched(1)
    summary = summarize(77, match, len(experiments))
    assert summary.outcome == "matched" and summary.failure == "" and summary.n_cells == match.n_lines
    ids = [s.cell_specimen_id for s in summary.specimens]
    assert len(ids) == sum(len(e.rois) for e in experiments)
    assert set(ids) == {cell_specimen_id(77, line) for line in range(match.n_lines)} and min(ids) == 7_700_000
    assert len({(s.cell_specimen_id, s.experiment_id) for s in summary.specimens}) == len(ids)
    lines = match.lines()
    assert summary.n_cells_all_sessions == sum(len({e for e, _ in line}) == len(experiments) for line in lines)
    assert len(summary.pairs) == 6 and all(p.ssim > 0.5 and p.mean_cost < 0.8 for p in summary.pairs)
    assert summary.lowest_match_fraction == min(p.match_fraction for p in summary.pairs)
    for pair in summary.pairs:
        assert pair.transform.shape == (2, 3)
        fixed, moving = truth[pair.fixed_experiment_id], truth[pair.moving_experiment_id]
        shared = len((set(fixed.values()) & set(moving.values())) - {-1})
        assert abs(pair.n_matched - shared) <= 1
        assert pair.match_fraction == pytest.approx(pair.n_matched / min(len(fixed), len(moving)))


def test_unrelated_fields_of_view_fail_the_container_with_the_reason(monkeypatch):
    experiments, _, _ = make_container(seed=2, n_sessions=2)

    def unrelated(*_args, **_kwargs):
        raise RegistrationError("no registration candidate reached the SSIM floor")

    monkeypatch.setattr("brainobs.populate.matching.summary.match_container", unrelated)
    summary = match_and_summarize(5, experiments, MatchingParams())
    assert summary.outcome == "failed" and "SSIM floor" in summary.failure
    assert summary.n_experiments == 2 and summary.n_cells == 0 and summary.specimens == () == summary.pairs
