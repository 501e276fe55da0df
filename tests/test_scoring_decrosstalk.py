"""Ghost truth and ghost detection scores on hand-made footprints."""

import numpy as np
import pytest

from brainobs.ingest.synthetic.scoring.decrosstalk import GhostScore, ghost_truth, score_ghosts


def disc(y: int, x: int, r: int = 3, size: int = 20) -> np.ndarray:
    gy, gx = np.mgrid[0:size, 0:size]
    return ((gy - y) ** 2 + (gx - x) ** 2 <= r * r).astype(float)


def test_a_mask_is_a_ghost_when_the_leaked_activity_dominates():
    own = np.stack([disc(5, 5)])
    partner = np.stack([disc(14, 14), disc(5, 6)])
    masks = np.stack([disc(5, 5), disc(14, 14), disc(10, 2)]) > 0
    truth = ghost_truth(masks, own, np.array([1.0]), partner, np.array([1.0, 1.0]), crosstalk=0.2)
    assert truth.tolist() == [False, True, False]  # own cell wins; partner's cell alone; nothing at all
    strong = ghost_truth(masks, own, np.array([1.0]), partner, np.array([1.0, 10.0]), crosstalk=0.2)
    assert strong.tolist() == [True, True, False]  # a bright partner cell outshines a dim own cell


def test_scores_count_precision_and_recall():
    score = score_ghosts(np.array([True, True, False, False]), np.array([True, False, True, False]))
    assert (score.n_rois, score.n_ghosts, score.n_flagged, score.n_correct) == (4, 2, 2, 1)
    assert score.precision == 0.5 and score.recall == 0.5
    total = score + GhostScore(2, 1, 1, 1)
    assert total.precision == pytest.approx(2 / 3) and total.recall == pytest.approx(2 / 3)
    assert np.isnan(score_ghosts(np.zeros(2, bool), np.zeros(2, bool)).precision)
    with pytest.raises(ValueError, match="3 flags for 2 ROIs"):
        score_ghosts(np.zeros(3, bool), np.zeros(2, bool))
