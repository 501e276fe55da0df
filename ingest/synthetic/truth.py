"""The ground truth of a synthetic survey: deterministic writers and typed loaders.

Layout under OUT_DIR/ground_truth/ (the pipeline never reads it): survey.json (the index),
ophys/experiment_<id>.npz, ophys/container_<id>.npz, and the behavior and ephys truth folders named
in survey.json. Field meanings are documented in docs/formats/ophys.md.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

TRUTH_DIR = "ground_truth"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class TruthError(ValueError):
    """A truth file is missing or does not hold what its format promises."""


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write a compressed .npz whose bytes depend only on the arrays (no timestamps inside)."""
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    os.replace(tmp, path)


def write_json(path: Path, content: dict) -> None:
    """Write JSON with a trailing newline, through a temporary name."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(content, indent=1) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class OphysTruth:
    """What was put into one experiment's movie; n cells (present, centre inside the FOV), T frames."""

    experiment_id: int
    container_id: int
    session_index: int
    cell_ids: np.ndarray  # (n,) int64, shared by the same cell across the container
    centroids: np.ndarray  # (n, 2) y, x of the footprint's centre of mass, FOV px, no motion
    radii: np.ndarray  # (n,) mean semi-axis, px
    footprints: np.ndarray  # (n, Ly, Lx) float32, fluorescence profile (max 1), FOV px, no motion
    spikes: np.ndarray  # (n, T) uint8, spikes per frame
    spike_rates_hz: np.ndarray  # (n,) mean rate the spikes were drawn with
    calcium: np.ndarray  # (n, T) float32, the cell's dF/F
    dff_per_spike: np.ndarray  # (n,)
    f0: np.ndarray  # (n,) resting brightness at footprint weight 1, ADU per pixel (before bleaching)
    neuropil: np.ndarray  # (n, T) float32, neuropil intensity under the cell, ADU per pixel
    neuropil_coef: np.ndarray  # (n,) fraction of that neuropil seen through the soma
    snr: np.ndarray  # (n,) single-spike peak over per-frame shot-noise std of the ROI mean
    shifts_y: np.ndarray  # (T,) float32: frame content is displaced by +shift (see ophys.md)
    shifts_x: np.ndarray  # (T,)
    nonrigid_y: np.ndarray  # (T, 3, 3) float32, control points of the non-rigid field, px
    nonrigid_x: np.ndarray  # (T, 3, 3)
    fov_shift: np.ndarray  # (2,) y, x of the session's FOV relative to the container's first session
    fov_rotation_deg: float
    intensity_scale: np.ndarray  # (T,) bleaching times slow drift
    frame_rate: float
    pixel_size_um: float
    decay_time_s: float
    rise_time_s: float
    indicator: str
    photons_per_pixel: float
    adu_per_photon: float

    @property
    def n_cells(self) -> int:
        return len(self.cell_ids)

    @property
    def n_frames(self) -> int:
        return len(self.shifts_y)


@dataclass(frozen=True)
class SurveyTruth:
    """The index of a synthetic survey (ground_truth/survey.json), as lists of records."""

    root: Path
    preset: str
    seed: int
    subjects: list[dict]
    sessions: list[dict]
    containers: list[dict]
    experiments: list[dict]
    probe_insertions: list[dict]
    ophys_params: dict

    def experiment_ids(self, container_id: int | None = None) -> list[int]:
        """Experiment ids, all or those of one container, in session order."""
        return [
            e["experiment_id"] for e in self.experiments if container_id is None or e["container_id"] == container_id
        ]


def _scalar(value: np.ndarray):
    return value.item() if value.ndim == 0 else value


def load_ophys_truth(out_dir: Path | str, experiment_id: int) -> OphysTruth:
    """Load ground_truth/ophys/experiment_<id>.npz of the survey in out_dir."""
    path = Path(out_dir) / TRUTH_DIR / "ophys" / f"experiment_{experiment_id}.npz"
    if not path.is_file():
        raise TruthError(f"{path}: no ophys truth for experiment {experiment_id}")
    with np.load(path, allow_pickle=False) as data:
        names = [f.name for f in fields(OphysTruth)]
        missing = sorted(set(names) - set(data.files))
        if missing:
            raise TruthError(f"{path}: missing arrays {', '.join(missing)}")
        values = {name: _scalar(data[name]) for name in names}
    values["indicator"] = str(values["indicator"])
    return OphysTruth(**values)


def load_survey_truth(out_dir: Path | str) -> SurveyTruth:
    """Load the survey index ground_truth/survey.json of the survey in out_dir."""
    path = Path(out_dir) / TRUTH_DIR / "survey.json"
    if not path.is_file():
        raise TruthError(f"{path}: no survey truth index (was the survey generated here?)")
    content = json.loads(path.read_text())
    try:
        return SurveyTruth(
            root=Path(out_dir),
            preset=content["preset"],
            seed=content["seed"],
            subjects=content["subjects"],
            sessions=content["sessions"],
            containers=content["containers"],
            experiments=content["experiments"],
            probe_insertions=content["probe_insertions"],
            ophys_params=content["ophys_params"],
        )
    except KeyError as missing:
        raise TruthError(f"{path}: missing key {missing}") from None


def load_container_truth(out_dir: Path | str, container_id: int) -> dict[str, np.ndarray]:
    """Load ground_truth/ophys/container_<id>.npz: every cell of the tissue, its position and presence."""
    path = Path(out_dir) / TRUTH_DIR / "ophys" / f"container_{container_id}.npz"
    if not path.is_file():
        raise TruthError(f"{path}: no truth for container {container_id}")
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
