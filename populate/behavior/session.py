"""All behavior and stimulus tables of one session from its validated raw files."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from brainobs.populate.behavior.performance import (
    ENGAGED_REWARD_RATE,
    PerformanceSummary,
    reward_rate,
    session_performance,
)
from brainobs.populate.behavior.running import RunningParams, compute_running_speed
from brainobs.populate.behavior.stimulus import stimulus_presentations
from brainobs.populate.behavior.trials import compute_trials, lick_table, reward_table

if TYPE_CHECKING:
    from brainobs.ingest.behavior_files import BehaviorFiles, StimulusImages


@dataclass(frozen=True)
class BehaviorResult:
    """Running speed, licks, rewards, stimulus presentations, trials and performance of one session, and the
    images of its image set as the folder gave them (None without stimulus_templates.npz)."""

    running: pd.DataFrame
    licks: pd.DataFrame
    rewards: pd.DataFrame
    presentations: pd.DataFrame
    trials: pd.DataFrame
    performance: PerformanceSummary
    templates: StimulusImages | None = None


def process_behavior(
    files: BehaviorFiles,
    running_params: RunningParams | None = None,
    monitor_delay_s: float | None = None,
    engaged_threshold: float = ENGAGED_REWARD_RATE,
) -> BehaviorResult:
    """Compute every behavior table; `monitor_delay_s` overrides session.json's measured delay.

    The wheel geometry comes from session.json unless `running_params` is given. Trials gain the
    columns reward_rate (rewards/min) and engaged.
    """
    session = files.session
    delay = session.monitor_delay_s if monitor_delay_s is None else monitor_delay_s
    params = running_params or replace(
        RunningParams(),
        wheel_radius_cm=session.wheel_radius_cm,
        running_radius_fraction=session.running_radius_fraction,
    )
    vsync = files.vsync_times
    running = compute_running_speed(vsync, files.encoder["vsig"].to_numpy(), files.encoder["vin"].to_numpy(), params)
    rewards = reward_table(vsync, files.rewards)
    trials = compute_trials(files.trials, vsync, delay, files.lick_frames, files.rewards, session.response_window_s)
    trials["reward_rate"] = reward_rate(trials["start_time"].to_numpy(), trials["responded"].to_numpy())
    with np.errstate(invalid="ignore"):
        trials["engaged"] = trials["reward_rate"].to_numpy() > engaged_threshold
    return BehaviorResult(
        running=running,
        licks=lick_table(vsync, files.lick_frames),
        rewards=rewards,
        presentations=stimulus_presentations(files.stimulus, session.blocks, vsync, delay),
        trials=trials,
        performance=session_performance(trials, rewards, engaged_threshold, passive=session.passive),
        templates=files.templates,
    )
