"""Reader of the behavior folder: a valid folder reads; bad input raises errors that name the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainobs.ingest.behavior_files import BehaviorFileError, read_behavior
from brainobs.ingest.synthetic.behavior import write_behavior


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("behavior_files")
    write_behavior(root / "raw", root / "truth", duration_s=60, passive=False, image_set="B", seed=5,
                   ophys_frame_rate=11.0, n_ophys_frames=500)  # fmt: skip
    return root / "raw"


@pytest.fixture
def folder(pristine, tmp_path) -> Path:
    """A private copy to corrupt."""
    return Path(shutil.copytree(pristine, tmp_path / "raw"))


def _edit(path: Path, change) -> None:
    table = pd.read_csv(path, keep_default_na=False, dtype=str)
    change(table).to_csv(path, index=False)


def _raises(folder: Path, file_name: str, *fragments: str) -> None:
    with pytest.raises(BehaviorFileError) as caught:
        read_behavior(folder)
    message = str(caught.value)
    assert caught.value.path == folder / file_name, message
    assert file_name in message
    for fragment in fragments:
        assert fragment in message, message


def test_reads_a_valid_folder(pristine):
    files = read_behavior(pristine)
    n = files.vsync_times.size
    assert n == 3600 and len(files.encoder) == n
    assert files.ophys_frame_times.size == 500
    assert files.session.image_set == "B" and files.session.blocks[0].image_names[0] == "im008"
    assert files.session.response_window_s == (0.15, 0.75)
    task = files.session.task
    assert (task.name, task.stimulus_distribution, task.stimulus_duration_s) == ("change detection", "geometric", 0.25)
    assert task.blank_duration_s == (0.5, 0.5) and task.reward_volume_ml == 0.007
    assert files.trials["is_catch"].dtype == bool and len(files.trials) > 0
    assert np.all(np.diff(files.lick_frames) >= 0)
    assert isinstance(files.stimulus, pd.DataFrame) and files.stimulus["block"].eq(0).all()


def test_sync_timestamps_that_do_not_increase(folder):
    def swap(table: pd.DataFrame) -> pd.DataFrame:
        rows = table.index[table["line"] == "vsync"][100:102]
        table.loc[rows, "time_s"] = table.loc[rows[::-1], "time_s"].to_numpy()
        return table

    _edit(folder / "sync.csv", swap)
    _raises(folder, "sync.csv", "timestamps of line 'vsync' do not increase", "edge 101")


def test_ophys_pulses_that_do_not_increase(folder):
    def repeat(table: pd.DataFrame) -> pd.DataFrame:
        rows = table.index[table["line"] == "ophys_frames"]
        table.loc[rows[7], "time_s"] = table.loc[rows[6], "time_s"]
        return table

    _edit(folder / "sync.csv", repeat)
    _raises(folder, "sync.csv", "'ophys_frames' do not increase")


def test_gap_in_the_encoder_signal(folder):
    _edit(folder / "encoder.csv", lambda t: t.drop(index=range(200, 260)))
    _raises(folder, "encoder.csv", "gap in the encoder signal", "frame 260 follows frame 199")


def test_missing_encoder_value(folder):
    def blank(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[321, "vsig"] = ""
        return table

    _edit(folder / "encoder.csv", blank)
    _raises(folder, "encoder.csv", "gap in the encoder signal", "first at frame 321")


def test_stimulus_log_longer_than_the_sync_record(folder):
    def truncate(table: pd.DataFrame) -> pd.DataFrame:
        vsync = table.index[table["line"] == "vsync"]
        return table.drop(index=vsync[-600:])

    _edit(folder / "sync.csv", truncate)
    _raises(folder, "stimulus.csv", "references display frame", "3000 vsync pulses", "longer than the sync record")


def test_licks_beyond_the_sync_record(folder):
    (folder / "licks.csv").write_text("frame\n10\n3600\n")
    _raises(folder, "licks.csv", "references display frame 3600")


def test_licks_that_go_back_in_time(folder):
    (folder / "licks.csv").write_text("frame\n10\n30\n20\n")
    _raises(folder, "licks.csv", "do not increase", "frame 20 at data row 2 follows frame 30")


def test_overlapping_trials(folder):
    def overlap(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[0, "end_frame"] = str(int(table.loc[1, "start_frame"]) + 45)
        return table

    _edit(folder / "trials.csv", overlap)
    _raises(folder, "trials.csv", "trial 1 starts")


def test_missing_column_and_missing_file(folder):
    _edit(folder / "rewards.csv", lambda t: t.drop(columns=["volume_ml"]))
    _raises(folder, "rewards.csv", "missing column(s) ['volume_ml']")
    (folder / "rewards.csv").unlink()
    _raises(folder, "rewards.csv", "file not found")


def test_omitted_change_is_refused(folder):
    def omit_change(table: pd.DataFrame) -> pd.DataFrame:
        row = table.index[table["is_change"] == "1"][0]
        table.loc[row, "omitted"] = "1"
        return table

    _edit(folder / "stimulus.csv", omit_change)
    _raises(folder, "stimulus.csv", "both omitted and a change")


def test_session_json_problems(folder):
    path = folder / "session.json"
    session = json.loads(path.read_text())
    path.write_text(json.dumps({**session, "format": "other"}))
    _raises(folder, "session.json", "expected 'brainobs-behavior'/1")
    path.write_text(json.dumps({**session, "monitor_delay_s": "soon"}))
    _raises(folder, "session.json", "'monitor_delay_s' must be a finite number")
    blocks = [{**session["blocks"][0], "kind": "opera"}]
    path.write_text(json.dumps({**session, "blocks": blocks}))
    _raises(folder, "session.json", "kind 'opera'")
    path.write_text(json.dumps({**session, "task": {**session["task"], "reward_volume_ml": -1}}))
    _raises(folder, "session.json", "task.reward_volume_ml must be a non-negative number")
    path.write_text(json.dumps({**session, "task": {**session["task"], "blank_duration_s": [0.5]}}))
    _raises(folder, "session.json", "task.blank_duration_s [0.5] must be [low, high]")
    without_task = {key: value for key, value in session.items() if key != "task"}
    path.write_text(json.dumps(without_task))
    assert read_behavior(folder).session.task is None
    path.write_text("{not json")
    _raises(folder, "session.json", "not valid JSON")


def test_reads_the_template_images(pristine):
    templates = read_behavior(pristine).templates
    assert templates.image_set == "B" and templates.image_names == tuple(f"im{i:03d}" for i in range(8, 16))
    assert templates.warped.dtype == np.uint8 and templates.warped.shape == (8, 6, 8)
    visible = ~np.isnan(templates.unwarped)
    assert 0 < visible.mean() < 1
    assert np.array_equal(templates.unwarped[visible], templates.warped[visible])
    assert len({image.tobytes() for image in templates.warped}) == 8  # eight different pictures


def _write_templates(folder: Path, **arrays: np.ndarray) -> None:
    with np.load(folder / "stimulus_templates.npz") as archive:
        stored = {name: archive[name] for name in archive.files}
    np.savez(folder / "stimulus_templates.npz", **{**stored, **arrays})


def test_template_problems(folder):
    name = "stimulus_templates.npz"
    with np.load(folder / name) as archive:
        names, warped, unwarped = archive["image_names"], archive["warped"], archive["unwarped"]
    _write_templates(folder, warped=warped.astype(np.float32))
    _raises(folder, name, "warped must be uint8 of shape (8, height, width)")
    _write_templates(folder, warped=warped[:7])
    _raises(folder, name, "one image per name")
    _write_templates(folder, warped=warped, unwarped=unwarped[:, :, :4])
    _raises(folder, name, "unwarped must be float of the shape of warped (8, 6, 8)")
    _write_templates(folder, unwarped=unwarped + 300)
    _raises(folder, name, "[0, 255]")
    _write_templates(folder, unwarped=unwarped, image_names=np.array([*names[:7], names[0]]))
    _raises(folder, name, "image_names are not unique")
    _write_templates(folder, image_names=np.array([*names[:7], "im099"]))
    _raises(folder, name, "no image for ['im015']")
    _write_templates(folder, image_names=names, extra=np.zeros(1))
    _raises(folder, name, "unknown ['extra']")
    (folder / name).write_bytes(b"not a zip")
    _raises(folder, name, "not a readable .npz archive")
    (folder / name).unlink()
    assert read_behavior(folder).templates is None
