"""A whole synthetic survey: subjects, sessions, containers, movies, recordings, behavior, manifest, truth.

`generate_survey(out_dir, preset, seed)` writes, under out_dir:

- `<subject_id>/<session_id>/ophys_experiment_<experiment_id>.tif` (or .h5), one per imaging plane,
- `<subject_id>/<session_id>/behavior/` for every session (docs/formats/behavior.md),
- `<subject_id>/<session_id>/probeA/` for ecephys sessions (docs/formats/ephys.md),
- `manifest.yaml` for `brainobs ingest` (docs/formats/manifest.md), paths relative to out_dir,
- `ground_truth/` (survey.json and per-entity truth; the pipeline never reads it).

Every entity draws its randomness from its own seed (seed, kind, id), so the same seed gives the same
bytes, whatever the order of generation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from brainobs.ingest.synthetic import ophys
from brainobs.ingest.synthetic.presets import (
    INDICATOR_LINES,
    IndicatorLine,
    SubjectPlan,
    SurveyPreset,
    entity_int_seed,
    resolve_preset,
)
from brainobs.ingest.synthetic.truth import TRUTH_DIR, write_json

logger = logging.getLogger(__name__)

MIN_BEHAVIOR_S = 20.0  # the behavior writer's shortest session
FIRST_SESSION_DAY = dt.datetime(2026, 3, 2, 9, 30)
FIRST_BIRTH_DAY = dt.date(2026, 1, 5)
PROBE_NAME = "probeA"
# Visual Behavior 2P session schedule: (session_type, image_set, passive, experience_level)
OPHYS_SCHEDULE = (
    ("OPHYS_1_images_A", "A", False, "Familiar"),
    ("OPHYS_2_images_A_passive", "A", True, "Familiar"),
    ("OPHYS_3_images_A", "A", False, "Familiar"),
    ("OPHYS_4_images_B", "B", False, "Novel 1"),
    ("OPHYS_5_images_B_passive", "B", True, "Novel >1"),
    ("OPHYS_6_images_B", "B", False, "Novel >1"),
)
_SCHEDULE_PRIORITY = (0, 3, 4, 1, 5, 2)  # which sessions a shorter series keeps, by index
ECEPHYS_SCHEDULE = (
    ("EPHYS_1_images_G_3uL_reward", "G", False, "Familiar"),
    ("EPHYS_1_images_H_3uL_reward", "H", False, "Novel 1"),
)


class SurveyExistsError(ValueError):
    """The output folder holds files that are not a previous synthetic survey."""


@dataclass(frozen=True)
class SurveySummary:
    """What generate_survey wrote."""

    out_dir: Path
    manifest: Path
    preset: str
    seed: int
    subjects: int
    sessions: int
    containers: int
    experiments: int
    probe_insertions: int
    bytes_written: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"synthetic survey '{self.preset}' (seed {self.seed}) in {self.out_dir}: {self.subjects} subjects, "
            f"{self.sessions} sessions, {self.containers} containers, {self.experiments} experiments, "
            f"{self.probe_insertions} probe insertions; {self.bytes_written / 1e6:.1f} MB "
            f"in {self.seconds:.1f} s; manifest {self.manifest}"
        )


@dataclass
class _Survey:
    """Manifest sections and truth records, filled while writing."""

    root: Path
    preset: SurveyPreset
    seed: int
    report: Callable[[str], None]
    manifest: dict = dataclasses.field(default_factory=dict)
    truth: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        sections = ("subjects", "sessions", "containers", "experiments", "probe_insertions")
        self.manifest = {"version": 1, **{name: [] for name in sections}}
        self.truth = {
            "format": "brainobs-synthetic-truth",
            "version": 1,
            "preset": self.preset.name,
            "seed": self.seed,
            **{name: [] for name in sections},
            "ophys_params": dataclasses.asdict(self.preset.ophys),
        }

    def add(self, section: str, manifest_row: dict, truth_row: dict) -> None:
        self.manifest[section].append(manifest_row)
        self.truth[section].append(truth_row)


def _ophys_schedule(n_sessions: int) -> list[tuple[str, str, bool, str]]:
    keep = sorted(_SCHEDULE_PRIORITY[:n_sessions]) + [5] * max(0, n_sessions - len(OPHYS_SCHEDULE))
    return [OPHYS_SCHEDULE[i] for i in keep]


def _write_behavior(
    survey: _Survey,
    folder: Path,
    session_id: int,
    duration_s: float,
    image_set: str,
    passive: bool,
    frame_rate: float | None = None,
    n_frames: int | None = None,
) -> str:
    """Write one session's behavior folder and truth; return the truth folder relative to the root."""
    from brainobs.ingest.synthetic.behavior import write_behavior

    truth_dir = Path(TRUTH_DIR) / "behavior" / f"session_{session_id}"
    write_behavior(
        folder,
        survey.root / truth_dir,
        duration_s=duration_s,
        passive=passive,
        image_set=image_set,
        seed=entity_int_seed(survey.seed, "behavior", session_id),
        ophys_frame_rate=frame_rate,
        n_ophys_frames=n_frames,
    )
    return truth_dir.as_posix()


