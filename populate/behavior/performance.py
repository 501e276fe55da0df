"""Session performance: hit and false-alarm rates, d', reward rate and engagement (AllenSDK conventions)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

ENGAGED_REWARD_RATE = 2.0  # rewards per minute; a trial is engaged above it
REWARD_RATE_HALF_WINDOW = 25  # trials on each side: the window is trials [i - 25, i + 25)
REWARD_RATE_INITIAL_TRIALS = 10  # the first trials have no reward rate (NaN), so are never engaged


def trial_count_clip(rate: float, n_trials: int) -> float:
    """Clip a rate to [1/(2N), 1 - 1/(2N)] (AllenSDK trial_number_limit); NaN when N is 0."""
    if n_trials == 0 or not np.isfinite(rate):
        return np.nan
    bound = 1.0 / (2 * n_trials)
    return float(min(max(rate, bound), 1.0 - bound))


def dprime(n_hit: int, n_go: int, n_false_alarm: int, n_catch: int) -> float:
    """d' = Z(hit rate) - Z(false-alarm rate), each rate clipped by its own trial count; NaN without trials."""
    if n_go == 0 or n_catch == 0:
        return np.nan
    hit_rate = trial_count_clip(n_hit / n_go, n_go)
    false_alarm_rate = trial_count_clip(n_false_alarm / n_catch, n_catch)
    return float(norm.ppf(hit_rate) - norm.ppf(false_alarm_rate))


def reward_rate(
    start_times: np.ndarray,
    responded: np.ndarray,
    half_window: int = REWARD_RATE_HALF_WINDOW,
    initial_trials: int = REWARD_RATE_INITIAL_TRIALS,
) -> np.ndarray:
    """Responses per minute in trials [i - half_window, i + half_window), per trial; NaN for the first trials.

    `responded` marks trials with a lick in the response window (any non-aborted trial, as AllenSDK's
    reward rate counts them); the time is from the first to the last start time in the window.
    """
    start_times = np.asarray(start_times, dtype=float)
    n = start_times.size
    counts = np.concatenate([[0], np.cumsum(np.asarray(responded, dtype=float))])
    index = np.arange(n)
    lo = np.maximum(index - half_window, 0)
    hi = np.minimum(index + half_window, n)
    elapsed = start_times[hi - 1] - start_times[lo] if n else np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = (counts[hi] - counts[lo]) / elapsed * 60.0
    rate[~np.isfinite(rate)] = np.nan
    rate[:initial_trials] = np.nan
    return rate


@dataclass(frozen=True)
class PerformanceSummary:
    """Per-session behavior performance."""

    n_trials: int
    n_go: int
    n_catch: int
    n_hit: int
    n_miss: int
    n_false_alarm: int
    n_correct_reject: int
    n_aborted: int
    n_auto_rewarded: int
    hit_rate: float
    false_alarm_rate: float
    dprime: float
    n_engaged: int
    engaged_fraction: float
    hit_rate_engaged: float
    false_alarm_rate_engaged: float
    dprime_engaged: float
    max_reward_rate: float
    earned_reward_count: int
    auto_reward_count: int
    total_reward_volume_ml: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _rates(trials: pd.DataFrame) -> tuple[int, int, int, int, float, float, float]:
    n_hit, n_miss = int(trials["hit"].sum()), int(trials["miss"].sum())
    n_fa, n_cr = int(trials["false_alarm"].sum()), int(trials["correct_reject"].sum())
    n_go, n_catch = n_hit + n_miss, n_fa + n_cr
    hit_rate = n_hit / n_go if n_go else np.nan
    false_alarm_rate = n_fa / n_catch if n_catch else np.nan
    return n_hit, n_go, n_fa, n_catch, hit_rate, false_alarm_rate, dprime(n_hit, n_go, n_fa, n_catch)


def session_performance(
    trials: pd.DataFrame,
    rewards: pd.DataFrame,
    engaged_threshold: float = ENGAGED_REWARD_RATE,
    passive: bool = False,
) -> PerformanceSummary:
    """Summarize a trials table (compute_trials) and a reward table (reward_table).

    A passive session (no lick spout) keeps its counts but has NaN rates and d': there was no task.
    """
    n_hit, n_go, n_fa, n_catch, hit_rate, fa_rate, d = _rates(trials)
    rate = reward_rate(trials["start_time"].to_numpy(), trials["responded"].to_numpy())
    with np.errstate(invalid="ignore"):
        engaged = rate > engaged_threshold
    *_, e_hit_rate, e_fa_rate, e_d = _rates(trials[engaged])
    if passive:
        hit_rate = fa_rate = d = e_hit_rate = e_fa_rate = e_d = np.nan
    auto = rewards["auto_rewarded"].to_numpy().astype(bool)
    return PerformanceSummary(
        n_trials=len(trials),
        n_go=n_go,
        n_catch=n_catch,
        n_hit=n_hit,
        n_miss=n_go - n_hit,
        n_false_alarm=n_fa,
        n_correct_reject=n_catch - n_fa,
        n_aborted=int(trials["aborted"].sum()),
        n_auto_rewarded=int(trials["auto_rewarded"].sum()),
        hit_rate=hit_rate,
        false_alarm_rate=fa_rate,
        dprime=d,
        n_engaged=int(engaged.sum()),
        engaged_fraction=float(engaged.mean()) if len(trials) else np.nan,
        hit_rate_engaged=e_hit_rate,
        false_alarm_rate_engaged=e_fa_rate,
        dprime_engaged=e_d,
        max_reward_rate=float(np.nanmax(rate)) if np.isfinite(rate).any() else np.nan,
        earned_reward_count=int((~auto).sum()),
        auto_reward_count=int(auto.sum()),
        total_reward_volume_ml=float(rewards["volume"].sum()),
    )
