"""Stage 6 — products: Zarr stores (resumable regions, CF metadata), STAC items, COGs, quicklooks.

Writes what earlier stages compute; knows no science.
"""

from __future__ import annotations

from . import quicklook, report, store

__all__ = ["quicklook", "report", "store"]
