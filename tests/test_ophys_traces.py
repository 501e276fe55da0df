"""Trace extraction, demixing and neuropil subtraction (docs/methods.md, 2-photon sections)."""

import numpy as np
import pytest
import scipy.sparse as sparse
from scipy.linalg import solve_banded
from scipy.ndimage import binary_dilation

from brainobs.populate.ophys.demix import demix_traces, rolling_negative_transient, two_hop_neighbours
from brainobs.populate.ophys.extraction import extract_traces, neuropil_masks
from brainobs.populate.ophys.neuropil import FoldError, correct_neuropil, estimate_neuropil, regress_neuropil
from brainobs.populate.ophys.rois import MotionBorder, RoiRecord

NO_BORDER = MotionBorder()


def record(index: int, mask: np.ndarray, labels: tuple[str, ...] = ()) -> RoiRecord:
    ys, xs = np.nonzero(mask)
    return RoiRecord(index, index, ys, xs, mask.shape, labels)


def box(shape: tuple[int, int], y0: int, x0: int, size: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[y0 : y0 + size, x0 : x0 + size] = True
    return mask


def calcium(rng: np.random.Generator, n_frames: int, rate: float = 0.03, decay: float = 0.9) -> np.ndarray:
    spikes = (rng.random(n_frames) < rate) * rng.uniform(1.0, 3.0, n_frames)
    trace = np.zeros(n_frames)
    for t in range(n_frames):
        trace[t] = (decay * trace[t - 1] if t else 0.0) + spikes[t]
    return trace


# ---------------------------------------------------------------- extraction


def test_traces_are_mask_means_and_chunking_over_a_memmap_changes_nothing(tmp_path):
    rng = np.random.default_rng(0)
    shape = (40, 48)
    movie = rng.normal(100.0, 10.0, (37, *shape)).astype(np.float32)
    path = tmp_path / "movie.bin"
    movie.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=movie.shape)
    masks = [box(shape, 5, 5, 6), box(shape, 20, 25, 7)]
    rois = [record(i, m) for i, m in enumerate(masks)]
    in_memory = extract_traces(movie, rois, NO_BORDER)
    streamed = extract_traces(mapped, rois, NO_BORDER, chunk_frames=5)
    for i, mask in enumerate(masks):
        np.testing.assert_allclose(in_memory.roi_traces[i], movie[:, mask].mean(axis=1, dtype=np.float64), rtol=1e-12)
        ys, xs = in_memory.neuropil_pixels[i]
        np.testing.assert_allclose(
            in_memory.neuropil_traces[i], movie[:, ys, xs].mean(axis=1, dtype=np.float64), rtol=1e-12
        )
    np.testing.assert_allclose(streamed.roi_traces, in_memory.roi_traces, rtol=1e-12)
    np.testing.assert_allclose(streamed.neuropil_traces, in_memory.neuropil_traces, rtol=1e-12)
    assert in_memory.exclusion_labels == [(), ()]
    assert not in_memory.excluded.any()


def test_neuropil_mask_is_13_dilations_minus_all_rois_minus_border():
    shape = (60, 60)
    centre = np.zeros(shape, dtype=bool)
    centre[30, 30] = True
    neighbour = box(shape, 35, 35, 3)  # inside the annulus; its pixels must be removed
    border = MotionBorder(right=0, left=0, down=20, up=0)  # rows < 20 are invalid
    rois = [record(0, centre), record(1, neighbour)]
    ys, xs = neuropil_masks(rois, shape, border)[0]
    got = np.zeros(shape, dtype=bool)
    got[ys, xs] = True
    expected = binary_dilation(centre, np.ones((3, 3)), iterations=13) & ~centre & ~neighbour
    expected[:20] = False
    np.testing.assert_array_equal(got, expected)
    assert got.sum() == 27 * 24 - 1 - 9  # 27x27 square cut to rows 20..43, minus both ROIs


