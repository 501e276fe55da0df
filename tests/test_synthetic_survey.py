"""The synthetic survey: manifest, layout, truth index, reproducibility, presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from brainobs.ingest.behavior_files import read_behavior
from brainobs.ingest.manifest import load_manifest
from brainobs.ingest.synthetic import generate_survey, load_ophys_truth, load_survey_truth
from brainobs.ingest.synthetic.ephys import load_probe_truth, load_truth
from brainobs.ingest.synthetic.presets import PRESETS, PresetError, SubjectPlan
from brainobs.ingest.synthetic.survey import SurveyExistsError
from brainobs.ingest.synthetic.truth import TruthError, load_container_truth
from brainobs.populate.ophys.indicators import decay_time_s

# a demo-like survey with a second, two-plane 11 Hz subject, at a small size
SMALL_DEMO = {
    "height": 64,
    "width": 64,
    "n_frames": 650,
    "n_cells": 20,
    "overlap_pairs": 2,
    "ephys_duration_s": 10.0,
    "subjects": (
        SubjectPlan(indicator="GCaMP6f", sessions=3, ecephys_sessions=1),
        SubjectPlan(indicator="GCaMP6s", sessions=3, planes=2),
    ),
}


def _files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "survey"
    generate_survey(out, preset="tiny", seed=0)
    return out


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "survey"
    generate_survey(out, preset="demo", seed=0, **SMALL_DEMO)
    return out


def test_tiny_manifest_loads_and_every_reference_resolves(tiny):
    manifest = load_manifest(tiny / "manifest.yaml")
    counts = {section: len(rows) for section, rows in manifest.rows.items()}
    assert counts == {"subjects": 1, "sessions": 4, "containers": 1, "experiments": 3, "probe_insertions": 1}
    raw = yaml.safe_load((tiny / "manifest.yaml").read_text())
    sessions = {row["session_id"]: row for row in raw["sessions"]}
    assert sorted(row["modality"] for row in sessions.values()) == ["ecephys", "ophys", "ophys", "ophys"]
    days = sorted(row["session_start_time"].date() for row in sessions.values())
    assert len(set(days)) == 4
    for experiment in raw["experiments"]:
        assert (tiny / experiment["movie_file"]).is_file()
        assert sessions[experiment["session_id"]]["modality"] == "ophys"
        assert (experiment["frame_rate"], experiment["width"], experiment["height"]) == (31.0, 64, 64)
    probe = raw["probe_insertions"][0]
    assert probe["num_channels"] == 16 and (tiny / probe["recording_path"]).is_file()
    assert not list(tiny.parent.glob(".*synth*"))  # no staging folder left behind


def test_tiny_movies_have_as_many_frames_as_the_sync_record(tiny):
    raw = yaml.safe_load((tiny / "manifest.yaml").read_text())
    sessions = {row["session_id"]: row for row in raw["sessions"]}
    for experiment in raw["experiments"]:
        behavior = read_behavior(tiny / sessions[experiment["session_id"]]["behavior_dir"])
        with tifffile.TiffFile(tiny / experiment["movie_file"]) as tif:
            n_frames = len(tif.pages)
        assert n_frames == len(behavior.ophys_frame_times) == 6000
        assert np.median(np.diff(behavior.ophys_frame_times)) == pytest.approx(1 / 31.0, rel=1e-3)


def test_subject_indicator_matches_the_kinetics_in_the_truth(tiny):
    raw = yaml.safe_load((tiny / "manifest.yaml").read_text())
    subject = raw["subjects"][0]
    truth = load_ophys_truth(tiny, raw["experiments"][0]["experiment_id"])
    assert subject["indicator"] == truth.indicator == "GCaMP6f"
    assert decay_time_s(subject["full_genotype"]) == truth.decay_time_s == 0.347


def test_the_same_seed_gives_the_same_bytes(tiny, tmp_path):
    again = tmp_path / "again"
    generate_survey(again, preset="tiny", seed=0)
    first, second = _files(tiny), _files(again)
    assert sorted(first) == sorted(second)
    different = [name for name in first if first[name] != second[name]]
    assert different == []


def test_another_seed_gives_other_movies(tiny, tmp_path):
    other = tmp_path / "other"
    generate_survey(other, preset="tiny", seed=1)
    movie = "M0001/100001/ophys_experiment_900001.tif"
    assert (tiny / movie).read_bytes() != (other / movie).read_bytes()


def test_the_truth_index_describes_the_survey(tiny):
    truth = load_survey_truth(tiny)
    assert (truth.preset, truth.seed) == ("tiny", 0)
    (container,) = truth.containers
    assert truth.experiment_ids(container["container_id"]) == container["experiment_ids"] == [900001, 900002, 900003]
    tissue = load_container_truth(tiny, container["container_id"])
    for index, experiment_id in enumerate(container["experiment_ids"]):
        cells = load_ophys_truth(tiny, experiment_id)
        assert cells.session_index == index and 12 <= cells.n_cells <= 20
        present = tissue["cell_ids"][tissue["presence"][:, index]]
        assert np.isin(cells.cell_ids, present).all()
    for session in truth.sessions:
        assert (tiny / session["behavior_truth"]).is_dir()
    (probe,) = truth.probe_insertions
    assert (tiny / probe["truth_dir"]).is_dir()
    units = load_truth(tiny / probe["truth_dir"])[1]
    pd.testing.assert_frame_equal(load_probe_truth(tiny, probe["session_id"], probe["probe_name"])[1], units)
    with pytest.raises(TruthError, match="the truth has no probe 'probeZ'"):
        load_probe_truth(tiny, probe["session_id"], "probeZ")
    assert probe["t_start_s"] + probe["duration_s"] <= truth.sessions[-1]["duration_s"]


def test_a_two_plane_subject_is_imaged_at_11_hz(small_demo):
    raw = yaml.safe_load((small_demo / "manifest.yaml").read_text())
    assert [s["indicator"] for s in raw["subjects"]] == ["GCaMP6f", "GCaMP6s"]
    multiplane = [e for e in raw["experiments"] if e["frame_rate"] == 11.0]
    assert len(multiplane) == 6
    by_session: dict[int, list] = {}
    for experiment in multiplane:
        by_session.setdefault(experiment["session_id"], []).append(experiment)
    assert len(by_session) == 3 and all(len(planes) == 2 for planes in by_session.values())
    assert all(planes[0]["container_id"] != planes[1]["container_id"] for planes in by_session.values())
    depths = {c["container_id"]: c["imaging_depth"] for c in raw["containers"]}
    assert len(depths) == 3 and sorted(set(depths.values())) == [175, 275]
    truth = load_ophys_truth(small_demo, multiplane[0]["experiment_id"])
    assert truth.n_frames == round(650 * 11 / 31) and truth.decay_time_s == 0.738
    load_manifest(small_demo / "manifest.yaml")


def test_progress_is_reported_per_experiment_and_recording(tmp_path):
    lines: list[str] = []
    generate_survey(tmp_path / "s", preset="tiny", seed=0, progress=lines.append)
    assert len(lines) == 4
    assert lines[0].startswith("experiment 900001") and lines[-1].startswith("ecephys session 200001")


def test_a_previous_survey_is_replaced_and_other_folders_are_refused(tmp_path):
    out = tmp_path / "s"
    generate_survey(out, preset="tiny", seed=0, n_frames=700)
    summary = generate_survey(out, preset="tiny", seed=0)
    assert summary.experiments == 3 and load_survey_truth(out).ophys_params["n_frames"] == 6000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SurveyExistsError, match="not empty"):
        generate_survey(foreign, preset="tiny")
    assert (foreign / "notes.txt").read_text() == "mine"


def test_bad_requests_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(PresetError, match="unknown preset"):
        generate_survey(tmp_path / "a", preset="enormous")
    with pytest.raises(PresetError, match="n_frame"):
        generate_survey(tmp_path / "b", preset="tiny", n_frame=10)
    with pytest.raises(ValueError, match="shorter than 20"):
        generate_survey(tmp_path / "c", preset="tiny", n_frames=300)
    assert not list(tmp_path.iterdir())


def test_presets_have_the_documented_sizes():
    tiny, demo, benchmark = PRESETS["tiny"], PRESETS["demo"], PRESETS["benchmark"]
    assert (tiny.ophys.height, tiny.ophys.width, tiny.ophys.frame_rate) == (64, 64, 31.0)
    assert tiny.ophys.n_frames / (3.7 * tiny.ophys.frame_rate) >= 50  # Allen's detection bins: at least 50
    assert (tiny.ephys_num_channels, tiny.ephys_duration_s) == (16, 10.0)
    assert (demo.ophys.height, demo.ophys.n_frames) == (128, 4000) and 32 <= demo.ephys_num_channels <= 64
    assert (benchmark.ophys.height, benchmark.ophys.width) == (512, 512) and benchmark.ophys.n_frames >= 2000
    assert benchmark.ephys_num_channels == 384 and benchmark.ephys_duration_s >= 60
    assert all(plan.sessions >= 3 for p in PRESETS.values() for plan in p.subjects if plan.planes == 1)
    (mesoscope,) = PRESETS["multiplane"].subjects  # one 4-plane session: 2 pairs with crosstalk
    assert (mesoscope.sessions, mesoscope.planes, len(mesoscope.crosstalk)) == (1, 4, 4)
    assert PRESETS["demo"].subjects[1] == mesoscope  # the demo shows the same mesoscope session
