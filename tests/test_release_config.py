"""The release configuration file: fields, errors naming file and field, placeholders, embargo dates."""

from __future__ import annotations

import datetime as dt

import pytest

from brainobs.export.release_config import ReleaseConfig, ReleaseConfigError, load_release_config

FULL = """
dandiset_id: "DANDI:000123"
name: Visual Behavior 2P
description: Two-photon imaging of mouse visual cortex
contributors:
  - {name: "Doe, Jane", email: jane@example.org, roles: [dcite:ContactPerson, dcite:DataCurator]}
  - {name: "Roe, Rick"}
experimenters: ["Doe, Jane"]
institution: Example Institute
lab: Example Lab
license: spdx:CC-BY-4.0
keywords: [2-photon, visual cortex]
embargo_days: 365
project_embargo_days: {OpenScope: 730}
"""


def test_a_full_configuration_has_no_placeholders_and_fills_dandiset_yaml(tmp_path):
    path = tmp_path / "release.yaml"
    path.write_text(FULL)
    config = load_release_config(path)
    assert config.placeholders() == []
    meta = config.dandiset_metadata("v1", "", embargoed=False)
    assert meta["identifier"] == "DANDI:000123" and meta["name"] == "Visual Behavior 2P v1"
    assert meta["description"] == "Two-photon imaging of mouse visual cortex"
    assert meta["contributor"][0] == {
        "name": "Doe, Jane",
        "email": "jane@example.org",
        "roleName": ["dcite:ContactPerson", "dcite:DataCurator"],
    }
    assert meta["contributor"][1]["roleName"] == ["dcite:Author"]
    assert meta["license"] == ["spdx:CC-BY-4.0"] and meta["keywords"] == ["2-photon", "visual cortex"]
    assert meta["institution"] == "Example Institute" and meta["lab"] == "Example Lab"
    assert meta["access"] == [{"status": "dandi:OpenAccess"}]
    assert config.dandiset_metadata("v1", "", embargoed=True)["access"] == [{"status": "dandi:EmbargoedAccess"}]


def test_defaults_are_placeholders():
    assert ReleaseConfig().placeholders() == [
        "dandiset_id",
        "name",
        "description",
        "contributors",
        "experimenters",
        "institution",
        "lab",
        "keywords",
    ]
    assert load_release_config(None) == ReleaseConfig()


def test_embargo_end_stored_project_and_default(tmp_path):
    path = tmp_path / "release.yaml"
    path.write_text(FULL)
    config = load_release_config(path)
    start = dt.datetime(2026, 3, 2, 9, 30)
    assert config.embargo_end(start, "VisualBehavior", None) == dt.date(2027, 3, 2)
    assert config.embargo_end(start, "OpenScope", None) == dt.date(2028, 3, 1)
    assert config.embargo_end(start, "OpenScope", dt.date(2026, 3, 2)) == dt.date(2026, 3, 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("licence: x", r"unknown field\(s\) \['licence'\]"),
        ("license: MIT", "license 'MIT' is not one DANDI accepts"),
        ("dandiset_id: 123", "dandiset_id must be non-empty text"),
        ("dandiset_id: DANDI-1", "must look like DANDI:000123"),
        ("contributors: [{email: a@b.c}]", r"contributors\[0\] needs at least a name"),
        ("contributors: [{name: A, roles: [Author]}]", "DANDI role names"),
        ("embargo_days: -1", "embargo_days must be a whole number of days"),
        ("keywords: visual", "keywords must be a list"),
        ("- a list", "a mapping of fields"),
    ],
)
def test_errors_name_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "release.yaml"
    path.write_text(text)
    with pytest.raises(ReleaseConfigError, match=message) as err:
        load_release_config(path)
    assert str(path) in str(err.value)
