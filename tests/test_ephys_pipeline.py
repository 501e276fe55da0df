"""Per-unit records and metrics from a sorting of a tiny generated recording; end-to-end sort (slow)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import spikeinterface as si
from spikeinterface.core import NumpySorting

from brainobs.ingest.ephys_files import open_recording
from brainobs.ingest.synthetic.ephys import load_truth, write_recording
from brainobs.ingest.synthetic.scoring.ephys import score_sorting
from brainobs.populate.ephys.metrics import METRIC_COLUMNS
from brainobs.populate.ephys.pipeline import UNIT_COLUMNS, curate_units
from brainobs.populate.ephys.preprocessing import (
    CACHE_ENV,
    HeldRecording,
    available_memory,
    held_for_sorter,
    held_in_memory,
    inverse_without_subnormals,
    preprocess,
    sorter_input,
)
from brainobs.populate.ephys.sorting import run_sorter, shares_traces, sorter_problems

FS = 30000.0
T_START = 100.0
# a preset whose sorter filters the raw traces itself, as kilosort4 does (and cpu_default's lupin when the traces
# are too large to hold)
RAW_FILTERING = {"sorter_name": "lupin", "params": {"seed": 0}, "requires_gpu": False, "requires_packages": []}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ephys_pipeline")
    manifest = write_recording(
        root / "rec", root / "truth", num_channels=16, duration_s=10.0, seed=8, t_start_s=T_START
    )
    recording = open_recording(
        "binary", root / "rec" / manifest["recording_path"], root / "rec" / manifest["probe_file"], FS, 16
    )
    truth, units = load_truth(root / "truth")
    return root, preprocess(recording), truth, units, recording


def test_curate_truth_units(tiny):
    _, recording, truth, truth_units, _ = tiny
    result = curate_units(recording, truth)  # t_start_s from the files
    units, metrics = result.units, result.metrics
    assert units["unit_id"].tolist() == truth_units["unit_id"].tolist()
    assert list(metrics.columns) == list(METRIC_COLUMNS)
    for row, truth_row in zip(units.itertuples(), truth_units.itertuples(), strict=True):
        samples = truth.get_unit_spike_train(row.unit_id)
        kept = row.num_spikes + row.duplicates_removed
        assert kept == samples.size
        assert row.spike_times[0] == pytest.approx(T_START + samples[0] / FS)  # session clock
        assert row.spike_times.size == row.spike_amplitudes.size == row.num_spikes
        assert row.mean_waveform.shape == (82, 16)  # every channel of the probe
        if truth_row.snr >= 5:
            # the trough sits at sample 20 on the peak channel (truth spikes are aligned on it)
            assert abs(int(np.argmin(row.mean_waveform[:, row.peak_channel])) - 20) <= 1
            assert row.quality == "good"  # a clean truth unit passes the noise checks
            # peak-to-peak (Allen) and absolute-peak (truth) channels may differ, but not by much
            assert abs(row.peak_channel - truth_row.peak_channel) <= 4
    # well-isolated truth units: high hit rate, no refractory violations, plausible shapes
    assert (metrics["isi_violations"] == 0).all() and (metrics["isi_violations_corrected"] == 0).all()
    # Allen's 2D features on the full mean waveform: a spike spans some sites, at most the 17 sampled
    assert metrics["spread"].between(10.0, 170.0).all() and (metrics["amplitude"] > 0).all()
    assert (metrics["nn_hit_rate"] > 0.8).all()
    assert metrics["waveform_duration"].between(0.2, 1.5).all()
    assert (metrics["presence_ratio"] <= 0.99).all()
    spans = [t.max() - t.min() for t in units["spike_times"]]
    assert metrics["firing_rate"].max() == pytest.approx(units["num_spikes"].max() / max(spans), rel=0.01)
    # Allen's SNR ranks units like the generator's SNR
    order = np.corrcoef(np.argsort(np.argsort(metrics["snr"])), np.argsort(np.argsort(truth_units["snr"])))
    assert order[0, 1] > 0.5


def test_pc_features_project_every_channel_on_one_temporal_basis(tiny):
    """Each random spike on each channel of its unit, projected on the leading temporal PCs of all of them:
    sklearn's PCA of the same waveforms, up to each component's sign, whatever the chunk size."""
    from sklearn.decomposition import PCA

    from brainobs.populate.ephys.metrics import temporal_pc_features

    _, recording, truth, _, _ = tiny
    analyzer = curate_units(recording, truth, with_metrics=False).analyzer
    features = temporal_pc_features(analyzer, chunk_spikes=7)
    waveforms = analyzer.get_extension("waveforms").get_data()
    widths = analyzer.sparsity.mask.sum(axis=1)[
        analyzer.get_extension("random_spikes").get_random_spikes()["unit_index"]
    ]
    assert features.shape == (len(waveforms), 3, waveforms.shape[2]) and features.dtype == np.float32
    rows = np.concatenate([waveforms[i, :, :width].T for i, width in enumerate(widths)])
    expected = PCA(n_components=3).fit_transform(rows.astype(np.float64))
    got = np.concatenate([features[i, :, :width].T for i, width in enumerate(widths)])
    signs = np.sign((got * expected).sum(axis=0))
    np.testing.assert_allclose(got, expected * signs, atol=1e-3 * np.abs(expected).max())
    assert all(not features[i, :, width:].any() for i, width in enumerate(widths))  # past a unit's channels


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["cpu_default", "tridesclous2", "spykingcircus2", "kilosort4"])
def test_each_sorter_preset_finds_the_tiny_truth(tiny, tmp_path, preset):
    problems = sorter_problems(preset)
    if problems:  # kilosort4 without a GPU; the CPU presets always run where `make install` ran
        assert preset == "kilosort4", problems
        pytest.skip("; ".join(problems))
    _, recording, truth, truth_units, raw = tiny
    mapped_before = _shared_memory_mapped()
    started = time.perf_counter()
    sorting = run_sorter(sorter_input(raw), preset, tmp_path / "sorter", n_jobs=1)  # as SpikeSorting
    elapsed = time.perf_counter() - started
    # what the sorter held is back with the system (lupin's shared-memory trace cache is no longer mapped)
    assert _shared_memory_mapped() <= mapped_before
    # the folder names the raw file as the sorter's input: brainobs's filters are not applied before it
    dumped = si.load(tmp_path / "sorter" / "spikeinterface_recording.json")
    np.testing.assert_array_equal(dumped.get_traces(end_frame=3000), raw.get_traces(end_frame=3000))
    score = score_sorting(sorting, truth, truth_units)
    print(f"{preset} sorted 10 s x 16 channels in {elapsed:.1f} s: {score.summary()}")
    assert (truth_units["snr"] >= 5).sum() >= 3
    assert score.fraction_high_snr_well_detected >= 0.7
    high = score.per_unit[score.per_unit["snr"] >= 5]
    assert high["accuracy"].median() >= 0.8


def test_spike_sorting_sorts_the_raw_traces_then_curates_once(tiny, tmp_path, monkeypatch):
    """SpikeSorting's one core call for a preset whose sorter filters (RAW_FILTERING): the sorter on the raw
    traces in output_dir/sorter, then the units and the SortingAnalyzer (replacing a stale one) from brainobs's
    own chain."""
    from brainobs.populate.ephys import spike_sorting as core
    from brainobs.populate.ephys.presets import NOISE_TEMPLATE_PARAMS, PREPROCESSING_PRESETS

    _, _, truth, truth_units, raw = tiny
    calls = []

    def fake_run_sorter(recording, preset, output_folder, **kwargs):
        calls.append((recording, preset, output_folder, kwargs))
        return truth

    monkeypatch.setattr(core, "run_sorter", fake_run_sorter)
    stale = tmp_path / core.ANALYZER_FOLDER / "stale.txt"
    stale.parent.mkdir()
    stale.write_text("from an earlier run")
    params = {
        "preprocessing": PREPROCESSING_PRESETS["allen"],
        "sorter": RAW_FILTERING,
        "noise": NOISE_TEMPLATE_PARAMS,
    }
    units = core.spike_sorting(raw, params, tmp_path, n_jobs=1)
    ((handed, preset, folder, kwargs),) = calls
    assert handed is raw and preset == params["sorter"] and folder == tmp_path / core.SORTER_FOLDER
    assert kwargs == {"n_jobs": 1}
    assert list(units.columns) == list(UNIT_COLUMNS)
    assert units["unit_id"].tolist() == truth_units["unit_id"].tolist()
    assert (units["num_spikes"] + units["duplicates_removed"]).sum() == truth.to_spike_vector().size
    assert not stale.exists()
    analyzer = si.load_sorting_analyzer(tmp_path / core.ANALYZER_FOLDER)
    assert list(analyzer.unit_ids) == units["unit_id"].tolist()
    assert "CommonReferenceRecording" in str(analyzer.recording.to_dict())  # brainobs's chain, not the raw file


def test_sorter_failure_names_the_sorter_and_folder(tiny, tmp_path):
    from brainobs.populate.ephys.sorting import SortingFailedError

    raw = tiny[4]
    preset = {"sorter_name": "lupin", "params": {"no_such_parameter": 1}}
    with pytest.raises(SortingFailedError, match=r"(?s)lupin failed on 16 channels .*no_such_parameter.*; see "):
        run_sorter(sorter_input(raw), preset, tmp_path / "sorter", n_jobs=1)


def _shared_memory_mapped() -> set[str]:
    """The POSIX shared-memory segments (/dev/shm, semaphores aside) this process maps, unlinked ones included."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[5] for line in maps if "/dev/shm/" in line}
    return {path for path in paths if not path.startswith("/dev/shm/sem.")}


