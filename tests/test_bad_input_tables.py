"""Bad raw files at the table level: each fails only its own job, with a message naming the file and the
problem, leaves no row in the table or its Parts, and the other items of the same populate still finish."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import probeinterface
import pytest
import tifffile
import yaml
from ophys_fake_movie import make_fake_movie

from brainobs.ingest.synthetic.ephys import load_truth, neuropixels1_probe, write_recording
from brainobs.populate.ephys.sorting import sorter_problems

pytestmark = pytest.mark.db

FRAME_RATE = 30.0
SAMPLING_RATE = 30000.0
NUM_CHANNELS = 8
SUBJECT = {"subject_id": "MBAD1", "sex": "F", "indicator": "GCaMP6f"}

# experiment -> what its error message must say (besides the movie's path)
MOVIE_PROBLEMS = {
    "truncated": "truncated TIFF",
    "unreadable": "unreadable or truncated TIFF",
    "float64": "pixel type float64 is not accepted",
    "rgb": "expected one grayscale plane",
    "zero_frames": "movie has no frames",
    "few_frames": "only 20 frames; at least 50 are needed",
    "nan_frame": "frame 40 holds NaN",
    "frame_rate": "frame rate in metadata is 31 Hz but 30 Hz was expected",
    "frame_size": "frames are 64 x 48 pixels (height x width) but the manifest says 64 x 64",
    "deleted": "missing file",
}


@pytest.fixture(autouse=True)
def forget_jobs(database):
    """Drop this module's job records afterwards: the `db` fixture empties the tables, not the job queues."""
    yield
    from brainobs.schemas.ephys import EphysRecording, SpikeSorting
    from brainobs.schemas.ophys import MotionCorrection

    for table in (MotionCorrection, EphysRecording, SpikeSorting):
        (table().jobs & {"subject_id": SUBJECT["subject_id"]}).delete_quick()


def _ingest(settings, name: str, sections: dict) -> None:
    """Write a manifest of ``sections`` for SUBJECT into the data root and ingest it."""
    from brainobs.ingest.manifest import load_manifest
    from brainobs.schemas.loading import insert_manifest

    path = settings.data_root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "subjects": [SUBJECT], **sections}, sort_keys=False))
    insert_manifest(load_manifest(path, settings.data_root))


def _session(session_id: int, modality: str) -> dict:
    return {
        "session_id": session_id,
        "subject_id": SUBJECT["subject_id"],
        "session_type": "bad_input",
        "modality": modality,
        "session_start_time": "2026-03-02T09:30:00",
    }


