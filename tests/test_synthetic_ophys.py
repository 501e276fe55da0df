"""The synthetic 2-photon generator: what the movies hold is what the truth says and what was asked."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from skimage.registration import phase_cross_correlation

from brainobs.ingest.synthetic.calcium import indicator_kernel, simulate_spikes, spikes_to_calcium
from brainobs.ingest.synthetic.ophys import ExperimentSpec, make_tissue, session_transform, write_experiment
from brainobs.ingest.synthetic.presets import INDICATOR_LINES, OphysParams, PresetError, resolve_preset
from brainobs.ingest.synthetic.truth import OphysTruth, TruthError, load_ophys_truth

GCAMP6F = INDICATOR_LINES["GCaMP6f"]
# a movie without motion, bleaching, drift or neuropil fluctuation: the cell signal alone over shot noise
STILL = {"motion_px": 0.0, "max_motion_px": 0.0, "bleach_fraction": 0.0, "drift_fraction": 0.0}


def _experiment(
    root: Path, session_index: int = 0, seed: int = 0, line=GCAMP6F, **overrides
) -> tuple[Path, OphysTruth]:
    """Write one experiment of container 700001 under root; return its movie path and truth."""
    p = dataclasses.replace(OphysParams(), **overrides)
    p.validate()
    tissue = make_tissue(p, line, 700001, 3, seed)
    experiment_id = 900001 + session_index
    spec = ExperimentSpec(experiment_id, session_index, p.n_frames, p.frame_rate, 175)
    (root / "ground_truth" / "ophys").mkdir(parents=True, exist_ok=True)
    movie = root / f"experiment_{experiment_id}.{p.movie_format}"
    write_experiment(
        movie, root / "ground_truth" / "ophys" / f"experiment_{experiment_id}.npz", tissue, spec, p, line, seed
    )
    return movie, load_ophys_truth(root, experiment_id)


def _interior(truth: OphysTruth, margin: float = 8.0) -> np.ndarray:
    ly, lx = truth.footprints.shape[1:]
    y, x = truth.centroids.T
    return (y >= margin) & (y <= ly - 1 - margin) & (x >= margin) & (x <= lx - 1 - margin)


def _roi_traces(movie: np.ndarray, truth: OphysTruth) -> tuple[np.ndarray, list[np.ndarray]]:
    """Mean of the movie over each cell's pixels with footprint >= 0.5."""
    masks = [footprint >= 0.5 for footprint in truth.footprints]
    return np.stack([movie[:, mask].mean(axis=1) for mask in masks]), masks


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory) -> tuple[Path, OphysTruth]:
    return _experiment(tmp_path_factory.mktemp("ophys"))


def test_movie_is_a_multipage_uint16_tiff_with_scanimage_metadata(tiny_experiment):
    movie_path, truth = tiny_experiment
    p = OphysParams()
    with tifffile.TiffFile(movie_path) as tif:
        assert len(tif.pages) == p.n_frames
        movie = tif.asarray()
        description = tif.pages[0].description
        x_resolution = tif.pages[0].tags["XResolution"].value
        unit = tif.pages[0].tags["ResolutionUnit"].value
    assert movie.shape == (p.n_frames, p.height, p.width) and movie.dtype == np.uint16
    assert "SI.hRoiManager.scanFrameRate = 31.0\n" in description
    assert "brainobs.pixelSizeUm = 0.78\n" in description
    assert unit == 3 and 1e4 / (x_resolution[0] / x_resolution[1]) == pytest.approx(0.78, rel=1e-6)
    assert truth.n_frames == p.n_frames and truth.frame_rate == 31.0
    assert 0 < np.median(movie) < 2000 and movie.max() < 65535


def test_truth_holds_the_documented_arrays(tiny_experiment):
    _, truth = tiny_experiment
    n, t = truth.n_cells, truth.n_frames
    assert truth.footprints.shape == (n, 64, 64) and truth.footprints.dtype == np.float32
    assert truth.cell_ids.dtype == np.int64 and len(set(truth.cell_ids)) == n
    assert truth.spikes.shape == (n, t) and truth.calcium.shape == (n, t) and truth.neuropil.shape == (n, t)
    assert truth.shifts_y.shape == (t,) and truth.nonrigid_x.shape == (t, 3, 3)
    assert ((truth.centroids >= 0) & (truth.centroids <= 63)).all()
    assert truth.footprints.max() <= 1.0 and (truth.footprints.max(axis=(1, 2)) > 0.5).all()
    assert truth.indicator == "GCaMP6f" and truth.decay_time_s == 0.347
    assert np.array_equal(truth.fov_shift, [0.0, 0.0]) and truth.fov_rotation_deg == 0.0


