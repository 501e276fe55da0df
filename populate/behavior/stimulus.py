"""Stimulus presentations: one row per flash, omitted flash, gray screen, movie frame or Gabor patch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from brainobs.populate.behavior.clock import frame_times

# params keys with a column of their own in the presentations table
PARAM_COLUMNS = {
    "orientation_deg": "orientation",
    "x_deg": "position_x",
    "y_deg": "position_y",
    "movie_frame": "movie_frame_index",
    "repeat": "movie_repeat",
}


class Block(Protocol):
    """What the presentations table needs of a stimulus block."""

    index: int
    kind: str
    name: str
    active: bool


def stimulus_presentations(
    log: pd.DataFrame, blocks: Sequence[Block], vsync_times: np.ndarray, monitor_delay_s: float
) -> pd.DataFrame:
    """Presentations with on-screen times (vsync + monitor delay), block kind/name/active, parsed params.

    `log` has the stimulus.csv columns (block, stimulus_name, start_frame, end_frame, image_name, omitted,
    is_change, flash_index, params). Times are seconds on the master clock; stop_time is the on-screen
    time of end_frame (exclusive). Known params keys get columns (NaN where absent).
    """
    block_ids = log["block"].to_numpy(dtype=np.int64)
    by_index = {b.index: b for b in blocks}
    unknown = sorted(set(block_ids.tolist()) - set(by_index))
    if unknown:
        raise ValueError(f"stimulus log names block(s) {unknown} that the session does not describe")
    start = frame_times(vsync_times, log["start_frame"], monitor_delay_s)
    stop = frame_times(vsync_times, log["end_frame"], monitor_delay_s)
    table = pd.DataFrame(
        {
            "stimulus_block": block_ids,
            "stimulus_block_kind": [by_index[i].kind for i in block_ids],
            "stimulus_block_name": [by_index[i].name for i in block_ids],
            "stimulus_name": log["stimulus_name"].fillna("").astype(str).to_numpy(),
            "active": np.array([by_index[i].active for i in block_ids], dtype=bool),
            "start_frame": log["start_frame"].to_numpy(dtype=np.int64),
            "end_frame": log["end_frame"].to_numpy(dtype=np.int64),
            "start_time": start,
            "stop_time": stop,
            "duration": stop - start,
            "image_name": log["image_name"].fillna("").astype(str).to_numpy(),
            "omitted": log["omitted"].to_numpy().astype(bool),
            "is_change": log["is_change"].to_numpy().astype(bool),
            "flash_index": log["flash_index"].to_numpy(dtype=np.int64),
            "params": log["params"].fillna("").astype(str).to_numpy(),
        }
    )
    parsed = [json.loads(text) if text else {} for text in table["params"]]
    for key, column in PARAM_COLUMNS.items():
        table[column] = np.array([float(p.get(key, np.nan)) for p in parsed])
    return table


def block_epochs(presentations: pd.DataFrame) -> pd.DataFrame:
    """One row per stimulus block: kind, name, active, first start and last stop time, presentation count."""
    grouped = presentations.groupby("stimulus_block", sort=True)
    return pd.DataFrame(
        {
            "stimulus_block_kind": grouped["stimulus_block_kind"].first(),
            "stimulus_block_name": grouped["stimulus_block_name"].first(),
            "active": grouped["active"].first(),
            "start_time": grouped["start_time"].min(),
            "stop_time": grouped["stop_time"].max(),
            "n_presentations": grouped.size(),
        }
    ).reset_index()
