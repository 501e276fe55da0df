"""The `multiplane` synthetic preset: one mesoscope session, 2 pairs, known crosstalk, ghosts in the truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from brainobs.ingest.manifest import load_manifest
from brainobs.ingest.synthetic import generate_survey


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("multiplane") / "survey"
    generate_survey(out, preset="multiplane", seed=0)
    return out


def test_one_session_of_four_planes_in_two_pairs(survey):
    manifest = load_manifest(survey / "manifest.yaml")
    places = [(r.values["plane_group"], r.values["plane_order"]) for r in manifest.plane_groups]
    assert places == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len(manifest.rows["sessions"]) == 1 and len(manifest.rows["containers"]) == 4
    assert {r.values["frame_rate"] for r in manifest.rows["experiments"]} == {11.0}


def test_each_plane_carries_a_ghost_of_its_partner(survey):
    index = json.loads((survey / "ground_truth" / "survey.json").read_text())
    experiments = {row["experiment_id"]: row for row in index["experiments"]}
    assert sorted(row["crosstalk"] for row in experiments.values()) == [0.05, 0.1, 0.15, 0.25]
    for experiment_id, row in experiments.items():
        partner = experiments[row["paired_experiment_id"]]
        assert partner["paired_experiment_id"] == experiment_id
        truth = np.load(survey / row["truth_file"])
        other = np.load(survey / partner["truth_file"])
        assert float(truth["crosstalk"]) == row["crosstalk"]
        movie = tifffile.imread(survey / row["movie_file"]).astype(float)
        # the partner's cells, away from this plane's own cells, show the partner's calcium in this movie
        own = truth["footprints"].sum(axis=0) > 0.05
        correlations = []
        for footprint, calcium in zip(other["footprints"], other["calcium"], strict=True):
            mask = (footprint >= 0.5) & ~own
            if mask.sum() >= 10:
                correlations.append(np.corrcoef(movie[:, mask].mean(axis=1), calcium)[0, 1])
        assert np.median(correlations) > 1.5 * row["crosstalk"], (experiment_id, correlations)
