"""Calcium indicator decay times (allen-methods.md, L0 event detection) and the AR(1) gamma."""

import math

DECAY_TIMES: dict[str, float] = {
    "GCaMP6f": 0.347,
    "GCaMP6s": 0.738,
    "Sst;Ai148": 0.464,
    "Vip;Ai148": 0.52,
    "Pvalb;Ai162": 0.715,
    "jGCaMP8s": 0.7,
    "jGCaMP8m": 0.4,
    "unknown": 0.7,
}


def gamma(decay_time: float, fs: float) -> float:
    """AR(1) coefficient exp(-1 / (decay_time * fs))."""
    return math.exp(-1.0 / (decay_time * fs))
