"""Hashed parameter sets: the same parameters can never be stored under two names.

Every parameter-set table has a name as its primary key and the columns ``params : json`` and
``param_hash : char(64)`` (unique). :func:`insert_params` is idempotent: inserting the same name with the
same parameters again does nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import datajoint as dj


class ParamSetError(ValueError):
    """A parameter set clashes with one already stored."""


def params_hash(params: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``params`` (sorted keys, no whitespace)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def paramset_definition(name: str, comment: str) -> str:
    """The definition of a parameter-set table whose primary key is ``name``."""
    return f"""
    # {comment}
    {name} : varchar(32)
    ---
    params : json
    param_hash : char(64)
    description = "" : varchar(255)
    unique index (param_hash)
    """


def select_new(source: type[dj.Table], selection: type[dj.Manual], paramset: type[dj.Lookup], name: str) -> int:
    """Pair every item of ``source`` not yet in ``selection`` with parameter set ``name``; returns how many."""
    (name_attr,) = paramset.primary_key
    keys = ((source - selection).proj() * (paramset & {name_attr: name}).proj()).keys()
    selection.insert(keys, skip_duplicates=True)
    return len(keys)


def insert_params(table: type[dj.Table], name: str, params: dict[str, Any], description: str = "") -> str:
    """Store ``params`` under ``name`` in ``table``; returns the name. Refuses a second name for the same values."""
    (name_attr,) = table.primary_key
    digest = params_hash(params)
    same_values = (table & {"param_hash": digest}).to_dicts()
    if same_values:
        stored = same_values[0][name_attr]
        if stored != name:
            raise ParamSetError(f"{table.__name__}: these parameters are already stored as {stored!r}")
        return name
    if table & {name_attr: name}:
        raise ParamSetError(f"{table.__name__}: {name!r} already names different parameters")
    table.insert1({name_attr: name, "params": params, "param_hash": digest, "description": description})
    return name
