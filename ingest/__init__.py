"""Readers of raw files and session manifests, and the synthetic ground-truth generator."""
