"""Scoring of pipeline outputs against synthetic ground truth."""
