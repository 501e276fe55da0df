"""Calcium-indicator decay times used by L0 event detection, and the AR(1) decay factor gamma."""

from __future__ import annotations

import math

# decay time (mean lifetime, seconds) per indicator / genotype, as used for the Allen releases
DECAY_TIMES: dict[str, float] = {
    "GCaMP6f": 0.347,  # Slc17a7-IRES2-Cre;Camk2a-tTA;Ai93
    "GCaMP6s": 0.738,  # Slc17a7-IRES2-Cre;Camk2a-tTA;Ai94
    "Sst;Ai148": 0.464,
    "Vip;Ai148": 0.52,
    "Pvalb;Ai162": 0.715,
    "jGCaMP8s": 0.7,
    "jGCaMP8m": 0.4,
    "unknown": 0.7,
}

# (driver, reporter) pairs with their own measured decay time; checked before the indicator alone
_DRIVER_REPORTER = (("Sst", "Ai148", "Sst;Ai148"), ("Vip", "Ai148", "Vip;Ai148"), ("Pvalb", "Ai162", "Pvalb;Ai162"))
# substrings naming the indicator (reporter lines included), most specific first
_INDICATOR_TOKENS = (
    ("jGCaMP8s", "jGCaMP8s"),
    ("jGCaMP8m", "jGCaMP8m"),
    ("GCaMP6s", "GCaMP6s"),
    ("Ai94", "GCaMP6s"),
    ("Ai162", "GCaMP6s"),
    ("GCaMP6f", "GCaMP6f"),
    ("Ai93", "GCaMP6f"),
    ("Ai148", "GCaMP6f"),
)


def indicator_key(description: str | None) -> str:
    """Key of :data:`DECAY_TIMES` for a genotype or indicator description (case-insensitive).

    Examples: ``"Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt"`` -> ``"GCaMP6f"``,
    ``"Vip-IRES-Cre/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt"`` -> ``"Vip;Ai148"``, ``None`` -> ``"unknown"``.
    """
    text = (description or "").lower()
    for driver, reporter, key in _DRIVER_REPORTER:
        if driver.lower() in text and reporter.lower() in text:
            return key
    for token, key in _INDICATOR_TOKENS:
        if token.lower() in text:
            return key
    return "unknown"


def decay_time_s(description: str | None) -> float:
    """Decay time in seconds for a genotype or indicator description (0.7 s when unknown)."""
    return DECAY_TIMES[indicator_key(description)]


def gamma(decay_time: float, fs: float) -> float:
    """AR(1) decay factor per frame: ``exp(-1 / (decay_time * fs))`` (decay_time in s, fs in Hz)."""
    if decay_time <= 0 or fs <= 0:
        raise ValueError(f"decay time ({decay_time} s) and frame rate ({fs} Hz) must be positive")
    return math.exp(-1.0 / (decay_time * fs))
