"""Neuropixels as tables: recording, hashed sorting parameter sets, spike sorting with per-unit rows,
and unit metrics under the Allen names.

EphysRecording -> SortingSelection (recording x parameter set) -> SpikeSorting (Part Unit) -> UnitMetrics
(Part Unit). Sorter output and the SortingAnalyzer live in the object store, not in the database; SpikeSorting.File
records each of their files' size and sha256, and UnitMetrics checks the analyzer's sizes before it opens it.
"""

from __future__ import annotations

import warnings

import datajoint as dj
import numpy as np
import pandas as pd

from brainobs.ingest.ephys_files import CCF_ANNOTATIONS, channel_geometry, open_recording
from brainobs.populate.ephys.channels import channel_noise
from brainobs.populate.ephys.filters import filter_units
from brainobs.populate.ephys.metrics import METRIC_COLUMNS, compute_unit_metrics
from brainobs.populate.ephys.presets import (
    ALLEN_METRIC_PARAMS,
    DUPLICATE_REMOVAL,
    MEAN_WAVEFORM,
    NOISE_TEMPLATE_PARAMS,
    PREPROCESSING_PRESETS,
    SORTER_PRESETS,
    WAVEFORM_METRIC_PARAMS,
)
from brainobs.populate.ephys.sorting import sorting_jobs
from brainobs.populate.ephys.spike_sorting import ANALYZER_FOLDER, spike_sorting
from brainobs.schemas import finite_or_none, stores
from brainobs.schemas.acquisition import ProbeInsertion
from brainobs.schemas.params import insert_params, paramset_definition, select_new
from brainobs.schemas.queries import frame, restrict

schema = dj.Schema()
DEFAULT_PARAMSET = "cpu_default"
PARAMSET_DESCRIPTIONS = {
    DEFAULT_PARAMSET: "CPU default: lupin on brainobs's traces, its Bessel 150-7000 Hz filter run once for all",
    "tridesclous2": "tridesclous2 (needs hdbscan: pip install 'brainobs[sorters]')",
    "spykingcircus2": "spykingcircus2, motion correction off (needs hdbscan: pip install 'brainobs[sorters]')",
    "kilosort4": "Kilosort4 (needs a GPU and kilosort: pip install 'brainobs[kilosort]')",
}
OUTSIDE_BRAIN = ("", "unknown", "root", "out of brain")


def sorting_params(sorter: str) -> dict:
    """Every parameter of one sorting preset: preprocessing, sorter, duplicates, waveforms, metrics."""
    return {
        "preprocessing": PREPROCESSING_PRESETS[SORTER_PRESETS[sorter].get("preprocessing", "allen")],
        "sorter": SORTER_PRESETS[sorter],
        "duplicate_removal": DUPLICATE_REMOVAL,
        "mean_waveform": MEAN_WAVEFORM,
        "noise": NOISE_TEMPLATE_PARAMS,
        "metrics": ALLEN_METRIC_PARAMS,
        "waveform_metrics": WAVEFORM_METRIC_PARAMS,
    }


@schema
class EphysRecording(dj.Imported):
    definition = """
    # a probe's raw recording, read and validated through SpikeInterface
    -> ProbeInsertion
    ---
    sampling_rate : float64               # Hz
    duration : float64                    # s
    n_channels : int32
    t_start : float64                     # s, session-clock time of sample 0
    """

    class Channel(dj.Part):
        definition = """
        -> master
        channel_index : int32
        ---
        channel_id : varchar(32)
        contact_id = "" : varchar(32)
        x_um : float64
        y_um : float64
        shank : int16
        location : varchar(32)             # brain structure; "unknown" outside the brain or unregistered
        noise_uv = null : float64          # std of the raw signal over sampled chunks, uV (dead-channel QC)
        ccf_ap_um = null : float64         # Allen CCF anterior-posterior coordinate (probe file), um
        ccf_dv_um = null : float64         # Allen CCF dorsal-ventral coordinate, um
        ccf_lr_um = null : float64         # Allen CCF left-right coordinate, um
        """

    def make(self, key):
        insertion = (ProbeInsertion & key).fetch1()
        recording = _open(insertion)
        location = insertion["targeted_structure"] or "unknown"
        noise = channel_noise(recording)
        self.insert1(
            {
                **key,
                "sampling_rate": recording.get_sampling_frequency(),
                "duration": recording.get_total_duration(),
                "n_channels": recording.get_num_channels(),
                "t_start": float(recording.get_start_time()),
            }
        )
        self.Channel.insert(
            {
                **key,
                **{name: row[name] for name in ("channel_index", "channel_id", "contact_id", "x_um", "y_um")},
                "shank": int(row["shank"]),
                "location": row["structure_acronym"] or location,  # the probe file's registration, else the target
                "noise_uv": float(noise[row["channel_index"]]),
                **{name: finite_or_none(row[name]) for name in CCF_ANNOTATIONS},
            }
            for row in channel_geometry(recording).to_dict("records")
        )


