"""Synthetic image change-detection session in the behavior folder format, with its ground truth.

`write_behavior` simulates a Visual Behavior session on one master clock: display vsyncs at ~60 Hz with
jitter and rare dropped frames, a monitor delay, 2-photon frame pulses, 250 ms image flashes every 750 ms
with changes, catch trials, omissions, warm-up auto-rewards, a mouse that is engaged and then disengages
(licks, aborts, rewards), and a running wheel. Formats: docs/formats/behavior.md.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d

from brainobs.ingest.synthetic.behavior_task import (
    AUTO_VOLUME_ML,
    FLASH_FRAMES,
    FLASH_PERIOD_FRAMES,
    HIT_VOLUME_ML,
    simulate_task,
)
from brainobs.ingest.synthetic.truth import write_npz

DISPLAY_RATE_HZ = 60.0
WHEEL_RADIUS_CM = 6.5 * 2.54 / 2
RUNNING_RADIUS_FRACTION = 2.0 / 3.0
ENCODER_MAX_VOLTAGE = 5.0
MOVIE_CLIP_FRAMES = 300  # 10 s clip at 30 Hz, repeated
RF_GRID_DEG = np.arange(-40.0, 41.0, 10.0)  # 9 x 9 Gabor positions
RF_ORIENTATIONS_DEG = (0.0, 45.0, 90.0)
# Template images are small: height x width; each side at most the 8 images of a set, so that nwbinspector's
# time-first orientation check accepts Allen's StimulusTemplate layout (docs/nwb.md)
TEMPLATE_SHAPE = (6, 8)


@dataclass(frozen=True)
class _Simulation:
    """Everything one simulated session holds, before it is written."""

    image_set: str
    passive: bool
    blocks: list[dict]
    vsync: np.ndarray
    monitor_delay_s: float
    ophys: np.ndarray | None
    engaged_until_s: float
    omit_fraction: float
    flashes: pd.DataFrame
    trials: pd.DataFrame
    licks: pd.DataFrame
    rewards: pd.DataFrame
    other_rows: list[pd.DataFrame]
    speed: np.ndarray
    vsig: np.ndarray
    vin: np.ndarray
    vin_true: float


def write_behavior(
    folder: Path,
    truth_dir: Path,
    *,
    duration_s: float,
    passive: bool,
    image_set: str,
    seed: int,
    ophys_frame_rate: float | None = None,
    n_ophys_frames: int | None = None,
    omit_fraction: float = 0.05,
    lick_sensor: bool = True,
) -> None:
    """Write a behavior folder (session.json, sync.csv, ...) and its truth (behavior_* files in truth_dir).

    Omissions (`omit_fraction` of the flashes that are neither changes nor sham changes) happen only when
    the session images (`ophys_frame_rate` given). `n_ophys_frames` defaults to frames covering the display.
    `lick_sensor=False` simulates a dead lick sensor: no lick is recorded, so only auto-rewards are delivered.
    """
    if duration_s < 20:
        raise ValueError(f"duration_s must be at least 20 s, got {duration_s}")
    if not 0 <= omit_fraction < 0.5:
        raise ValueError(f"omit_fraction must be in [0, 0.5), got {omit_fraction}")
    if n_ophys_frames is not None and ophys_frame_rate is None:
        raise ValueError("n_ophys_frames needs ophys_frame_rate")
    if ophys_frame_rate is not None and ophys_frame_rate <= 0:
        raise ValueError(f"ophys_frame_rate must be positive, got {ophys_frame_rate}")
    simulation = _simulate(
        duration_s, passive, image_set, seed, ophys_frame_rate, n_ophys_frames,
        omit_fraction if ophys_frame_rate is not None else 0.0,
    )  # fmt: skip
    if not lick_sensor:
        earned = simulation.rewards["auto_rewarded"] == 0
        simulation = replace(simulation, licks=simulation.licks.iloc[:0], rewards=simulation.rewards[~earned])
    folder, truth_dir = Path(folder), Path(truth_dir)
    folder.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    _write_raw(folder, simulation)
    _write_truth(truth_dir, simulation, seed, ophys_frame_rate)


def _simulate(
    duration_s: float,
    passive: bool,
    image_set: str,
    seed: int,
    ophys_frame_rate: float | None,
    n_ophys_frames: int | None,
    omit_fraction: float,
) -> _Simulation:
    image_names = _image_names(image_set)
    rng_clock, rng_task, rng_omit, rng_run, rng_other = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )
    n_frames = int(round(duration_s * DISPLAY_RATE_HZ))
    blocks = _block_layout(n_frames, duration_s, image_set, passive, image_names)
    vsync = vsync_times(rng_clock, n_frames)
    delay = round(float(rng_clock.uniform(0.020, 0.035)), 4)
    ophys = _ophys_times(rng_clock, vsync, ophys_frame_rate, n_ophys_frames)
    cd = blocks[0]
    cd_duration_s = (cd["end_frame"] - cd["start_frame"]) / DISPLAY_RATE_HZ
    engaged_until = float(vsync[cd["start_frame"]] + rng_task.uniform(0.6, 0.85) * cd_duration_s)
    flashes, trials, licks, rewards = simulate_task(rng_task, cd, vsync, delay, passive, image_names, engaged_until)
    eligible = ~flashes["is_change"] & ~flashes["is_sham_change"] & (flashes["flash_index"] > 0)
    flashes["omitted"] = eligible & (rng_omit.random(len(flashes)) < omit_fraction)
    speed, vsig, vin, vin_true = _simulate_running(rng_run, vsync)
    return _Simulation(
        image_set=image_set,
        passive=passive,
        blocks=blocks,
        vsync=vsync,
        monitor_delay_s=delay,
        ophys=ophys,
        engaged_until_s=engaged_until,
        omit_fraction=omit_fraction,
        flashes=flashes,
        trials=trials,
        licks=licks,
        rewards=rewards,
        other_rows=_other_block_rows(rng_other, blocks[1:]),
        speed=speed,
        vsig=vsig,
        vin=vin,
        vin_true=vin_true,
    )


def _write_raw(folder: Path, sim: _Simulation) -> None:
    """The behavior folder: session.json and the six CSV files."""
    session = {
        "format": "brainobs-behavior",
        "version": 1,
        "display_frame_rate_hz": DISPLAY_RATE_HZ,
        "monitor_delay_s": sim.monitor_delay_s,
        "wheel_radius_cm": WHEEL_RADIUS_CM,
        "running_radius_fraction": RUNNING_RADIUS_FRACTION,
        "encoder_max_voltage": ENCODER_MAX_VOLTAGE,
        "passive": sim.passive,
        "image_set": sim.image_set,
        "response_window_s": [0.15, 0.75],
        "blocks": sim.blocks,
        "task": {
            "name": "change detection",
            "stimulus_distribution": "geometric",
            "stimulus_duration_s": FLASH_FRAMES / DISPLAY_RATE_HZ,
            "blank_duration_s": [(FLASH_PERIOD_FRAMES - FLASH_FRAMES) / DISPLAY_RATE_HZ] * 2,
            "omitted_flash_fraction": sim.omit_fraction,
            "reward_volume_ml": HIT_VOLUME_ML,
            "auto_reward_volume_ml": AUTO_VOLUME_ML,
        },
    }
    _write_text(folder / "session.json", json.dumps(session, indent=2, sort_keys=True) + "\n")
    _write_sync(folder / "sync.csv", sim.vsync, sim.ophys)
    flash_rows = _flash_rows(sim.flashes, sim.blocks[0]["index"], sim.image_set)
    _write_csv(folder / "stimulus.csv", pd.concat([flash_rows, *sim.other_rows], ignore_index=True))
    encoder = pd.DataFrame({"frame": np.arange(sim.vsync.size), "vsig": sim.vsig, "vin": sim.vin})
    _write_csv(folder / "encoder.csv", encoder, "%.4f")
    _write_csv(folder / "licks.csv", sim.licks[["frame"]])
    _write_csv(folder / "rewards.csv", sim.rewards, "%.4f")
    schedule_columns = [
        "trial_index", "start_frame", "end_frame", "change_frame", "is_catch", "auto_rewarded",
        "initial_image_name", "change_image_name",
    ]  # fmt: skip
    _write_csv(folder / "trials.csv", sim.trials[schedule_columns])
    _write_templates(folder / "stimulus_templates.npz", sim.blocks[0]["image_names"])


def template_image(name: str) -> np.ndarray:
    """The synthetic picture of an image name (the same in every session): smooth noise, uint8."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    picture = gaussian_filter1d(gaussian_filter1d(rng.standard_normal(TEMPLATE_SHAPE), 1.0, axis=0), 1.0, axis=1)
    picture = (picture - picture.min()) / max(float(np.ptp(picture)), 1e-12)
    return np.round(255 * picture).astype(np.uint8)