def test_units_without_spikes_give_empty_tables(tiny):
    _, recording, truth, _, _ = tiny
    empty = NumpySorting.from_unit_dict([{7: np.array([], dtype=np.int64)}], FS)
    result = curate_units(recording, empty)
    assert result.units.empty and result.metrics.empty and result.analyzer is None
    assert list(result.metrics.columns) == list(METRIC_COLUMNS)
    assert list(result.units.columns) == list(UNIT_COLUMNS)


def test_held_traces_equal_lazy_and_respect_the_limit(tiny):
    _, recording, _, _, _ = tiny
    with held_in_memory(recording) as held:
        assert isinstance(held, HeldRecording)
        frames = {"start_frame": 1000, "end_frame": 31000}
        # equal up to the filter's chunk-edge effects: a lazy read filters the window asked for, with margins
        np.testing.assert_allclose(held.get_traces(**frames), recording.get_traces(**frames), atol=0.01)
        assert held.get_dtype() == np.float32 and held.get_num_samples() == recording.get_num_samples()
        assert held.get_start_time() == T_START
        # run_sorter dumps its input and reloads it: the reload reads the same memory, with the probe
        assert held.check_serializability("pickle") and not held.check_serializability("json")
        reloaded = si.load(held.to_dict(include_properties=True))
        assert np.shares_memory(reloaded.get_traces(end_frame=10), held.get_traces(end_frame=10))
        np.testing.assert_array_equal(reloaded.get_channel_locations(), recording.get_channel_locations())
        handle = held.to_dict()
    with pytest.raises(RuntimeError, match="no preprocessed traces are held under"):
        si.load(handle)  # released on leaving the block
    too_small = recording.get_num_samples() * recording.get_num_channels() * 4 - 1
    with held_in_memory(recording, max_bytes=too_small) as lazy:
        assert lazy is recording
    assert available_memory() > 0


