"""Queries restricted by what a user typed: dicts and keywords whose names are checked, never SQL strings.

DataJoint ignores the keys of a restriction dict that name no attribute, so a misspelled keyword would
return every row; :func:`restrict` refuses it and lists the names that are valid.
"""

from __future__ import annotations

import pandas as pd


class RestrictionError(TypeError):
    """A restriction is not a dict, or names an attribute the query does not have."""


def restrict(query, restrictions: tuple = (), keywords: dict | None = None, *, strict: bool = True):
    """``query`` restricted by each dict of ``restrictions`` and by ``keywords`` (all must hold).

    strict: a name that is no column of ``query`` raises (what users get); without it such names are
    ignored, as DataJoint does, for the pipeline's own calls with keys of other tables."""
    valid = set(query.heading.names)
    for restriction in (*restrictions, keywords or {}):
        if not isinstance(restriction, dict):
            raise RestrictionError(
                f"restrictions are dicts or keywords, got {type(restriction).__name__} {restriction!r} "
                "(SQL strings are not accepted)"
            )
        unknown = sorted(set(restriction) - valid)
        if unknown and strict:
            raise RestrictionError(f"unknown restriction {', '.join(unknown)}; valid names: {', '.join(sorted(valid))}")
        query = query & restriction
    return query


def frame(query, **fetch) -> pd.DataFrame:
    """The rows of ``query`` as a DataFrame that keeps the query's columns when it is empty."""
    return pd.DataFrame(query.to_dicts(**fetch), columns=list(query.heading.names))