def _write_movies(folder: Path) -> dict[str, Path]:
    """One good 100-frame movie and one damaged movie per MOVIE_PROBLEMS case, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    good = make_fake_movie(folder / "good.tif", n_frames=100, fs=FRAME_RATE, seed=3)
    paths = {name: folder / f"{name}.tif" for name in ("good", *MOVIE_PROBLEMS)}
    metadata = {"frame_rate_hz": FRAME_RATE}
    content = good.path.read_bytes()
    paths["truncated"].write_bytes(content[: len(content) // 2])
    paths["unreadable"].write_bytes(b"not a TIFF file " * 64)
    tifffile.imwrite(paths["float64"], good.frames.astype(np.float64), metadata=metadata)
    rgb = np.repeat((good.frames >> 4).astype(np.uint8)[..., None], 3, axis=-1)
    tifffile.imwrite(paths["rgb"], rgb, photometric="rgb", metadata=metadata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tifffile: "writing zero-size array"
        tifffile.imwrite(paths["zero_frames"], good.frames[:0], metadata=metadata)
    tifffile.imwrite(paths["few_frames"], good.frames[:20], metadata=metadata)
    with_nan = good.frames.astype(np.float32)
    with_nan[40] = np.nan  # a dropped frame filled with NaN
    tifffile.imwrite(paths["nan_frame"], with_nan, metadata=metadata)
    tifffile.imwrite(paths["frame_rate"], good.frames, metadata={"frame_rate_hz": 31.0})
    tifffile.imwrite(paths["frame_size"], good.frames[:, :, :48], metadata=metadata)
    shutil.copyfile(good.path, paths["deleted"])
    return paths


def _registered_files(folder: Path, experiment_id: int) -> list[Path]:
    """Registered movies (finished or temporary) of one experiment in the object store."""
    return sorted(folder.glob(f"*experiment_id-{experiment_id}_*"))


@pytest.mark.slow
def test_bad_movies_fail_only_their_motion_correction_jobs(db, settings):
    from brainobs.pipeline import populate_all
    from brainobs.schemas import stores
    from brainobs.schemas.ophys import MotionCorrection

    session_id, container_id = 990000, 990000
    paths = _write_movies(settings.data_root / SUBJECT["subject_id"] / str(session_id))
    experiment_ids = {name: 990001 + i for i, name in enumerate(paths)}
    experiment = {
        "session_id": session_id,
        "container_id": container_id,
        "imaging_depth": 175,
        "targeted_structure": "VISp",
        "frame_rate": FRAME_RATE,
        "width": 64,
        "height": 64,
        "pixel_size_um": 0.78,
    }
    _ingest(
        settings,
        "bad-movies",
        {
            "sessions": [_session(session_id, "ophys")],
            "containers": [
                {
                    "container_id": container_id,
                    "subject_id": SUBJECT["subject_id"],
                    "targeted_structure": "VISp",
                    "imaging_depth": 175,
                }
            ],
            "experiments": [
                {
                    **experiment,
                    "experiment_id": experiment_ids[name],
                    "movie_file": path.relative_to(settings.data_root).as_posix(),
                }
                for name, path in paths.items()
            ],
        },
    )
    paths["deleted"].unlink()

    result = populate_all(settings, tables=["MotionCorrection"])

    by_id = {experiment_id: name for name, experiment_id in experiment_ids.items()}
    errors = {by_id[key["experiment_id"]]: message for key, message in result["MotionCorrection"]["error_list"]}
    assert set(errors) == set(MOVIE_PROBLEMS), errors
    registered = stores.path("registered", "x").parent
    for name, problem in MOVIE_PROBLEMS.items():
        message = errors[name]
        assert str(paths[name].resolve()) in message and problem in message, message
        key = {"experiment_id": experiment_ids[name]}
        assert not MotionCorrection & key
        assert not _registered_files(registered, experiment_ids[name]), "a partial registered movie"
    failed_jobs = (MotionCorrection().jobs.errors & {"subject_id": SUBJECT["subject_id"]}).to_dicts()
    assert {by_id[job["experiment_id"]] for job in failed_jobs} == set(MOVIE_PROBLEMS)
    assert all(str(paths[by_id[job["experiment_id"]]].resolve()) in job["error_message"] for job in failed_jobs)
    good = (MotionCorrection & {"experiment_id": experiment_ids["good"]}).fetch1()
    assert good["n_frames"] == 100
    assert _registered_files(registered, experiment_ids["good"]) == [stores.root() / good["registered_movie"].path]
    assert (stores.root() / good["registered_movie"].path).stat().st_size == 100 * 64 * 64 * 2


def _write_recording_copies(folder: Path, truth_dir: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """A good 8-channel, 2 s recording in ``folder/good`` and an identical copy per name; folders by name."""
    write_recording(
        folder / "good", truth_dir, num_channels=NUM_CHANNELS, duration_s=2.0, seed=4, sampling_rate=SAMPLING_RATE
    )
    for name in names:
        shutil.rmtree(folder / name, ignore_errors=True)
        shutil.copytree(folder / "good", folder / name)
    return {name: folder / name for name in ("good", *names)}


def _ingest_recordings(settings, session_id: int, folders: dict[str, Path]) -> None:
    """One binary probe insertion per folder, named after it, with the manifest values of the good one."""
    insertions = [
        {
            "session_id": session_id,
            "probe_name": name,
            "recording_format": "binary",
            "recording_path": (folder / "recording.bin").relative_to(settings.data_root).as_posix(),
            "probe_file": (folder / "probe.json").relative_to(settings.data_root).as_posix(),
            "sampling_rate": SAMPLING_RATE,
            "num_channels": NUM_CHANNELS,
        }
        for name, folder in folders.items()
    ]
    _ingest(
        settings,
        f"recordings-{session_id}",
        {"sessions": [_session(session_id, "ecephys")], "probe_insertions": insertions},
    )


def test_bad_recordings_fail_only_their_ephys_recording_jobs(db, settings, tmp_path):
    from brainobs.pipeline import populate_all
    from brainobs.schemas.ephys import EphysRecording

    session_id = 990100
    problems = {  # probe -> (file the message must name, what it must say)
        "truncated": ("recording.bin", "is not a multiple of 8 channels x 2 bytes"),
        "probe_map": ("probe.json", "the probe map has 6 contacts but the recording has 8 channels"),
        "sampling_rate": ("recording.bin", "sampling rate 25000.0 Hz, but the manifest expects 30000.0 Hz"),
        "zero_length": ("recording.bin", "the file is empty (zero samples)"),
        "deleted": ("recording.bin", "missing file"),
    }
    folders = _write_recording_copies(
        settings.data_root / SUBJECT["subject_id"] / str(session_id), tmp_path / "truth", tuple(problems)
    )
    binary = folders["truncated"] / "recording.bin"
    binary.write_bytes(binary.read_bytes()[:-1001])
    probeinterface.write_probeinterface(folders["probe_map"] / "probe.json", neuropixels1_probe(6))
    sidecar = folders["sampling_rate"] / "recording.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "sampling_rate": 25000.0}))
    (folders["zero_length"] / "recording.bin").write_bytes(b"")
    _ingest_recordings(settings, session_id, folders)
    (folders["deleted"] / "recording.bin").unlink()

    result = populate_all(settings, tables=["EphysRecording"])

    errors = {key["probe_name"]: message for key, message in result["EphysRecording"]["error_list"]}
    assert set(errors) == set(problems), errors
    for name, (file_name, problem) in problems.items():
        message = errors[name]
        assert str((folders[name] / file_name).resolve()) in message and problem in message, message
        key = {"subject_id": SUBJECT["subject_id"], "probe_name": name}
        assert not EphysRecording & key
        assert not EphysRecording.Channel & key
    failed_jobs = (EphysRecording().jobs.errors & {"subject_id": SUBJECT["subject_id"]}).to_arrays("probe_name")
    assert set(failed_jobs) == set(problems)
    good = {"subject_id": SUBJECT["subject_id"], "probe_name": "good"}
    row = (EphysRecording & good).fetch1()
    assert row["n_channels"] == NUM_CHANNELS and row["duration"] == pytest.approx(2.0)
    assert len(EphysRecording.Channel & good) == NUM_CHANNELS
    noise = (EphysRecording.Channel & good).to_arrays("noise_uv")  # the synthetic probe's ~6 uV noise, every channel
    assert all(4.0 < level < 20.0 for level in noise), noise


CRASHING, STAND_IN = "bad_input_crash", "bad_input_truth"


@pytest.fixture
def sorting_paramsets(database):
    """A lupin (cpu_default) parameter set with an unknown parameter (the sorter refuses it at once) and a stand-in
    "sorter" set that the test answers with the ground truth; both removed afterwards."""
    from brainobs.schemas.ephys import SortingParamSet, sorting_params
    from brainobs.schemas.params import insert_params

    crashing = sorting_params("cpu_default")
    crashing["sorter"] = {**crashing["sorter"], "params": {"seed": 0, "no_such_parameter": 1}}
    insert_params(SortingParamSet, CRASHING, crashing, "lupin with an invalid parameter (bad-input test)")
    stand_in = sorting_params("cpu_default")
    stand_in["sorter"] = {"sorter_name": "ground_truth", "params": {}, "requires_gpu": False}
    insert_params(SortingParamSet, STAND_IN, stand_in, "ground truth in place of a sorter (bad-input test)")
    yield
    (SortingParamSet & [{"sorting_paramset": CRASHING}, {"sorting_paramset": STAND_IN}]).delete(prompt=False)


@pytest.mark.slow
def test_crashing_sorter_fails_only_its_spike_sorting_job(db, settings, tmp_path, sorting_paramsets, monkeypatch):
    """The real sorter crashes on one selection; a sibling selection of the same recording, sorted by a
    stand-in that returns the ground truth (a real sort takes minutes here), still gets its units."""
    from brainobs.populate.ephys import spike_sorting
    from brainobs.schemas import ephys

    session_id = 990200
    folders = _write_recording_copies(settings.data_root / SUBJECT["subject_id"] / str(session_id), tmp_path, ())
    _ingest_recordings(settings, session_id, folders)
    recording = {"subject_id": SUBJECT["subject_id"], "session_id": session_id, "probe_name": "good"}
    assert not ephys.EphysRecording.populate(recording, suppress_errors=True)["error_list"]
    truth, _ = load_truth(tmp_path)
    real_run_sorter = spike_sorting.run_sorter  # SpikeSorting's core calls it

    def run_sorter(extractor, preset, output_folder, **kwargs):
        if preset["sorter_name"] == "ground_truth":
            return truth
        return real_run_sorter(extractor, preset, output_folder, **kwargs)

    monkeypatch.setattr(spike_sorting, "run_sorter", run_sorter)
    ephys.SortingParamSet.insert_defaults()
    unavailable = ["kilosort4"] if sorter_problems("kilosort4") else []  # no GPU or no kilosort: a clear error
    selected = (CRASHING, STAND_IN, *unavailable)
    ephys.SortingSelection.insert({**recording, "sorting_paramset": name} for name in selected)

    result = ephys.SpikeSorting.populate(recording, reserve_jobs=True, suppress_errors=True)
    (ephys.SortingSelection & recording & [{"sorting_paramset": name} for name in unavailable]).delete(prompt=False)

    errors = {key["sorting_paramset"]: message for key, message in result["error_list"]}
    assert set(errors) == {CRASHING, *unavailable}
    for name in unavailable:
        assert "SorterUnavailableError: kilosort4 needs" in errors[name], errors[name]
    message = errors[CRASHING]
    assert "SortingFailedError: lupin failed" in message and "no_such_parameter" in message, message
    sorter_folder = Path(message.rsplit("; see ", 1)[1])  # where the sorter's files (and any log) stay
    assert sorter_folder.parent.name.endswith(f"sorting_paramset-{CRASHING}") and sorter_folder.is_dir()
    crashed = {**recording, "sorting_paramset": CRASHING}
    assert not ephys.SpikeSorting & crashed
    assert not ephys.SpikeSorting.Unit & crashed
    failed_jobs = (ephys.SpikeSorting().jobs.errors & recording).to_arrays("sorting_paramset")
    assert set(failed_jobs) == {CRASHING, *unavailable}
    sorted_ = {**recording, "sorting_paramset": STAND_IN}
    assert (ephys.SpikeSorting & sorted_).fetch1("n_units") == truth.get_num_units() > 0
    units = (ephys.SpikeSorting.Unit & sorted_).to_dicts()
    assert len(units) == truth.get_num_units()
    kept = sum(unit["num_spikes"] + unit["duplicates_removed"] for unit in units)
    assert kept == sum(truth.get_unit_spike_train(unit_id).size for unit_id in truth.unit_ids)
