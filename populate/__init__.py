"""The processing core: pure functions on arrays (no DataJoint inside)."""
