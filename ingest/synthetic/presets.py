"""Survey presets (tiny, demo, benchmark), the calcium indicator lines, and deterministic seeding."""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

import numpy as np


class PresetError(ValueError):
    """An unknown preset, an unknown override, or an impossible parameter value."""


@dataclass(frozen=True)
class IndicatorLine:
    """A transgenic line expressing a calcium indicator, with its kinetics (docs/methods.md)."""

    indicator: str
    decay_time_s: float
    dff_per_spike: float
    full_genotype: str
    driver_line: str
    reporter_line: str


INDICATOR_LINES: dict[str, IndicatorLine] = {
    "GCaMP6f": IndicatorLine(
        indicator="GCaMP6f",
        decay_time_s=0.347,
        dff_per_spike=0.25,
        full_genotype="Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt",
        driver_line="Slc17a7-IRES2-Cre",
        reporter_line="Ai93(TITL-GCaMP6f)",
    ),
    "GCaMP6s": IndicatorLine(
        indicator="GCaMP6s",
        decay_time_s=0.738,
        dff_per_spike=0.3,
        full_genotype="Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai94(TITL-GCaMP6s)/wt",
        driver_line="Slc17a7-IRES2-Cre",
        reporter_line="Ai94(TITL-GCaMP6s)",
    ),
}


@dataclass(frozen=True)
class OphysParams:
    """What one 2-photon movie looks like; every field can be overridden by name in `generate_survey`.

    `n_frames` and `frame_rate` describe single-plane sessions; a multi-plane subject images each plane
    at its own (lower) rate for the same duration.
    """

    height: int = 64
    width: int = 64
    pixel_size_um: float = 0.78
    n_frames: int = 650
    frame_rate: float = 31.0
    n_cells: int = 20
    radius_px: tuple[float, float] = (4.5, 6.5)
    overlap_pairs: int = 2
    absent_fraction: float = 0.1
    new_fraction: float = 0.1
    max_fov_shift_px: float = 10.0
    max_fov_rotation_deg: float = 2.0
    rate_median_hz: float = 1.0
    rate_sigma: float = 0.6
    rate_modulation: float = 2.0
    rate_timescale_s: float = 2.0
    rise_time_s: float = 0.05
    dff_per_spike: float | None = None
    saturation_dff: float | None = None
    cell_brightness: float = 1.2
    neuropil_coef: tuple[float, float] = (0.7, 0.1)
    neuropil_fluctuation: float = 0.15
    neuropil_timescale_s: float = 4.0
    photons_per_pixel: float = 8.0
    adu_per_photon: float = 8.0
    drift_fraction: float = 0.03
    intensity_ramp: float = 0.0  # a steady change of intensity over the session (0.5: ends 50 % brighter)
    bleach_fraction: float = 0.05
    z_drift_um: float = 0.0  # the focal plane moves this far over the session: cells fade out of focus, others in
    motion_px: float = 1.0
    max_motion_px: float = 4.0
    motion_timescale_s: float = 1.0
    nonrigid_px: float = 0.0
    movie_format: str = "tif"

    def validate(self) -> None:
        """Raise PresetError naming the first field whose value cannot be generated."""
        checks = {
            "height": self.height >= 32,
            "width": self.width >= 32,
            "n_frames": self.n_frames >= 10,
            "frame_rate": self.frame_rate > 0,
            "n_cells": self.n_cells >= 1,
            "radius_px": 2.0 <= self.radius_px[0] <= self.radius_px[1],
            "overlap_pairs": 0 <= self.overlap_pairs <= self.n_cells // 2,
            "absent_fraction": 0.0 <= self.absent_fraction < 1.0,
            "new_fraction": 0.0 <= self.new_fraction < 1.0,
            "max_fov_rotation_deg": 0.0 <= self.max_fov_rotation_deg <= 10.0,
            "max_fov_shift_px": self.max_fov_shift_px >= 0,
            "rate_median_hz": self.rate_median_hz > 0,
            "photons_per_pixel": self.photons_per_pixel > 0,
            "adu_per_photon": self.adu_per_photon > 0,
            "bleach_fraction": 0.0 <= self.bleach_fraction < 1.0,
            "intensity_ramp": self.intensity_ramp > -1.0,
            "z_drift_um": 0.0 <= self.z_drift_um <= 50.0,
            "max_motion_px": self.max_motion_px >= 0,
            "movie_format": self.movie_format in ("tif", "h5"),
        }
        for name, ok in checks.items():
            if not ok:
                raise PresetError(f"ophys parameter {name}={getattr(self, name)!r} is out of range")


