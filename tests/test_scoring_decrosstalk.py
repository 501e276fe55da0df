"""Ghost truth and ghost detection scores on hand-made footprints."""

import numpy as np
import pytest

from brainobs.ingest.synthetic.scoring.decrosstalk import GhostScore, ghost_truth, score_ghosts


def disc(y: int, x: int, r: int = 3, size: int = 20) -> np.ndarray:
    gy, gx = np.mgrid[0:size, 0:size]
    return ((gy - y) ** 2 + (gx - x) ** 2 <= r * r).astype(float)


def test_a_mask_is_a_ghost_when_it_lies_on_the_partner_and_the_leaked_activity_dominates():
    rng = np.random.default_rng(0)
    own = np.stack([disc(5, 5)])
    partner = np.stack([disc(14, 14), disc(5, 6), disc(2, 16, r=1)])
    masks = np.stack([disc(5, 5), disc(14, 14), disc(10, 2), disc(2, 16, r=3)]) > 0
    active, quiet = rng.exponential(1.0, (1, 300)), np.zeros((1, 300))
    partner_activity = np.vstack([active, active, 40 * active])
    truth = ghost_truth(masks, own, active, partner, partner_activity, crosstalk=0.2)
    # own cell wins; partner's cell alone; nothing at all; a bright partner cell under a few pixels of the mask
    assert truth.tolist() == [False, True, False, False]
    strong = ghost_truth(masks, own, active, partner, 10 * partner_activity, crosstalk=0.2)
    assert strong.tolist() == [True, True, False, False]  # a bright partner cell outshines a dim own cell
    silent = ghost_truth(masks, own, quiet, partner, partner_activity, crosstalk=0.2)
    assert silent.tolist() == [True, True, False, False]  # a silent own cell is outshone by any leak
    assert not ghost_truth(masks, own, active, partner[:0], partner_activity[:0], crosstalk=0.2).any()


def test_scores_count_precision_and_recall():
    score = score_ghosts(np.array([True, True, False, False]), np.array([True, False, True, False]))
    assert (score.n_rois, score.n_ghosts, score.n_flagged, score.n_correct) == (4, 2, 2, 1)
    assert score.precision == 0.5 and score.recall == 0.5
    total = score + GhostScore(2, 1, 1, 1)
    assert total.precision == pytest.approx(2 / 3) and total.recall == pytest.approx(2 / 3)
    assert np.isnan(score_ghosts(np.zeros(2, bool), np.zeros(2, bool)).precision)
    with pytest.raises(ValueError, match="3 flags for 2 ROIs"):
        score_ghosts(np.zeros(3, bool), np.zeros(2, bool))
