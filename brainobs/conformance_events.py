"""Conformance adapters for Allen's event detection and decay-time lookup (``brainobs conformance``).

Each adapter takes a case's JSON sidecar and its inputs (names without ``in_``) and returns every output
the case stores (names without ``out_``), computed by the same core functions the EventDetection table
calls. The vector format is described in the vectors' README (``events``, ``decay_lookup``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from brainobs.populate.ophys import events, indicators

Adapter = Callable[[dict, dict[str, np.ndarray]], dict[str, np.ndarray]]


def run_events(meta: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Allen's EventDetection.run on ``dff`` (n, T): decay time from the genotype, default multiplier."""
    scalars = meta["scalars"]
    fs = float(scalars["frame_rate_hz"])
    decay = indicators.decay_time_s(scalars.get("full_genotype"), scalars.get("decay_time_s"))
    result = events.detect_events(inputs["dff"], fs, decay)
    return {
        "events": result.events,
        "lambda": result.lambdas,
        "noise_std": result.noise_std,
        "detrended_dff": result.detrended,
        "gamma": np.float64(result.gamma),
        "halflife_s": np.float64(result.halflife),
        "filtered_events": result.filtered_events,
    }


def run_decay_lookup(meta: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Decay time, half-life and gamma at 31, 11 and 30 Hz of each genotype (exact table match)."""
    decay = np.array([indicators.decay_time_s(str(g)) for g in np.atleast_1d(inputs["genotype"])])
    out = {"decay_time_s": decay, "halflife_s": np.array([indicators.halflife_s(d) for d in decay])}
    for fs in (31, 11, 30):
        out[f"gamma_{fs}hz"] = np.array([indicators.gamma(d, float(fs)) for d in decay])
    return out


ADAPTERS: dict[str, Adapter] = {"events": run_events, "decay_lookup": run_decay_lookup}
