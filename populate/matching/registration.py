"""Rigid registration of two average projections: several candidates, the best structural similarity wins.

Candidates (each estimated on both images with the edge crop removed):
  ecc              Euclidean ECC (cv2.findTransformECC, MOTION_EUCLIDEAN) on the intensity-normalised images;
  clahe_ecc        the same after CLAHE contrast normalisation;
  clahe_phase      phase correlation of the CLAHE images, repeated over a grid of rotations of the moving
                   image (rotation_search_deg, rotation_step_deg); of these rotation + shift hypotheses the
                   one under which the two CLAHE images correlate best is kept. Peak heights are not compared
                   across rotations: on small or repetitive images (a vessel) a wrong peak is often highest;
  clahe_phase_ecc  Euclidean ECC on the CLAHE images started from the clahe_phase transform.
Each candidate's transform warps the CLAHE moving image onto the fixed one; the score is the mean of the
Gaussian-weighted SSIM map (skimage) over the cropped pixels that the warped image covers.

Images of different sizes are padded at the bottom and right, with their median, to a common canvas; pixel
(x, y) keeps its coordinates, so the transform is expressed in each experiment's own pixel frame and any
offset between the two fields of view is part of the translation it recovers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from brainobs.populate.matching.inputs import MatchingParams


class RegistrationError(ValueError):
    """Two experiments' average projections could not be registered."""


@dataclass(frozen=True)
class PairTransform:
    """The chosen transform of one pair: `matrix` (2x3) maps moving pixel (x, y, 1) to fixed pixel (x, y).

    cv2.warpAffine(moving_image, matrix, (Lx_fixed, Ly_fixed)) shows the moving image in the fixed frame.
    candidate_ssim holds every candidate's score (NaN where it failed to converge).
    """

    fixed_experiment_id: int
    moving_experiment_id: int
    matrix: np.ndarray
    method: str
    ssim: float
    candidate_ssim: dict[str, float]

    @property
    def rotation_deg(self) -> float:
        return math.degrees(math.atan2(self.matrix[1, 0], self.matrix[0, 0]))

    @property
    def translation_px(self) -> tuple[float, float]:
        return float(self.matrix[0, 2]), float(self.matrix[1, 2])


@dataclass(frozen=True)
class _Prepared:
    """Both images on a common canvas, intensity-normalised (uint8) and CLAHE-normalised, with the crop."""

    fixed: np.ndarray
    moving: np.ndarray
    fixed_clahe: np.ndarray
    moving_clahe: np.ndarray
    fixed_shape: tuple[int, int]
    moving_shape: tuple[int, int]
    crop: int
    ssim_sigma: float

    def cropped(self, image: np.ndarray) -> np.ndarray:
        return image[self.crop : image.shape[0] - self.crop, self.crop : image.shape[1] - self.crop]


def scaled_settings(shape: tuple[int, int], params: MatchingParams) -> tuple[int, int, float]:
    """Edge crop (px), CLAHE tile count and SSIM sigma for an image of `shape` (see MatchingParams)."""
    scale = min(1.0, min(shape) / params.reference_fov_px)
    crop = int(round(params.edge_buffer_px * scale))
    grid = max(1, int(round(params.clahe_grid * scale)))
    return crop, grid, params.ssim_sigma * scale


def register_pair(
    fixed_image: np.ndarray,
    moving_image: np.ndarray,
    params: MatchingParams,
    fixed_experiment_id: int,
    moving_experiment_id: int,
) -> PairTransform:
    """Register `moving_image` onto `fixed_image`; raise RegistrationError naming the pair on failure."""
    pair = f"experiment {moving_experiment_id} onto experiment {fixed_experiment_id}"
    prepared = _prepare(fixed_image, moving_image, params, pair)
    scores: dict[str, float] = {}
    matrices: dict[str, np.ndarray] = {}
    for name, warp in _estimates(prepared, params):
        if warp is None:
            scores[name] = math.nan
            continue
        matrices[name] = cv2.invertAffineTransform(warp)
        scores[name] = _similarity(prepared, matrices[name])
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    if not finite:
        raise RegistrationError(f"registration of {pair} failed: no candidate converged")
    best = max(finite, key=finite.get)
    if finite[best] < params.min_ssim:
        raise RegistrationError(
            f"registration of {pair} failed: best SSIM {finite[best]:.3f} ({best}) is below min_ssim "
            f"{params.min_ssim}; candidates {_fmt(scores)}"
        )
    return PairTransform(
        fixed_experiment_id, moving_experiment_id, matrices[best].astype(float), best, finite[best], scores
    )


