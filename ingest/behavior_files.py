"""Reader and validator of a behavior and stimulus folder (format `brainobs-behavior`, docs/formats/behavior.md)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

FORMAT_NAME = "brainobs-behavior"
FORMAT_VERSION = 1
BLOCK_KINDS = ("change_detection", "gray_screen", "natural_movie", "receptive_field")
DEFAULT_RESPONSE_WINDOW_S = (0.15, 0.75)
DEFAULT_RUNNING_RADIUS_FRACTION = 2.0 / 3.0
TEMPLATES_FILE = "stimulus_templates.npz"
TEMPLATE_ARRAYS = ("image_names", "warped", "unwarped")

STIMULUS_COLUMNS = (
    "block",
    "stimulus_name",
    "start_frame",
    "end_frame",
    "image_name",
    "omitted",
    "is_change",
    "flash_index",
    "params",
)
TRIAL_COLUMNS = (
    "trial_index",
    "start_frame",
    "end_frame",
    "change_frame",
    "is_catch",
    "auto_rewarded",
    "initial_image_name",
    "change_image_name",
)


class BehaviorFileError(ValueError):
    """A behavior folder file is missing, malformed or inconsistent; the message names the file."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class StimulusBlock:
    """One stimulus block of session.json: display frames [start_frame, end_frame)."""

    index: int
    kind: str
    name: str
    start_frame: int
    end_frame: int
    active: bool
    image_names: tuple[str, ...] = ()
    movie_frame_rate_hz: float | None = None


@dataclass(frozen=True)
class TaskSettings:
    """The change-detection task's configuration (session.json `task`): times in s, volumes in mL."""

    name: str
    stimulus_distribution: str
    stimulus_duration_s: float
    blank_duration_s: tuple[float, float]
    omitted_flash_fraction: float
    reward_volume_ml: float
    auto_reward_volume_ml: float


@dataclass(frozen=True)
class SessionInfo:
    """The rig and stimulus description of session.json."""

    display_frame_rate_hz: float
    monitor_delay_s: float
    wheel_radius_cm: float
    running_radius_fraction: float
    encoder_max_voltage: float
    passive: bool
    image_set: str
    response_window_s: tuple[float, float]
    blocks: tuple[StimulusBlock, ...]
    task: TaskSettings | None = None


@dataclass(frozen=True, eq=False)
class StimulusImages:
    """The images of the session's image set (stimulus_templates.npz), in the file's order: `warped` as shown
    on the monitor (uint8), `unwarped` before warping (float, NaN where not visible after warping); shapes
    (n_images, height, width)."""

    image_set: str
    image_names: tuple[str, ...]
    warped: np.ndarray
    unwarped: np.ndarray


@dataclass(frozen=True)
class BehaviorFiles:
    """Everything in one behavior folder, validated; frames index `vsync_times`."""

    folder: Path
    session: SessionInfo
    vsync_times: np.ndarray
    ophys_frame_times: np.ndarray | None
    stimulus: pd.DataFrame
    encoder: pd.DataFrame
    lick_frames: np.ndarray
    rewards: pd.DataFrame
    trials: pd.DataFrame
    extra_sync_lines: dict[str, np.ndarray] = field(default_factory=dict)
    templates: StimulusImages | None = None


