"""brainobs: the Allen Brain Observatory pipeline on DataJoint 2.x."""

__version__ = "0.1.0"
