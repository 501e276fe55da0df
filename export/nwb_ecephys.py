"""The ecephys session file: probes, channels and every sorted unit, with behavior and stimulus.

Layout:
- /general/devices/<probe>: one EcephysProbe (Allen's ndx-aibs-ecephys Device: sampling_rate of the AP band,
  probe_id) per probe; /general/extracellular_ephys/<probe>: one EcephysElectrodeGroup per probe (location =
  targeted structure, or "unknown"; has_lfp_data, probe_id, lfp_sampling_rate, NaN without LFP).
- /general/extracellular_ephys/electrodes: id = channel_id; location (CCF acronym or "unknown"), group,
  group_name, rel_x / rel_y (the NWB position on the probe, um) and the Allen names of the same
  probe_horizontal_position / probe_vertical_position, probe_channel_number, probe_id (the probe's id, or
  its index in the session without one), valid_data and x / y / z (Allen CCF um: anterior-posterior,
  dorsal-ventral, left-right; NaN where a channel is not registered; left out when none is), as Allen's
  files name them.
- /units: id = unit id, all units (no release filter). spike_times (s, resolution = 1 / the highest probe
  sampling rate), spike_amplitudes (V, ragged like spike_times), electrodes (the waveform channels),
  electrode_group (the peak channel's probe), waveform_mean (units x samples x waveform channels, V),
  peak_channel_id, quality, cluster_id and local_index (when the bundle has them), and every quality and
  waveform metric (`UNIT_METRICS`) as a column.
LFP is not written here (separate per-probe files).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from hdmf.backends.hdf5 import H5DataIO
from hdmf.common import DynamicTableRegion, VectorData, VectorIndex
from pynwb import NWBFile
from pynwb.ecephys import ElectrodeGroup
from pynwb.file import ElectrodesTable
from pynwb.misc import Units

from brainobs.export.allen_types import ECEPHYS, allen_class
from brainobs.export.bundles import UNIT_METRICS, ChannelTable, EcephysSessionBundle, UnitTable
from brainobs.export.nwb_behavior import add_behavior
from brainobs.export.nwb_common import column_values, dataset, new_nwbfile, table_expectations
from brainobs.export.provenance import add_provenance
from brainobs.export.readback import Expectation, ragged

CHANNEL_COLUMNS = {
    "location": "brain structure of the channel (Allen CCF acronym), or unknown",
    "group": "electrode group (probe) of the channel",
    "group_name": "name of the channel's probe",
    "rel_x": "horizontal position of the channel on the probe (um)",
    "rel_y": "vertical position of the channel on the probe, from the tip (um)",
    "probe_horizontal_position": "horizontal position of the channel on the probe (um)",
    "probe_vertical_position": "vertical position of the channel on the probe, from the tip (um)",
    "probe_channel_number": "channel number on its probe",
    "probe_id": "id of the channel's probe",
    "valid_data": "whether the channel's data are usable",
    "x": "anterior-posterior Allen CCF coordinate of the channel (um; +x posterior), NaN if not registered",
    "y": "dorsal-ventral Allen CCF coordinate of the channel (um; +y ventral), NaN if not registered",
    "z": "left-right Allen CCF coordinate of the channel (um; +z right), NaN if not registered",
}
UNIT_COLUMNS = {
    "spike_times": "spike times of the unit (s, session clock)",
    "spike_amplitudes": "amplitude of each spike (V)",
    "electrodes": "channels of the unit's mean waveform",
    "electrode_group": "probe of the unit's peak channel",
    "waveform_mean": "mean waveform on the waveform channels (V)",
    "peak_channel_id": "channel (electrodes id) with the largest waveform amplitude",
    "quality": "curation label of the unit (good, noise, ...)",
    "cluster_id": "the spike sorter's id of the unit on its probe",
    "local_index": "index of the unit among its probe's units",
    **UNIT_METRICS,
}


def build_ecephys_nwbfile(bundle: EcephysSessionBundle, source_sha256: str) -> tuple[NWBFile, list[Expectation]]:
    """The NWBFile of one Neuropixels session, and what to verify when it is read back."""
    probe_ids = {
        probe.name: probe.probe_id if probe.probe_id is not None else index for index, probe in enumerate(bundle.probes)
    }
    probe_class = allen_class(ECEPHYS, "EcephysProbe")
    group_class = allen_class(ECEPHYS, "EcephysElectrodeGroup")
    devices, groups = [], {}
    for probe in bundle.probes:
        device = probe_class(
            name=probe.name,
            description=probe.description,
            manufacturer=probe.manufacturer,
            sampling_rate=float(probe.sampling_rate_hz),
            probe_id=probe_ids[probe.name],
        )
        devices.append(device)
        groups[probe.name] = group_class(
            name=probe.name,
            description=probe.description,
            location=probe.targeted_structure or "unknown",
            device=device,
            has_lfp_data=probe.has_lfp_data,
            probe_id=probe_ids[probe.name],
            lfp_sampling_rate=np.nan if probe.lfp_sampling_rate_hz is None else float(probe.lfp_sampling_rate_hz),
        )
    electrodes, expectations = _electrodes(bundle.channels, groups, probe_ids)
    nwbfile = new_nwbfile(
        bundle.session,
        bundle.subject,
        bundle.provenance,
        identifier=bundle.session.session_id,
        devices=devices,
        electrode_groups=list(groups.values()),
        electrodes=electrodes,
    )
    resolution = 1.0 / max(probe.sampling_rate_hz for probe in bundle.probes)
    nwbfile.units, unit_expectations = _units(bundle, electrodes, groups, resolution)
    expectations += unit_expectations
    if bundle.behavior is not None:
        expectations += add_behavior(nwbfile, bundle.behavior)
    expectations += add_provenance(nwbfile, bundle.provenance, source_sha256)
    return nwbfile, expectations


def _electrodes(
    channels: ChannelTable, groups: Mapping[str, ElectrodeGroup], probe_ids: Mapping[str, int]
) -> tuple[ElectrodesTable, list[Expectation]]:
    probe_names = np.asarray(channels.probe_name).astype(str)
    horizontal = np.asarray(channels.probe_horizontal_position, dtype=np.float64)
    ccf = None if channels.ccf_coordinates is None else np.asarray(channels.ccf_coordinates, dtype=np.float64)
    vertical = np.asarray(channels.probe_vertical_position, dtype=np.float64)
    stored = {
        "location": np.asarray(channels.location).astype(str).astype(object),
        "group_name": probe_names.astype(object),
        "rel_x": horizontal,
        "rel_y": vertical,
        "probe_horizontal_position": horizontal,
        "probe_vertical_position": vertical,
        "probe_channel_number": np.asarray(channels.probe_channel_number, dtype=np.int64),
        "probe_id": np.array([probe_ids[name] for name in probe_names], dtype=np.int64),
        "valid_data": (
            np.ones(len(probe_names), dtype=bool)
            if channels.valid_data is None
            else np.asarray(channels.valid_data, dtype=bool)
        ),
        **({} if ccf is None else {"x": ccf[:, 0], "y": ccf[:, 1], "z": ccf[:, 2]}),
    }
    columns = [VectorData(name=n, description=CHANNEL_COLUMNS[n], data=_stored(v)) for n, v in stored.items()]
    groups_of_rows = [groups[name] for name in probe_names]
    columns.append(VectorData(name="group", description=CHANNEL_COLUMNS["group"], data=groups_of_rows))
    ids = np.asarray(channels.channel_id, dtype=np.int64)
    table = ElectrodesTable(id=ids, columns=columns)
    return table, table_expectations("electrodes", lambda f: f.electrodes, {"id": ids, **stored})


def _stored(values: np.ndarray) -> list | np.ndarray | H5DataIO:
    """Text columns as lists of str (how pynwb writes them), others as (compressed) arrays."""
    return values.tolist() if values.dtype == object else dataset(values)


def _units(
    bundle: EcephysSessionBundle, electrodes: ElectrodesTable, groups: Mapping[str, ElectrodeGroup], resolution: float
) -> tuple[Units, list[Expectation]]:
    units: UnitTable = bundle.units
    channel_ids = np.asarray(bundle.channels.channel_id).tolist()
    row_of_channel = {channel: row for row, channel in enumerate(channel_ids)}
    probe_of_channel = dict(zip(channel_ids, np.asarray(bundle.channels.probe_name).astype(str), strict=True))
    waveform_rows = np.vectorize(row_of_channel.__getitem__, otypes=[np.int64])(units.waveform_channel_ids)
    scalars = {
        "peak_channel_id": np.asarray(units.peak_channel_id, dtype=np.int64),
        "quality": np.asarray(units.quality).astype(str).astype(object),
        **(
            {
                "cluster_id": np.asarray(units.cluster_id, np.int64),
                "local_index": np.asarray(units.local_index, np.int64),
            }
            if units.cluster_id is not None
            else {}
        ),
        **{name: column_values(name, units.metrics[name]) for name in units.metrics.columns},
    }
    spike_times = [np.asarray(times, dtype=np.float64) for times in units.spike_times]
    spike_amplitudes = [np.asarray(amplitudes, dtype=np.float64) for amplitudes in units.spike_amplitudes]
    region = DynamicTableRegion(
        name="electrodes", description=UNIT_COLUMNS["electrodes"], data=waveform_rows.ravel(), table=electrodes
    )
    ends = np.arange(1, len(waveform_rows) + 1, dtype=np.int64) * waveform_rows.shape[1]
    peak_groups = [groups[probe_of_channel[int(channel)]] for channel in units.peak_channel_id]
    columns = [
        *_ragged("spike_times", spike_times),
        *_ragged("spike_amplitudes", spike_amplitudes),
        region,
        VectorIndex(name="electrodes_index", data=ends, target=region),
        VectorData(name="electrode_group", description=UNIT_COLUMNS["electrode_group"], data=peak_groups),
        VectorData(name="waveform_mean", description=UNIT_COLUMNS["waveform_mean"], data=dataset(units.waveform_mean)),
    ]
    for name, values in scalars.items():
        description = UNIT_COLUMNS.get(name) or units.metric_descriptions[name]
        columns.append(VectorData(name=name, description=description, data=_stored(values)))
    ids = np.asarray(units.unit_id, dtype=np.int64)
    table = Units(
        name="units",
        description="all sorted units of the session (no release filter applied)",
        id=ids,
        columns=columns,
        resolution=resolution,
        waveform_rate=units.waveform_rate_hz,
        waveform_unit="volts",
        electrode_table=electrodes,
    )
    stored = {
        "id": ids,
        "spike_times": spike_times,
        "spike_amplitudes": spike_amplitudes,
        "waveform_mean": np.asarray(units.waveform_mean),
        **scalars,
    }
    expectations = table_expectations("units", lambda f: f.units, stored)
    expectations.append(Expectation("units/electrodes", lambda f: ragged(f.units["electrodes"]), list(waveform_rows)))
    n_spikes = sum(len(times) for times in spike_times)
    expectations.append(Expectation("units/spikes", lambda f: len(f.units["spike_times"].target.data), n_spikes))
    return table, expectations


def _ragged(name: str, rows: list[np.ndarray]) -> list[VectorData | VectorIndex]:
    data = VectorData(name=name, description=UNIT_COLUMNS[name], data=dataset(np.concatenate(rows)))
    ends = np.cumsum([len(row) for row in rows]).astype(np.int64)
    return [data, VectorIndex(name=f"{name}_index", data=ends, target=data)]