def _write_templates(path: Path, image_names: list[str]) -> None:
    """stimulus_templates.npz: each image as shown (`warped`; the synthetic monitor does not warp) and
    `unwarped`, the same pixels with the screen's corners, not visible after warping, NaN."""
    warped = np.stack([template_image(name) for name in image_names])
    rows, columns = np.indices(TEMPLATE_SHAPE)
    corner = (np.minimum(rows, TEMPLATE_SHAPE[0] - 1 - rows) + np.minimum(columns, TEMPLATE_SHAPE[1] - 1 - columns)) < 1
    unwarped = np.where(corner, np.nan, warped.astype(np.float64))
    write_npz(path, image_names=np.array(image_names), warped=warped, unwarped=unwarped)


def _write_truth(truth_dir: Path, sim: _Simulation, seed: int, ophys_frame_rate: float | None) -> None:
    """behavior_truth.json, behavior_trials.csv, behavior_flashes.csv, behavior_licks.csv, behavior_running.npy."""
    trial_columns = ["trial_index", "outcome", "engaged", "change_time_s", "lick_latency_s"]
    _write_csv(truth_dir / "behavior_trials.csv", sim.trials[trial_columns], "%.7f")
    flash_columns = [
        "flash_index",
        "start_frame",
        "start_time_s",
        "image_name",
        "omitted",
        "is_change",
        "is_sham_change",
    ]
    _write_csv(truth_dir / "behavior_flashes.csv", sim.flashes[flash_columns], "%.7f")
    _write_csv(truth_dir / "behavior_licks.csv", sim.licks[["time_s", "frame"]], "%.7f")
    _write_npy(truth_dir / "behavior_running.npy", np.stack([sim.vsync, sim.speed]))
    outcomes = sim.trials["outcome"].value_counts().sort_index() if len(sim.trials) else pd.Series(dtype=int)
    truth = {
        "format": "brainobs-behavior-truth",
        "version": 1,
        "seed": seed,
        "monitor_delay_s": sim.monitor_delay_s,
        "vsync_count": int(sim.vsync.size),
        "encoder_vin": sim.vin_true,
        "running_radius_cm": WHEEL_RADIUS_CM * RUNNING_RADIUS_FRACTION,
        "engaged_until_s": sim.engaged_until_s,
        "omit_fraction": sim.omit_fraction,
        "ophys_frame_rate": ophys_frame_rate,
        "n_ophys_frames": 0 if sim.ophys is None else int(sim.ophys.size),
        "passive": sim.passive,
        "blocks": sim.blocks,
        "outcome_counts": {str(k): int(v) for k, v in outcomes.items()},
    }
    _write_text(truth_dir / "behavior_truth.json", json.dumps(truth, indent=2, sort_keys=True) + "\n")