def test_exclusion_labels_and_nan_traces():
    shape = (30, 30)
    movie = np.ones((8, *shape), dtype=np.float32)
    movie[:, :, 20:] = 0.0  # a blank margin on the right
    walled = box(shape, 0, 0, 30)
    walled[10:13, 10:13] = False
    inner = box(shape, 10, 10, 3)  # surrounded by the big ROI: no neuropil left
    rois = [
        record(0, box(shape, 2, 2, 4)),
        record(1, box(shape, 20, 22, 4)),  # all pixels 0 in every frame
        record(2, box(shape, 5, 5, 4), ("motion_border",)),
        record(3, np.zeros(shape, dtype=bool)),
    ]
    result = extract_traces(movie, rois, NO_BORDER)
    assert result.exclusion_labels == [(), ("zero_pixels",), (), ("empty_neuropil_mask", "empty_roi_mask")]
    assert result.excluded.tolist() == [False, True, True, True]
    assert np.isnan(result.roi_traces[1:]).all() and np.isnan(result.neuropil_traces[1:]).all()
    np.testing.assert_allclose(result.roi_traces[0], 1.0)
    kept = extract_traces(movie, rois, NO_BORDER, keep_motion_border=True)  # enhanced: the border ROI keeps a trace
    assert kept.exclusion_labels == result.exclusion_labels and kept.excluded.tolist() == [False, True, False, True]
    np.testing.assert_allclose(kept.roi_traces[2], 1.0)
    demixed = demix_traces(movie, rois, kept.roi_traces, keep_motion_border=True)
    assert not np.isnan(demixed.demixed_traces[2]).any()
    assert np.isnan(demix_traces(movie, rois, kept.roi_traces).demixed_traces[2]).all()
    walled_result = extract_traces(movie, [record(0, walled), record(1, inner)], NO_BORDER)
    assert walled_result.exclusion_labels[1] == ("empty_neuropil_mask",)
    assert np.isnan(walled_result.roi_traces[1]).all()


def test_frame_shape_mismatch_is_refused():
    rois = [record(0, box((10, 10), 1, 1, 3))]
    with pytest.raises(ValueError, match="made for frames"):
        extract_traces(np.zeros((4, 12, 10)), rois, NO_BORDER)


# ---------------------------------------------------------------- demixing


def overlapping_movie(rng: np.random.Generator, n_frames: int = 600):
    shape = (40, 40)
    masks = [box(shape, 10, 10, 12), box(shape, 16, 16, 12), box(shape, 2, 28, 6)]
    activity = [calcium(rng, n_frames) for _ in masks]
    movie = 10.0 + rng.normal(0.0, 0.5, (n_frames, *shape))
    for mask, trace in zip(masks, activity, strict=True):
        movie += 5.0 * trace[:, None, None] * mask
    return movie.astype(np.float32), masks, activity


def test_demixing_recovers_overlapping_cells_better_than_raw_traces():
    rng = np.random.default_rng(1)
    movie, masks, activity = overlapping_movie(rng)
    rois = [record(i, m) for i, m in enumerate(masks)]
    raw = extract_traces(movie, rois, NO_BORDER).roi_traces
    result = demix_traces(movie, rois, raw, chunk_frames=77)
    assert result.groups == [(0, 1)]
    for i in (0, 1):
        before = np.corrcoef(raw[i], activity[i])[0, 1]
        after = np.corrcoef(result.demixed_traces[i], activity[i])[0, 1]
        crosstalk_before = abs(np.corrcoef(raw[i], activity[1 - i])[0, 1])
        crosstalk_after = abs(np.corrcoef(result.demixed_traces[i], activity[1 - i])[0, 1])
        assert after > before + 0.01
        assert after > 0.99
        assert crosstalk_after < 0.5 * crosstalk_before
    np.testing.assert_allclose(result.demixed_traces[2], raw[2])  # isolated ROI: unchanged
    assert not result.dropped_frames.any() and not result.made_nan.any()


