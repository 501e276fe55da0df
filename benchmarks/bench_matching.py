"""Cross-session cell matching accuracy on synthetic containers, scored against ground truth.

    python -m benchmarks.bench_matching [--preset demo|benchmark] [--frames N] [--seeds 0 ...]
                                        [--hard-shift 15] [--hard-rotation 3]

For each seed, two surveys are generated into a temporary folder: the preset (FOV shifts up to 10 px,
rotations up to 2 degrees between sessions; --frames shortens the movies, which only feed the mean images)
and a harder variant of it (shifts up to --hard-shift px, rotations
up to --hard-rotation degrees); the largest shift and rotation actually drawn are printed.
For every container, each experiment's ROIs are the true footprints binarised at half
their peak (as tests/test_matching_synthetic.py does), its average projection the mean of its movie's frames;
``match_container`` gives each ROI a line and ``score_matching`` scores the lines against the true cell ids.
Reported per survey (summed over containers): pairwise recall and false-merge rate, n-way recall (cells seen in
>= 2 sessions recovered whole) and false-merge lines. This measures the matcher alone, not segmentation.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from benchmarks import load_average
from brainobs.ingest.synthetic import generate_survey, load_ophys_truth, load_survey_truth
from brainobs.ingest.synthetic.presets import PRESETS
from brainobs.ingest.synthetic.scoring.matching import MatchingScore, score_matching
from brainobs.populate.matching import ExperimentROIs, RoiPixels, match_container


def container_inputs(
    out: Path, container_id: int
) -> tuple[list[ExperimentROIs], dict[int, dict[int, int]], list[tuple[float, float]]]:
    """The container's experiments in session order, with true-footprint ROIs, the truth for scoring, and each
    session's true FOV displacement from the first (shift in px, rotation in degrees)."""
    survey = load_survey_truth(out)
    records = sorted(
        (e for e in survey.experiments if e["container_id"] == container_id), key=lambda e: e["session_index"]
    )
    experiments, truth, moves = [], {}, []
    for record in records:
        experiment_id = record["experiment_id"]
        average = tifffile.imread(out / record["movie_file"]).astype(np.float64).mean(axis=0)
        cells = load_ophys_truth(out, experiment_id)
        rois, ids = [], {}
        for k, footprint in enumerate(cells.footprints):
            cell_roi_id = experiment_id * 1000 + k
            rois.append(RoiPixels.from_mask(cell_roi_id, footprint >= 0.5 * footprint.max()))
            ids[cell_roi_id] = int(cells.cell_ids[k])
        experiments.append(ExperimentROIs(experiment_id, average, tuple(rois)))
        truth[experiment_id] = ids
        moves.append((float(np.hypot(*cells.fov_shift)), abs(float(cells.fov_rotation_deg))))
    return experiments, truth, moves


def score_survey(out: Path) -> tuple[list[MatchingScore], float, tuple[float, float]]:
    """One score per container, the seconds match_container took over all of them, and the largest true
    FOV shift (px) and rotation (degrees) of a session from its container's first."""
    scores, seconds, largest = [], 0.0, (0.0, 0.0)
    for container in load_survey_truth(out).containers:
        experiments, truth, moves = container_inputs(out, container["container_id"])
        largest = (max(largest[0], *(m[0] for m in moves)), max(largest[1], *(m[1] for m in moves)))
        started = time.perf_counter()
        match = match_container(experiments)
        seconds += time.perf_counter() - started
        scores.append(score_matching(match.line_of(), truth))
    return scores, seconds, largest


def summary(scores: list[MatchingScore]) -> str:
    def total(name: str) -> int:
        return sum(getattr(s, name) for s in scores)

    def ratio(num: str, den: str) -> float:
        return total(num) / total(den) if total(den) else float("nan")

    return (
        f"pair recall {ratio('n_recovered_pairs', 'n_true_pairs'):.3f} ({total('n_recovered_pairs')}/"
        f"{total('n_true_pairs')}), pair false merges {total('n_false_merge_pairs')}/{total('n_cell_pairs_predicted')}"
        f" ({ratio('n_false_merge_pairs', 'n_cell_pairs_predicted'):.3f}); n-way recall "
        f"{ratio('n_cells_recovered', 'n_multi_session_cells'):.3f} ({total('n_cells_recovered')}/"
        f"{total('n_multi_session_cells')}), false-merge lines {total('n_false_merge_lines')}/"
        f"{total('n_multi_roi_lines')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("demo", "benchmark"), default="demo")
    parser.add_argument("--frames", type=int, default=None, help="frames per movie (default: the preset's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--hard-shift", type=float, default=15.0, help="max FOV shift of the harder survey, px")
    parser.add_argument("--hard-rotation", type=float, default=3.0, help="max FOV rotation of the harder survey, deg")
    args = parser.parse_args()
    frames = {"n_frames": args.frames} if args.frames else {}
    variants = {
        args.preset: frames,
        f"{args.preset}, shifts <= {args.hard_shift:g} px, rotations <= {args.hard_rotation:g} deg": {
            **frames,
            "max_fov_shift_px": args.hard_shift,
            "max_fov_rotation_deg": args.hard_rotation,
        },
    }
    with tempfile.TemporaryDirectory(prefix="bench-matching-") as tmp:
        for seed in args.seeds:
            for k, (name, overrides) in enumerate(variants.items()):
                out = Path(tmp) / f"survey{seed}_{k}"
                started = time.perf_counter()
                single_plane = [plan for plan in PRESETS[args.preset].subjects if plan.planes == 1]
                generate_survey(out, args.preset, seed=seed, subjects=tuple(single_plane), **overrides)
                generated = time.perf_counter() - started
                scores, seconds, (shift, rotation) = score_survey(out)
                print(
                    f"{name} (seed {seed}, {len(scores)} containers, true FOV moves up to {shift:.1f} px and "
                    f"{rotation:.2f} deg; generated in {generated:.0f} s, matched in {seconds:.1f} s, load "
                    f"{load_average()}): {summary(scores)}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
