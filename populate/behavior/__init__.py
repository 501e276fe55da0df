"""Behavior and stimulus core: running speed, stimulus presentations, trials, performance, clock alignment."""