def test_cells_present_per_session_match_the_request():
    p = OphysParams(height=256, width=256, n_cells=200)
    tissue = make_tissue(p, GCAMP6F, 700001, 4, seed=3)
    y, x = tissue.centers.T
    assert ((y >= 0) & (y < 256) & (x >= 0) & (x < 256)).sum() == 200
    new = ~tissue.presence[:, 0] & tissue.presence[:, 1:].any(axis=1)
    assert 0.04 <= new.mean() <= 0.2
    established = ~new
    absent = ~tissue.presence[established][:, 1:]
    assert 0.06 <= absent.mean() <= 0.14
    assert len(np.unique(tissue.cell_ids)) == len(tissue.cell_ids)


def test_tiny_experiment_has_the_requested_number_of_cells(tiny_experiment):
    _, truth = tiny_experiment
    assert 15 <= truth.n_cells <= 22


def test_spike_rates_match_the_requested_rates():
    p = OphysParams(height=256, width=256, n_cells=200)
    rates = np.random.default_rng(1).lognormal(np.log(1.0), 0.6, 300)
    spikes = simulate_spikes(rates, 31 * 1200, 31.0, p.rate_modulation, p.rate_timescale_s, np.random.default_rng(2))
    observed = spikes.sum(axis=1) / 1200.0
    assert observed.sum() / rates.sum() == pytest.approx(1.0, abs=0.05)
    assert np.median(observed / rates) == pytest.approx(1.0, abs=0.1)
    assert np.corrcoef(np.log(observed + 0.01), np.log(rates))[0, 1] > 0.85
    tissue_rates = make_tissue(p, GCAMP6F, 700002, 3, seed=0).rates_hz
    assert np.median(tissue_rates) == pytest.approx(p.rate_median_hz, rel=0.2)


@pytest.mark.parametrize(("indicator", "decay_s"), [("GCaMP6f", 0.347), ("GCaMP6s", 0.738)])
def test_calcium_rises_in_about_50_ms_and_decays_with_the_indicator_time(indicator, decay_s):
    line = INDICATOR_LINES[indicator]
    assert line.decay_time_s == decay_s
    fs = 31.0
    spikes = np.zeros((1, 200), np.uint8)
    spikes[0, 10] = 1
    calcium = spikes_to_calcium(spikes, np.array([0.3]), fs, 0.05, line.decay_time_s)[0]
    peak = int(np.argmax(calcium))
    assert calcium[:10].max() == 0.0
    assert 0 <= (peak - 10) / fs <= 0.2
    assert calcium[peak] == pytest.approx(0.3 * indicator_kernel(fs, 0.05, decay_s, 50).max())
    tail = np.arange(peak + 10, peak + 40)
    slope = np.polyfit(tail / fs, np.log(calcium[tail]), 1)[0]
    assert -1.0 / slope == pytest.approx(decay_s, rel=0.02)


def test_saturation_compresses_large_transients_only():
    spikes = np.zeros((2, 100), np.uint8)
    spikes[0, 5], spikes[1, 5] = 1, 20
    linear = spikes_to_calcium(spikes, np.array([0.2, 0.2]), 31.0, 0.05, 0.347)
    saturated = spikes_to_calcium(spikes, np.array([0.2, 0.2]), 31.0, 0.05, 0.347, saturation_dff=2.0)
    assert saturated[0].max() / linear[0].max() > 0.9
    assert saturated[1].max() / linear[1].max() < 0.5


def test_snr_in_the_movie_matches_the_truth(tmp_path):
    quiet = {**STILL, "neuropil_fluctuation": 0.0, "rate_median_hz": 0.05, "rate_sigma": 0.0, "rate_modulation": 0.0}
    snrs = {}
    for photons in (8.0, 2.0):
        movie_path, truth = _experiment(tmp_path / str(photons), n_frames=400, photons_per_pixel=photons, **quiet)
        traces, masks = _roi_traces(tifffile.imread(movie_path).astype(float), truth)
        kernel_peak = indicator_kernel(31.0, 0.05, 0.347, 50).max()
        for k in np.flatnonzero(_interior(truth)):
            silent = truth.calcium[k] < 1e-3
            amplitude = truth.f0[k] * truth.dff_per_spike[k] * kernel_peak * truth.footprints[k][masks[k]].mean()
            measured = amplitude / traces[k, silent].std()
            assert measured == pytest.approx(truth.snr[k], rel=0.15)
        snrs[photons] = truth.snr
    assert np.median(snrs[8.0] / snrs[2.0]) == pytest.approx(2.0, rel=0.05)
    assert 3 <= np.median(snrs[8.0]) <= 12


