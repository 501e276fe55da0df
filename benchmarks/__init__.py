"""brainobs benchmarks: python -m benchmarks.<name>."""