def _open(insertion: dict):
    return open_recording(
        insertion["recording_format"],
        stores.raw_path(insertion["recording_path"]),
        stores.raw_path(insertion["probe_file"]) if insertion["probe_file"] else None,
        insertion["sampling_rate"],
        insertion["num_channels"],
    )


@schema
class SortingParamSet(dj.Lookup):
    definition = paramset_definition(
        "sorting_paramset",
        "spike-sorting parameters, hashed: preprocessing, sorter, duplicate removal, waveforms, metrics",
    )

    @classmethod
    def insert_defaults(cls) -> None:
        """One row per sorter preset, named as the preset (DEFAULT_PARAMSET is the one new recordings get)."""
        for name, description in PARAMSET_DESCRIPTIONS.items():
            insert_params(cls, name, sorting_params(name), description)


@schema
class SortingSelection(dj.Manual):
    definition = """
    # a recording to sort with a parameter set
    -> EphysRecording
    -> SortingParamSet
    """


SELECTIONS = ((EphysRecording, SortingSelection),)  # source and selection: `brainobs status` counts what waits


def schedule_defaults() -> int:
    """Pair every recording not yet selected with the CPU default sorting parameter set."""
    SortingParamSet.insert_defaults()
    return select_new(EphysRecording, SortingSelection, SortingParamSet, DEFAULT_PARAMSET)


def _output_dir(key: dict):
    """The sorting's folder in the object store: the sorter's output and the SortingAnalyzer."""
    return stores.path("ephys", stores.key_name(key))


@schema
class SpikeSorting(dj.Computed):
    definition = """
    # common-median reference, the sorter, duplicate-spike removal (0.166 ms, 5 channels), mean waveforms,
    # noise labels
    -> SortingSelection
    ---
    sorter_name : varchar(32)
    n_units : int32
    output_dir : varchar(255)             # sorter output and SortingAnalyzer, relative to the object store
    """

    class Unit(dj.Part):
        definition = """
        -> master
        unit_id : int32
        ---
        peak_channel : int32              # channel_index of the largest mean waveform
        num_spikes : int32
        spike_times : <npy@main>          # s, session clock
        spike_amplitudes : <npy@main>     # uV at the peak channel
        mean_waveform : <npy@main>        # (82 samples, every channel by channel_index) uV, 20 samples before the peak
        snr = null : float64              # Allen definition, peak channel (null when undefined)
        duplicates_removed : int32
        quality : varchar(16)             # noise (Allen's rule-based noise checks) or good
        """

    class File(dj.Part):
        definition = """
        # every file the sorter and the SortingAnalyzer wrote, as written
        -> master
        file_path : varchar(255)          # relative to output_dir
        ---
        size : int64                      # bytes
        sha256 : char(64)
        """

    def make_fetch(self, key):
        return (ProbeInsertion & key).fetch1(), (SortingParamSet & key).fetch1("params")

    def make_compute(self, key, insertion, params):
        output_dir = _output_dir(key)
        units = spike_sorting(_open(insertion), params, output_dir, n_jobs=sorting_jobs())
        return units, stores.folder_digests(output_dir)

    def make_insert(self, key, units, files):
        params = (SortingParamSet & key).fetch1("params")
        self.insert1(
            {
                **key,
                "sorter_name": params["sorter"]["sorter_name"],
                "n_units": len(units),
                "output_dir": stores.relative(_output_dir(key)),
            }
        )
        self.Unit.insert(
            {
                **key,
                "unit_id": int(row["unit_id"]),
                "peak_channel": int(row["peak_channel"]),
                "num_spikes": int(row["num_spikes"]),
                "spike_times": np.asarray(row["spike_times"], dtype=np.float64),
                "spike_amplitudes": np.asarray(row["spike_amplitudes"], dtype=np.float64),
                "mean_waveform": np.asarray(row["mean_waveform"], dtype=np.float32),
                "snr": finite_or_none(row["snr"]),
                "duplicates_removed": int(row["duplicates_removed"]),
                "quality": str(row["quality"]),
            }
            for row in units.to_dict("records")
        )
        self.File.insert(
            {**key, "file_path": name, "size": size, "sha256": sha256} for name, (size, sha256) in files.items()
        )