@dataclass(frozen=True)
class SubjectPlan:
    """One mouse: its indicator, the planes imaged per session (one container each) and the sessions.

    An even number of planes is imaged in pairs (planes 0-1, 2-3, ...); with ``crosstalk`` (one value per
    plane) each pair is rendered together and each plane receives that share of its partner's light."""

    indicator: str = "GCaMP6f"
    sessions: int = 3
    planes: int = 1
    frame_rate: float | None = None
    ecephys_sessions: int = 0
    crosstalk: tuple[float, ...] = ()  # per plane: the share of its pair partner's light it sees (mesoscope)


@dataclass(frozen=True)
class SurveyPreset:
    """The structure of a survey and the realism of its recordings."""

    name: str
    ophys: OphysParams
    subjects: tuple[SubjectPlan, ...]
    ephys_num_channels: int = 16
    ephys_duration_s: float = 10.0
    ephys_num_units: int | None = None
    multiplane_frame_rate: float = 11.0
    imaging_depths_um: tuple[int, ...] = (175, 275, 375, 475)


PRESETS: dict[str, SurveyPreset] = {
    # Allen's 3.7 s detection bins need a few minutes of movie: tiny is 64 x 64 px but 6000 frames (194 s).
    "tiny": SurveyPreset(
        name="tiny",
        ophys=OphysParams(n_frames=6000),
        subjects=(SubjectPlan(indicator="GCaMP6f", sessions=3, ecephys_sessions=1),),
        ephys_num_channels=16,
        ephys_duration_s=10.0,
    ),
    "demo": SurveyPreset(
        name="demo",
        ophys=OphysParams(height=128, width=128, n_frames=4000, n_cells=60, overlap_pairs=3, motion_px=1.5),
        subjects=(
            SubjectPlan(indicator="GCaMP6f", sessions=3, ecephys_sessions=1),
            SubjectPlan(indicator="GCaMP6f", sessions=1, planes=4, crosstalk=(0.05, 0.15, 0.25, 0.1)),
        ),
        ephys_num_channels=32,
        ephys_duration_s=30.0,
    ),
    # One mesoscope session: 4 planes in 2 pairs at 11 Hz (2129 frames, 194 s), crosstalk 0.05-0.25, 64 x 64 px.
    "multiplane": SurveyPreset(
        name="multiplane",
        ophys=OphysParams(n_frames=6000, n_cells=16, overlap_pairs=0, motion_px=0.5, max_motion_px=2.0),
        subjects=(SubjectPlan(indicator="GCaMP6f", sessions=1, planes=4, crosstalk=(0.05, 0.15, 0.25, 0.1)),),
    ),
    "benchmark": SurveyPreset(
        name="benchmark",
        ophys=OphysParams(
            height=512,
            width=512,
            n_frames=2000,
            n_cells=220,
            radius_px=(5.0, 7.5),
            overlap_pairs=8,
            motion_px=2.0,
            max_motion_px=8.0,
            nonrigid_px=0.5,
        ),
        subjects=(SubjectPlan(indicator="GCaMP6f", sessions=3, ecephys_sessions=1),),
        ephys_num_channels=384,
        ephys_duration_s=60.0,
    ),
}

_SURVEY_OVERRIDES = ("subjects", "ephys_num_channels", "ephys_duration_s", "ephys_num_units", "multiplane_frame_rate")


def resolve_preset(name: str, **overrides) -> SurveyPreset:
    """The named preset with overrides applied (ophys fields and the survey's ephys fields)."""
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    ophys_fields = {f.name for f in dataclasses.fields(OphysParams)}
    unknown = sorted(set(overrides) - ophys_fields - set(_SURVEY_OVERRIDES))
    if unknown:
        raise PresetError(f"unknown override(s) {', '.join(unknown)} for preset {name!r}")
    ophys = dataclasses.replace(preset.ophys, **{k: v for k, v in overrides.items() if k in ophys_fields})
    ophys.validate()
    survey = {k: v for k, v in overrides.items() if k in _SURVEY_OVERRIDES}
    return dataclasses.replace(preset, ophys=ophys, **survey)


def entity_seed(seed: int, kind: str, *ids: int) -> np.random.SeedSequence:
    """A seed sequence for one entity (kind and ids), independent of the order entities are made in."""
    return np.random.SeedSequence(seed, spawn_key=(zlib.crc32(kind.encode()), *ids))


def entity_rng(seed: int, kind: str, *ids: int) -> np.random.Generator:
    """A random generator for one entity (see entity_seed)."""
    return np.random.default_rng(entity_seed(seed, kind, *ids))


def entity_int_seed(seed: int, kind: str, *ids: int) -> int:
    """A 31-bit integer seed for one entity, to hand to another generator."""
    return int(entity_seed(seed, kind, *ids).generate_state(1)[0] >> 1)