def test_truth_shifts_are_the_motion_in_the_movie(tmp_path):
    movie_path, truth = _experiment(tmp_path, motion_px=2.0, max_motion_px=5.0)
    movie = tifffile.imread(movie_path).astype(float)
    assert np.abs(truth.shifts_y).max() <= 5.0 and truth.shifts_y.std() > 1.0
    # content displaced by +shift is put back by moving it by -shift: a sharp reference
    rounded = np.rint(np.column_stack([truth.shifts_y, truth.shifts_x])).astype(int)
    reference = np.mean(
        [np.roll(frame, -shift, axis=(0, 1)) for frame, shift in zip(movie, rounded, strict=True)], axis=0
    )
    block = 10
    errors = []
    for start in range(0, truth.n_frames - block + 1, block):
        frames = movie[start : start + block].mean(axis=0)
        registration, _, _ = phase_cross_correlation(reference, frames, upsample_factor=10, normalization=None)
        true = [truth.shifts_y[start : start + block].mean(), truth.shifts_x[start : start + block].mean()]
        errors.append(-registration - np.asarray(true))
    errors = np.asarray(errors)
    assert np.sqrt(np.mean((errors - errors.mean(axis=0)) ** 2)) < 0.3


@pytest.mark.parametrize(("max_shift", "max_rotation"), [(10.0, 2.0), (15.0, 3.0)])
def test_session_fov_shifts_and_rotations_stay_within_the_request(max_shift, max_rotation):
    p = OphysParams(max_fov_shift_px=max_shift, max_fov_rotation_deg=max_rotation)
    transforms = [session_transform(p, container, session, 0) for container in range(40) for session in (1, 2)]
    shifts = np.array([np.hypot(*shift) for shift, _ in transforms])
    rotations = np.abs([rotation for _, rotation in transforms])
    assert shifts.max() <= max_shift and shifts.max() > 0.8 * max_shift and shifts.min() >= 0.5 * max_shift
    assert rotations.max() <= max_rotation and rotations.max() > 0.8 * max_rotation
    assert np.array_equal(session_transform(p, 7, 0, 0)[0], [0.0, 0.0])


def test_cells_keep_their_identity_and_tissue_position_across_sessions(tmp_path):
    truths = [_experiment(tmp_path, session_index=s, height=96, width=96, n_cells=40, **STILL)[1] for s in range(3)]
    first = truths[0]
    for truth in truths[1:]:
        a = np.deg2rad(truth.fov_rotation_deg)
        c = np.array([47.5, 47.5])
        shared, i0, i1 = np.intersect1d(first.cell_ids, truth.cell_ids, return_indices=True)
        assert len(shared) >= 0.5 * first.n_cells
        inside = _interior(first, 10)[i0] & _interior(truth, 10)[i1]
        rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        predicted = (first.centroids[i0] - c) @ rotation.T + c + truth.fov_shift
        assert inside.sum() >= 10 and np.abs(predicted - truth.centroids[i1])[inside].max() < 0.3
        assert 0 < np.hypot(*truth.fov_shift) <= 10.0 and abs(truth.fov_rotation_deg) <= 2.0


def test_the_fov_shift_is_visible_in_the_mean_images(tmp_path):
    images = []
    for session in (0, 1):
        movie_path, truth = _experiment(tmp_path, session_index=session, max_fov_rotation_deg=0.0, **STILL)
        images.append(tifffile.imread(movie_path).astype(float).mean(axis=0))
    shift, _, _ = phase_cross_correlation(images[0], images[1], upsample_factor=10)
    assert -shift == pytest.approx(truth.fov_shift, abs=1.0)


def test_neuropil_contaminates_each_cell_with_its_coefficient(tmp_path):
    isolated = {"overlap_pairs": 0, "absent_fraction": 0.0, "new_fraction": 0.0}
    movie_path, truth = _experiment(tmp_path, n_frames=1500, neuropil_fluctuation=0.3, **isolated, **STILL)
    traces, masks = _roi_traces(tifffile.imread(movie_path).astype(float), truth)
    union = np.zeros(truth.footprints.shape[1:], int)
    for footprint in truth.footprints:
        union += footprint > 0.02
    checked = 0
    for k in np.flatnonzero(_interior(truth, 6)):
        if (union[masks[k]] > 1).any():
            continue  # overlapping cells also see each other
        cell = truth.intensity_scale * (1.0 + truth.calcium[k])
        (_, coefficient), *_ = np.linalg.lstsq(np.column_stack([cell, truth.neuropil[k]]), traces[k], rcond=None)
        assert coefficient == pytest.approx(truth.neuropil_coef[k], abs=0.1)
        checked += 1
    assert checked >= 5
    coefficients = make_tissue(OphysParams(height=256, width=256, n_cells=200), GCAMP6F, 700003, 3, 0).neuropil_coef
    assert coefficients.mean() == pytest.approx(0.7, abs=0.03) and coefficients.std() == pytest.approx(0.1, abs=0.03)


