"""The 2-photon parameter presets: ``allen`` (Allen Brain Observatory), ``allen_short_movies`` and ``enhanced``.

One flat, JSON-serialisable dict per preset: a parameter-set table hashes it, so the same values can never
be stored under two names. Keys are prefixed by the stage that reads them. Values follow docs/methods.md;
where Allen leaves a suite2p setting at its default, that default is written here so the hash covers every
value handed to suite2p.

``allen`` reproduces Allen's algorithms (checked by ``brainobs conformance``); like Allen's dF/F module it
refuses a movie shorter than the 600 s baseline window. ``allen_short_movies`` differs in one value: such a
movie gets the longest odd window it holds (``dff_clamp_long_window``), recorded per DeltaFOverF row.

``enhanced`` trades comparability with Allen for accuracy against ground truth (docs/methods.md, "The
enhanced preset"): suite2p's non-rigid block pass with sub-pixel rigid offsets, 1 s detection bins (suite2p's
own default for a 1 s indicator time constant) with suite2p's default detection threshold, traces for ROIs
on the motion border, neuropil contamination ratios by baseline regression, events by thresholded OASIS
deconvolution tuned on ground-truth movies, and the image-based decrosstalk of mesoscope pairs. Its extra keys
(``registration_subpixel_rigid``, ``registration_subpixel_whitening``, ``traces_keep_motion_border``,
``neuropil_method``, ``events_method``, ``events_rise_time_s``, ``events_min_jump``, ``decrosstalk_method``,
``decrosstalk_leak_ratio``, ``decrosstalk_image_*``) are absent from the Allen presets, whose hashes therefore stay
the same; the code reads them with Allen's behaviour as default.
"""

from __future__ import annotations

from typing import Any

from brainobs.populate.ophys.decrosstalk import DECROSSTALK_PARAMS
from brainobs.populate.ophys.decrosstalk_image import IMAGE_PARAMS
from brainobs.populate.ophys.dff import LONG_WINDOW_S, SHORT_WINDOW_S
from brainobs.populate.ophys.neuropil import FOLDS, SMOOTHING
from brainobs.populate.ophys.rois import ASPECT_RATIO_THRESHOLD, BINARY_QUANTILE, NPIXEL_THRESHOLD

ALLEN_OPHYS_PARAMS: dict[str, Any] = {
    # --- motion correction (suite2p rigid phase correlation, optional non-rigid pass)
    "registration_nonrigid": False,
    "registration_reference_max_frames": 5000,  # frames sampled evenly for the reference image
    "registration_maxregshift": 0.2,  # fraction of the frame's smaller side
    "registration_smooth_sigma": 1.15,  # px, spatial smoothing of the phase correlation
    "registration_smooth_sigma_time": 0.0,  # frames, temporal smoothing of the phase correlation
    "registration_spatial_taper": 3.45,  # px, suite2p default
    "registration_norm_frames": True,  # suite2p default: clip frames to the reference's 1-99th percentile
    "registration_batch_size": 500,
    "registration_snr_thresh": 1.2,  # non-rigid: blocks below this SNR are smoothed
    "registration_block_size": [128, 128],  # non-rigid block (height, width), px
    "registration_maxregshift_nonrigid": 5,  # px, non-rigid shift relative to the rigid one
    "registration_subpixel": 10,  # non-rigid subpixel precision (1/subpixel px), suite2p default
    "registration_empty_frame_sigma": 5.0,  # robust (IQR) sigmas below the median frame mean
    "registration_outlier_detrend_window_s": 3.0,  # median filter on the offsets
    "registration_outlier_max_shift_fraction": 0.05,  # residual clip, fraction of frame size (25 px at 512)
    "registration_motion_border_max_shift_px": 30.0,  # larger shifts are outliers for the motion border
    # --- segmentation (suite2p sparse detection, no classifier)
    "segmentation_bin_duration_s": 3.7,  # nbinned = nframes / (3.7 * fs)
    "segmentation_spatial_scale": 0,  # 0 = multi-scale, estimated from the data
    "segmentation_threshold_scaling": 0.75,
    "segmentation_max_overlap": 0.75,
    "segmentation_highpass_time_bins": 100,  # running-mean high-pass over binned frames
    "segmentation_highpass_neuropil_px": 25,  # spatial high-pass before detection, suite2p default
    "segmentation_max_rois": 5000,
    "segmentation_diameter_px": 12,  # only for suite2p's soma crop and size normalisation
    "segmentation_soma_crop": True,
    "segmentation_npix_norm_min": 0.0,
    "segmentation_npix_norm_max": 100.0,
    # --- ROI post-processing (Allen)
    "roi_aspect_ratio_threshold": ASPECT_RATIO_THRESHOLD,  # dropped when min(h/w, w/h) <= this
    "roi_binary_quantile": BINARY_QUANTILE,  # mask = weights >= this quantile of the ROI's weights
    "roi_npixel_threshold": NPIXEL_THRESHOLD,  # small_size when the mask has <= this many pixels
    # --- neuropil subtraction
    "neuropil_lambda": SMOOTHING,  # smoothness of F_C in the r fit
    "neuropil_folds": FOLDS,
    # --- dF/F
    "dff_long_window_s": LONG_WINDOW_S,
    "dff_short_window_s": SHORT_WINDOW_S,
    "dff_clamp_long_window": False,  # True: movies shorter than the long window use the longest one they hold
    # --- L0 events
    "events_noise_multiplier": None,  # None: 2.6 near 11 Hz, 2.0 near 31 Hz (Allen's rule); required elsewhere
    "events_decay_time_s": None,  # None: the subject's (Allen's genotype table, else its manifest decay_time)
    "events_solver": "fastlzero",  # Allen's FastLZero; "exact" = global optimum, departs from Allen (methods.md)
    # --- decrosstalk of paired mesoscope planes (Allen's ophys_etl method)
    **DECROSSTALK_PARAMS,
}