def test_cache_bound_is_a_setting(tiny, monkeypatch):
    _, recording, _, _, _ = tiny
    monkeypatch.setenv(CACHE_ENV, "0")  # the chunked fallback: every pass reads the lazy chain
    with held_in_memory(recording) as lazy:
        assert lazy is recording
    size = recording.get_num_samples() * recording.get_num_channels() * 4
    monkeypatch.setenv(CACHE_ENV, str(size))
    with held_in_memory(recording) as held:
        assert isinstance(held, HeldRecording)
    for bad in ("8GiB", "-1"):
        monkeypatch.setenv(CACHE_ENV, bad)
        with pytest.raises(ValueError, match=CACHE_ENV), held_in_memory(recording):
            pass


def test_sorter_reads_the_raw_recording_with_its_own_filter_on(tiny, tmp_path, monkeypatch):
    """brainobs's filter and reference are not applied before the sorter, whose own preprocessing stays on."""
    import spikeinterface.sorters as ss

    from brainobs.populate.ephys import sorting as sorting_mod

    _, recording, truth, _, raw = tiny
    handed = sorter_input(raw)
    assert handed is raw  # no inter-sample shift: nothing to do before the sorter
    chain = str(recording.to_dict(recursive=True))
    assert "HighpassFilterRecording" in chain and "CommonReferenceRecording" in chain
    assert "Filter" not in str(handed.to_dict(recursive=True))
    seen = {}

    def fake_run_sorter(name, rec, **kwargs):
        seen.update(name=name, recording=rec, params=kwargs)
        return truth

    monkeypatch.setattr(ss, "run_sorter", fake_run_sorter)
    run_sorter(handed, "cpu_default", tmp_path / "sorter", n_jobs=1)
    assert seen["recording"] is raw and seen["name"] == "lupin"
    assert seen["params"].get("apply_preprocessing", True) is True
    for off in ({"apply_preprocessing": False}, {"skip_kilosort_preprocessing": True}):
        preset = {"sorter_name": "lupin", "params": off}
        assert sorting_mod.own_preprocessing_off(preset) == off
        with pytest.raises(ValueError, match="must filter it itself"):
            run_sorter(handed, preset, tmp_path / "off")
    shifted = raw.clone()
    shifted.set_property("inter_sample_shift", np.linspace(0, 0.5, raw.get_num_channels()))
    assert "PhaseShiftRecording" in str(sorter_input(shifted).to_dict())