def _fmt(scores: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.3f}" for k, v in scores.items())


def _prepare(fixed: np.ndarray, moving: np.ndarray, params: MatchingParams, pair: str) -> _Prepared:
    canvas = (max(fixed.shape[0], moving.shape[0]), max(fixed.shape[1], moving.shape[1]))
    smallest = (min(fixed.shape[0], moving.shape[0]), min(fixed.shape[1], moving.shape[1]))
    crop, grid, sigma = scaled_settings(smallest, params)
    clahe = cv2.createCLAHE(clipLimit=params.clahe_clip, tileGridSize=(grid, grid))
    fixed8 = _on_canvas(_to_uint8(fixed, pair, "fixed"), canvas)
    moving8 = _on_canvas(_to_uint8(moving, pair, "moving"), canvas)
    return _Prepared(fixed8, moving8, clahe.apply(fixed8), clahe.apply(moving8), fixed.shape, moving.shape, crop, sigma)


def _to_uint8(image: np.ndarray, pair: str, role: str) -> np.ndarray:
    lo, hi = np.percentile(image, [0.1, 99.9])
    if not hi > lo:
        raise RegistrationError(f"registration of {pair} failed: the {role} average projection is flat")
    return np.round(np.clip((image - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def _on_canvas(image: np.ndarray, canvas: tuple[int, int]) -> np.ndarray:
    out = np.full(canvas, np.median(image), dtype=np.uint8)
    out[: image.shape[0], : image.shape[1]] = image
    return out


def _estimates(p: _Prepared, params: MatchingParams) -> Iterator[tuple[str, np.ndarray | None]]:
    """Each candidate's fixed -> moving warp (2x3, canvas coordinates), None where it failed."""
    yield "ecc", _attempt(lambda: _ecc(p.fixed, p.moving, p.crop, params))
    yield "clahe_ecc", _attempt(lambda: _ecc(p.fixed_clahe, p.moving_clahe, p.crop, params))
    hypotheses = _phase_hypotheses(p.cropped(p.fixed_clahe), p.cropped(p.moving_clahe), p.crop, params)
    phase = max(hypotheses, key=lambda warp: _correlation(p, warp))
    yield "clahe_phase", phase
    yield "clahe_phase_ecc", _attempt(lambda: _ecc(p.fixed_clahe, p.moving_clahe, p.crop, params, phase))


def _attempt(estimate: Callable[[], np.ndarray]) -> np.ndarray | None:
    try:
        warp = estimate()
    except cv2.error:  # ECC raises when it does not converge
        return None
    return warp if np.all(np.isfinite(warp)) else None


def _ecc(
    fixed: np.ndarray, moving: np.ndarray, crop: int, params: MatchingParams, start: np.ndarray | None = None
) -> np.ndarray:
    """Euclidean ECC of the cropped images, from the identity or from the warp `start`."""
    sl = np.s_[crop : fixed.shape[0] - crop, crop : fixed.shape[1] - crop]
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, params.ecc_max_iterations, params.ecc_epsilon)
    init = np.eye(2, 3) if start is None else _shift_origin(start, -crop)
    _, warp = cv2.findTransformECC(
        fixed[sl].astype(np.float32),
        moving[sl].astype(np.float32),
        init.astype(np.float32),
        cv2.MOTION_EUCLIDEAN,
        criteria,
        None,
        params.ecc_gauss_filter,
    )
    return _shift_origin(warp, crop)


def _phase_hypotheses(fixed: np.ndarray, moving: np.ndarray, crop: int, params: MatchingParams) -> list[np.ndarray]:
    """One fixed -> moving Euclidean warp per rotation of the grid: the moving image is rotated about its
    centre, and phase correlation (Hanning window, means removed) gives the shift that remains."""
    fixed, moving = fixed - fixed.mean(), moving - moving.mean()  # else the windowed mean biases the peak
    window = cv2.createHanningWindow(fixed.shape[::-1], cv2.CV_64F)
    center = ((fixed.shape[1] - 1) / 2, (fixed.shape[0] - 1) / 2)
    n_steps = int(round(params.rotation_search_deg / params.rotation_step_deg))
    hypotheses = []
    for angle in np.linspace(-n_steps, n_steps, 2 * n_steps + 1) * params.rotation_step_deg:
        to_rotated = cv2.getRotationMatrix2D(center, float(angle), 1.0)
        rotated = cv2.warpAffine(moving, to_rotated, moving.shape[::-1], borderMode=cv2.BORDER_REFLECT)
        (dx, dy), _ = cv2.phaseCorrelate(fixed, rotated, window)
        # fixed -> rotated moving is a shift by (dx, dy); rotated -> moving undoes the rotation
        from_rotated = np.vstack([cv2.invertAffineTransform(to_rotated), [0.0, 0.0, 1.0]])
        warp = from_rotated @ np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])
        hypotheses.append(_shift_origin(warp[:2], crop))
    return hypotheses


