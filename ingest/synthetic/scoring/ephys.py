"""Score a spike sorting against the generator's truth (SpikeInterface ground-truth comparison)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from spikeinterface.comparison import compare_sorter_to_ground_truth
from spikeinterface.core import BaseSorting

WELL_DETECTED_ACCURACY = 0.8
SNR_THRESHOLD = 5.0
MATCH_WINDOW_MS = 0.4


@dataclass(frozen=True)
class SortingScore:
    """per_unit: one row per truth unit (unit_id, snr, accuracy, recall, precision, well_detected); "high SNR"
    means snr >= snr_threshold."""

    per_unit: pd.DataFrame
    num_sorted_units: int
    num_well_detected: int
    num_false_positive: int
    num_redundant: int
    fraction_high_snr_well_detected: float
    snr_threshold: float

    def summary(self) -> dict:
        high_snr = self.per_unit["snr"] >= self.snr_threshold
        return {
            "num_truth_units": len(self.per_unit),
            "num_sorted_units": self.num_sorted_units,
            "num_well_detected": self.num_well_detected,
            "num_false_positive": self.num_false_positive,
            "num_redundant": self.num_redundant,
            "mean_accuracy": float(self.per_unit["accuracy"].mean()),
            "mean_accuracy_high_snr": float(self.per_unit.loc[high_snr, "accuracy"].mean()),
            "fraction_high_snr_well_detected": self.fraction_high_snr_well_detected,
        }


def score_sorting(
    sorting: BaseSorting,
    truth: BaseSorting,
    truth_units: pd.DataFrame,
    *,
    well_detected_accuracy: float = WELL_DETECTED_ACCURACY,
    snr_threshold: float = SNR_THRESHOLD,
    match_window_ms: float = MATCH_WINDOW_MS,
) -> SortingScore:
    """Match sorted units to truth units (Hungarian, spikes within match_window_ms) and score them.

    Both sortings count samples from sample 0 of the same recording. truth_units needs unit_id and snr.
    A truth unit is well detected when its matched unit's accuracy >= well_detected_accuracy; a sorted
    unit is a false positive when it matches no truth unit (agreement < 0.2 with its best match).
    """
    if sorting.sampling_frequency != truth.sampling_frequency:
        raise ValueError(
            f"sampling rates differ: sorted {sorting.sampling_frequency}, truth {truth.sampling_frequency}"
        )
    missing = {"unit_id", "snr"} - set(truth_units.columns)
    if missing:
        raise ValueError(f"truth_units lacks columns {sorted(missing)}")
    comparison = compare_sorter_to_ground_truth(
        truth, sorting, exhaustive_gt=True, delta_time=match_window_ms, well_detected_score=well_detected_accuracy
    )
    performance = comparison.get_performance(method="by_unit").astype(float)
    per_unit = truth_units[["unit_id", "snr"]].copy()
    for column in ("accuracy", "recall", "precision"):
        per_unit[column] = per_unit["unit_id"].map(performance[column]).fillna(0.0).to_numpy()
    per_unit["well_detected"] = per_unit["accuracy"] >= well_detected_accuracy
    high_snr = per_unit["snr"] >= snr_threshold
    fraction = float(per_unit.loc[high_snr, "well_detected"].mean()) if high_snr.any() else float("nan")
    return SortingScore(
        per_unit=per_unit.reset_index(drop=True),
        num_sorted_units=int(sorting.get_num_units()),
        num_well_detected=int(per_unit["well_detected"].sum()),
        num_false_positive=int(comparison.count_false_positive_units()),
        num_redundant=int(comparison.count_redundant_units()),
        fraction_high_snr_well_detected=fraction,
        snr_threshold=snr_threshold,
    )