def _verified_analyzer(key: dict):
    """The sorting's SortingAnalyzer folder, after checking every file recorded under it kept its size."""
    output_dir = stores.root() / (SpikeSorting & key).fetch1("output_dir")
    for row in (SpikeSorting.File & key).to_dicts():
        if row["file_path"].startswith(f"{ANALYZER_FOLDER}/"):
            stores.verified(output_dir / row["file_path"], row["size"])
    return output_dir / ANALYZER_FOLDER


# Allen metric name -> attribute (DataJoint attributes are lower case); snr lives in SpikeSorting.Unit
STORED_METRICS = {name: name.lower() for name in METRIC_COLUMNS if name != "snr"}


@schema
class UnitMetrics(dj.Computed):
    definition = """
    # Allen's quality metrics (PCs from the SortingAnalyzer) and waveform metrics (full mean waveform)
    -> SpikeSorting
    """

    class Unit(dj.Part):
        definition = "-> master\n-> SpikeSorting.Unit\n---\n" + "\n".join(
            f"{attribute} = null : float64" for attribute in STORED_METRICS.values()
        )

    def make_fetch(self, key):
        return len(SpikeSorting.Unit & key), (SortingParamSet & key).fetch1("params")

    def make_compute(self, key, n_units, params):
        if n_units == 0:
            return (pd.DataFrame(columns=list(METRIC_COLUMNS)),)
        import spikeinterface as si

        analyzer = si.load_sorting_analyzer(_verified_analyzer(key))
        rows = (SpikeSorting.Unit & key).to_dicts(order_by="unit_id")
        table = pd.DataFrame(
            {
                "unit_id": [row["unit_id"] for row in rows],
                "peak_channel": [row["peak_channel"] for row in rows],
                "snr": [np.nan if row["snr"] is None else row["snr"] for row in rows],
                "mean_waveform": [np.asarray(row["mean_waveform"], dtype=float) for row in rows],
            }
        )
        metrics = compute_unit_metrics(
            analyzer, table, n_jobs=sorting_jobs(), params=params["metrics"], waveform_params=params["waveform_metrics"]
        )
        return (metrics,)

    def make_insert(self, key, metrics):
        self.insert1(key)
        self.Unit.insert(
            {**key, "unit_id": int(unit_id), **{a: finite_or_none(row[n]) for n, a in STORED_METRICS.items()}}
            for unit_id, row in metrics.iterrows()
        )


def units_table(*restrictions: dict, preset: str | None = None, strict: bool = False, **keywords) -> pd.DataFrame:
    """Units with their metrics, peak-channel location and in_brain flag, as pandas; optionally filtered
    by a unit filter preset ("visual_coding", "visual_behavior"). strict: restriction names must be columns."""
    query = SpikeSorting.Unit.proj("peak_channel", "num_spikes", "snr", "quality") * UnitMetrics.Unit
    query = restrict(query, restrictions, keywords, strict=strict)
    units = frame(query).rename(columns={a: n for n, a in STORED_METRICS.items()})
    if units.empty:
        units = units.assign(location=pd.Series(dtype=object), in_brain=pd.Series(dtype=bool))
    else:
        channels = pd.DataFrame((EphysRecording.Channel & query.proj()).to_dicts())
        channels = channels.rename(columns={"channel_index": "peak_channel"})
        shared = [c for c in ProbeInsertion.primary_key if c in units.columns]
        on = [*shared, "peak_channel"]
        units = units.merge(channels[[*on, "location"]], how="left", on=on)
        units["in_brain"] = ~units["location"].fillna("unknown").isin(OUTSIDE_BRAIN)
        _assume_unregistered_probes_in_brain(units, shared)
    return filter_units(units, preset) if preset else units


def _assume_unregistered_probes_in_brain(units: pd.DataFrame, shared: list[str]) -> None:
    """A probe with no targeted_structure and no registered channel says nothing of where its channels are: its
    units are taken as in the brain, with a warning naming the probe, instead of all being dropped as outside."""
    probes = units[shared].drop_duplicates().to_dict("records")
    registered = EphysRecording.Channel - {"location": "unknown"}
    unregistered = ((ProbeInsertion & probes & {"targeted_structure": ""}) - registered).proj().to_dicts()
    for probe in unregistered:
        rows = np.logical_and.reduce([units[k] == v for k, v in probe.items()])
        units.loc[rows, "in_brain"] = True
        warnings.warn(
            f"probe {probe['probe_name']} of session {probe['session_id']} has no targeted_structure: its "
            "units' location is unknown and in_brain is assumed True",
            stacklevel=3,
        )
