"""Release unit filters: query-time presets over a units table (all units are stored and exported)."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import pandas as pd

from brainobs.populate.ephys.presets import UNIT_FILTER_PRESETS

OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}


def filter_units(units: pd.DataFrame, preset: str | Sequence[tuple[str, str, object]]) -> pd.DataFrame:
    """The rows of `units` that meet every condition of the preset (a name in UNIT_FILTER_PRESETS or a list
    of (column, operator, value)). A missing value (NaN) fails its condition."""
    conditions = _conditions(preset)
    missing = sorted({column for column, _, _ in conditions} - set(units.columns))
    if missing:
        raise ValueError(f"unit filter {preset if isinstance(preset, str) else 'preset'} needs columns {missing}")
    keep = pd.Series(True, index=units.index)
    for column, op, value in conditions:
        values = units[column]
        keep &= values.notna() & OPERATORS[op](values, value)
    return units[keep]


def _conditions(preset: str | Sequence[tuple[str, str, object]]) -> list[tuple[str, str, object]]:
    if isinstance(preset, str):
        if preset not in UNIT_FILTER_PRESETS:
            raise ValueError(f"unknown unit filter preset {preset!r}; known: {sorted(UNIT_FILTER_PRESETS)}")
        preset = UNIT_FILTER_PRESETS[preset]
    conditions = [tuple(c) for c in preset]
    for condition in conditions:
        if len(condition) != 3 or condition[1] not in OPERATORS:
            raise ValueError(f"a filter condition is (column, one of {sorted(OPERATORS)}, value); got {condition}")
    return conditions


def unmet_conditions(units: pd.DataFrame, preset: str | Sequence[tuple[str, str, object]]) -> list[list[str]]:
    """For each row of `units`, the conditions of the preset it does not meet, as text (NaN fails)."""
    unmet: list[list[str]] = [[] for _ in range(len(units))]
    for column, op, value in _conditions(preset):
        values = units[column]
        held = (values.notna() & OPERATORS[op](values, value)).to_numpy()
        for i in np.flatnonzero(~held):
            unmet[i].append(f"{column} {op} {value}")
    return unmet
