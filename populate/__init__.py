"""The processing core that DataJoint `make()` methods call (not DataJoint's "populate"): pure functions on arrays,
no DataJoint and no schemas inside."""
