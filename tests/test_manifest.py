"""Manifest parsing and path safety (no database)."""

import os

import pytest

from brainobs.ingest.manifest import ManifestError, load_manifest
from tests.manifests import make_manifest


def test_valid_manifest_gives_rows_with_subjects_linked(tmp_path):
    manifest = load_manifest(make_manifest(tmp_path))
    experiment = manifest.rows["experiments"][0]
    assert experiment.values["subject_id"] == "M1"
    assert experiment.values["movie_file"] == "M1/1/movie.tif"
    assert manifest.rows["probe_insertions"][0].values["subject_id"] == "M1"
    assert manifest.rows["sessions"][0].values["session_start_time"].isoformat() == "2026-03-02T09:30:00"


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "manifest.yaml"
    path.write_text("version: 1\nsubjects:\n  - subject_id: M1\n    sex: [F\n")
    with pytest.raises(ManifestError, match=r"manifest.yaml: line \d+: not valid YAML"):
        load_manifest(path)


def test_unknown_field_names_line_and_field(tmp_path):
    path = make_manifest(tmp_path, sessions__0__sesion_type="typo")
    with pytest.raises(ManifestError, match=r"line \d+: sessions\[0\]: unknown field 'sesion_type'"):
        load_manifest(path)


def test_wrong_type_and_missing_field(tmp_path):
    with pytest.raises(ManifestError, match=r"experiments\[0\]\.frame_rate = 'fast': expected a number"):
        load_manifest(make_manifest(tmp_path, experiments__0__frame_rate="fast"))
    with pytest.raises(ManifestError, match=r"sessions\[0\]\.modality = 'mri': expected one of"):
        load_manifest(make_manifest(tmp_path, sessions__0__modality="mri"))
    with pytest.raises(ManifestError, match="missing required field 'sex'"):
        load_manifest(make_manifest(tmp_path, subjects__0__sex=None))


def test_missing_file_is_reported_with_its_path(tmp_path):
    path = make_manifest(tmp_path, experiments__0__movie_file="M1/1/absent.tif")
    with pytest.raises(ManifestError, match=f"missing file: {tmp_path}/M1/1/absent.tif"):
        load_manifest(path)


@pytest.mark.parametrize("escape", ["../outside.tif", "M1/../../outside.tif", "/etc/passwd"])
def test_paths_that_escape_the_data_root_are_refused(tmp_path, escape):
    (tmp_path.parent / "outside.tif").write_bytes(b"x")
    path = make_manifest(tmp_path, experiments__0__movie_file=escape)
    with pytest.raises(ManifestError, match="contains '..'|outside the data root"):
        load_manifest(path)


def test_symlink_out_of_the_data_root_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "movie.tif").write_bytes(b"x")
    root = tmp_path / "root"
    root.mkdir()
    path = make_manifest(root, experiments__0__movie_file="M1/link.tif")
    os.symlink(outside / "movie.tif", root / "M1" / "link.tif")
    with pytest.raises(ManifestError, match="outside the data root"):
        load_manifest(path)


def test_explicit_data_root_is_used(tmp_path):
    data = tmp_path / "data"
    make_manifest(data)
    manifest_path = tmp_path / "manifest.yaml"
    manifest_path.write_text((data / "manifest.yaml").read_text())
    assert load_manifest(manifest_path, data_root=data).data_root == data.resolve()
    with pytest.raises(ManifestError, match="missing file"):
        load_manifest(manifest_path)


def test_container_of_another_subject_is_refused(tmp_path):
    path = make_manifest(tmp_path, containers__0__subject_id="M2")
    with pytest.raises(ManifestError, match="container 7 belongs to subject 'M2'"):
        load_manifest(path)


def test_unknown_section_and_empty_manifest(tmp_path):
    path = tmp_path / "manifest.yaml"
    path.write_text("version: 1\nmice: []\n")
    with pytest.raises(ManifestError, match="line 2: unknown section 'mice'"):
        load_manifest(path)
    path.write_text("")
    with pytest.raises(ManifestError, match="empty"):
        load_manifest(path)


def test_subject_decay_time_is_optional_and_must_be_positive(tmp_path):
    assert load_manifest(make_manifest(tmp_path)).rows["subjects"][0].values["decay_time"] is None
    manifest = load_manifest(make_manifest(tmp_path, subjects__0__decay_time=0.5))
    assert manifest.rows["subjects"][0].values["decay_time"] == 0.5
    with pytest.raises(ManifestError, match=r"subjects\[0\]\.decay_time = -1: expected a positive number"):
        load_manifest(make_manifest(tmp_path, subjects__0__decay_time=-1))
