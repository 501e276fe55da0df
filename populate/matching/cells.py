"""Tables of a container's matching result, in the shape of the AllenSDK ophys_cells_table."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from brainobs.populate.matching.container import ContainerMatch


def cells_table(
    match: ContainerMatch, ophys_container_id: int, cell_specimen_ids: Sequence[int] | None = None
) -> pd.DataFrame:
    """One row per ROI: cell_specimen_id, ophys_container_id, ophys_experiment_id, cell_roi_id, valid_roi,
    n_experiments (how many experiments the specimen appears in).

    cell_specimen_ids: the id of each line (default: the line number). Which experiments a specimen is in,
    and whether it is valid in each: `table.pivot(index="cell_specimen_id", columns="ophys_experiment_id",
    values="valid_roi")` (NaN where absent).
    """
    if cell_specimen_ids is not None and len(cell_specimen_ids) != match.n_lines:
        raise ValueError(
            f"cells_table: {len(cell_specimen_ids)} cell_specimen_ids for {match.n_lines} lines "
            f"of container {ophys_container_id}"
        )
    ids = list(range(match.n_lines)) if cell_specimen_ids is None else list(cell_specimen_ids)
    table = pd.DataFrame(
        {
            "cell_specimen_id": [ids[r.line] for r in match.rois],
            "ophys_container_id": ophys_container_id,
            "ophys_experiment_id": [r.experiment_id for r in match.rois],
            "cell_roi_id": [r.cell_roi_id for r in match.rois],
            "valid_roi": [r.valid for r in match.rois],
        }
    )
    table["n_experiments"] = table.groupby("cell_specimen_id")["ophys_experiment_id"].transform("nunique")
    return table


def pair_table(match: ContainerMatch) -> pd.DataFrame:
    """One row per registered pair: the chosen transform and the match statistics."""
    rows = [
        {
            "fixed_experiment_id": t.fixed_experiment_id,
            "moving_experiment_id": t.moving_experiment_id,
            "method": t.method,
            "ssim": t.ssim,
            "rotation_deg": t.rotation_deg,
            "dx_px": t.translation_px[0],
            "dy_px": t.translation_px[1],
            "n_fixed_rois": p.n_fixed_rois,
            "n_moving_rois": p.n_moving_rois,
            "n_matched": p.n_matched,
            "match_fraction": p.match_fraction,
            "mean_cost": p.mean_cost,
        }
        for t, p in zip(match.transforms, match.pairs, strict=True)
    ]
    return pd.DataFrame(rows, columns=_PAIR_COLUMNS)


_PAIR_COLUMNS = [
    "fixed_experiment_id",
    "moving_experiment_id",
    "method",
    "ssim",
    "rotation_deg",
    "dx_px",
    "dy_px",
    "n_fixed_rois",
    "n_moving_rois",
    "n_matched",
    "match_fraction",
    "mean_cost",
]