def test_a_zero_trace_value_drops_the_frame_for_every_roi_as_allen_does():
    rng = np.random.default_rng(2)
    movie, masks, _ = overlapping_movie(rng, n_frames=50)
    rois = [record(i, m) for i, m in enumerate(masks)]
    raw = extract_traces(movie, rois, NO_BORDER).roi_traces
    raw[0, 7] = 0.0
    result = demix_traces(movie, rois, raw)
    assert np.flatnonzero(result.dropped_frames).tolist() == [7]
    assert (result.demixed_traces[:, 7] == 0.0).all()  # the isolated ROI 2 too
    np.testing.assert_allclose(result.demixed_traces[2, 8:], raw[2, 8:])
    labelled = demix_traces(movie, rois, raw, exclusion_labels=[("union",), (), ()])
    assert np.isnan(labelled.demixed_traces[0]).all() and not labelled.dropped_frames.any()
    np.testing.assert_allclose(labelled.demixed_traces[1], raw[1])  # no partner left: not demixed
    assert labelled.groups == []


def test_negative_transient_and_baseline_flags():
    rng = np.random.default_rng(3)
    trace = 100.0 + rng.normal(0.0, 1.0, 2000)
    dip_10 = trace.copy()
    dip_10[1200:1210] -= 20.0
    dip_9 = trace.copy()
    dip_9[1200:1209] -= 20.0
    assert rolling_negative_transient(dip_10)
    assert not rolling_negative_transient(dip_9)
    assert not rolling_negative_transient(trace)

    shape = (20, 20)
    mask = box(shape, 5, 5, 4)
    movie = np.zeros((2000, *shape), dtype=np.float32)
    movie[:, mask] = (dip_10 - 150.0)[:, None]  # mean + std < 0
    result = demix_traces(movie, [record(0, mask)], movie[:, mask].mean(axis=1)[None].astype(np.float64))
    assert result.negative_transient.tolist() == [True]
    assert result.negative_baseline.tolist() == [True]
    assert result.made_nan.tolist() == [True] and np.isnan(result.demixed_traces[0]).all()
    assert np.isfinite(result.demixed_before_nan[0]).all()
    assert result.exclusion_labels == [("demix_error", "negative_transient")]


def test_a_zero_baseline_roi_becomes_nan_alone():
    rng = np.random.default_rng(4)
    shape = (20, 20)
    masks = [box(shape, 2, 2, 4), box(shape, 12, 12, 4)]
    movie = np.zeros((300, *shape), dtype=np.float32)
    movie[:, masks[0]] = (100.0 + rng.normal(0.0, 1.0, 300))[:, None]
    movie[:, masks[1]] = (0.5 + rng.normal(0.0, 2.0, 300))[:, None]  # mean < std
    traces = np.array([movie[:, m].mean(axis=1) for m in masks], dtype=np.float64)
    result = demix_traces(movie, [record(i, m) for i, m in enumerate(masks)], traces)
    assert result.zero_baseline.tolist() == [False, True] and result.made_nan.tolist() == [False, True]
    assert np.isfinite(result.demixed_traces[0]).all() and np.isnan(result.demixed_traces[1]).all()


def test_negative_baseline_spreads_two_overlap_hops():
    shape = (14, 40)
    masks = [box(shape, 2, 2 + 8 * i, 10) for i in range(4)]  # a chain: 0-1, 1-2, 2-3 overlap
    flat = sparse.csr_matrix(np.array([m.ravel() for m in masks], dtype=np.float64))
    seeds = np.array([True, False, False, False])
    assert two_hop_neighbours(flat, seeds).tolist() == [True, True, True, False]
    whole = sparse.csr_matrix(np.vstack([flat.toarray(), np.ones((1, flat.shape[1]))]))
    # Allen leaves a last mask covering the whole frame out of the overlap search
    assert two_hop_neighbours(whole, np.append(seeds, False)).tolist() == [True, True, True, False, False]


# ---------------------------------------------------------------- neuropil


def contaminated(rng: np.random.Generator, r_true: float, n_frames: int = 4000):
    cell = 200.0 + 80.0 * calcium(rng, n_frames, rate=0.01, decay=0.97)
    neuropil = 150.0 + 20.0 * np.convolve(rng.normal(0, 1, n_frames), np.ones(3) / 3, "same")
    return cell + r_true * neuropil + rng.normal(0, 2.0, n_frames), neuropil


