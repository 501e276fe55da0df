"""brainobs: the Allen Brain Observatory pipeline on DataJoint 2.x."""

import warnings

# DataJoint warns on import when no datajoint.json exists; brainobs configures it from its own settings.
warnings.filterwarnings("ignore", message="No datajoint.json found")

__version__ = "0.1.0"