def read_behavior(folder: str | Path) -> BehaviorFiles:
    """Read and validate a behavior folder; raises BehaviorFileError naming the file and the problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BehaviorFileError(folder, "no such behavior folder")
    sync = read_sync(folder / "sync.csv")
    vsync = sync.pop("vsync")
    n_frames = vsync.size
    session = read_session(folder / "session.json")
    return BehaviorFiles(
        folder=folder,
        session=session,
        vsync_times=vsync,
        ophys_frame_times=sync.pop("ophys_frames", None),
        stimulus=read_stimulus(folder / "stimulus.csv", session.blocks, n_frames),
        encoder=read_encoder(folder / "encoder.csv", n_frames),
        lick_frames=read_licks(folder / "licks.csv", n_frames),
        rewards=read_rewards(folder / "rewards.csv", n_frames),
        trials=read_trials(folder / "trials.csv", n_frames),
        extra_sync_lines=sync,
        templates=read_templates(folder / TEMPLATES_FILE, session),
    )


def read_session(path: Path) -> SessionInfo:
    """Parse session.json; blocks must be ordered and non-overlapping."""
    if not path.is_file():
        raise BehaviorFileError(path, "file not found")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BehaviorFileError(path, f"not valid JSON ({err})") from err
    if not isinstance(raw, dict):
        raise BehaviorFileError(path, "top level must be a JSON object")
    if raw.get("format") != FORMAT_NAME or raw.get("version") != FORMAT_VERSION:
        raise BehaviorFileError(
            path,
            f"format/version is {raw.get('format')!r}/{raw.get('version')!r}, "
            f"expected {FORMAT_NAME!r}/{FORMAT_VERSION}",
        )
    required = ("display_frame_rate_hz", "monitor_delay_s", "wheel_radius_cm", "encoder_max_voltage")
    values = {}
    for key in required:
        value = raw.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value):
            raise BehaviorFileError(path, f"{key!r} must be a finite number, got {value!r}")
        values[key] = float(value)
    if values["monitor_delay_s"] < 0 or values["monitor_delay_s"] > 0.2:
        raise BehaviorFileError(path, f"monitor_delay_s {values['monitor_delay_s']} is outside [0, 0.2] s")
    for key in ("display_frame_rate_hz", "wheel_radius_cm", "encoder_max_voltage"):
        if values[key] <= 0:
            raise BehaviorFileError(path, f"{key!r} must be positive, got {values[key]}")
    fraction = float(raw.get("running_radius_fraction", DEFAULT_RUNNING_RADIUS_FRACTION))
    if not 0 < fraction <= 1:
        raise BehaviorFileError(path, f"running_radius_fraction {fraction} is outside (0, 1]")
    window = raw.get("response_window_s", list(DEFAULT_RESPONSE_WINDOW_S))
    if len(window) != 2 or not 0 <= window[0] < window[1]:
        raise BehaviorFileError(path, f"response_window_s {window!r} must be [start, stop] with 0 <= start < stop")
    if not isinstance(raw.get("passive"), bool):
        raise BehaviorFileError(path, f"'passive' must be true or false, got {raw.get('passive')!r}")
    return SessionInfo(
        display_frame_rate_hz=values["display_frame_rate_hz"],
        monitor_delay_s=values["monitor_delay_s"],
        wheel_radius_cm=values["wheel_radius_cm"],
        running_radius_fraction=fraction,
        encoder_max_voltage=values["encoder_max_voltage"],
        passive=raw["passive"],
        image_set=str(raw.get("image_set", "")),
        response_window_s=(float(window[0]), float(window[1])),
        blocks=_parse_blocks(path, raw.get("blocks")),
        task=_parse_task(path, raw["task"]) if "task" in raw else None,
    )


def read_templates(path: Path, session: SessionInfo) -> StimulusImages | None:
    """The optional stimulus_templates.npz: the images of the session's image set; None when absent."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise BehaviorFileError(path, f"not a readable .npz archive of plain arrays ({err})") from err
    missing = [name for name in TEMPLATE_ARRAYS if name not in arrays]
    unknown = sorted(set(arrays) - set(TEMPLATE_ARRAYS))
    if missing or unknown:
        raise BehaviorFileError(
            path, f"must hold exactly the arrays {list(TEMPLATE_ARRAYS)}; missing {missing}, unknown {unknown}"
        )
    names, warped, unwarped = (arrays[name] for name in TEMPLATE_ARRAYS)
    if names.ndim != 1 or names.dtype.kind != "U" or not names.size or not all(names):
        raise BehaviorFileError(
            path, f"image_names must be a 1-D array of non-empty texts, got {names.dtype} {names.shape}"
        )
    if len(set(names.tolist())) != names.size:
        raise BehaviorFileError(path, "image_names are not unique")
    if warped.dtype != np.uint8 or warped.ndim != 3 or len(warped) != names.size or 0 in warped.shape:
        raise BehaviorFileError(
            path,
            f"warped must be uint8 of shape ({names.size}, height, width), one image per name; "
            f"got {warped.dtype} {warped.shape}",
        )
    if unwarped.dtype.kind != "f" or unwarped.shape != warped.shape:
        raise BehaviorFileError(
            path, f"unwarped must be float of the shape of warped {warped.shape}; got {unwarped.dtype} {unwarped.shape}"
        )
    visible = unwarped[~np.isnan(unwarped)]
    if not (np.isfinite(visible) & (visible >= 0) & (visible <= 255)).all():
        raise BehaviorFileError(path, "unwarped values must lie in [0, 255] (NaN where not visible)")
    if not session.image_set:
        raise BehaviorFileError(path, "session.json names no image_set for these images")
    shown = {name for block in session.blocks if block.kind == "change_detection" for name in block.image_names}
    absent = sorted(shown - set(names.tolist()))
    if absent:
        raise BehaviorFileError(path, f"no image for {absent}, shown in the change-detection blocks of session.json")
    return StimulusImages(session.image_set, tuple(names.tolist()), warped, unwarped)