def _session_row(
    subject_id: str, session_id: int, modality: str, day: int, schedule, rig: str, project: str, behavior_dir: str
) -> dict:
    session_type, image_set, passive, experience = schedule
    return {
        "session_id": session_id,
        "subject_id": subject_id,
        "session_type": session_type,
        "modality": modality,
        "session_start_time": FIRST_SESSION_DAY + dt.timedelta(days=day),
        "rig": rig,
        "experience_level": experience,
        "passive": passive,
        "image_set": image_set,
        "project_code": project,
        "behavior_dir": behavior_dir,
        # synthetic data are public from the start: no embargo
        "embargo_end": (FIRST_SESSION_DAY + dt.timedelta(days=day)).date(),
    }


class _Ids:
    """Running identifiers: sessions 100001.., ecephys sessions 200001.., containers 700001.., experiments 900001.."""

    def __init__(self) -> None:
        self.next = {"session": 100001, "ecephys": 200001, "container": 700001, "experiment": 900001}

    def take(self, kind: str) -> int:
        value = self.next[kind]
        self.next[kind] += 1
        return value


@dataclass
class _Container:
    container_id: int
    depth: int
    tissue: ophys.Tissue
    experiment_ids: list[int] = dataclasses.field(default_factory=list)


def _plane_timing(preset: SurveyPreset, plan: SubjectPlan) -> tuple[float, int]:
    """Frame rate and frame count of a subject's planes: multi-plane sessions last as long, at a lower rate."""
    p = preset.ophys
    frame_rate = plan.frame_rate or (preset.multiplane_frame_rate if plan.planes > 1 else p.frame_rate)
    return frame_rate, round(p.n_frames * frame_rate / p.frame_rate)


def _check_durations(preset: SurveyPreset) -> None:
    for k, plan in enumerate(preset.subjects):
        if plan.crosstalk and (len(plan.crosstalk) != plan.planes or plan.planes % 2):
            raise ValueError(
                f"subject {k + 1}: crosstalk needs one value per plane and an even number of planes, got "
                f"{len(plan.crosstalk)} values for {plan.planes} planes"
            )
        frame_rate, n_frames = _plane_timing(preset, plan)
        if plan.sessions and n_frames / frame_rate < MIN_BEHAVIOR_S:
            raise ValueError(
                f"subject {k + 1}: {n_frames} frames at {frame_rate:g} Hz last {n_frames / frame_rate:.1f} s, "
                f"shorter than {MIN_BEHAVIOR_S:g} s; raise n_frames"
            )


def _experiment_files(survey: _Survey, spec: ophys.ExperimentSpec, subject_id: str, session_id: int):
    """The movie and truth file of an experiment, relative to the survey root."""
    movie = (
        Path(subject_id) / str(session_id) / f"ophys_experiment_{spec.experiment_id}.{survey.preset.ophys.movie_format}"
    )
    return movie, Path(TRUTH_DIR) / "ophys" / f"experiment_{spec.experiment_id}.npz"