def _image_names(image_set: str) -> list[str]:
    """Eight image names per set: A -> im000..im007, B -> im008..im015, ..."""
    if len(image_set) != 1 or not image_set.isalpha():
        raise ValueError(f"image_set must be one letter (A, B, ...), got {image_set!r}")
    first = 8 * (ord(image_set.upper()) - ord("A"))
    return [f"im{first + i:03d}" for i in range(8)]


def _block_layout(
    n_frames: int, duration_s: float, image_set: str, passive: bool, image_names: list[str]
) -> list[dict]:
    """Change detection first; gray screen, a natural movie and Gabor RF mapping when the session is long."""
    tail = 30
    extras: list[tuple[str, str, int, dict]] = []
    if duration_s >= 120:
        gray = int(round(min(max(0.04 * duration_s, 2.0), 300.0) * DISPLAY_RATE_HZ))
        movie = 2 * int(min(30.0, 0.08 * duration_s) * 30)
        extras = [
            ("gray_screen", "gray_screen", gray, {}),
            ("natural_movie", "natural_movie_one", movie, {"movie_frame_rate_hz": 30.0}),
        ]
        rf_pass = len(RF_GRID_DEG) ** 2 * FLASH_FRAMES
        passes = min(3, (int(0.25 * n_frames) - gray - movie) // rf_pass)
        if passes > 0:
            extras.append(("receptive_field", "gabors", passes * rf_pass, {}))
    cd_frames = (n_frames - tail - sum(e[2] for e in extras)) // FLASH_PERIOD_FRAMES * FLASH_PERIOD_FRAMES
    blocks = [
        {
            "index": 0,
            "kind": "change_detection",
            "name": f"change_detection_images_{image_set}",
            "start_frame": 0,
            "end_frame": cd_frames,
            "active": not passive,
            "image_names": image_names,
        }
    ]
    start = cd_frames
    for kind, name, length, more in extras:
        blocks.append({"index": len(blocks), "kind": kind, "name": name, "start_frame": start,
                       "end_frame": start + length, "active": False, **more})  # fmt: skip
        start += length
    return blocks


def vsync_times(rng: np.random.Generator, n_frames: int, dropped_fraction: float = 2e-4) -> np.ndarray:
    """Vsync edges: 1/60 s with 40 us jitter; ``dropped_fraction`` of the intervals (by default one every
    ~80 s) last twice as long (a dropped frame)."""
    intervals = 1.0 / DISPLAY_RATE_HZ + rng.normal(0.0, 4e-5, n_frames - 1)
    intervals[rng.random(n_frames - 1) < dropped_fraction] += 1.0 / DISPLAY_RATE_HZ
    times = 2.0 + rng.uniform(0.0, 1.0) + np.concatenate([[0.0], np.cumsum(intervals)])
    return _as_written(times)


def _as_written(times: np.ndarray) -> np.ndarray:
    """The times exactly as sync.csv stores them (7 decimals), so truth and file agree to the bit."""
    return np.char.mod("%.7f", times).astype(float)


def _ophys_times(
    rng: np.random.Generator, vsync: np.ndarray, rate: float | None, n_frames: int | None
) -> np.ndarray | None:
    """2-photon frame pulses, starting 0.5-1.5 s before the display, 20 us jitter."""
    if rate is None:
        return None
    first = vsync[0] - rng.uniform(0.5, 1.5)
    count = n_frames if n_frames is not None else int(np.ceil((vsync[-1] + 1.0 - first) * rate))
    return _as_written(first + np.arange(count) / rate + rng.normal(0.0, 2e-5, count))


def _flash_rows(flashes: pd.DataFrame, block_index: int, image_set: str) -> pd.DataFrame:
    """stimulus.csv rows of the change-detection block (omitted flashes named 'omitted')."""
    return pd.DataFrame(
        {
            "block": block_index,
            "stimulus_name": f"natural_images_{image_set}",
            "start_frame": flashes["start_frame"],
            "end_frame": flashes["start_frame"] + FLASH_FRAMES,
            "image_name": np.where(flashes["omitted"], "omitted", flashes["image_name"]),
            "omitted": flashes["omitted"].astype(int),
            "is_change": flashes["is_change"].astype(int),
            "flash_index": flashes["flash_index"],
            "params": "",
        }
    )


def _other_block_rows(rng: np.random.Generator, blocks: list[dict]) -> list[pd.DataFrame]:
    """stimulus.csv rows of the gray screen, natural movie and receptive-field blocks."""
    tables = []
    for block in blocks:
        start, end = block["start_frame"], block["end_frame"]
        if block["kind"] == "gray_screen":
            starts, step, params = np.array([start]), end - start, [""]
        elif block["kind"] == "natural_movie":
            step = 2
            starts = np.arange(start, end, step)
            frames = np.arange(starts.size)
            params = [
                json.dumps({"movie_frame": int(f % MOVIE_CLIP_FRAMES), "repeat": int(f // MOVIE_CLIP_FRAMES)})
                for f in frames
            ]
        else:
            step = FLASH_FRAMES
            starts = np.arange(start, end, step)
            grid = [(x, y) for x in RF_GRID_DEG for y in RF_GRID_DEG]
            order = np.concatenate([rng.permutation(len(grid)) for _ in range(starts.size // len(grid))])
            orientation = rng.choice(RF_ORIENTATIONS_DEG, size=starts.size)
            params = [
                json.dumps({"orientation_deg": float(o), "x_deg": float(grid[i][0]), "y_deg": float(grid[i][1])})
                for i, o in zip(order, orientation, strict=True)
            ]
        tables.append(
            pd.DataFrame(
                {
                    "block": block["index"],
                    "stimulus_name": block["name"],
                    "start_frame": starts,
                    "end_frame": starts + step,
                    "image_name": "",
                    "omitted": 0,
                    "is_change": 0,
                    "flash_index": np.arange(starts.size),
                    "params": params,
                }
            )
        )
    return tables


def _simulate_running(rng: np.random.Generator, vsync: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """True speed (cm/s at each vsync), encoder vsig and vin (V), and the true wrap voltage.

    Speed is a smooth softplus of 1 s-correlated noise (bouts up to ~80 cm/s, near 0 at rest). The wheel
    angle advances by speed * dt / running radius; vsig = vin * angle/2pi (mod 1) + 2 mV noise, quantized
    to 12 bits, with an encoder dropout to 0 V about once a minute.
    """
    n = vsync.size
    drive = gaussian_filter1d(rng.standard_normal(n), sigma=DISPLAY_RATE_HZ)
    drive /= drive.std()
    speed = 12.0 * np.logaddexp(0.0, 3.0 * (drive - 0.2))
    radius = WHEEL_RADIUS_CM * RUNNING_RADIUS_FRACTION
    angle = rng.uniform(0, 2 * np.pi) + np.concatenate([[0.0], np.cumsum(speed[1:] * np.diff(vsync) / radius)])
    vin_true = float(rng.uniform(4.95, 5.0))
    lsb = ENCODER_MAX_VOLTAGE / 4096
    vsig = vin_true * np.mod(angle / (2 * np.pi), 1.0) + rng.normal(0.0, 0.002, n)
    vsig = np.mod(np.round(vsig / lsb) * lsb, vin_true)
    vsig[rng.random(n) < 1.0 / 3600] = 0.0
    vin = vin_true + rng.normal(0.0, 0.001, n)
    return speed, vsig, vin, vin_true


def _write_sync(path: Path, vsync: np.ndarray, ophys: np.ndarray | None) -> None:
    """sync.csv: all rising edges in time order."""
    lines = np.array(["vsync"] * vsync.size + ["ophys_frames"] * (0 if ophys is None else ophys.size))
    times = vsync if ophys is None else np.concatenate([vsync, ophys])
    order = np.argsort(times, kind="stable")
    _write_csv(path, pd.DataFrame({"line": lines[order], "time_s": times[order]}), "%.7f")


def _write_csv(path: Path, table: pd.DataFrame, float_format: str | None = None) -> None:
    table = table.copy()
    for column in table.columns:
        if table[column].dtype == bool:
            table[column] = table[column].astype(int)
    _write_text(path, table.to_csv(index=False, float_format=float_format, lineterminator="\n"))


def _write_npy(path: Path, array: np.ndarray) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as handle:
        np.save(handle, array)
    os.replace(temporary, path)


def _write_text(path: Path, text: str) -> None:
    """Write to a temporary name in the same folder, then rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
