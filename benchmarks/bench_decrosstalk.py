"""Decrosstalk against ground truth: the `multiplane` preset (4 planes in 2 pairs, crosstalk 0.05-0.25).

    python -m benchmarks.bench_decrosstalk [--seeds 0 1]

For each seed a `multiplane` survey is generated and, in a fresh child process, ingested into an embedded
PostgreSQL under a temporary BRAINOBS_HOME; MotionCorrection, Segmentation and Decrosstalk are populated
for every plane. Reported per plane: the true and estimated crosstalk (the partner's share of the plane's
light) and ghost detection precision / recall (`brainobs.api.score_decrosstalk`) on the ROIs segmentation
kept valid and on all ROIs, for Allen's ICA (the stored rows), the image-based method (`enhanced`) and Allen's
ICA reading the partner at this plane's scan points (``decrosstalk_paired_movie`` "signal_offsets"), all on
the same ROIs; then the totals. tests/test_decrosstalk_db.py holds one pair to >= 0.75 each
(target 0.9).

Then, for pairs generated at each crosstalk level of the preset (`brainobs.ingest.synthetic.pairs`, true
masks, movies registered by the true motion), the median correlation of the signal plane's true cells with
their true calcium: raw mask traces against Allen's unmixed traces (tests/test_ophys_decrosstalk.py guards
0.25 with a margin).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks import ingested_survey, load_average, populate, run_child

TABLES = ["MotionCorrection", "Segmentation", "Decrosstalk"]
# the prefix of each method's score rows, and its name in the totals
METHODS = {"": "ICA (allen)", "image ": "image", "paired ": "ICA, partner at this plane's scan points"}
ROI_SETS = (("valid", {}), ("all", {"valid_only": False}))


def child_survey(seed: str) -> dict:
    """One multiplane survey generated, processed and scored, in a temporary folder (run in a fresh process)."""
    from brainobs import api
    from brainobs.ingest.synthetic import generate_survey
    from brainobs.schemas import ophys

    with tempfile.TemporaryDirectory(prefix="bench-decrosstalk-") as tmp:
        started = time.perf_counter()
        summary = generate_survey(Path(tmp) / "data", "multiplane", seed=int(seed))
        index = json.loads((summary.out_dir / "ground_truth" / "survey.json").read_text())
        true_crosstalk = {row["experiment_id"]: row["crosstalk"] for row in index["experiments"]}
        rows = []
        with ingested_survey(summary.manifest, Path(tmp) / "home", "benchdecrosstalk_") as settings:
            populate(settings, TABLES)
            for plane in ophys.Decrosstalk.to_dicts(order_by="experiment_id"):
                experiment_id = plane["experiment_id"]
                key = {"experiment_id": experiment_id, "ophys_paramset": plane["ophys_paramset"]}
                image = ophys.decrosstalk_as(key, "enhanced")
                moved = ophys.decrosstalk_as(key, "allen", decrosstalk_paired_movie="signal_offsets")
                labels = {
                    "": None,
                    "image ": dict(zip(ophys.roi_ids(key), image.labels, strict=True)),
                    "paired ": dict(zip(ophys.roi_ids(key), moved.labels, strict=True)),
                }
                scores = {
                    f"{method}{rois}": list(
                        vars(api.score_decrosstalk(experiment_id, summary.out_dir, **options, labels=given)).values()
                    )
                    for method, given in labels.items()
                    for rois, options in ROI_SETS
                }
                rows.append(
                    {"experiment_id": experiment_id, "true": true_crosstalk[experiment_id],
                     "estimated": plane["crosstalk"], "image estimated": image.crosstalk,
                     "paired estimated": moved.crosstalk, **scores}
                )  # fmt: skip
        return {"seconds": time.perf_counter() - started, "planes": rows}


def unmixing_correlations(seed: int, root: Path) -> list[tuple[float, float, float]]:
    """(crosstalk, median r raw, median r unmixed) of a generated pair's first plane, per crosstalk level."""
    import numpy as np

    from brainobs.ingest.synthetic.pairs import true_pair
    from brainobs.ingest.synthetic.scoring.traces import trace_correlations
    from brainobs.populate.ophys.decrosstalk import DECROSSTALK_PARAMS, decrosstalk_plane, mask_traces
    from brainobs.populate.ophys.rois import records_from_masks

    def median_r(traces: np.ndarray, calcium: np.ndarray) -> float:
        return float(np.nanmedian(trace_correlations(traces, calcium, [(i, i) for i in range(len(calcium))])))

    rows = []
    for crosstalk in (0.05, 0.1, 0.15, 0.25):
        folder = root / f"pair-{seed}-{crosstalk}"
        folder.mkdir()
        pair = true_pair(folder, (crosstalk, 0.1), seed=seed)
        rois = records_from_masks(pair.masks)
        result = decrosstalk_plane(pair.signal_movie, pair.paired_movie, rois, DECROSSTALK_PARAMS)
        raw = median_r(mask_traces(pair.signal_movie, rois), pair.calcium)
        rows.append((crosstalk, raw, median_r(result.unmixed, pair.calcium)))
    return rows


def _ratio(n: int, d: int) -> str:
    return f"{n / d:.3f}" if d else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_survey(args.child[1])), flush=True)
        return
    totals = {f"{method}{rois}": [0, 0, 0, 0] for method in METHODS for rois, _ in ROI_SETS}
    image_errors = []
    for seed in args.seeds:
        result = run_child("benchmarks.bench_decrosstalk", "survey", seed)
        print(f"multiplane seed {seed}: {result['seconds']:.0f} s (load {load_average()})", flush=True)
        for row in result["planes"]:
            for name in totals:
                totals[name] = [a + b for a, b in zip(totals[name], row[name], strict=True)]
            image_errors.append(abs(row["image estimated"] - row["true"]))
            print(
                f"  plane {row['experiment_id']}: crosstalk {row['true']:.2f}, estimated {row['estimated']:.3f} (ICA), "
                f"{row['image estimated']:.3f} (image), {row['paired estimated']:.3f} (ICA, paired registration)",
                flush=True,
            )
            for name in totals:
                rois, ghosts, flagged, correct = row[name]
                print(f"    {name} ROIs {rois}: {ghosts} ghosts, {flagged} flagged, {correct} correct", flush=True)
    for method, title in METHODS.items():
        for kind, _ in ROI_SETS:
            rois, ghosts, flagged, correct = totals[f"{method}{kind}"]
            print(
                f"total, {title}, {kind} ROIs ({rois}): ghost precision "
                f"{_ratio(correct, flagged)} recall {_ratio(correct, ghosts)}"
            )
    print(f"image-based crosstalk: largest error {max(image_errors):.3f} over {len(image_errors)} planes")
    with tempfile.TemporaryDirectory(prefix="bench-decrosstalk-traces-") as tmp:
        for seed in args.seeds:
            for crosstalk, raw, unmixed in unmixing_correlations(seed, Path(tmp)):
                print(
                    f"seed {seed}, crosstalk {crosstalk:.2f} (partner 0.10): true cells' median r with true calcium "
                    f"{raw:.3f} raw, {unmixed:.3f} unmixed",
                    flush=True,
                )


if __name__ == "__main__":
    main()