def _parse_task(path: Path, raw: object) -> TaskSettings:
    if not isinstance(raw, dict):
        raise BehaviorFileError(path, "'task' must be a JSON object")
    numbers = {}
    for key in ("stimulus_duration_s", "omitted_flash_fraction", "reward_volume_ml", "auto_reward_volume_ml"):
        value = raw.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value) or value < 0:
            raise BehaviorFileError(path, f"task.{key} must be a non-negative number, got {value!r}")
        numbers[key] = float(value)
    blank = raw.get("blank_duration_s")
    if not isinstance(blank, list) or len(blank) != 2 or not all(isinstance(v, int | float) for v in blank):
        raise BehaviorFileError(path, f"task.blank_duration_s {blank!r} must be [low, high] in s")
    if not 0 <= blank[0] <= blank[1]:
        raise BehaviorFileError(path, f"task.blank_duration_s {blank!r} must have 0 <= low <= high")
    texts = {}
    for key in ("name", "stimulus_distribution"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise BehaviorFileError(path, f"task.{key} must be a non-empty text, got {raw.get(key)!r}")
        texts[key] = raw[key]
    return TaskSettings(**texts, **numbers, blank_duration_s=(float(blank[0]), float(blank[1])))


def _parse_blocks(path: Path, raw_blocks: object) -> tuple[StimulusBlock, ...]:
    if not isinstance(raw_blocks, list) or not raw_blocks:
        raise BehaviorFileError(path, "'blocks' must be a non-empty list")
    blocks = []
    previous_end = 0
    for position, raw in enumerate(raw_blocks):
        try:
            block = StimulusBlock(
                index=int(raw["index"]),
                kind=str(raw["kind"]),
                name=str(raw["name"]),
                start_frame=int(raw["start_frame"]),
                end_frame=int(raw["end_frame"]),
                active=bool(raw["active"]),
                image_names=tuple(str(n) for n in raw.get("image_names", ())),
                movie_frame_rate_hz=raw.get("movie_frame_rate_hz"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise BehaviorFileError(path, f"block {position} is malformed ({err!r})") from err
        where = f"block {block.index} ({block.name})"
        if block.index != position:
            raise BehaviorFileError(path, f"block indices must be 0, 1, 2, ... in order; found {block.index}")
        if block.kind not in BLOCK_KINDS:
            raise BehaviorFileError(path, f"{where} has kind {block.kind!r}, expected one of {BLOCK_KINDS}")
        if block.start_frame < previous_end or block.end_frame <= block.start_frame:
            raise BehaviorFileError(
                path,
                f"{where} frames [{block.start_frame}, {block.end_frame}) overlap the previous block or are empty",
            )
        if block.kind == "change_detection" and not block.image_names:
            raise BehaviorFileError(path, f"{where} lists no image_names")
        previous_end = block.end_frame
        blocks.append(block)
    return tuple(blocks)


def _read_csv(path: Path, columns: tuple[str, ...], dtypes: dict[str, object]) -> pd.DataFrame:
    if not path.is_file():
        raise BehaviorFileError(path, "file not found")
    try:
        frame = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError) as err:
        raise BehaviorFileError(path, f"cannot be parsed as CSV with columns {list(columns)} ({err})") from err
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise BehaviorFileError(path, f"missing column(s) {missing}; header is {list(frame.columns)}")
    return frame


def _check_integers(path: Path, frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """Integer columns with no empty cell; a file with a header only gets empty integer columns."""
    for column in columns:
        if frame.empty:
            frame[column] = frame[column].astype(np.int64)
            continue
        values = frame[column]
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise BehaviorFileError(path, f"column {column!r} is empty at data row {row}")
        if not pd.api.types.is_integer_dtype(values):
            raise BehaviorFileError(path, f"column {column!r} must hold integers")


def _check_frames(path: Path, frames: np.ndarray, n_frames: int, what: str) -> None:
    if frames.size == 0:
        return
    if frames.min() < 0:
        row = int(np.argmin(frames))
        raise BehaviorFileError(path, f"{what} at data row {row} is negative ({frames[row]})")
    if frames.max() >= n_frames:
        row = int(np.argmax(frames))
        raise BehaviorFileError(
            path,
            f"{what} at data row {row} references display frame {frames[row]} but sync.csv holds only "
            f"{n_frames} vsync pulses (the log is longer than the sync record)",
        )


def _check_flags(path: Path, frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    for column in columns:
        bad = ~frame[column].isin([0, 1])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise BehaviorFileError(
                path, f"column {column!r} must be 0 or 1; data row {row} holds {frame[column].iloc[row]!r}"
            )


def read_sync(path: Path) -> dict[str, np.ndarray]:
    """Rising-edge times per sync line; each line's times must be finite and strictly increasing."""
    frame = _read_csv(path, ("line", "time_s"), {"line": str})
    times = pd.to_numeric(frame["time_s"], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(times).all():
        row = int(np.flatnonzero(~np.isfinite(times))[0])
        raise BehaviorFileError(path, f"time_s at data row {row} is not a finite number")
    lines = {}
    for name, rows in frame.groupby("line", sort=False).indices.items():
        values = times[rows]
        steps = np.diff(values)
        if (steps <= 0).any():
            bad = int(np.flatnonzero(steps <= 0)[0])
            raise BehaviorFileError(
                path,
                f"timestamps of line {name!r} do not increase: edge {bad + 1} at {values[bad + 1]:.7f} s "
                f"follows {values[bad]:.7f} s (data row {rows[bad + 1]})",
            )
        lines[str(name)] = values
    if "vsync" not in lines:
        raise BehaviorFileError(path, f"no 'vsync' line; lines present: {sorted(lines)}")
    return lines


def read_stimulus(path: Path, blocks: tuple[StimulusBlock, ...], n_frames: int) -> pd.DataFrame:
    """The stimulus log: frames inside the vsync record and inside their block; every block present."""
    dtypes = {"stimulus_name": str, "image_name": str, "params": str}
    frame = _read_csv(path, STIMULUS_COLUMNS, dtypes)
    _check_integers(path, frame, ("block", "start_frame", "end_frame", "omitted", "is_change", "flash_index"))
    _check_flags(path, frame, ("omitted", "is_change"))
    starts = frame["start_frame"].to_numpy()
    ends = frame["end_frame"].to_numpy()
    _check_frames(path, starts, n_frames, "start_frame")
    _check_frames(path, ends, n_frames, "end_frame")
    if (ends <= starts).any():
        row = int(np.flatnonzero(ends <= starts)[0])
        raise BehaviorFileError(path, f"data row {row} ends (frame {ends[row]}) before it starts ({starts[row]})")
    both = (frame["omitted"] == 1) & (frame["is_change"] == 1)
    if both.any():
        raise BehaviorFileError(path, f"data row {int(np.flatnonzero(both)[0])} is both omitted and a change")
    block_ids = frame["block"].to_numpy()
    if (block_ids < 0).any() or (block_ids >= len(blocks)).any():
        row = int(np.flatnonzero((block_ids < 0) | (block_ids >= len(blocks)))[0])
        raise BehaviorFileError(path, f"data row {row} names block {block_ids[row]}, session.json has {len(blocks)}")
    lower = np.array([b.start_frame for b in blocks])[block_ids]
    upper = np.array([b.end_frame for b in blocks])[block_ids]
    outside = (starts < lower) | (ends > upper)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise BehaviorFileError(
            path,
            f"data row {row} (frames {starts[row]}-{ends[row]}) lies outside its block {block_ids[row]} "
            f"[{lower[row]}, {upper[row]})",
        )
    absent = sorted(set(range(len(blocks))) - set(block_ids.tolist()))
    if absent:
        raise BehaviorFileError(path, f"no presentation for block(s) {absent} of session.json")
    if (np.diff(starts) < 0).any():
        row = int(np.flatnonzero(np.diff(starts) < 0)[0]) + 1
        raise BehaviorFileError(path, f"presentations are not in display order at data row {row}")
    frame["params"] = frame["params"].fillna("")
    for row, text in enumerate(frame["params"]):
        if text and not _is_json_object(text):
            raise BehaviorFileError(path, f"params at data row {row} is not a JSON object: {text!r}")
    return frame


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def read_encoder(path: Path, n_frames: int) -> pd.DataFrame:
    """Encoder voltages: exactly one finite (vsig, vin) per display frame 0..n_frames-1, no gaps."""
    frame = _read_csv(path, ("frame", "vsig", "vin"), {})
    _check_integers(path, frame, ("frame",))
    frames = frame["frame"].to_numpy()
    expected = np.arange(n_frames)
    if frames.size != n_frames or not np.array_equal(frames, expected):
        steps = np.diff(frames)
        if frames.size and frames[0] != 0:
            raise BehaviorFileError(path, f"gap in the encoder signal: first frame is {frames[0]}, not 0")
        if (steps != 1).any():
            row = int(np.flatnonzero(steps != 1)[0])
            raise BehaviorFileError(
                path,
                f"gap in the encoder signal: frame {frames[row + 1]} follows frame {frames[row]} "
                f"(data row {row + 1}); one row per display frame is required",
            )
        raise BehaviorFileError(
            path,
            f"gap in the encoder signal: {frames.size} samples for {n_frames} vsync pulses in sync.csv",
        )
    for column in ("vsig", "vin"):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            raise BehaviorFileError(
                path,
                f"gap in the encoder signal: {column} is missing or not a number at {int(bad.sum())} "
                f"frame(s), first at frame {int(np.flatnonzero(bad)[0])}",
            )
        frame[column] = values
    if (frame["vin"] <= 0).any():
        raise BehaviorFileError(path, f"vin must be positive; frame {int(np.flatnonzero(frame['vin'] <= 0)[0])}")
    return frame


def read_licks(path: Path, n_frames: int) -> np.ndarray:
    """Lick frames, non-decreasing and inside the vsync record."""
    frame = _read_csv(path, ("frame",), {})
    _check_integers(path, frame, ("frame",))
    frames = frame["frame"].to_numpy(dtype=np.int64)
    _check_frames(path, frames, n_frames, "a lick")
    _check_non_decreasing(path, frames, "lick")
    return frames


def read_rewards(path: Path, n_frames: int) -> pd.DataFrame:
    """Rewards: frame (non-decreasing, inside the vsync record), volume_ml >= 0, auto_rewarded 0/1."""
    frame = _read_csv(path, ("frame", "volume_ml", "auto_rewarded"), {})
    _check_integers(path, frame, ("frame", "auto_rewarded"))
    _check_flags(path, frame, ("auto_rewarded",))
    frames = frame["frame"].to_numpy(dtype=np.int64)
    _check_frames(path, frames, n_frames, "a reward")
    _check_non_decreasing(path, frames, "reward")
    volume = pd.to_numeric(frame["volume_ml"], errors="coerce").to_numpy(dtype=float)
    if not (np.isfinite(volume) & (volume >= 0)).all():
        row = int(np.flatnonzero(~(np.isfinite(volume) & (volume >= 0)))[0])
        raise BehaviorFileError(path, f"volume_ml at data row {row} must be a number >= 0")
    frame["volume_ml"] = volume
    frame["auto_rewarded"] = frame["auto_rewarded"].astype(bool)
    return frame


def _check_non_decreasing(path: Path, frames: np.ndarray, what: str) -> None:
    if (np.diff(frames) < 0).any():
        row = int(np.flatnonzero(np.diff(frames) < 0)[0]) + 1
        raise BehaviorFileError(
            path,
            f"{what} timestamps do not increase: frame {frames[row]} at data row {row} follows frame {frames[row - 1]}",
        )


def read_trials(path: Path, n_frames: int) -> pd.DataFrame:
    """The trial schedule: ordered, non-overlapping trials whose frames lie inside the vsync record."""
    frame = _read_csv(path, TRIAL_COLUMNS, {"initial_image_name": str, "change_image_name": str})
    integer_columns = ("trial_index", "start_frame", "end_frame", "change_frame", "is_catch", "auto_rewarded")
    _check_integers(path, frame, integer_columns)
    _check_flags(path, frame, ("is_catch", "auto_rewarded"))
    starts = frame["start_frame"].to_numpy()
    ends = frame["end_frame"].to_numpy()
    changes = frame["change_frame"].to_numpy()
    for column, values in (("start_frame", starts), ("end_frame", ends), ("change_frame", changes)):
        _check_frames(path, values, n_frames, column)
    if not np.array_equal(frame["trial_index"].to_numpy(), np.arange(len(frame))):
        raise BehaviorFileError(path, "trial_index must be 0, 1, 2, ... in order")
    bad = (ends <= starts) | (changes <= starts)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise BehaviorFileError(path, f"trial {row}: end_frame and change_frame must come after start_frame")
    if (ends[:-1] > starts[1:]).any():
        row = int(np.flatnonzero(ends[:-1] > starts[1:])[0])
        raise BehaviorFileError(
            path,
            f"trial timestamps do not increase: trial {row + 1} starts (frame {starts[row + 1]}) before "
            f"trial {row} ends (frame {ends[row]})",
        )
    for column in ("initial_image_name", "change_image_name"):
        frame[column] = frame[column].fillna("")
    frame["is_catch"] = frame["is_catch"].astype(bool)
    frame["auto_rewarded"] = frame["auto_rewarded"].astype(bool)
    return frame