def test_fold_error_matches_a_direct_banded_solve():
    rng = np.random.default_rng(4)
    fm, fn = contaminated(rng, 0.7, 803)
    error = FoldError(fm, fn)
    n = 803 // 4
    ab = np.zeros((3, n))
    ab[0, 1:] = -0.05
    ab[2, :-1] = -0.05
    ab[1] = 1.1
    ab[1, [0, -1]] = 1.05
    for r in (0.0, 0.35, 1.7):
        errs = []
        for f in range(4):
            m, nn = fm[f * n : (f + 1) * n], fn[f * n : (f + 1) * n]
            fc = solve_banded((1, 1), ab, m - r * nn)
            errs.append(abs(np.sqrt(np.mean((fc - (m - r * nn)) ** 2)) / np.mean(m)))
        assert error(r) == pytest.approx(np.mean(errs), rel=1e-9)


def test_r_is_recovered_from_a_synthetic_mixture():
    rng = np.random.default_rng(5)
    pairs = [contaminated(rng, 0.7) for _ in range(3)]
    result = estimate_neuropil(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    assert np.all(np.abs(result.r - 0.7) <= 0.1), result.r
    np.testing.assert_allclose(result.corrected, [fm - r * fn for (fm, fn), r in zip(pairs, result.r, strict=True)])
    assert np.all(result.rmse > 0)
    # Allen's search stops after 3 passes (steps 0.1, 0.01, 0.001): r lies on the 0.001 grid, within one
    # step of the true error minimum, after about 20 error evaluations per pass
    error = FoldError(*pairs[0])
    fine = np.arange(0.0, 2.0, 1e-5)
    assert result.r[0] == pytest.approx(fine[np.argmin(error(fine))], abs=1.5e-3)
    np.testing.assert_allclose(result.r * 1000, np.round(result.r * 1000), atol=1e-6)
    assert ((result.n_error_evaluations >= 60) & (result.n_error_evaluations <= 63)).all()
    assert not result.filled.any()
    np.testing.assert_array_equal(result.rmse, result.error_estimated)


def test_r_above_one_takes_the_mean_of_converged_rois_or_0_7():
    rng = np.random.default_rng(6)
    r_values = [0.5, 0.6, 0.7, 0.8, 0.9, 1.5]
    pairs = [contaminated(rng, r) for r in r_values]
    fm = np.array([p[0] for p in pairs])
    fn = np.array([p[1] for p in pairs])
    five = estimate_neuropil(fm, fn)
    assert five.r_estimated[5] > 1.0
    assert five.r[5] == pytest.approx(five.r_estimated[:5].mean())
    np.testing.assert_allclose(five.corrected[5], fm[5] - five.r[5] * fn[5])
    assert five.rmse[5] == pytest.approx(float(FoldError(fm[5], fn[5])(five.r[5])))
    four = estimate_neuropil(fm[1:], fn[1:])  # only 4 ROIs with r in (0, 1]
    assert four.r[-1] == 0.7
    np.testing.assert_allclose(four.corrected[-1], fm[5] - 0.7 * fn[5])


def test_non_positive_corrected_mean_sets_r_to_zero_and_nan_rows_pass_through():
    rng = np.random.default_rng(7)
    fm, fn = contaminated(rng, 0.9)
    fm_low = fm - 0.88 * fn.mean() - 200.0  # F_M - r F_N has a negative mean
    nan = np.full(fm.size, np.nan)
    result = estimate_neuropil(np.array([fm_low, nan, fm]), np.array([fn, fn, nan]))
    assert result.r[0] == 0.0
    np.testing.assert_array_equal(result.corrected[0], fm_low)
    assert np.isnan(result.r[1:]).all() and np.isnan(result.corrected[1:]).all() and np.isnan(result.rmse[1:]).all()


# ---------------------------------------------------------------- whole trace chain


def test_chain_from_suite2p_rois_to_events_scores_well():
    from brainobs.ingest.synthetic.scoring.traces import event_f1, trace_correlations
    from brainobs.populate.ophys.dff import compute_dff
    from brainobs.populate.ophys.events import detect_events
    from brainobs.populate.ophys.indicators import gamma
    from brainobs.populate.ophys.rois import postprocess_rois

    rng = np.random.default_rng(8)
    fs, n_frames, shape = 31.0, 2400, (48, 48)
    g = gamma(0.347, fs)
    centres = [(12, 12), (12, 34), (34, 20), (30, 30)]
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    footprints = [np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0) for cy, cx in centres]
    spikes = rng.random((len(centres), n_frames)) < 0.5 / fs
    spikes[:, :5] = False
    calcium_true = np.zeros((len(centres), n_frames))
    for t in range(1, n_frames):
        calcium_true[:, t] = g * calcium_true[:, t - 1] + spikes[:, t] * rng.uniform(0.6, 1.2, len(centres))
    neuropil = 1.0 + 0.3 * np.convolve(rng.normal(0, 1, n_frames), np.ones(5) / 5, "same")
    movie = 50.0 * neuropil[:, None, None] * np.ones(shape)
    for footprint, c in zip(footprints, calcium_true, strict=True):
        movie += 100.0 * footprint[None] * (1.0 + c[:, None, None])
    movie = (movie + rng.normal(0, 2.0, movie.shape)).astype(np.float32)

    stat = []
    for footprint in footprints:
        ys, xs = np.nonzero(footprint > 0.1)
        stat.append({"ypix": ys, "xpix": xs, "lam": footprint[ys, xs]})
    rois = postprocess_rois(stat, shape, MotionBorder(right=1, left=1, down=1, up=1)).rois
    assert [r.valid_roi for r in rois] == [True] * 4
    extracted = extract_traces(movie, rois, MotionBorder(right=1, left=1, down=1, up=1))
    demixed = demix_traces(movie, rois, extracted.roi_traces)
    assert demixed.groups == [(2, 3)]
    corrected = estimate_neuropil(demixed.demixed_traces, extracted.neuropil_traces)
    dff = compute_dff(corrected.corrected, fs, long_window_s=30.0)
    events = detect_events(dff.dff, fs, 0.347)
    match = [(i, i) for i in range(4)]
    assert np.all(trace_correlations(dff.dff, calcium_true, match) > 0.95)
    assert event_f1(events.events, spikes).f1 > 0.85