def _shift_origin(warp: np.ndarray, offset: int) -> np.ndarray:
    """A warp between images cropped by `offset` px on every side, in uncropped coordinates (a negative offset
    goes the other way): with c = (offset, offset), p' = L p + t becomes p' = L p + (t + c - L c)."""
    linear, c = warp[:, :2].astype(float), np.full(2, float(offset))
    return np.hstack([linear, (warp[:, 2] + c - linear @ c)[:, None]])


def _warped(p: _Prepared, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The moving CLAHE image warped onto the fixed one, and the pixels both images cover; both cropped."""
    size = p.fixed_clahe.shape[::-1]
    warped = cv2.warpAffine(p.moving_clahe, matrix, size, flags=cv2.INTER_LINEAR)
    moving_extent = np.zeros_like(p.moving_clahe)
    moving_extent[: p.moving_shape[0], : p.moving_shape[1]] = 1
    covered = cv2.warpAffine(moving_extent, matrix, size, flags=cv2.INTER_NEAREST) > 0
    covered[p.fixed_shape[0] :, :] = False
    covered[:, p.fixed_shape[1] :] = False
    return p.cropped(warped), p.cropped(covered)


def _similarity(p: _Prepared, matrix: np.ndarray) -> float:
    """Mean of the Gaussian-weighted SSIM map (skimage) of the warped moving and the fixed CLAHE images,
    over the cropped pixels both cover."""
    warped, covered = _warped(p, matrix)
    if not covered.any():
        return math.nan
    _, ssim_map = structural_similarity(
        warped, p.cropped(p.fixed_clahe), gaussian_weights=True, sigma=p.ssim_sigma, data_range=255, full=True
    )
    return float(ssim_map[covered].mean())


def _correlation(p: _Prepared, warp: np.ndarray) -> float:
    """Pearson correlation of the CLAHE images under the fixed -> moving `warp`, over the covered pixels: a
    cheap ranking of phase-correlation hypotheses (skimage SSIM with sigma 20 costs ~20x more)."""
    warped, covered = _warped(p, cv2.invertAffineTransform(warp))
    if not covered.any():
        return -1.0
    a, b = warped[covered].astype(float), p.cropped(p.fixed_clahe)[covered].astype(float)
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / norm) if norm > 0 else -1.0
