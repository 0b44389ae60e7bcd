"""Stage 3 — SCMaP: DLR's Soil Composite Mapping Processor (validity, bare soil, composites).

Pure science on cubes from :mod:`cup4soil.cube`: knows no storage.
"""

from __future__ import annotations

from . import masks
from .api import (
    DEFAULT_TASK_MEMORY,
    DLR_THRESHOLD_URL,
    PRODUCTS,
    THRESHOLD_ENV,
    ThresholdError,
    composite,
    observations,
    threshold_on,
    to_soilsuite,
)

__all__ = [
    "DEFAULT_TASK_MEMORY", "DLR_THRESHOLD_URL", "PRODUCTS", "THRESHOLD_ENV", "ThresholdError",
    "composite", "masks", "observations", "threshold_on", "to_soilsuite",
]