def test_traces_held_for_the_sorter_are_whitened_then_unwhitened_in_place(tiny):
    """One filter pass serves both: the sorter reads whitened traces, the waveform passes the same arrays
    multiplied back by the inverse whitening matrix, equal to the lazy preprocessed chain."""
    import spikeinterface.preprocessing as spre

    _, _, _, _, raw = tiny
    recording = preprocess(raw, "lupin")
    chain = str(recording.to_dict(recursive=True))
    assert "BandpassFilterRecording" in chain and "CommonReferenceRecording" not in chain  # 16 < 32 channels
    frames = {"start_frame": 1000, "end_frame": 31000}
    with held_for_sorter(recording, radius_um=100.0, seed=0) as held:
        whitened = held.whitened
        lazy = spre.whiten(recording, dtype="float32", mode="local", radius_um=100.0, seed=0)
        np.testing.assert_allclose(held.W, np.asarray(lazy._kwargs["W"]), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(whitened.get_traces(**frames), lazy.get_traces(**frames), atol=1e-3)
        covariance = np.cov(whitened.get_traces().T)
        assert np.allclose(np.diag(covariance), 1.0, atol=0.3)  # whitened: unit variance on every channel
        traces = held.unwhiten()
        assert isinstance(traces, HeldRecording)
        np.testing.assert_allclose(traces.get_traces(**frames), recording.get_traces(**frames), atol=0.01)
        assert np.shares_memory(traces.get_traces(end_frame=10), whitened.get_traces(end_frame=10))  # in place
    too_small = recording.get_num_samples() * recording.get_num_channels() * 4 - 1
    with held_for_sorter(recording, radius_um=100.0, seed=0, max_bytes=too_small) as held:
        assert held is None  # the sorter then filters the raw traces itself


@pytest.mark.parametrize("gain", [1.0, 1e-3])
def test_whitening_matrix_is_spikeinterfaces(tiny, gain):
    """Both regularisations: eps 1e-16 for uV traces, and the one SpikeInterface derives from the median square
    of traces scaled below 1."""
    import spikeinterface.preprocessing as spre

    from brainobs.populate.ephys.preprocessing import whitening_matrix

    _, recording, _, _, _ = tiny
    scaled = spre.scale(recording, gain=gain, dtype="float32")
    theirs = spre.whiten(scaled, dtype="float32", mode="local", radius_um=100.0, seed=3)
    ours = whitening_matrix(scaled, radius_um=100.0, seed=3)
    np.testing.assert_allclose(ours, np.asarray(theirs._kwargs["W"]), rtol=1e-6)


def test_the_unwhitening_matrix_has_no_subnormal_numbers():
    """A banded whitening matrix's inverse decays into subnormal float32 numbers, which make the unwhitening
    product ~15x slower; they are set to 0 and the inverse is still the inverse."""
    n = 384
    banded = np.eye(n) + 0.45 * (np.eye(n, k=1) + np.eye(n, k=-1))
    tiny = np.finfo(np.float32).tiny
    plain = np.abs(np.linalg.inv(banded).astype(np.float32))
    assert ((plain > 0) & (plain < tiny)).any()  # the case this guards against
    inverse = inverse_without_subnormals(banded.astype(np.float32))
    assert inverse.dtype == np.float32 and not ((np.abs(inverse) > 0) & (np.abs(inverse) < tiny)).any()
    np.testing.assert_allclose(banded @ inverse, np.eye(n), atol=1e-5)


def test_unwhitening_that_does_not_give_the_traces_back_is_refused(tiny):
    _, _, _, _, raw = tiny
    recording = preprocess(raw, "lupin")
    with held_for_sorter(recording, radius_um=100.0, seed=0) as held:
        held.W = held.W * 2.0  # not the matrix the traces were whitened with
        assert held.unwhiten() is None


def test_a_sharing_preset_turns_the_sorters_filter_off_only_for_held_traces(tiny, tmp_path, monkeypatch):
    import spikeinterface.sorters as ss

    _, _, truth, _, raw = tiny
    seen = {}

    def fake_run_sorter(name, rec, **kwargs):
        seen.update(name=name, params=kwargs)
        return truth

    monkeypatch.setattr(ss, "run_sorter", fake_run_sorter)
    assert shares_traces("cpu_default") and not shares_traces(RAW_FILTERING)
    run_sorter(raw, "cpu_default", tmp_path / "raw", n_jobs=1)  # too large to hold: the sorter filters
    assert seen["params"].get("apply_preprocessing", True) is True
    run_sorter(raw, "cpu_default", tmp_path / "held", n_jobs=1, preprocessed=True)
    assert seen["params"]["apply_preprocessing"] is False and seen["params"]["seed"] == 0
    assert "apply_whitening" not in seen["params"]  # lupin has no such switch: only the sorter's own are set
    run_sorter(raw, "spykingcircus2", tmp_path / "circus", n_jobs=1, preprocessed=True)
    assert seen["name"] == "spykingcircus2" and seen["params"]["apply_preprocessing"] is False
    # it would whiten the whitened traces again, and copy them into its own cache
    assert seen["params"]["apply_whitening"] is False and seen["params"]["cache_preprocessing"] == {"mode": "no-cache"}
    with pytest.raises(ValueError, match="filters the raw traces itself"):
        run_sorter(raw, RAW_FILTERING, tmp_path / "no", n_jobs=1, preprocessed=True)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["cpu_default", "tridesclous2", "spykingcircus2"])
