"""Synthetic ground-truth surveys: 2-photon movies, Neuropixels recordings, behavior and stimulus."""
