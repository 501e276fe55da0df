"""2-photon processing core: registration, segmentation, traces, dF/F and L0 events."""
