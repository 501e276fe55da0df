"""The processing core that DataJoint `make()` methods call (not DataJoint's "populate"): pure functions on arrays,
no DataJoint and no schemas inside.

The top-level folders (docs/architecture.md says where new work goes):
- ``brainobs/``: base (settings, database, checksums) that anything imports; app (cli, api, pipeline, worker) on top.
- ``ingest/``: readers of manifests and raw files; the synthetic survey generator and its scorers.
- ``schemas/``: DataJoint tables; each make() is fetch -> one call into this core -> insert.
- ``populate/``: this core: 2-photon, Neuropixels, behavior, matching, QC and release policy, on plain data.
- ``export/``: NWB writers, release layout and validation, from plain data bundles; reads no table.
"""