def _record_experiment(
    survey: _Survey, container: _Container, spec: ophys.ExperimentSpec, subject_id: str, session_id: int,
    n_cells: int, seconds: float, plane: dict,
) -> None:  # fmt: skip
    """Add an experiment to the manifest and the truth; ``plane``: its plane_group/plane_order (multi-plane)."""
    p = survey.preset.ophys
    movie, truth_file = _experiment_files(survey, spec, subject_id, session_id)
    survey.report(
        f"experiment {spec.experiment_id} ({subject_id}, session {session_id}, plane {container.depth} um): "
        f"{n_cells} cells, {spec.n_frames} frames at {spec.frame_rate:g} Hz, {seconds:.1f} s"
    )
    container.experiment_ids.append(spec.experiment_id)
    survey.add(
        "experiments",
        {"experiment_id": spec.experiment_id, "session_id": session_id, "container_id": container.container_id,
         "imaging_depth": container.depth, "targeted_structure": "VISp", "frame_rate": spec.frame_rate,
         "width": p.width, "height": p.height, "pixel_size_um": p.pixel_size_um, "movie_file": movie.as_posix(),
         **plane},
        {"experiment_id": spec.experiment_id, "session_id": session_id, "container_id": container.container_id,
         "session_index": spec.session_index, "movie_file": movie.as_posix(), "truth_file": truth_file.as_posix(),
         "n_cells": n_cells, "n_frames": spec.n_frames, "frame_rate": spec.frame_rate, **plane},
    )  # fmt: skip


def _write_experiment(
    survey: _Survey, container: _Container, spec: ophys.ExperimentSpec, line: IndicatorLine, subject_id: str,
    session_id: int, plane: dict,
) -> None:  # fmt: skip
    movie, truth_file = _experiment_files(survey, spec, subject_id, session_id)
    started = time.perf_counter()
    n_cells = ophys.write_experiment(
        survey.root / movie, survey.root / truth_file, container.tissue, spec, survey.preset.ophys, line, survey.seed
    )
    _record_experiment(survey, container, spec, subject_id, session_id, n_cells, time.perf_counter() - started, plane)


def _write_pair(
    survey: _Survey, containers: list[_Container], specs: list[ophys.ExperimentSpec], crosstalk: tuple[float, float],
    line: IndicatorLine, subject_id: str, session_id: int, group: int,
) -> None:  # fmt: skip
    """Two planes imaged together, each seeing ``crosstalk`` of the other's light."""
    files = [_experiment_files(survey, spec, subject_id, session_id) for spec in specs]
    started = time.perf_counter()
    counts = ophys.write_pair(
        tuple((survey.root / movie, survey.root / truth) for movie, truth in files),
        (containers[0].tissue, containers[1].tissue), (specs[0], specs[1]), crosstalk, survey.preset.ophys, line,
        survey.seed,
    )  # fmt: skip
    seconds = (time.perf_counter() - started) / 2
    for order in (0, 1):
        plane = {"plane_group": group, "plane_order": order}
        _record_experiment(
            survey, containers[order], specs[order], subject_id, session_id, counts[order], seconds, plane
        )
        survey.truth["experiments"][-1]["crosstalk"] = crosstalk[order]
        survey.truth["experiments"][-1]["paired_experiment_id"] = specs[1 - order].experiment_id


