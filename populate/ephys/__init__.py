"""Neuropixels processing core: preprocessing, sorting, duplicate removal, waveforms and metrics."""
