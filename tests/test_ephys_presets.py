"""Release filter presets, preprocessing and sorter presets, and their errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import spikeinterface.sorters as ss
from spikeinterface.core import generate_recording

from brainobs.populate.ephys import sorting as sorting_mod
from brainobs.populate.ephys.filters import filter_units
from brainobs.populate.ephys.preprocessing import has_inter_sample_shift, preprocess
from brainobs.populate.ephys.presets import PREPROCESSING_PRESETS, SORTER_PRESETS, UNIT_FILTER_PRESETS
from brainobs.populate.ephys.sorting import SorterUnavailableError, run_sorter, sorter_problems


@pytest.fixture
def units() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unit_id": [0, 1, 2, 3, 4, 5, 6],
            "amplitude_cutoff": [0.05, 0.1, 0.11, 0.0, 0.02, np.nan, 0.01],
            "presence_ratio": [0.99, 0.95, 0.99, 0.94, 0.99, 0.99, 0.99],
            "isi_violations": [0.1, 0.5, 0.0, 0.0, 0.51, 0.0, 0.2],
            "quality": ["good", "good", "good", "good", "good", "good", "noise"],
            "in_brain": [True, True, True, True, True, True, True],
        }
    )


def test_visual_coding_thresholds_are_pinned():
    assert UNIT_FILTER_PRESETS["visual_coding"] == [
        ("amplitude_cutoff", "<=", 0.1),
        ("presence_ratio", ">=", 0.95),
        ("isi_violations", "<=", 0.5),
        ("quality", "==", "good"),
        ("in_brain", "==", True),
    ]
    assert UNIT_FILTER_PRESETS["visual_behavior"] == [("in_brain", "==", True), ("quality", "==", "good")]
    json.dumps([PREPROCESSING_PRESETS, SORTER_PRESETS, UNIT_FILTER_PRESETS])  # presets are plain data


def test_visual_coding_keeps_boundary_values(units):
    kept = filter_units(units, "visual_coding")
    # 2: cutoff 0.11; 3: presence 0.94; 4: isi 0.51; 5: cutoff NaN; 6: noise
    assert kept["unit_id"].tolist() == [0, 1]


def test_out_of_brain_units_are_dropped(units):
    units.loc[0, "in_brain"] = False
    assert filter_units(units, "visual_coding")["unit_id"].tolist() == [1]


def test_visual_behavior_keeps_good_in_brain_units_whatever_their_metrics(units):
    units.loc[[2, 5], "in_brain"] = False
    kept = filter_units(units, "visual_behavior")
    assert kept["unit_id"].tolist() == [0, 1, 3, 4]  # 3: presence 0.94 and 4: isi 0.51 are kept; 6 is noise


def test_filter_errors(units):
    with pytest.raises(ValueError, match=r"needs columns \['in_brain'\]"):
        filter_units(units.drop(columns="in_brain"), "visual_coding")
    with pytest.raises(ValueError, match="unknown unit filter preset 'vc'"):
        filter_units(units, "vc")
    with pytest.raises(ValueError, match="a filter condition is"):
        filter_units(units, [("snr", "~", 3)])
    assert filter_units(units, [("presence_ratio", "<", 0.95)])["unit_id"].tolist() == [3]


def test_kilosort4_needs_gpu_and_package(monkeypatch, tmp_path):
    monkeypatch.setattr(sorting_mod, "_package_installed", lambda name: False)
    monkeypatch.setattr(sorting_mod, "_cuda_available", lambda: False)
    problems = sorter_problems("kilosort4")
    assert problems == [
        "kilosort4 needs the Python package 'kilosort', which is not installed (pip install kilosort)",
        "kilosort4 needs a CUDA GPU, and torch.cuda.is_available() is False on this machine",
    ]
    recording = generate_recording(num_channels=4, durations=[0.1], seed=0)
    with pytest.raises(SorterUnavailableError, match="kilosort.*not installed.*CUDA GPU"):
        run_sorter(recording, "kilosort4", tmp_path / "ks4")
    assert not (tmp_path / "ks4").exists()


def test_kilosort4_gpu_only_missing(monkeypatch):
    monkeypatch.setattr(sorting_mod, "_package_installed", lambda name: True)
    monkeypatch.setattr(sorting_mod, "_cuda_available", lambda: False)
    assert sorter_problems("kilosort4") == [
        "kilosort4 needs a CUDA GPU, and torch.cuda.is_available() is False on this machine"
    ]


def test_cpu_default_can_run_here():
    assert not SORTER_PRESETS["cpu_default"]["requires_gpu"]
    assert sorter_problems("cpu_default") == []
    with pytest.raises(ValueError, match="unknown sorter preset 'mountainsort'"):
        sorter_problems("mountainsort")
    assert sorter_problems({"sorter_name": "nosuchsorter"}) == [
        f"SpikeInterface does not list nosuchsorter among its installed sorters {ss.installed_sorters()}"
    ]


def test_sorter_crash_is_a_clear_error(tmp_path):
    recording = generate_recording(num_channels=4, durations=[0.05], seed=0)
    bad = {"sorter_name": "lupin", "params": {"no_such_parameter": 1}}
    with pytest.raises(sorting_mod.SortingFailedError, match="lupin failed on 4 channels"):
        run_sorter(recording, bad, tmp_path / "out")


def test_preprocess_chain():
    recording = generate_recording(num_channels=8, durations=[1.0], seed=0)
    assert not has_inter_sample_shift(recording)
    processed = preprocess(recording, "allen")
    assert processed.get_dtype() == np.float32
    traces = processed.get_traces(start_frame=5000, end_frame=25000)
    # common median reference: the median across channels is zero at every sample
    np.testing.assert_allclose(np.median(traces, axis=1), 0.0, atol=1e-4)
    recording.set_property("inter_sample_shift", np.linspace(0, 0.5, 8))
    assert has_inter_sample_shift(recording)
    assert "PhaseShift" in repr(preprocess(recording, "bandpass").get_parent().get_parent())
    with pytest.raises(ValueError, match="filter must be one of"):
        preprocess(recording, {"filter": "lowpass", "freq_min": 1, "common_reference": None})


def test_every_cpu_preset_filters_once():
    """A CPU preset whose sorter filtered the raw traces would filter every sample twice (issue #22)."""
    cpu = [name for name, preset in SORTER_PRESETS.items() if not preset["requires_gpu"]]
    assert cpu == ["cpu_default", "tridesclous2", "spykingcircus2"]
    assert all(sorting_mod.shares_traces(name) for name in cpu)
    assert not sorting_mod.shares_traces("kilosort4")  # filters on the GPU


def test_the_default_preset_filters_once_with_lupins_own_chain():
    """cpu_default hands lupin brainobs's traces: they must be lupin's own filter and whitening."""
    lupin = ss.get_default_sorter_params("lupin")
    preset, chain = SORTER_PRESETS["cpu_default"], PREPROCESSING_PRESETS["lupin"]
    assert preset["preprocessing"] == "lupin" and preset["sorter_name"] == "lupin"
    assert preset["shared_whitening_radius_um"] == lupin["whitening_radius_um"]
    assert (chain["freq_min"], chain["freq_max"]) == (lupin["freq_min"], lupin["freq_max"])
    assert (chain["filter"], chain["ftype"], chain["filter_order"]) == ("bandpass", "bessel", 2)
    assert chain["common_reference"] == "median" and chain["reference_min_channels"] == 32
    assert not lupin["apply_motion_correction"]  # lupin corrects motion only on its own chain


@pytest.mark.parametrize("name", ["tridesclous2", "spykingcircus2"])
def test_the_other_cpu_presets_filter_once_with_their_sorters_own_chain(name):
    """tridesclous2 and spykingcircus2 read brainobs's traces too: each sorter's own band and whitening radius."""
    import inspect

    import spikeinterface.preprocessing as spre

    defaults = ss.get_default_sorter_params(name)
    preset = SORTER_PRESETS[name]
    chain = PREPROCESSING_PRESETS[preset["preprocessing"]]
    band = defaults.get("filtering", defaults)  # spykingcircus2 nests its filter in "filtering"
    assert (chain["freq_min"], chain["freq_max"]) == (band["freq_min"], band["freq_max"])
    assert (chain["ftype"], chain["filter_order"], chain["reference_min_channels"]) == ("bessel", 2, 32)
    assert band.get("ftype", "bessel") == "bessel" and band.get("filter_order", 2) == 2
    whitening = defaults.get("whitening", {"mode": "local"})
    radius = whitening.get("radius_um", inspect.signature(spre.whiten).parameters["radius_um"].default)
    assert whitening["mode"] == "local" and preset["shared_whitening_radius_um"] == radius
    assert not preset["params"].get("apply_motion_correction", defaults.get("apply_motion_correction"))
