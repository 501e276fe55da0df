"""Synthetic 2-photon movies with known cells, spikes, calcium, neuropil, noise and motion.

A container is one patch of tissue: cells at fixed tissue positions, blood vessels, a static
neuropil texture and slowly fluctuating neuropil components. Each session images it through a
field of view (FOV) that is shifted and rotated a little; each frame is then displaced by rigid
(and optionally non-rigid) motion, and photons are drawn from a Poisson law. The format of the
movie and truth files is documented in docs/formats/ophys.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.special import expit

from brainobs.ingest.synthetic.calcium import (
    indicator_kernel,
    ornstein_uhlenbeck,
    simulate_spikes,
    spikes_to_calcium,
)
from brainobs.ingest.synthetic.movie_files import write_h5_movie, write_tiff_movie
from brainobs.ingest.synthetic.presets import IndicatorLine, OphysParams, entity_rng
from brainobs.ingest.synthetic.truth import write_npz

N_NEUROPIL_COMPONENTS = 3
NONRIGID_GRID = 3
_EDGE_PX = 0.5
_PLACEMENT_ATTEMPTS = 300
_PLACEMENT_RESTARTS = 20
AXIAL_PROFILE_UM = 4.0  # sd of a soma's brightness against its distance from the focal plane (z_drift_um)


@dataclass(frozen=True)
class ExperimentSpec:
    """One imaging plane of one session of a container."""

    experiment_id: int
    session_index: int
    n_frames: int
    frame_rate: float
    imaging_depth: int
    planes: int = 1


@dataclass
class Tissue:
    """The cells and background of one container, in tissue coordinates (those of session 0's FOV)."""

    container_id: int
    cell_ids: np.ndarray  # (N,) int64
    centers: np.ndarray  # (N, 2) y, x
    semi_axes: np.ndarray  # (N, 2) along the cell's own axes
    angles: np.ndarray  # (N,) radians
    nucleus: np.ndarray  # (N,) depth of the dark nucleus, 0..1
    brightness: np.ndarray  # (N,) resting brightness relative to the neuropil
    dff_per_spike: np.ndarray  # (N,)
    rates_hz: np.ndarray  # (N,)
    neuropil_coef: np.ndarray  # (N,)
    presence: np.ndarray  # (N, n_sessions) bool
    fields: np.ndarray  # (1 + K, H, W): texture, then neuropil component maps, on the tissue grid
    origin: float  # tissue coordinate of fields[:, 0, 0] (same along y and x)
    vessels: np.ndarray  # (V, 6): y0, x0, angle, width, bend amplitude, bend wavelength


def _tissue_margin(p: OphysParams) -> int:
    half_diag = 0.5 * np.hypot(p.height, p.width)
    rot = half_diag * np.sin(np.deg2rad(p.max_fov_rotation_deg))
    return int(np.ceil(p.max_fov_shift_px + rot + p.max_motion_px + 3 * p.nonrigid_px + p.radius_px[1] + 4))


def _vessel_distance(vessels: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Distance in px from tissue points to each vessel's centre line, shape (V, *points)."""
    y0, x0, angle, _width, amp, wavelength = (v.reshape((-1,) + (1,) * np.ndim(y)) for v in vessels.T)
    along = (y - y0) * np.cos(angle) + (x - x0) * np.sin(angle)
    across = -(y - y0) * np.sin(angle) + (x - x0) * np.cos(angle)
    return np.abs(across - amp * np.sin(2 * np.pi * along / wavelength))


def _vessel_attenuation(vessels: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Fraction of light that passes the vessels (dark bands), at tissue points."""
    width = vessels[:, 3].reshape((-1,) + (1,) * np.ndim(y))
    return np.prod(1.0 - 0.65 * np.exp(-((_vessel_distance(vessels, y, x) / width) ** 4)), axis=0)


class _CellLayout:
    """Cells placed one by one, without overlap (except chosen pairs) and off the vessels."""

    def __init__(self, p: OphysParams, rng: np.random.Generator, vessels: np.ndarray) -> None:
        self.p, self.rng, self.vessels = p, rng, vessels
        self.centers: list[tuple[float, float]] = []
        self.radii: list[float] = []

    def fits(self, y: float, x: float, r: float, partner: int | None = None) -> bool:
        if (_vessel_distance(self.vessels, np.array(y), np.array(x)) < r + 1.2 * self.vessels[:, 3]).any():
            return False
        if not self.centers:
            return True
        c, rr = np.asarray(self.centers), np.asarray(self.radii)
        ok = np.hypot(c[:, 0] - y, c[:, 1] - x) >= 1.05 * (rr + r)
        if partner is not None:
            ok[partner] = True
        return bool(ok.all())

    def in_fov(self, y: float, x: float, inset: float = 0.0) -> bool:
        """Whether (y, x) lies in the FOV (pixel centres 0 .. L-1), at least inset px from its edges."""
        return inset <= y <= self.p.height - 1 - inset and inset <= x <= self.p.width - 1 - inset

    def add(self, y: float, x: float, r: float) -> None:
        self.centers.append((y, x))
        self.radii.append(r)

    def place(self, n: int, margin: int, inside_fov: bool) -> bool:
        """Place n cells by rejection sampling; False when one finds no room."""
        low, high = (0, 0), (self.p.height - 1, self.p.width - 1)
        if not inside_fov:
            low, high = (-margin, -margin), (self.p.height + margin, self.p.width + margin)
        for _ in range(n):
            for _attempt in range(_PLACEMENT_ATTEMPTS):
                y, x = self.rng.uniform(low, high)
                r = self.rng.uniform(*self.p.radius_px)
                if self.in_fov(y, x) == inside_fov and self.fits(y, x, r):
                    self.add(y, x, r)
                    break
            else:
                return False
        return True

    def place_partner(self, k: int) -> bool:
        """Place a cell overlapping cell k (centres 0.55-0.75 of the summed radii apart), both whole in the FOV."""
        for _attempt in range(_PLACEMENT_ATTEMPTS):
            r = self.rng.uniform(*self.p.radius_px)
            dist = self.rng.uniform(0.55, 0.75) * (self.radii[k] + r)
            theta = self.rng.uniform(0, 2 * np.pi)
            y, x = self.centers[k][0] + dist * np.sin(theta), self.centers[k][1] + dist * np.cos(theta)
            if self.in_fov(y, x, inset=r) and self.fits(y, x, r, partner=k):
                self.add(y, x, r)
                return True
        return False


def _place_cells(p: OphysParams, rng: np.random.Generator, vessels: np.ndarray, margin: int):
    """Cell centres and mean radii: n_cells inside the FOV (some in overlapping pairs), more around it."""
    n_single = p.n_cells - p.overlap_pairs
    for _restart in range(_PLACEMENT_RESTARTS):
        layout = _CellLayout(p, rng, vessels)
        if not layout.place(n_single, margin, inside_fov=True):
            continue
        inside = [k for k in rng.permutation(n_single) if layout.in_fov(*layout.centers[k], inset=layout.radii[k])]
        partners = inside[: p.overlap_pairs]
        if not all(layout.place_partner(int(k)) for k in partners):
            continue
        ext = ((p.height + 2 * margin) * (p.width + 2 * margin)) / (p.height * p.width) - 1
        layout.place(int(round(ext * p.n_cells)), margin, inside_fov=False)
        return np.asarray(layout.centers, dtype=float), np.asarray(layout.radii, dtype=float)
    raise ValueError(
        f"cannot place {p.n_cells} cells of radius {p.radius_px} px ({p.overlap_pairs} overlapping pairs) "
        f"in a {p.height}x{p.width} FOV; lower n_cells, radius_px or overlap_pairs"
    )


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / field.std()


def make_tissue(p: OphysParams, line: IndicatorLine, container_id: int, n_sessions: int, seed: int) -> Tissue:
    """The cells, vessels and neuropil fields of one container, drawn from the container's own seed."""
    rng = entity_rng(seed, "ophys-tissue", container_id)
    margin = _tissue_margin(p)
    n_vessels = max(1, round(p.height * p.width / 256**2))
    vessels = np.column_stack(
        [
            rng.uniform(0, p.height, n_vessels),
            rng.uniform(0, p.width, n_vessels),
            rng.uniform(0, np.pi, n_vessels),
            rng.uniform(1.5, 3.5, n_vessels) * max(1.0, p.height / 128) ** 0.5,
            rng.uniform(2, 8, n_vessels),
            rng.uniform(80, 300, n_vessels),
        ]
    )
    centers, radii = _place_cells(p, rng, vessels, margin)
    n = len(centers)
    aspect = rng.uniform(0.75, 1.0, n)
    semi_axes = np.column_stack([radii / np.sqrt(aspect), radii * np.sqrt(aspect)])
    dff = line.dff_per_spike if p.dff_per_spike is None else p.dff_per_spike
    mean_r, sd_r = p.neuropil_coef
    presence = rng.random((n, n_sessions)) >= p.absent_fraction
    first = np.where(rng.random(n) < p.new_fraction, rng.integers(1, max(2, n_sessions), n), 0)
    presence &= np.arange(n_sessions)[None, :] >= first[:, None]
    size = p.height + 2 * margin, p.width + 2 * margin
    texture = 1.0 + 0.15 * _smooth_field(rng, size, 1.5)
    maps = [expit(1.5 * _smooth_field(rng, size, max(size) / 6)) for _ in range(N_NEUROPIL_COMPONENTS)]
    return Tissue(
        container_id=container_id,
        cell_ids=container_id * 10_000 + np.arange(n, dtype=np.int64),
        centers=centers,
        semi_axes=semi_axes,
        angles=rng.uniform(0, np.pi, n),
        nucleus=rng.uniform(0.0, 0.35, n),
        brightness=p.cell_brightness * rng.lognormal(0.0, 0.25, n),
        dff_per_spike=dff * rng.lognormal(0.0, 0.2, n),
        rates_hz=np.clip(p.rate_median_hz * rng.lognormal(0.0, p.rate_sigma, n), 0.05, 20.0),
        neuropil_coef=np.clip(rng.normal(mean_r, sd_r, n), 0.3, 1.0),
        presence=presence,
        fields=np.stack([np.clip(texture, 0.3, None), *maps]),
        origin=-float(margin),
        vessels=vessels,
    )


# ----------------------------------------------------------------------------------- activity


def _activity(tissue: Tissue, p: OphysParams, line: IndicatorLine, spec: ExperimentSpec, seed: int):
    """Spike counts, calcium, neuropil components, intensity scale and motion of one experiment."""
    rng = entity_rng(seed, "ophys-activity", spec.experiment_id)
    fs, t_n = spec.frame_rate, spec.n_frames
    spikes = simulate_spikes(tissue.rates_hz, t_n, fs, p.rate_modulation, p.rate_timescale_s, rng)
    calcium = spikes_to_calcium(spikes, tissue.dff_per_spike, fs, p.rise_time_s, line.decay_time_s, p.saturation_dff)
    components = p.neuropil_fluctuation * ornstein_uhlenbeck(
        rng, (N_NEUROPIL_COMPONENTS,), t_n, p.neuropil_timescale_s * fs
    )
    duration = t_n / fs
    bleach = (1.0 - p.bleach_fraction) ** (np.arange(t_n) / max(t_n - 1, 1))
    drift = 1.0 + p.drift_fraction * ornstein_uhlenbeck(rng, (), t_n, max(10.0, duration / 5) * fs)
    scale = bleach * drift * (1.0 + p.intensity_ramp * np.arange(t_n) / max(t_n - 1, 1))
    motion = np.clip(
        p.motion_px * ornstein_uhlenbeck(rng, (2,), t_n, p.motion_timescale_s * fs), -p.max_motion_px, p.max_motion_px
    )
    grid = (2, NONRIGID_GRID, NONRIGID_GRID)
    nonrigid = p.nonrigid_px * ornstein_uhlenbeck(rng, grid, t_n, p.motion_timescale_s * fs)
    return spikes, calcium, components, scale, motion, np.moveaxis(nonrigid, -1, 1)


def _focus(tissue: Tissue, p: OphysParams, spec: ExperimentSpec, seed: int) -> np.ndarray | None:
    """(tissue cells, frames) brightness of each soma while the focal plane drifts down by ``z_drift_um`` over
    the session (None without drift): somata lie at depths uniform over the drift's range widened by two axial
    sds, and each shines by a Gaussian of its distance to the plane, so cells fade out and others come in."""
    if p.z_drift_um == 0:
        return None
    rng = entity_rng(seed, "ophys-depth", tissue.container_id)
    reach = 2 * AXIAL_PROFILE_UM
    depth = rng.uniform(-reach, p.z_drift_um + reach, len(tissue.cell_ids))
    plane = p.z_drift_um * np.arange(spec.n_frames) / max(spec.n_frames - 1, 1)
    return np.exp(-0.5 * ((depth[:, None] - plane[None, :]) / AXIAL_PROFILE_UM) ** 2)


# ---------------------------------------------------------------------------------- rendering


@dataclass
class _SessionView:
    """The tissue as one session sees it: FOV transform, rendered footprints and background."""

    fov_shift: np.ndarray  # (2,) y, x
    rotation_deg: float
    pad: int
    cells: np.ndarray  # indices into the tissue of the cells rendered in the canvas
    profiles: sp.csr_matrix  # (n_cells, canvas pixels): fluorescence profile, max 1
    vessel: np.ndarray  # (canvas pixels,) attenuation
    neuropil: np.ndarray  # (1 + K, canvas pixels): neuropil at rest and its components, photons
    occlusion: np.ndarray  # (canvas pixels,) fraction of the neuropil seen through the somata
    centers_fov: np.ndarray  # (n_cells, 2)


def session_transform(p: OphysParams, container_id: int, session_index: int, seed: int):
    """FOV shift (y, x px) and rotation (degrees) of a session relative to the container's first one."""
    if session_index == 0:
        return np.zeros(2), 0.0
    rng = entity_rng(seed, "ophys-fov", container_id, session_index)
    radius = p.max_fov_shift_px * np.sqrt(rng.uniform(0.25, 1.0))
    theta = rng.uniform(0, 2 * np.pi)
    return np.array([radius * np.sin(theta), radius * np.cos(theta)]), float(
        rng.uniform(-1, 1) * p.max_fov_rotation_deg
    )


def _fov_to_tissue(p: OphysParams, shift: np.ndarray, rot_deg: float, y, x):
    """Tissue coordinates of FOV points: inverse of fov = R(rot) (tissue - c) + c + shift."""
    cy, cx = (p.height - 1) / 2, (p.width - 1) / 2
    a = np.deg2rad(rot_deg)
    dy, dx = y - cy - shift[0], x - cx - shift[1]
    return cy + np.cos(a) * dy + np.sin(a) * dx, cx - np.sin(a) * dy + np.cos(a) * dx


def _tissue_to_fov(p: OphysParams, shift: np.ndarray, rot_deg: float, y, x):
    cy, cx = (p.height - 1) / 2, (p.width - 1) / 2
    a = np.deg2rad(rot_deg)
    dy, dx = y - cy, x - cx
    return cy + np.cos(a) * dy - np.sin(a) * dx + shift[0], cx + np.sin(a) * dy + np.cos(a) * dx + shift[1]


def _cell_shape(tissue: Tissue, i: int, ty: np.ndarray, tx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell i at tissue points: its body (soft-edged ellipse, 0..1) and fluorescence profile (dim nucleus)."""
    py, px = ty - tissue.centers[i, 0], tx - tissue.centers[i, 1]
    ca, sa = np.cos(tissue.angles[i]), np.sin(tissue.angles[i])
    u, v = ca * py + sa * px, -sa * py + ca * px
    rho = np.hypot(u / tissue.semi_axes[i, 0], v / tissue.semi_axes[i, 1])
    body = expit((1.0 - rho) * tissue.semi_axes[i].mean() / _EDGE_PX)
    body[body < 0.02] = 0.0
    return body, body * (1.0 - tissue.nucleus[i] * np.exp(-((rho / 0.5) ** 2)))


def _render_session(p: OphysParams, tissue: Tissue, session_index: int, seed: int) -> _SessionView:
    shift, rot = session_transform(p, tissue.container_id, session_index, seed)
    pad = int(np.ceil(p.max_motion_px + 3 * p.nonrigid_px)) + 2
    ch, cw = p.height + 2 * pad, p.width + 2 * pad
    gy, gx = np.mgrid[0:ch, 0:cw].astype(float) - pad
    ty, tx = _fov_to_tissue(p, shift, rot, gy, gx)
    coords = np.stack([ty - tissue.origin, tx - tissue.origin])
    fields = np.stack([map_coordinates(f, coords, order=1, mode="nearest") for f in tissue.fields])
    vessel = _vessel_attenuation(tissue.vessels, ty, tx)
    fy, fx = _tissue_to_fov(p, shift, rot, tissue.centers[:, 0], tissue.centers[:, 1])
    reach = tissue.semi_axes.max(axis=1) + 2
    present = tissue.presence[:, session_index]
    visible = present & (fy + reach > -pad) & (fy - reach < p.height + pad)
    visible &= (fx + reach > -pad) & (fx - reach < p.width + pad)
    cells = np.flatnonzero(visible)
    rows, cols, vals = [], [], []
    occlusion = np.ones((ch, cw))
    for row, i in enumerate(cells):
        y0 = max(int(np.floor(fy[i] - reach[i])) + pad, 0)
        y1 = min(int(np.ceil(fy[i] + reach[i])) + pad + 1, ch)
        x0 = max(int(np.floor(fx[i] - reach[i])) + pad, 0)
        x1 = min(int(np.ceil(fx[i] + reach[i])) + pad + 1, cw)
        body, profile = _cell_shape(tissue, i, ty[y0:y1, x0:x1], tx[y0:y1, x0:x1])
        occlusion[y0:y1, x0:x1] *= 1.0 - body * (1.0 - tissue.neuropil_coef[i])
        yy, xx = np.nonzero(profile)
        rows.append(np.full(len(yy), row))
        cols.append((yy + y0) * cw + xx + x0)
        vals.append(profile[yy, xx])
    triplets = [np.concatenate(part) if part else np.zeros(0) for part in (vals, rows, cols)]
    profiles = sp.csr_matrix((triplets[0], (triplets[1], triplets[2])), shape=(len(cells), ch * cw))
    rest = p.photons_per_pixel * fields[0] * vessel
    neuropil = np.concatenate([rest[None], rest[None] * fields[1:]])
    return _SessionView(
        fov_shift=shift,
        rotation_deg=rot,
        pad=pad,
        cells=cells,
        profiles=profiles,
        vessel=vessel.ravel(),
        neuropil=neuropil.reshape(len(neuropil), -1),
        occlusion=occlusion.ravel(),
        centers_fov=np.column_stack([fy[cells], fx[cells]]),
    )


def _shift(canvas: np.ndarray, pad: int, dy: float, dx: float, shape: tuple[int, int]) -> np.ndarray:
    """The FOV of a frame whose content is displaced by (dy, dx) px (bilinear, |d| <= pad - 1)."""
    ly, lx = shape
    sy, sx = pad - dy, pad - dx
    iy, ix = int(np.floor(sy)), int(np.floor(sx))
    fy, fx = sy - iy, sx - ix
    c = canvas
    return (
        (1 - fy) * (1 - fx) * c[iy : iy + ly, ix : ix + lx]
        + (1 - fy) * fx * c[iy : iy + ly, ix + 1 : ix + lx + 1]
        + fy * (1 - fx) * c[iy + 1 : iy + ly + 1, ix : ix + lx]
        + fy * fx * c[iy + 1 : iy + ly + 1, ix + 1 : ix + lx + 1]
    )


def interpolation_matrix(n_points: int, length: int) -> np.ndarray:
    """(length, n_points) weights interpolating n_points control values linearly over length pixels,
    the first at pixel 0 and the last at pixel length - 1."""
    position = np.arange(length) * (n_points - 1) / (length - 1)
    return np.stack([np.interp(position, np.arange(n_points), row) for row in np.eye(n_points)], axis=1)


def _frames(p, view: _SessionView, f0, calcium, components, scale, motion, nonrigid, rng, focus=None) -> Iterator:
    """Each frame of the movie in ADU: expected photons on the canvas, displaced, then Poisson; ``focus``
    (cells, frames), when given, scales each soma's brightness (z-drift)."""
    ch, cw = p.height + 2 * view.pad, p.width + 2 * view.pad
    cell_term = view.profiles.T.multiply(view.vessel[:, None]).tocsr()
    background = view.neuropil * view.occlusion
    wy, wx = interpolation_matrix(NONRIGID_GRID, p.height), interpolation_matrix(NONRIGID_GRID, p.width)
    grid = np.mgrid[0 : p.height, 0 : p.width].astype(float) + view.pad
    for t in range(calcium.shape[1]):
        brightness = f0 if focus is None else f0 * focus[:, t]
        expected = background[0] + cell_term @ (brightness * (1.0 + calcium[:, t]))
        for k in range(len(components)):
            expected += components[k, t] * background[k + 1]
        canvas = expected.reshape(ch, cw)
        if p.nonrigid_px > 0:
            field = wy @ nonrigid[:, t] @ wx.T
            coords = grid - motion[:, t, None, None] - field
            frame = map_coordinates(canvas, coords, order=1, mode="nearest")
        else:
            frame = _shift(canvas, view.pad, motion[0, t], motion[1, t], (p.height, p.width))
        photons = rng.poisson(np.maximum(frame * scale[t], 0.0))
        yield np.minimum(np.rint(photons * p.adu_per_photon), 65535).astype(np.uint16)


# ------------------------------------------------------------------------------------ writing


def _write_movie(path: Path, frames: Iterator[np.ndarray], p: OphysParams, spec: ExperimentSpec) -> None:
    if p.movie_format == "h5":
        metadata = {
            "frame_rate_hz": spec.frame_rate,
            "pixel_size_um": p.pixel_size_um,
            "imaging_depth_um": spec.imaging_depth,
            "experiment_id": spec.experiment_id,
        }
        write_h5_movie(path, frames, (spec.n_frames, p.height, p.width), metadata)
        return
    metadata = {
        "SI.hRoiManager.scanFrameRate": spec.frame_rate,
        "SI.hRoiManager.linesPerFrame": p.height,
        "SI.hRoiManager.pixelsPerLine": p.width,
        "SI.hStackManager.numSlices": spec.planes,
        "SI.hStackManager.zs": spec.imaging_depth,
        "SI.hChannels.channelSave": 1,
        "brainobs.pixelSizeUm": p.pixel_size_um,
        "brainobs.experimentId": spec.experiment_id,
        "brainobs.numFrames": spec.n_frames,
    }
    write_tiff_movie(path, frames, (spec.n_frames, p.height, p.width), p.pixel_size_um, metadata)


def _cell_truth(p: OphysParams, view: _SessionView, keep: np.ndarray, f0, coef, peak_dff):
    """Footprints inside the FOV, neuropil under each cell (photons) and single-spike SNR, kept cells.

    SNR = expected peak of a one-spike transient over the shot-noise std of the ROI mean, where the
    ROI is the pixels with footprint >= 0.5, at rest (no calcium, no neuropil fluctuation, t = 0).
    """
    cw = p.width + 2 * view.pad
    rows = np.flatnonzero(keep)
    profiles = view.profiles[rows]
    footprints = np.zeros((len(rows), p.height, p.width), np.float32)
    for k in range(len(rows)):
        row = profiles.getrow(k)
        y, x = row.indices // cw - view.pad, row.indices % cw - view.pad
        inside = (y >= 0) & (y < p.height) & (x >= 0) & (x < p.width)
        footprints[k, y[inside], x[inside]] = row.data[inside]
    weights = sp.diags(1.0 / np.asarray(profiles.sum(axis=1)).ravel()) @ profiles
    neuropil = (weights @ view.neuropil.T) @ coef
    cell_term = view.profiles.T.multiply(view.vessel[:, None]).tocsr()
    rest = view.neuropil[0] * view.occlusion + cell_term @ f0
    snr = np.zeros(len(rows))
    for k, cell in enumerate(rows):
        row = profiles.getrow(k)
        inside = row.data >= 0.5
        pixels = row.indices[inside]
        amplitude = f0[cell] * peak_dff[cell] * np.mean(row.data[inside] * view.vessel[pixels])
        snr[k] = amplitude * len(pixels) / np.sqrt(rest[pixels].sum())
    return footprints, neuropil, snr


@dataclass
class _Plane:
    """One experiment ready to render: its view of the tissue and its activity."""

    tissue: Tissue
    spec: ExperimentSpec
    view: _SessionView
    spikes: np.ndarray
    calcium: np.ndarray
    components: np.ndarray
    scale: np.ndarray
    motion: np.ndarray
    nonrigid: np.ndarray

    @property
    def f0(self) -> np.ndarray:
        return self.tissue.brightness[self.view.cells]

    def frames(self, p: OphysParams, seed: int) -> Iterator[np.ndarray]:
        rng = entity_rng(seed, "ophys-photons", self.spec.experiment_id)
        f0 = p.photons_per_pixel * self.f0
        cells = self.view.cells
        focus = _focus(self.tissue, p, self.spec, seed)
        focus = None if focus is None else focus[cells]
        return _frames(p, self.view, f0, self.calcium[cells], self.components, self.scale, self.motion,
                       self.nonrigid, rng, focus)  # fmt: skip


def _plane(tissue: Tissue, spec: ExperimentSpec, p: OphysParams, line: IndicatorLine, seed: int) -> _Plane:
    view = _render_session(p, tissue, spec.session_index, seed)
    return _Plane(tissue, spec, view, *_activity(tissue, p, line, spec, seed))


def write_experiment(
    movie_path: Path,
    truth_path: Path,
    tissue: Tissue,
    spec: ExperimentSpec,
    p: OphysParams,
    line: IndicatorLine,
    seed: int,
) -> int:
    """Write one experiment's movie and its truth file; return the number of cells in the truth."""
    plane = _plane(tissue, spec, p, line, seed)
    _write_movie(movie_path, plane.frames(p, seed), p, spec)
    return _write_truth(truth_path, plane, p, line)


def write_pair(
    paths: tuple[tuple[Path, Path], tuple[Path, Path]],
    tissues: tuple[Tissue, Tissue],
    specs: tuple[ExperimentSpec, ExperimentSpec],
    crosstalk: tuple[float, float],
    p: OphysParams,
    line: IndicatorLine,
    seed: int,
) -> tuple[int, int]:
    """Write two planes imaged simultaneously (one pair of a mesoscope session) with crosstalk.

    The planes share the field of view and the brain's motion; ``crosstalk[k]`` is the fraction of the other
    plane's light added to plane k (in ADU, after photon noise). Each truth file also names the paired
    experiment and the crosstalk coefficient: the paired plane's cells (its truth file) appear here as ghosts.
    The pair's movies are held in memory while mixed (small presets). Returns the cells of each plane."""
    planes = [_plane(tissue, spec, p, line, seed) for tissue, spec in zip(tissues, specs, strict=True)]
    planes[1].motion, planes[1].nonrigid = planes[0].motion, planes[0].nonrigid
    movies = [np.stack(list(plane.frames(p, seed))).astype(np.float64) for plane in planes]
    counts = []
    for k in (0, 1):
        mixed = np.minimum(np.rint(movies[k] + crosstalk[k] * movies[1 - k]), 65535).astype(np.uint16)
        _write_movie(paths[k][0], iter(mixed), p, specs[k])
        counts.append(
            _write_truth(
                paths[k][1],
                planes[k],
                p,
                line,
                paired_experiment_id=np.int64(specs[1 - k].experiment_id),
                crosstalk=np.float64(crosstalk[k]),
            )
        )
    return counts[0], counts[1]


def _write_truth(truth_path: Path, plane: _Plane, p: OphysParams, line: IndicatorLine, **extra) -> int:
    """Write the truth file of one rendered experiment; return the number of cells in it."""
    tissue, spec, view = plane.tissue, plane.spec, plane.view
    spikes, calcium, components, scale = plane.spikes, plane.calcium, plane.components, plane.scale
    motion, nonrigid, cells = plane.motion, plane.nonrigid, view.cells
    f0 = p.photons_per_pixel * plane.f0
    kernel_peak = indicator_kernel(spec.frame_rate, p.rise_time_s, line.decay_time_s, 64).max()
    peak_dff = tissue.dff_per_spike[cells] * kernel_peak
    if p.saturation_dff is not None:
        peak_dff = peak_dff / (1.0 + peak_dff / p.saturation_dff)
    coef = np.vstack([np.ones(spec.n_frames), components])
    cy, cx = view.centers_fov.T
    keep = (cy >= 0) & (cy <= p.height - 1) & (cx >= 0) & (cx <= p.width - 1)
    footprints, neuropil, snr = _cell_truth(p, view, keep, f0, coef, peak_dff)
    mass = footprints.sum(axis=(1, 2))
    gy, gx = np.mgrid[0 : p.height, 0 : p.width]
    centroids = np.column_stack([(footprints * gy).sum(axis=(1, 2)) / mass, (footprints * gx).sum(axis=(1, 2)) / mass])
    kept = cells[keep]
    write_npz(
        truth_path,
        experiment_id=np.int64(spec.experiment_id),
        container_id=np.int64(tissue.container_id),
        session_index=np.int64(spec.session_index),
        cell_ids=tissue.cell_ids[kept],
        centroids=centroids,
        radii=tissue.semi_axes[kept].mean(axis=1),
        footprints=footprints,
        spikes=spikes[kept],
        spike_rates_hz=tissue.rates_hz[kept],
        calcium=calcium[kept].astype(np.float32),
        dff_per_spike=tissue.dff_per_spike[kept],
        f0=(f0[keep] * p.adu_per_photon).astype(np.float32),
        neuropil=(neuropil * scale * p.adu_per_photon).astype(np.float32),
        neuropil_coef=tissue.neuropil_coef[kept],
        snr=snr,
        shifts_y=motion[0].astype(np.float32),
        shifts_x=motion[1].astype(np.float32),
        nonrigid_y=nonrigid[0].astype(np.float32),
        nonrigid_x=nonrigid[1].astype(np.float32),
        fov_shift=view.fov_shift,
        fov_rotation_deg=np.float64(view.rotation_deg),
        intensity_scale=scale.astype(np.float32),
        frame_rate=np.float64(spec.frame_rate),
        pixel_size_um=np.float64(p.pixel_size_um),
        decay_time_s=np.float64(line.decay_time_s),
        rise_time_s=np.float64(p.rise_time_s),
        indicator=np.str_(line.indicator),
        photons_per_pixel=np.float64(p.photons_per_pixel),
        adu_per_photon=np.float64(p.adu_per_photon),
        **extra,
    )
    return int(keep.sum())


def write_container_truth(path: Path, tissue: Tissue, experiment_ids: list[int]) -> None:
    """The container's tissue-level truth: every cell's identity, tissue position and presence."""
    write_npz(
        path,
        container_id=np.int64(tissue.container_id),
        experiment_ids=np.asarray(experiment_ids, dtype=np.int64),
        cell_ids=tissue.cell_ids,
        tissue_centers=tissue.centers,
        semi_axes=tissue.semi_axes,
        presence=tissue.presence,
        spike_rates_hz=tissue.rates_hz,
        neuropil_coef=tissue.neuropil_coef,
    )