def _write_subject_ophys(survey: _Survey, ids: _Ids, subject_id: str, plan: SubjectPlan, day0: int) -> None:
    preset, line = survey.preset, INDICATOR_LINES[plan.indicator]
    frame_rate, n_frames = _plane_timing(preset, plan)
    duration_s = n_frames / frame_rate
    containers = []
    for plane in range(plan.planes):
        container_id = ids.take("container")
        tissue = ophys.make_tissue(preset.ophys, line, container_id, plan.sessions, survey.seed)
        container = _Container(container_id, preset.imaging_depths_um[plane % len(preset.imaging_depths_um)], tissue)
        containers.append(container)
        survey.manifest["containers"].append(
            {"container_id": container.container_id, "subject_id": subject_id, "targeted_structure": "VISp",
             "imaging_depth": container.depth}
        )  # fmt: skip
    rig, project = ("MESO.1", "VisualBehaviorMultiscope") if plan.planes > 1 else ("CAM2P.4", "VisualBehavior")
    for index, schedule in enumerate(_ophys_schedule(plan.sessions)):
        session_id = ids.take("session")
        behavior_dir = Path(subject_id) / str(session_id) / "behavior"
        behavior_truth = _write_behavior(
            survey, survey.root / behavior_dir, session_id, duration_s, schedule[1], schedule[2],
            frame_rate, n_frames,
        )  # fmt: skip
        survey.add(
            "sessions",
            _session_row(subject_id, session_id, "ophys", day0 + index, schedule, rig, project,
                         behavior_dir.as_posix()),
            {"session_id": session_id, "subject_id": subject_id, "modality": "ophys",
             "behavior_truth": behavior_truth, "duration_s": duration_s},
        )  # fmt: skip
        specs = [
            ophys.ExperimentSpec(ids.take("experiment"), index, n_frames, frame_rate, container.depth, plan.planes)
            for container in containers
        ]
        paired = plan.planes > 1 and plan.planes % 2 == 0
        for k in range(0, plan.planes, 2 if plan.crosstalk else 1):
            if plan.crosstalk:
                pair = (plan.crosstalk[k], plan.crosstalk[k + 1])
                _write_pair(survey, containers[k : k + 2], specs[k : k + 2], pair, line, subject_id, session_id, k // 2)
            else:
                plane = {"plane_group": k // 2, "plane_order": k % 2} if paired else {}
                _write_experiment(survey, containers[k], specs[k], line, subject_id, session_id, plane)
    for container in containers:
        truth_file = Path(TRUTH_DIR) / "ophys" / f"container_{container.container_id}.npz"
        ophys.write_container_truth(survey.root / truth_file, container.tissue, container.experiment_ids)
        survey.truth["containers"].append(
            {"container_id": container.container_id, "subject_id": subject_id, "imaging_depth": container.depth,
             "experiment_ids": container.experiment_ids, "n_tissue_cells": len(container.tissue.cell_ids),
             "truth_file": truth_file.as_posix()}
        )  # fmt: skip


def _write_subject_ecephys(survey: _Survey, ids: _Ids, subject_id: str, plan: SubjectPlan, day0: int) -> None:
    from brainobs.ingest.synthetic.ephys import write_recording

    preset = survey.preset
    recording_s = preset.ephys_duration_s
    behavior_s = max(MIN_BEHAVIOR_S, recording_s + 4.0)
    t_start_s = (behavior_s - recording_s) / 2
    for index in range(plan.ecephys_sessions):
        schedule = ECEPHYS_SCHEDULE[index % len(ECEPHYS_SCHEDULE)]
        session_id = ids.take("ecephys")
        session_dir = Path(subject_id) / str(session_id)
        behavior_truth = _write_behavior(
            survey, survey.root / session_dir / "behavior", session_id, behavior_s, schedule[1], schedule[2]
        )
        probe_truth = Path(TRUTH_DIR) / "ephys" / f"session_{session_id}" / PROBE_NAME
        started = time.perf_counter()
        fields = write_recording(
            survey.root / session_dir / PROBE_NAME,
            survey.root / probe_truth,
            num_channels=preset.ephys_num_channels,
            duration_s=recording_s,
            seed=entity_int_seed(survey.seed, "ephys", session_id, 0),
            t_start_s=t_start_s,
            num_units=preset.ephys_num_units,
        )
        survey.report(
            f"ecephys session {session_id} ({subject_id}): {preset.ephys_num_channels} channels, "
            f"{recording_s:g} s, {time.perf_counter() - started:.1f} s"
        )
        survey.add(
            "sessions",
            _session_row(subject_id, session_id, "ecephys", day0 + index, schedule, "NP.1",
                         "VisualBehaviorNeuropixels", (session_dir / "behavior").as_posix()),
            {"session_id": session_id, "subject_id": subject_id, "modality": "ecephys",
             "behavior_truth": behavior_truth, "duration_s": behavior_s},
        )  # fmt: skip
        for name in ("recording_path", "probe_file"):
            fields[name] = (session_dir / PROBE_NAME / fields[name]).as_posix()
        survey.add(
            "probe_insertions",
            {"session_id": session_id, "probe_name": PROBE_NAME, **fields, "targeted_structure": "VISp"},
            {"session_id": session_id, "probe_name": PROBE_NAME, "truth_dir": probe_truth.as_posix(),
             "recording_path": fields["recording_path"], "t_start_s": t_start_s, "duration_s": recording_s},
        )  # fmt: skip


def _write_survey(survey: _Survey) -> None:
    ids = _Ids()
    (survey.root / TRUTH_DIR / "ophys").mkdir(parents=True, exist_ok=True)
    for k, plan in enumerate(survey.preset.subjects):
        if plan.indicator not in INDICATOR_LINES:
            raise ValueError(f"unknown indicator {plan.indicator!r}; choose one of {', '.join(INDICATOR_LINES)}")
        line = INDICATOR_LINES[plan.indicator]
        subject_id = f"M{k + 1:04d}"
        survey.add(
            "subjects",
            {"subject_id": subject_id, "sex": "MF"[k % 2], "date_of_birth": FIRST_BIRTH_DAY + dt.timedelta(days=k),
             "species": "Mus musculus", "full_genotype": line.full_genotype, "driver_line": line.driver_line,
             "reporter_line": line.reporter_line, "indicator": line.indicator},
            {"subject_id": subject_id, "indicator": line.indicator, "decay_time_s": line.decay_time_s},
        )  # fmt: skip
        day0 = 7 * k
        if plan.sessions:
            _write_subject_ophys(survey, ids, subject_id, plan, day0)
        _write_subject_ecephys(survey, ids, subject_id, plan, day0 + plan.sessions)
    header = f"# synthetic survey written by brainobs: preset {survey.preset.name}, seed {survey.seed}\n"
    tmp = survey.root / "manifest.yaml.partial"
    tmp.write_text(header + yaml.safe_dump(survey.manifest, sort_keys=False, default_flow_style=False))
    os.replace(tmp, survey.root / "manifest.yaml")
    write_json(survey.root / TRUTH_DIR / "survey.json", survey.truth)


def _is_survey(folder: Path) -> bool:
    return (folder / TRUTH_DIR / "survey.json").is_file() and (folder / "manifest.yaml").is_file()


def generate_survey(
    out_dir: Path | str,
    preset: str = "tiny",
    seed: int = 0,
    *,
    progress: Callable[[str], None] | None = None,
    **overrides,
) -> SurveySummary:
    """Write a synthetic survey into out_dir (empty, absent, or holding a previous synthetic survey).

    `overrides` replace fields of the preset's OphysParams (e.g. n_frames, photons_per_pixel,
    max_fov_shift_px) or its ephys_* fields. The survey is built in a sibling folder and moved into
    place when complete; a previous synthetic survey there is replaced, any other content is refused.
    `progress` receives one line per written experiment and recording (they are also logged).
    """
    started = time.perf_counter()
    resolved = resolve_preset(preset, **overrides)
    _check_durations(resolved)
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise SurveyExistsError(f"{out_dir}: exists and is not a folder; choose another")
    if out_dir.exists() and any(out_dir.iterdir()) and not _is_survey(out_dir):
        raise SurveyExistsError(f"{out_dir}: folder is not empty and holds no synthetic survey; choose another")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.synth-partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()

    def report(message: str) -> None:
        logger.info(message)
        if progress is not None:
            progress(message)

    survey = _Survey(root=staging, preset=resolved, seed=seed, report=report)
    try:
        _write_survey(survey)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        previous = out_dir.parent / f".{out_dir.name}.synth-old"
        out_dir.rename(previous)
        staging.rename(out_dir)
        shutil.rmtree(previous)
    else:
        staging.rename(out_dir)
    truth = survey.truth
    return SurveySummary(
        out_dir=out_dir,
        manifest=out_dir / "manifest.yaml",
        preset=resolved.name,
        seed=seed,
        subjects=len(truth["subjects"]),
        sessions=len(truth["sessions"]),
        containers=len(truth["containers"]),
        experiments=len(truth["experiments"]),
        probe_insertions=len(truth["probe_insertions"]),
        bytes_written=sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file()),
        seconds=time.perf_counter() - started,
    )
