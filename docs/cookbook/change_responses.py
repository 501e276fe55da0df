"""Cells of one driver line in VISp on novel-image sessions, with their mean response to image changes.

python docs/cookbook/change_responses.py [DRIVER]      # default: Sst
"""

import sys

import numpy as np
import pandas as pd

from brainobs import api

WINDOW_S = (0.0, 0.5)  # response window after the change
BASELINE_S = (-0.5, 0.0)


def change_responses(driver: str = "Sst", structure: str = "VISp") -> pd.DataFrame:
    """One row per ROI: cell_specimen_id, experiment, and mean dF/F after changes minus before."""
    experiments = api.ophys_experiments(targeted_structure=structure)
    novel = experiments["experience_level"].isin(["Novel 1", "Novel >1"])
    chosen = experiments[novel & experiments["driver_line"].str.contains(driver, regex=False)]
    rows = []
    for experiment in chosen.itertuples():
        dff = api.dff_traces(experiment.experiment_id)
        stimuli = api.stimulus_presentations(experiment.session_id)
        changes = stimuli.loc[stimuli["is_change"], "start_time"].to_numpy()
        times = dff.index.to_numpy()
        after = np.zeros(len(times), bool)
        before = np.zeros(len(times), bool)
        for change in changes:
            after |= (times >= change + WINDOW_S[0]) & (times < change + WINDOW_S[1])
            before |= (times >= change + BASELINE_S[0]) & (times < change + BASELINE_S[1])
        response = dff[after].mean() - dff[before].mean()
        cells = api.cells(experiment_id=experiment.experiment_id).set_index("cell_roi_id")
        rows.append(
            pd.DataFrame(
                {
                    "experiment_id": experiment.experiment_id,
                    "cell_roi_id": response.index,
                    "cell_specimen_id": cells.reindex(response.index)["cell_specimen_id"].to_numpy(),
                    "n_changes": len(changes),
                    "mean_change_response": response.to_numpy(),
                }
            )
        )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


if __name__ == "__main__":
    print(change_responses(*sys.argv[1:2]))
