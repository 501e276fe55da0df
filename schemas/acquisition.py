"""Sessions, containers, 2-photon experiments and Neuropixels probe insertions.

Identity hierarchy: Subject -> Session (one continuous recording) -> Experiment (one imaging plane of one
session); Container is one imaging plane followed across sessions; ProbeInsertion is one probe of an ecephys
session. Raw files are referenced by path relative to the data root, never copied into the database.
"""

import datajoint as dj

from brainobs.schemas.subject import Subject  # noqa: F401 - referenced by the table definitions

schema = dj.Schema()


@schema
class Session(dj.Manual):
    definition = """
    # one continuous recording of one subject
    -> Subject
    session_id : int64
    ---
    session_type : varchar(64)
    modality : enum('ophys', 'ecephys', 'behavior')
    session_start_time : datetime
    rig = "" : varchar(32)
    experience_level = "None" : enum('Familiar', 'Novel 1', 'Novel >1', 'None')
    passive = 0 : bool
    image_set = "" : varchar(16)
    project_code = "" : varchar(64)
    behavior_dir = "" : varchar(255)          # behavior/stimulus/sync folder, relative to the data root
    embargo_end = null : date                 # not in a public release before; null: start + the project's embargo
    unique index (session_id)                 # unique across the survey, not only per subject
    """


@schema
class Container(dj.Manual):
    definition = """
    # one imaging plane followed across sessions
    -> Subject
    container_id : int64
    ---
    targeted_structure : varchar(32)
    imaging_depth : int32                     # um
    unique index (container_id)               # unique across the survey, not only per subject
    """


@schema
class Experiment(dj.Manual):
    definition = """
    # one imaging plane of one 2-photon session
    -> Session
    experiment_id : int64
    ---
    -> Container
    imaging_depth : int32                     # um
    targeted_structure : varchar(32)
    frame_rate : float64                      # Hz, per plane
    width : int32                             # pixels
    height : int32                            # pixels
    pixel_size_um : float64                   # um per pixel
    movie_file : varchar(255)                 # relative to the data root
    unique index (experiment_id)              # unique across the survey, not only per session
    """


@schema
class PlaneGroup(dj.Manual):
    definition = """
    # a plane of a multi-plane (mesoscope) session: the pair imaged together and its order in the pair
    -> Experiment
    ---
    plane_group : int32                       # imaging group (pair) within the session
    plane_order : int32                       # 0 or 1 within the pair
    unique index (session_id, plane_group, plane_order)
    """


def paired_experiment(key: dict) -> dict | None:
    """The key of the experiment imaged in the same pair as ``key``'s, or None for a single plane."""
    found = (PlaneGroup & key).to_dicts()
    if not found:
        return None
    row = found[0]
    partner = (
        (
            PlaneGroup
            & {
                "session_id": row["session_id"],
                "plane_group": row["plane_group"],
                "plane_order": 1 - row["plane_order"],
            }
        )
        .proj()
        .to_dicts()
    )
    return partner[0] if partner else None


@schema
class ProbeInsertion(dj.Manual):
    definition = """
    # one Neuropixels probe of an ecephys session
    -> Session
    probe_name : varchar(16)
    ---
    probe_type : varchar(32)
    recording_format : enum('binary', 'spikeglx', 'openephys')
    recording_path : varchar(255)             # relative to the data root
    probe_file = "" : varchar(255)            # probeinterface JSON, relative to the data root (binary only)
    targeted_structure = "" : varchar(32)     # where the probe was aimed: its channels' location until registered
    sampling_rate : float64                   # Hz
    num_channels : int32
    """