def test_the_cpu_presets_sort_the_held_traces(tiny, tmp_path, preset):
    """Each CPU sorter on brainobs's held, whitened traces finds the truth as on the raw file; its folder
    opens later (the held input is recorded as its lazy chain)."""
    import json

    import spikeinterface.sorters as ss

    from brainobs.populate.ephys.spike_sorting import SORTER_FOLDER, spike_sorting
    from brainobs.schemas.ephys import sorting_params

    _, _, truth, truth_units, raw = tiny
    units = spike_sorting(raw, sorting_params(preset), tmp_path, n_jobs=1)
    folder = tmp_path / SORTER_FOLDER
    sorter_params = json.loads((folder / "spikeinterface_params.json").read_text())["sorter_params"]
    assert sorter_params["apply_preprocessing"] is False
    read_back = ss.read_sorter_folder(folder)  # registers the recorded input: it must load in a new process too
    recorded = si.load(folder / "spikeinterface_recording.json")
    assert type(recorded).__name__ == "WhitenRecording" and read_back.has_recording()
    assert "BandpassFilterRecording" in str(recorded.to_dict(recursive=True))
    score = score_sorting(read_back, truth, truth_units)
    assert score.fraction_high_snr_well_detected >= 0.7
    assert len(units) and (units["quality"] == "good").sum() >= 3
    samples = raw.get_num_samples()
    for row in units.itertuples():
        assert row.mean_waveform.shape == (82, 16)
        index = np.round((np.asarray(row.spike_times) - T_START) * FS)
        if ((index >= 20) & (index + 62 <= samples)).any():  # a spike with a whole window: a mean waveform
            assert np.isfinite(row.mean_waveform).all()
        else:  # e.g. one spike on the recording's last samples (tridesclous2 found one there)
            assert row.quality == "noise"


