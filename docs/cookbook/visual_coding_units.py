"""Units recorded in one structure that pass the Visual Coding release filter.

python docs/cookbook/visual_coding_units.py [STRUCTURE]      # default: VISp
"""

import sys

import pandas as pd

from brainobs import api


def visual_coding_units(structure: str = "VISp") -> pd.DataFrame:
    units = api.units(preset="visual_coding")
    return units[units["location"] == structure][
        ["session_id", "probe_name", "unit_id", "firing_rate", "presence_ratio", "isi_violations", "amplitude_cutoff"]
    ]


if __name__ == "__main__":
    print(visual_coding_units(*sys.argv[1:2]))
