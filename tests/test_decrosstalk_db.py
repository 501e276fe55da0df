"""The Decrosstalk table on the `multiplane` synthetic session (4 planes, 2 pairs), scored against truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.db

FOLDER = "multiplane"


@pytest.fixture(scope="module")
def multiplane(database, settings):
    """The multiplane survey under the data root, ingested and run to Decrosstalk (once for this module)."""
    from brainobs.ingest.manifest import load_manifest
    from brainobs.ingest.synthetic import generate_survey
    from brainobs.schemas import activate, ophys
    from brainobs.schemas.acquisition import PlaneGroup
    from brainobs.schemas.loading import insert_manifest
    from brainobs.schemas.subject import Subject

    activate(settings)  # this session's data root, whatever an earlier CLI test activated
    root = settings.data_root / FOLDER
    if not (root / "manifest.yaml").is_file():
        generate_survey(root, preset="multiplane", seed=0)
    document = yaml.safe_load((root / "manifest.yaml").read_text())
    for section, name in (("experiments", "movie_file"), ("sessions", "behavior_dir")):
        for row in document[section]:
            row[name] = f"{FOLDER}/{row[name]}"
    manifest_path = root / "manifest-under-data-root.yaml"
    manifest_path.write_text(yaml.safe_dump(document, sort_keys=False))
    Subject.delete(prompt=False)
    insert_manifest(load_manifest(manifest_path, settings.data_root))
    ophys.schedule_defaults()
    first_pair = PlaneGroup & {"plane_group": 0}  # one pair keeps the test cheap; benchmarks score both
    for table in (ophys.MotionCorrection, ophys.Segmentation, ophys.Decrosstalk):
        table.populate(first_pair, reserve_jobs=False, suppress_errors=False)
    yield root
    Subject.delete(prompt=False)


def test_one_decrosstalk_row_per_plane_with_its_partner(multiplane):
    from brainobs.schemas import ophys

    rows = ophys.Decrosstalk.to_dicts(order_by="experiment_id")
    assert [(r["experiment_id"], r["paired_experiment_id"]) for r in rows] == [(900001, 900002), (900002, 900001)]
    assert len(ophys.Decrosstalk.ROI()) == len(ophys.Segmentation.ROI())
    index = json.loads((multiplane / "ground_truth" / "survey.json").read_text())
    truth = {row["experiment_id"]: row["crosstalk"] for row in index["experiments"]}
    for row in rows:
        assert row["crosstalk"] == pytest.approx(truth[row["experiment_id"]], abs=0.04), row
    mixing = np.stack([r["mixing"] for r in ophys.Decrosstalk.ROI.to_dicts() if r["converged"]])
    np.testing.assert_allclose(mixing.sum(axis=2), 1.0)


def test_decrosstalk_labels_reach_the_exclusion_labels(multiplane):
    from brainobs.schemas import ophys

    flagged = ophys.Decrosstalk.ExclusionLabel.to_dicts()
    assert flagged, "the multiplane session has ghosts"
    for row in flagged[:5]:
        assert row["exclusion_label"] in ophys.exclusion_labels(row)[row["cell_roi_id"]]


def test_ghost_detection_against_truth(multiplane):
    from brainobs import api

    # target 0.9 each (issue #21); the bound leaves a margin for the few ghosts of one pair
    total = api.score_decrosstalk(900001, multiplane) + api.score_decrosstalk(900002, multiplane)
    assert total.n_ghosts >= 3, total
    assert total.precision >= 0.75 and total.recall >= 0.75, total
    everything = api.score_decrosstalk(900001, multiplane, valid_only=False)
    assert everything.n_rois > api.score_decrosstalk(900001, multiplane).n_rois


def test_image_based_method_on_the_same_rois(multiplane):
    """The `enhanced` preset's image-based decrosstalk rerun on the same ROIs and movies: its coefficients are
    within 0.02 of the truth (seed 0: 0.049 and 0.149 for 0.05 and 0.15) and it finds the ghosts at least as well
    as the bound held for Allen's method (seed 0, this pair: 3 of 3, no false call)."""
    from brainobs import api
    from brainobs.schemas import ophys

    index = json.loads((multiplane / "ground_truth" / "survey.json").read_text())
    truth = {row["experiment_id"]: row["crosstalk"] for row in index["experiments"]}
    total = None
    for key in ophys.Decrosstalk.proj().to_dicts(order_by="experiment_id"):
        result = ophys.decrosstalk_as(key, "enhanced")
        assert result.crosstalk == pytest.approx(truth[key["experiment_id"]], abs=0.02), key
        labels = dict(zip(ophys.roi_ids(key), result.labels, strict=True))
        score = api.score_decrosstalk(key["experiment_id"], multiplane, labels=labels)
        total = score if total is None else total + score
    assert total.n_ghosts >= 3, total
    assert total.precision >= 0.75 and total.recall >= 0.75, total


def test_allens_ica_with_paired_plane_registration(multiplane):
    """Allen's ICA reading the partner's raw movie at this plane's scan points (``decrosstalk_paired_movie``
    "signal_offsets") on the same ROIs: the ghosts are found as well as the bound held for the default."""
    from brainobs import api
    from brainobs.schemas import ophys

    scores = []
    for key in ophys.Decrosstalk.proj().to_dicts(order_by="experiment_id"):
        result = ophys.decrosstalk_as(key, "allen", decrosstalk_paired_movie="signal_offsets")
        assert result.converged.any() and 0.0 < result.crosstalk < 0.3, key
        labels = dict(zip(ophys.roi_ids(key), result.labels, strict=True))
        scores.append(api.score_decrosstalk(key["experiment_id"], multiplane, labels=labels))
    total = scores[0] + scores[1]
    assert total.n_ghosts >= 3 and total.precision >= 0.75 and total.recall >= 0.75, total


def test_api_shows_plane_group_and_order(multiplane):
    from brainobs import api

    table = api.ophys_experiments().sort_values("experiment_id")
    assert table["plane_group"].tolist() == [0, 0, 1, 1]
    assert table["plane_order"].tolist() == [0, 1, 0, 1]


def test_export_bundles_name_the_pair(multiplane):
    from brainobs.schemas.collect import plane_group

    assert plane_group({"experiment_id": 900002}) == {
        "plane_group": 0,
        "plane_order": 1,
        "paired_experiment_id": 900001,
    }
    assert plane_group({"experiment_id": 1}) == {}
