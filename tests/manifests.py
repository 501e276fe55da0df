"""Small manifests and the raw files they name, for ingest tests."""

from __future__ import annotations

from pathlib import Path

import yaml


def make_manifest(root: Path, **changes) -> Path:
    """A valid manifest under ``root`` (one subject, container, ophys session, experiment and probe)."""
    (root / "M1" / "1").mkdir(parents=True, exist_ok=True)
    (root / "M1" / "1" / "movie.tif").write_bytes(b"II*\x00")
    (root / "M1" / "2" / "probeA").mkdir(parents=True, exist_ok=True)
    (root / "M1" / "2" / "probeA" / "recording.bin").write_bytes(b"\x00" * 64)
    (root / "M1" / "2" / "probeA" / "probe.json").write_text("{}")
    document = {
        "version": 1,
        "subjects": [
            {
                "subject_id": "M1",
                "sex": "F",
                "date_of_birth": "2026-01-05",
                "indicator": "GCaMP6f",
                "full_genotype": "Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt",
            }
        ],
        "containers": [{"container_id": 7, "subject_id": "M1", "targeted_structure": "VISp", "imaging_depth": 175}],
        "sessions": [
            {
                "session_id": 1,
                "subject_id": "M1",
                "session_type": "OPHYS_1_images_A",
                "modality": "ophys",
                "session_start_time": "2026-03-02T09:30:00",
                "passive": False,
                "experience_level": "Familiar",
            },
            {
                "session_id": 2,
                "subject_id": "M1",
                "session_type": "EPHYS_1_images_A",
                "modality": "ecephys",
                "session_start_time": "2026-03-09T09:30:00",
            },
        ],
        "experiments": [
            {
                "experiment_id": 11,
                "session_id": 1,
                "container_id": 7,
                "imaging_depth": 175,
                "targeted_structure": "VISp",
                "frame_rate": 31.0,
                "width": 64,
                "height": 64,
                "pixel_size_um": 0.78,
                "movie_file": "M1/1/movie.tif",
            }
        ],
        "probe_insertions": [
            {
                "session_id": 2,
                "probe_name": "probeA",
                "recording_format": "binary",
                "recording_path": "M1/2/probeA/recording.bin",
                "probe_file": "M1/2/probeA/probe.json",
                "sampling_rate": 30000.0,
                "num_channels": 16,
            }
        ],
    }
    for dotted, value in changes.items():
        section, index, name = dotted.split("__")
        document[section][int(index)][name] = value
    path = root / "manifest.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
