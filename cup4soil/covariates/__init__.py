"""Covariates: Sentinel-1 statistics, terrain, land cover and user rasters on the
composite's grid, and the covariate sets of CUP4SOIL.

Builds on :mod:`cup4soil.sources` (search, per-collection metadata) and
:mod:`cup4soil.cube` (read plans); knows no SCMaP science and no storage.
"""

from __future__ import annotations

from .grid import as_geobox
from .landcover import worldcover
from .rasters import raster
from .sar import sentinel1
from .sets import SETS, stack
from .topography import terrain

__all__ = ["SETS", "as_geobox", "raster", "sentinel1", "stack", "terrain", "worldcover"]
