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
    with pytest.raises(ManifestError, match=r"subjects\[0\]\.decay_time = -1: must be a finite number greater than 0"):
        load_manifest(make_manifest(tmp_path, subjects__0__decay_time=-1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"experiments__0__frame_rate": 0.0}, r"experiments\[0\]\.frame_rate = 0\.0: must be a finite number greater"),
        ({"experiments__0__frame_rate": -31.0}, r"experiments\[0\]\.frame_rate = -31\.0: must be a finite number"),
        ({"experiments__0__frame_rate": float("nan")}, r"experiments\[0\]\.frame_rate = nan: must be a finite"),
        ({"experiments__0__pixel_size_um": float("inf")}, r"experiments\[0\]\.pixel_size_um = inf: must be a finite"),
        ({"probe_insertions__0__sampling_rate": 0}, r"probe_insertions\[0\]\.sampling_rate = 0: must be a finite"),
        ({"experiments__0__width": 0}, r"experiments\[0\]\.width = 0: must be greater than 0"),
        ({"experiments__0__height": -64}, r"experiments\[0\]\.height = -64: must be greater than 0"),
        ({"probe_insertions__0__num_channels": 0}, r"probe_insertions\[0\]\.num_channels = 0: must be greater"),
        ({"experiments__0__width": 2**31}, r"experiments\[0\]\.width = 2147483648: outside the int32 range"),
        ({"experiments__0__experiment_id": 2**63}, r"experiments\[0\]\.experiment_id = \d+: outside the int64 range"),
        ({"sessions__0__rig": "R" * 33}, r"sessions\[0\]\.rig = 'RRR.*': 33 characters, longer than the column's 32"),
        ({"subjects__0__driver_line": "Cre\x00x"}, r"subjects\[0\]\.driver_line = 'Cre\\x00x': contains a NUL byte"),
    ],
)
def test_nonsense_values_are_refused_with_line_and_field(tmp_path, change, message):
    with pytest.raises(ManifestError, match=r"manifest\.yaml: line \d+: " + message):
        load_manifest(make_manifest(tmp_path, **change))


@pytest.mark.parametrize("bad", ["a/../../../../x", "../M1", "M 1", "M1/x", ".hidden", "", "M1\x00"])
def test_identifiers_outside_the_character_set_are_refused(tmp_path, bad):
    with pytest.raises(ManifestError, match=r"line \d+: subjects\[0\]\.subject_id = .*(identifiers use|NUL)"):
        load_manifest(make_manifest(tmp_path, subjects__0__subject_id=bad))
    with pytest.raises(ManifestError, match=r"probe_insertions\[0\]\.probe_name = .*(identifiers use|NUL)"):
        load_manifest(make_manifest(tmp_path, probe_insertions__0__probe_name=bad))


def test_identifiers_in_the_character_set_are_accepted(tmp_path):
    manifest = load_manifest(make_manifest(tmp_path, subjects__0__subject_id="M-0001_a.b"))
    assert manifest.rows["subjects"][0].values["subject_id"] == "M-0001_a.b"


def _with_extra_row(root, section, **values):
    import yaml

    path = make_manifest(root)
    document = yaml.safe_load(path.read_text())
    document[section].append({**document[section][0], **values})
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("experiments", {"session_id": 2}, r"experiments\[1\] \(line \d+\): experiment_id 11 is already used by "),
        ("sessions", {"subject_id": "M1"}, r"sessions\[2\] \(line \d+\): session_id 1 is already used by"),
        ("containers", {"imaging_depth": 275}, r"containers\[1\] \(line \d+\): container_id 7 is already used"),
    ],
)
def test_ids_are_unique_across_the_manifest(tmp_path, section, values, message):
    with pytest.raises(ManifestError, match=message):
        load_manifest(_with_extra_row(tmp_path, section, **values))


def test_string_lengths_match_the_table_columns():
    """The manifest's length limits are the columns' varchar lengths."""
    import re

    from brainobs.ingest.manifest import SECTIONS
    from brainobs.schemas import acquisition, subject

    for section in SECTIONS.values():
        table = getattr(acquisition, section.table, None) or getattr(subject, section.table)
        declared = dict(re.findall(r"^\s*(\w+)\s*(?:=[^:]*)?:\s*varchar\((\d+)\)", table.definition, re.M))
        for name, spec in section.fields.items():
            if name in declared:
                with pytest.raises(ValueError, match="longer than the column"):
                    spec.parse("x" * (int(declared[name]) + 1))
                spec.parse("x" * int(declared[name]))
