"""Cell matching on the synthetic survey's `tiny` container: true footprints (binarised at half their peak)
as ROIs, average projections as the mean over each movie's frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from brainobs.ingest.synthetic.scoring.matching import score_matching
from brainobs.populate.matching import ExperimentROIs, RoiPixels, match_container

synthetic = pytest.importorskip("brainobs.ingest.synthetic")


@pytest.fixture(scope="module")
def tiny_survey(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("matching") / "tiny"
    synthetic.generate_survey(out, "tiny", seed=0)
    return out


def _container(out: Path, container_id: int):
    """Experiments (in session order) with ROIs from the truth footprints, truth ids, and each cell's
    centroid (x, y) as the average projection shows it: frame content moves by +shift (truth shifts_x/y),
    so the average is displaced by the movie's mean motion."""
    survey = synthetic.load_survey_truth(out)
    records = sorted(
        (e for e in survey.experiments if e["container_id"] == container_id), key=lambda e: e["session_index"]
    )
    experiments, truth, centroids = [], {}, {}
    for record in records:
        experiment_id = record["experiment_id"]
        movie = out / record["movie_file"]
        assert movie.suffix == ".tif", f"{movie}: the tiny preset writes TIFF movies"
        average = tifffile.imread(movie).astype(np.float64).mean(axis=0)
        cells = synthetic.load_ophys_truth(out, experiment_id)
        rois, ids = [], {}
        for k, footprint in enumerate(cells.footprints):
            mask = footprint >= 0.5 * footprint.max()
            cell_roi_id = experiment_id * 1000 + k
            rois.append(RoiPixels.from_mask(cell_roi_id, mask))
            ids[cell_roi_id] = int(cells.cell_ids[k])
        experiments.append(ExperimentROIs(experiment_id, average, tuple(rois)))
        truth[experiment_id] = ids
        seen = cells.centroids[:, ::-1] + [cells.shifts_x.mean(), cells.shifts_y.mean()]
        centroids[experiment_id] = dict(zip(cells.cell_ids.tolist(), seen, strict=True))
    return experiments, truth, centroids


def test_tiny_container_matching_recovers_true_identities(tiny_survey):
    survey = synthetic.load_survey_truth(tiny_survey)
    for container in survey.containers:
        experiments, truth, centroids = _container(tiny_survey, container["container_id"])
        assert len(experiments) >= 2
        match = match_container(experiments)
        score = score_matching(match.line_of(), truth)
        assert score.n_true_pairs > 10
        assert score.pair_recall >= 0.9 and score.nway_recall >= 0.9
        assert score.pair_false_merge_rate <= 0.1 and score.nway_false_merge_rate <= 0.1
        # the chosen transforms carry the moving session's true cell centroids onto the fixed session's
        for transform in match.transforms:
            fixed, moving = centroids[transform.fixed_experiment_id], centroids[transform.moving_experiment_id]
            shared = sorted(set(fixed) & set(moving))
            moved = np.array([moving[c] for c in shared]) @ transform.matrix[:, :2].T + transform.matrix[:, 2]
            error = np.hypot(*(moved - np.array([fixed[c] for c in shared])).T)
            assert np.median(error) < 1.0, (transform, error)  # observed 0.05-0.76 px (seeds 0-4)
