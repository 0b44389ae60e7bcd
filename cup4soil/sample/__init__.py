"""The synthetic sample archive: a hidden truth and a Sentinel-2 L2A archive made from it.

Used by the demo and the tests; offline, deterministic. :mod:`.world` is the hidden truth,
:mod:`.sentinel2` renders its scenes, :mod:`.archive` writes them as COGs and a static STAC
catalog, :mod:`.catalog` is the handle on a written archive.
"""

from __future__ import annotations

from .archive import make_catalog
from .catalog import SampleCatalog

__all__ = ["SampleCatalog", "make_catalog"]
