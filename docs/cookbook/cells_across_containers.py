"""A join across containers: how many cells each container tracks, and in how many of its sessions,
split by the sessions' experience level (DataJoint query, then pandas)."""

import pandas as pd

from brainobs.schemas import activate
from brainobs.schemas.acquisition import Experiment, Session
from brainobs.schemas.matching import CellMatching


def cells_across_containers() -> pd.DataFrame:
    activate()
    query = CellMatching.CellSpecimen * Experiment.proj("container_id") * Session.proj("experience_level")
    rows = query.to_pandas().reset_index()
    if rows.empty:
        return rows
    per_cell = rows.groupby(["container_id", "cell_specimen_id"])["experiment_id"].nunique().rename("n_sessions")
    table = rows.merge(per_cell.reset_index(), on=["container_id", "cell_specimen_id"])
    return (
        table.groupby(["container_id", "experience_level"])
        .agg(n_cells=("cell_specimen_id", "nunique"), mean_sessions_per_cell=("n_sessions", "mean"))
        .reset_index()
    )


if __name__ == "__main__":
    print(cells_across_containers())
