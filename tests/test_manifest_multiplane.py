"""Multi-plane (mesoscope) sessions in the manifest: plane groups, pairs, depths, frame rates."""

from __future__ import annotations

import pytest
import yaml

from brainobs.ingest.manifest import ManifestError, load_manifest
from tests.manifests import make_manifest


def multiplane_manifest(root, planes: int = 4, **changes):
    """The test manifest with session 1 imaging ``planes`` planes in pairs (``changes``: index__field)."""
    path = make_manifest(root)
    document = yaml.safe_load(path.read_text())
    first = document["experiments"][0]
    document["experiments"] = []
    for plane in range(planes):
        movie = f"M1/1/plane{plane}.tif"
        (root / movie).write_bytes(b"II*\x00")
        document["experiments"].append(
            {**first, "experiment_id": 11 + plane, "imaging_depth": 75 + 50 * plane, "movie_file": movie,
             "plane_group": plane // 2, "plane_order": plane % 2}
        )  # fmt: skip
    for dotted, value in changes.items():
        index, name = dotted.split("__")
        if value is None:
            del document["experiments"][int(index)][name]
        else:
            document["experiments"][int(index)][name] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_four_planes_in_two_pairs_are_accepted(tmp_path):
    manifest = load_manifest(multiplane_manifest(tmp_path))
    places = [
        (r.values["experiment_id"], r.values["plane_group"], r.values["plane_order"]) for r in manifest.plane_groups
    ]
    assert places == [(11, 0, 0), (12, 0, 1), (13, 1, 0), (14, 1, 1)]


def test_single_plane_manifests_have_no_plane_groups(tmp_path):
    manifest = load_manifest(make_manifest(tmp_path))
    assert manifest.plane_groups == []
    assert manifest.rows["experiments"][0].values["plane_group"] is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"3__plane_group": 2}, r"experiments\[2\]\.plane_group: pair 1 of session 1 is incomplete"),
        ({"1__plane_order": 0}, r"experiments\[1\]\.plane_order: plane_group 0 order 0 of session 1 is already"),
        ({"2__imaging_depth": 75}, r"experiments\[2\]\.imaging_depth = 75: .* depths must be distinct"),
        ({"3__frame_rate": 11.0}, r"experiments\[3\]\.frame_rate = 11.0: the planes of session 1 are imaged at one"),
        ({"2__plane_order": None}, r"experiments\[2\]\.plane_order is missing: session 1 is multi-plane"),
        ({"0__plane_order": 2}, r"experiments\[0\]\.plane_order = 2: expected one of 0, 1"),
    ],
)
def test_bad_plane_groups_name_line_and_field(tmp_path, changes, message):
    with pytest.raises(ManifestError, match=r"manifest.yaml: line \d+: " + message):
        load_manifest(multiplane_manifest(tmp_path, **changes))


def test_at_most_eight_planes(tmp_path):
    load_manifest(multiplane_manifest(tmp_path, planes=8))
    with pytest.raises(ManifestError, match=r"line \d+: experiments\[8\]: session 1 has 10 planes; at most 8"):
        load_manifest(multiplane_manifest(tmp_path, planes=10))


@pytest.mark.db
def test_plane_groups_are_ingested_and_pairs_found(db, tmp_path):
    from brainobs.schemas.acquisition import PlaneGroup, paired_experiment
    from brainobs.schemas.loading import insert_manifest

    first = insert_manifest(load_manifest(multiplane_manifest(tmp_path)))
    assert first.inserted["experiments"] == 4 and first.inserted["plane_groups"] == 4
    assert len(PlaneGroup()) == 4
    assert paired_experiment({"experiment_id": 13})["experiment_id"] == 14
    assert paired_experiment({"experiment_id": 12})["experiment_id"] == 11
    again = insert_manifest(load_manifest(multiplane_manifest(tmp_path)))
    assert again.inserted == {} and again.unchanged["plane_groups"] == 4
    with pytest.raises(ManifestError, match=r"stored PlaneGroup .* plane_order is 0 in the database but 1"):
        insert_manifest(load_manifest(multiplane_manifest(tmp_path, **{"1__plane_order": 0, "0__plane_order": 1})))
