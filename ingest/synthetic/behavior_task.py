"""Synthetic image change-detection task: flashes, trial schedule, the mouse's licks, rewards, true outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd

FLASH_FRAMES = 15  # 250 ms image
FLASH_PERIOD_FRAMES = 45  # + 500 ms gray
WARMUP_TRIALS = 5  # auto-rewarded at the change
CATCH_PROBABILITY = 0.125
HIT_VOLUME_ML = 0.007
AUTO_VOLUME_ML = 0.005
TRUTH_TRIAL_COLUMNS = [
    "trial_index", "start_frame", "end_frame", "change_frame", "is_catch", "auto_rewarded", "initial_image_name",
    "change_image_name", "engaged", "outcome", "change_time_s", "lick_latency_s",
]  # fmt: skip
# response probabilities of the simulated mouse
ENGAGED = {"hit": 0.85, "false_alarm": 0.15, "abort": 0.12}
DISENGAGED = {"hit": 0.03, "false_alarm": 0.01, "abort": 0.01}


def _frame_of(vsync: np.ndarray, times: np.ndarray | float) -> np.ndarray:
    """The display frame during which each time falls (last vsync at or before it)."""
    return np.searchsorted(vsync, times, side="right") - 1


def simulate_task(
    rng: np.random.Generator,
    block: dict,
    vsync: np.ndarray,
    delay: float,
    passive: bool,
    image_names: list[str],
    engaged_until: float,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Flashes, trials (schedule + true outcome), licks and rewards of the change-detection block."""
    n_flash = (block["end_frame"] - block["start_frame"]) // FLASH_PERIOD_FRAMES
    onset_frames = block["start_frame"] + FLASH_PERIOD_FRAMES * np.arange(n_flash + 1)
    onset_times = vsync[onset_frames] + delay
    image = np.zeros(n_flash, dtype=np.int64)
    is_change = np.zeros(n_flash, dtype=bool)
    is_sham = np.zeros(n_flash, dtype=bool)
    current = int(rng.integers(len(image_names)))
    trials, lick_times, rewards = [], [], []
    k = 0
    while True:
        change = k + 4 + min(int(rng.geometric(0.3)) - 1, 7)
        if change + 4 > n_flash:
            break
        auto = not passive and len(trials) < WARMUP_TRIALS
        catch = not auto and rng.random() < CATCH_PROBABILITY
        engaged = bool(onset_times[k] < engaged_until)
        p = ENGAGED if engaged else DISENGAGED
        new_image = (current + int(rng.integers(1, len(image_names)))) % len(image_names)
        t_change = onset_times[change]
        trial = {
            "trial_index": len(trials), "start_frame": onset_frames[k], "change_frame": onset_frames[change],
            "is_catch": int(catch), "auto_rewarded": int(auto), "initial_image_name": image_names[current],
            "change_image_name": image_names[current if catch else new_image], "engaged": int(engaged),
            "change_time_s": t_change, "lick_latency_s": np.nan,
        }  # fmt: skip
        if not passive and not auto and rng.random() < p["abort"]:
            bout = rng.uniform(onset_times[k] + 0.5, t_change - 0.5) + np.concatenate(
                [[0.0], np.cumsum(rng.uniform(0.12, 0.18, int(rng.integers(0, 3))))]
            )
            lick_times.extend(bout)
            end = int(np.searchsorted(onset_times, bout[-1] + 1.5))
            image[k:end] = current
            trial.update(outcome="aborted", change_time_s=np.nan)
        else:
            image[k:change] = current
            if catch:
                is_sham[change] = True
            else:
                is_change[change] = True
                current = new_image
            end = change + 4
            image[change:end] = current
            outcome, latency = _respond(rng, p, passive, auto, catch)
            if np.isfinite(latency):
                bout = (
                    t_change
                    + latency
                    + np.concatenate([[0.0], np.cumsum(rng.uniform(0.12, 0.18, int(rng.integers(2, 8))))])
                )
                lick_times.extend(bout)
                if outcome in ("hit", "false_alarm"):
                    trial["lick_latency_s"] = latency
                if outcome == "hit":
                    rewards.append((int(_frame_of(vsync, bout[0])), HIT_VOLUME_ML, 0))
            elif not passive and rng.random() < 0.2:
                lick_times.append(t_change + rng.uniform(1.0, 2.0))  # a late lick changes nothing
            if auto:
                rewards.append((int(onset_frames[change]), AUTO_VOLUME_ML, 1))
            trial["outcome"] = outcome
        trial["end_frame"] = onset_frames[end]
        trials.append(trial)
        k = end
    image[k:] = current
    lick_times = np.array(lick_times, dtype=float)
    flashes = pd.DataFrame(
        {
            "flash_index": np.arange(n_flash),
            "start_frame": onset_frames[:n_flash],
            "start_time_s": onset_times[:n_flash],
            "image_name": np.array(image_names)[image],
            "is_change": is_change,
            "is_sham_change": is_sham,
        }
    )
    reward_table = pd.DataFrame(rewards, columns=["frame", "volume_ml", "auto_rewarded"]).sort_values(
        "frame", kind="stable"
    )
    licks = pd.DataFrame({"time_s": lick_times, "frame": _frame_of(vsync, lick_times)})
    return flashes, pd.DataFrame(trials, columns=TRUTH_TRIAL_COLUMNS), licks, reward_table


def _respond(
    rng: np.random.Generator, p: dict[str, float], passive: bool, auto: bool, catch: bool
) -> tuple[str, float]:
    """Outcome of a trial that was not aborted, and the latency of the mouse's first lick (inf: none)."""
    if passive:
        return ("correct_reject" if catch else "miss"), np.inf
    if auto:
        return "auto_rewarded", (rng.uniform(0.3, 0.7) if rng.random() < 0.8 else np.inf)
    if rng.random() < (p["false_alarm"] if catch else p["hit"]):
        return ("false_alarm" if catch else "hit"), rng.uniform(0.25, 0.70)
    return ("correct_reject" if catch else "miss"), np.inf