def test_curation_on_held_traces_equals_lazy(tiny, tmp_path):
    _, recording, truth, _, _ = tiny
    lazy = curate_units(recording, truth, with_metrics=False)
    with held_in_memory(recording) as held:
        fast = curate_units(recording, truth, with_metrics=False, traces=held, analyzer_folder=tmp_path / "analyzer")
    for column in ("unit_id", "peak_channel", "num_spikes"):
        np.testing.assert_array_equal(fast.units[column], lazy.units[column])
    np.testing.assert_allclose(fast.units["snr"], lazy.units["snr"], rtol=1e-4)
    for ours, theirs in zip(fast.units["mean_waveform"], lazy.units["mean_waveform"], strict=True):
        np.testing.assert_allclose(ours, theirs, atol=0.01)

    reloaded = si.load_sorting_analyzer(tmp_path / "analyzer")  # provenance: the lazy chain, not the held copy
    assert reloaded.has_recording() and "CommonReferenceRecording" in str(reloaded.recording.to_dict())


@pytest.mark.slow
def test_sorted_units_of_clean_truth_are_not_noise(tiny, tmp_path):
    """Allen's noise rules on a real sorting: every well-detected high-SNR truth unit's match stays good."""
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    _, recording, truth, truth_units, raw = tiny
    sorting = run_sorter(sorter_input(raw), "cpu_default", tmp_path / "sorter", n_jobs=1)
    with held_in_memory(recording) as held:
        curated = curate_units(recording, sorting, traces=held, with_metrics=False)
    comparison = compare_sorter_to_ground_truth(truth, curated.sorting, exhaustive_gt=True)
    accuracy = comparison.get_performance()["accuracy"].astype(float)
    quality = curated.units.set_index("unit_id")["quality"]
    clean = truth_units[(truth_units["snr"] >= 5) & truth_units["unit_id"].map(accuracy).ge(0.8)]["unit_id"]
    assert len(clean) >= 3
    matched = comparison.hungarian_match_12[clean]
    assert (quality[matched.to_numpy()] == "good").all(), quality
    print(f"noise labels: {(quality == 'noise').sum()} of {len(quality)} sorted units")
