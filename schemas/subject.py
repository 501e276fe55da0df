"""Subjects and the calcium indicators they express."""

import datajoint as dj

from brainobs.populate.ophys.indicators import INDICATORS

schema = dj.Schema()


@schema
class Indicator(dj.Lookup):
    definition = """
    # calcium indicator a subject expresses (the imaging plane's indicator in NWB)
    indicator : varchar(32)
    """
    contents = [(name,) for name in INDICATORS]


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
    decay_time = null : float64  # s, indicator decay for L0 events when full_genotype is not in Allen's table
    """
