"""Subjects and the calcium indicators they express."""

import datajoint as dj

from brainobs.populate.ophys.indicators import DECAY_TIMES

schema = dj.Schema()


@schema
class Indicator(dj.Lookup):
    definition = """
    # calcium indicator (or driver;reporter combination) and its decay time, for L0 event detection
    indicator : varchar(32)
    ---
    decay_time : float64      # s
    """
    contents = sorted(DECAY_TIMES.items())


@schema
class Subject(dj.Manual):
    definition = """
    # one mouse
    subject_id : varchar(32)
    ---
    sex : enum('M', 'F', 'U')
    date_of_birth = null : date
    species = "Mus musculus" : varchar(64)
    full_genotype = "" : varchar(255)
    driver_line = "" : varchar(255)
    reporter_line = "" : varchar(255)
    -> Indicator
    """