ENHANCED_OPHYS_PARAMS: dict[str, Any] = {
    **ALLEN_OPHYS_PARAMS,
    # registration: suite2p's non-rigid pass; the rigid offsets stored are sub-pixel (integer rigid shift plus
    # the fraction of a second whole-frame pass), what the pass applies to the frame on average
    "registration_nonrigid": True,
    "registration_subpixel_rigid": True,
    # the sub-pixel pass divides the spectra by their magnitude ** 0.25, not the whole magnitude: at low photon
    # counts phase correlation's full whitening lets noise at weak spatial frequencies move the peak (chosen on
    # seed 1 among 1, 0.75, 0.5, 0.25: docs/methods.md, "The enhanced preset")
    "registration_subpixel_whitening": 0.25,
    # the reference image from 400 frames sampled evenly (suite2p's own default, nimg_init), not Allen's 5000:
    # each of its 8 refinement passes phase-correlates every sampled frame, which took 28 s of a 512 px,
    # 2000-frame movie's 64 s registration with all 2000 frames
    "registration_reference_max_frames": 400,
    # the non-rigid pass holds every block of a batch as complex spectra: registering 600 frames of a 512 px
    # movie peaked at 13.4 GB with 500-frame batches, 3.4 GB with 100 (suite2p's default), 1.7 GB with 25
    # (and took 51 s with 100, 43 s with 25)
    "registration_batch_size": 25,
    # detection: 1 s bins keep ~65 bins in a 2000-frame movie at 31 Hz (Allen's 3.7 s leave 17); suite2p's
    # default threshold_scaling
    "segmentation_bin_duration_s": 1.0,
    "segmentation_threshold_scaling": 1.0,
    # traces: ROIs crossing the motion border (within the largest shift of the frame's edge) keep their traces
    # and their label; Allen gives them NaN traces, so their cells' events are lost
    "traces_keep_motion_border": True,
    # neuropil: r is the slope of the ROI trace against its neuropil trace over frames without transients
    # (docs/methods.md, "The enhanced preset"); Allen's smoothness search underestimates r
    "neuropil_method": "baseline_regression",
    # dF/F: synthetic and short movies do not hold the 600 s window
    "dff_clamp_long_window": True,
    # events: thresholded OASIS deconvolution with the indicator's rise removed (docs/methods.md, "The enhanced
    # preset"); rise time, smallest jump and smallest event (noise sigmas) tuned on ground truth, seed 1 only
    # (python -m benchmarks.bench_ophys_accuracy --tune)
    "events_method": "oasis",
    "events_rise_time_s": 0.05,
    "events_min_jump": 0.5,
    "events_noise_multiplier": 1.5,
    # decrosstalk: the pair's mixing estimated once from both raw movies (mutual information of the high-passed
    # activity minimised), every ROI unmixed by it with the partner's trace from its raw movie moved by this
    # plane's registration (the same scan points; the planes are registered separately), then Allen's ghost
    # test (docs/methods.md)
    "decrosstalk_method": "image",
    # and the leak test: an unmixed ROI whose partner's light varies more than 0.4 x its own plane's is a ghost
    # too (chosen on seeds 3-5 of the multiplane preset, midway between the largest ratio of a true cell, 0.36,
    # and the next true ghost's, 0.45; scored on seeds 0-2: docs/methods.md)
    "decrosstalk_leak_ratio": 0.4,
    **IMAGE_PARAMS,
}


OPHYS_PRESETS: dict[str, tuple[dict[str, Any], str]] = {
    "allen": (ALLEN_OPHYS_PARAMS, "Allen Brain Observatory preset"),
    "allen_short_movies": (
        {**ALLEN_OPHYS_PARAMS, "dff_clamp_long_window": True},
        "Allen preset; movies shorter than the 600 s dF/F window use the longest window they hold",
    ),
    "enhanced": (
        ENHANCED_OPHYS_PARAMS,
        "accuracy over Allen comparability: non-rigid sub-pixel registration, 1 s detection bins, "
        "baseline-regression neuropil, OASIS events",
    ),
}


def allen_ophys_params(**overrides: Any) -> dict[str, Any]:
    """A copy of `ALLEN_OPHYS_PARAMS` with ``overrides`` applied; unknown keys are refused."""
    unknown = sorted(set(overrides) - set(ALLEN_OPHYS_PARAMS))
    if unknown:
        raise KeyError(f"unknown ophys parameters {unknown}; known: {sorted(ALLEN_OPHYS_PARAMS)}")
    params = {key: (list(value) if isinstance(value, list) else value) for key, value in ALLEN_OPHYS_PARAMS.items()}
    params.update(overrides)
    return params
