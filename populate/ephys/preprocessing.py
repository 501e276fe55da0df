"""Preprocessing before spike sorting: scale to uV, phase shift, high-pass or band-pass, common median reference."""

from __future__ import annotations

from collections.abc import Mapping

import spikeinterface.preprocessing as spre
from spikeinterface.core import BaseRecording

from brainobs.populate.ephys.presets import PREPROCESSING_PRESETS

FILTERS = ("highpass", "bandpass")
REFERENCES = ("median", "average", None)


def preprocess(recording: BaseRecording, params: Mapping | str = "allen") -> BaseRecording:
    """A lazy float32 uV recording: phase shift (only when the recording has inter-sample shifts, e.g.
    SpikeGLX Neuropixels), then the filter, then the common reference across all channels."""
    params = PREPROCESSING_PRESETS[params] if isinstance(params, str) else params
    if params["filter"] not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {params['filter']!r}")
    if params["common_reference"] not in REFERENCES:
        raise ValueError(f"common_reference must be one of {REFERENCES}, got {params['common_reference']!r}")
    rec = spre.scale_to_uV(recording) if recording.has_scaleable_traces() else spre.astype(recording, "float32")
    if has_inter_sample_shift(rec):
        rec = spre.phase_shift(rec)
    if params["filter"] == "highpass":
        rec = spre.highpass_filter(rec, freq_min=params["freq_min"])
    else:
        rec = spre.bandpass_filter(rec, freq_min=params["freq_min"], freq_max=params["freq_max"])
    if params["common_reference"] is not None:
        rec = spre.common_reference(rec, reference="global", operator=params["common_reference"])
    return rec


def has_inter_sample_shift(recording: BaseRecording) -> bool:
    """True when the channels were not sampled simultaneously (multiplexed ADCs) and the shift is known."""
    if "inter_sample_shift" not in recording.get_property_keys():
        return False
    return bool((recording.get_property("inter_sample_shift") != 0).any())
