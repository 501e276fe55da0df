"""NWB writers, release builder and validation."""