def test_some_cells_overlap(tmp_path):
    _, truth = _experiment(tmp_path, absent_fraction=0.0, new_fraction=0.0, **STILL)
    masks = truth.footprints >= 0.5
    overlap = np.einsum("iyx,jyx->ij", masks.astype(int), masks.astype(int))
    np.fill_diagonal(overlap, 0)
    assert (np.triu(overlap) > 3).sum() >= OphysParams().overlap_pairs


def test_hdf5_movie_holds_the_same_frames_as_the_tiff(tmp_path, tiny_experiment):
    movie_path, _ = _experiment(tmp_path, movie_format="h5")
    with h5py.File(movie_path) as h5:
        frames = h5["data"][:]
        assert h5["data"].attrs["frame_rate_hz"] == 31.0 and h5["data"].attrs["pixel_size_um"] == 0.78
    assert np.array_equal(frames, tifffile.imread(tiny_experiment[0]))


def test_nonrigid_motion_is_drawn_only_when_asked(tmp_path, tiny_experiment):
    _, truth = _experiment(tmp_path, nonrigid_px=0.5)
    assert truth.nonrigid_y.std() == pytest.approx(0.5, rel=0.5) and truth.nonrigid_x.std() > 0.1
    assert not tiny_experiment[1].nonrigid_y.any()


def test_experiments_do_not_depend_on_generation_order(tmp_path):
    _experiment(tmp_path / "a", session_index=1)
    _experiment(tmp_path / "b", session_index=0)
    _experiment(tmp_path / "b", session_index=1)
    for name in ("experiment_900002.tif", "ground_truth/ophys/experiment_900002.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_impossible_requests_are_refused():
    with pytest.raises(PresetError, match="unknown override"):
        resolve_preset("tiny", n_cellz=3)
    with pytest.raises(PresetError, match="max_fov_rotation_deg"):
        resolve_preset("tiny", max_fov_rotation_deg=45.0)
    with pytest.raises(PresetError, match="unknown preset"):
        resolve_preset("huge")
    with pytest.raises(ValueError, match="cannot place 400 cells"):
        make_tissue(OphysParams(n_cells=400), GCAMP6F, 1, 3, 0)


def test_missing_truth_is_reported_with_its_path(tmp_path):
    with pytest.raises(TruthError, match="experiment_123.npz"):
        load_ophys_truth(tmp_path, 123)


@pytest.mark.slow
def test_suite2p_finds_most_cells_of_a_synthetic_movie(tmp_path):
    """suite2p 1.1 registration, then sparse detection with the Allen parameters, finds the cells.

    Allen bins the movie in 3.7 s bins; sparsery needs a few dozen bins to see a cell, so the tiny
    geometry is generated here with a longer movie (6000 frames, 52 bins). A cell is found when a
    ROI's median pixel lies within 4 px of its centroid.
    """
    torch = pytest.importorskip("torch")
    from suite2p import default_settings
    from suite2p.detection import detection_wrapper
    from suite2p.registration import registration_wrapper

    movie_path, truth = _experiment(tmp_path, n_frames=6000)
    movie = tifffile.imread(movie_path).astype(np.int16)
    settings = default_settings()
    settings["registration"]["nonrigid"] = False
    registered = registration_wrapper(movie, settings=settings["registration"], device=torch.device("cpu"))
    # registered in place; suite2p's offsets are the truth shifts up to its reference image's position
    assert np.std(registered["yoff"] - truth.shifts_y) < 0.5 and np.std(registered["xoff"] - truth.shifts_x) < 0.5
    detection = settings["detection"]
    detection.update(threshold_scaling=0.75, max_overlap=0.75, highpass_time=100, algorithm="sparsery")
    detection["sparsery_settings"]["spatial_scale"] = 0
    detection["nbins"] = int(truth.n_frames / (3.7 * truth.frame_rate))
    _, stat, _ = detection_wrapper(
        movie.astype(np.float32),
        tau=truth.decay_time_s,
        fs=truth.frame_rate,
        yrange=registered["yrange"],
        xrange=registered["xrange"],
        settings=detection,
        device=torch.device("cpu"),
    )
    detected = np.array([s["med"] for s in stat], float)
    distance = np.hypot(*(truth.centroids[:, None, :] - detected[None, :, :]).transpose(2, 0, 1))
    interior = _interior(truth, 6)
    assert interior.sum() >= 8
    assert (distance.min(axis=1) <= 4.0)[interior].mean() >= 0.8
    assert (distance.min(axis=0) <= 4.0).mean() >= 0.8  # most ROIs are cells
