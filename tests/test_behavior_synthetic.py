"""Synthetic behavior writer: determinism, session layout, passive sessions, argument checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainobs.ingest.behavior_files import read_behavior
from brainobs.ingest.synthetic.behavior import write_behavior
from brainobs.populate.behavior.session import process_behavior


def _all_bytes(*folders: Path) -> dict[str, bytes]:
    return {f"{folder.name}/{p.name}": p.read_bytes() for folder in folders for p in sorted(folder.iterdir())}


def test_same_seed_gives_the_same_bytes(tmp_path):
    kwargs = {"duration_s": 150, "passive": False, "image_set": "A", "ophys_frame_rate": 31.0, "n_ophys_frames": 900}
    for name in ("one", "two"):
        write_behavior(tmp_path / name / "raw", tmp_path / name / "truth", seed=7, **kwargs)
    write_behavior(tmp_path / "other" / "raw", tmp_path / "other" / "truth", seed=8, **kwargs)
    one = _all_bytes(tmp_path / "one" / "raw", tmp_path / "one" / "truth")
    assert len(one) == 8 + 5  # session.json, six CSV files, stimulus_templates.npz; five truth files
    assert one == _all_bytes(tmp_path / "two" / "raw", tmp_path / "two" / "truth")
    other = _all_bytes(tmp_path / "other" / "raw", tmp_path / "other" / "truth")
    assert one["raw/sync.csv"] != other["raw/sync.csv"] and one["raw/trials.csv"] != other["raw/trials.csv"]
    assert not list((tmp_path / "one" / "raw").glob(".*tmp"))


@pytest.fixture(scope="module")
def passive(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("behavior_passive")
    write_behavior(root / "raw", root / "truth", duration_s=300, passive=True, image_set="B", seed=3,
                   ophys_frame_rate=11.0)  # fmt: skip
    return root / "raw", root / "truth"


def test_passive_session_replays_without_licks_or_rewards(passive):
    files = read_behavior(passive[0])
    assert files.session.passive and not any(b.active for b in files.session.blocks)
    assert files.lick_frames.size == 0 and files.rewards.empty
    result = process_behavior(files)
    assert set(result.trials["outcome"]) == {"miss", "correct_reject"}
    truth = pd.read_csv(passive[1] / "behavior_trials.csv")
    assert (result.trials["outcome"].to_numpy() == truth["outcome"].to_numpy()).all()
    assert np.isnan(result.performance.dprime) and np.isnan(result.performance.hit_rate)
    assert result.performance.engaged_fraction == 0.0
    flashes = result.presentations[result.presentations["stimulus_block_kind"] == "change_detection"]
    assert flashes["omitted"].any() and not (flashes["omitted"] & flashes["is_change"]).any()
    assert set(flashes.loc[~flashes["omitted"], "image_name"]) == {f"im{i:03d}" for i in range(8, 16)}


def test_session_layout_and_truth_metadata(passive):
    session = json.loads((passive[0] / "session.json").read_text())
    truth = json.loads((passive[1] / "behavior_truth.json").read_text())
    blocks = session["blocks"]
    assert [b["kind"] for b in blocks] == ["change_detection", "gray_screen", "natural_movie", "receptive_field"]
    assert all(a["end_frame"] == b["start_frame"] for a, b in zip(blocks, blocks[1:], strict=False))
    assert blocks[-1]["end_frame"] < truth["vsync_count"] == 300 * 60
    assert truth["blocks"] == blocks and truth["monitor_delay_s"] == session["monitor_delay_s"]
    assert 0.020 <= truth["monitor_delay_s"] <= 0.035
    files = read_behavior(passive[0])
    intervals = np.diff(files.vsync_times)
    assert np.median(intervals) == pytest.approx(1 / 60, rel=1e-3) and intervals.std() > 0
    # the 2-photon clock starts before the display and, by default, covers it
    assert files.ophys_frame_times[0] < files.vsync_times[0] and files.ophys_frame_times[-1] > files.vsync_times[-1]
    assert sum(truth["outcome_counts"].values()) == len(files.trials)


def test_no_omissions_without_imaging(tmp_path):
    write_behavior(tmp_path / "raw", tmp_path / "truth", duration_s=90, passive=False, image_set="A", seed=1)
    stimulus = pd.read_csv(tmp_path / "raw" / "stimulus.csv")
    assert stimulus["omitted"].sum() == 0
    assert "ophys_frames" not in set(pd.read_csv(tmp_path / "raw" / "sync.csv")["line"])
    assert read_behavior(tmp_path / "raw").ophys_frame_times is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration_s": 5}, "at least 20 s"),
        ({"image_set": "AB"}, "one letter"),
        ({"n_ophys_frames": 10}, "needs ophys_frame_rate"),
        ({"omit_fraction": 0.7, "ophys_frame_rate": 31.0}, "omit_fraction"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    arguments = {"duration_s": 60, "passive": False, "image_set": "A", "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        write_behavior(tmp_path / "raw", tmp_path / "truth", **arguments)
