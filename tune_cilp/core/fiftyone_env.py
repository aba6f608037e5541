"""Import FiftyOne with this project's defaults (no telemetry, no DB version check).

FiftyOne reads these variables at import time, so every module imports it through here.
"""

from __future__ import annotations

import os
from types import ModuleType


def import_fiftyone() -> ModuleType:
    """Return the ``fiftyone`` module, imported with tracking off and DB validation off."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    import fiftyone

    return fiftyone