def test_baseline_regression_recovers_r_under_slow_neuropil_and_the_parameter_set_names_the_method():
    rng = np.random.default_rng(8)
    n_frames = 4000
    slow = np.convolve(rng.normal(0, 1, n_frames + 400), np.ones(120) / np.sqrt(120), "valid")[:n_frames]
    r_values = np.array([0.5, 0.7, 0.9])
    fn = np.array([150.0 + 15.0 * slow + rng.normal(0, 2.0, n_frames) for _ in r_values])
    cells = np.array([200.0 + 80.0 * calcium(rng, n_frames, rate=0.01, decay=0.97) for _ in r_values])
    fm = cells + r_values[:, None] * fn + rng.normal(0, 2.0, fn.shape)
    regressed = regress_neuropil(fm, fn)
    assert np.all(np.abs(regressed.r - r_values) <= 0.05), regressed.r
    np.testing.assert_allclose(regressed.corrected, fm - regressed.r[:, None] * fn)
    assert not regressed.filled.any() and (regressed.rmse > 0).all()
    allen = estimate_neuropil(fm, fn)
    params = {"neuropil_lambda": 0.05, "neuropil_folds": 4}
    np.testing.assert_array_equal(correct_neuropil(fm, fn, params).r, allen.r)
    np.testing.assert_array_equal(
        correct_neuropil(fm, fn, {**params, "neuropil_method": "baseline_regression"}).r, regressed.r
    )
    with pytest.raises(ValueError, match="neuropil_method"):
        correct_neuropil(fm, fn, {**params, "neuropil_method": "fixed"})
    nan = np.full(n_frames, np.nan)
    assert np.isnan(regress_neuropil(np.array([nan]), fn[:1]).r).all()
