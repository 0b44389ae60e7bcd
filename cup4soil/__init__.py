"""cup4soil: European soil-health maps from public Earth-observation archives.

The chain, one sub-package per stage (see ``docs/architecture.md``):
:mod:`cup4soil.sources` (:func:`search`) -> :mod:`cup4soil.cube` (:func:`load_s2`) ->
:mod:`cup4soil.scmap` (validity masks, bare-soil composites) -> :mod:`cup4soil.covariates`
(Sentinel-1, terrain, land cover, the covariate sets) -> :mod:`cup4soil.models`
(soil property maps with 90 % intervals) -> :mod:`cup4soil.products` (Zarr, STAC, COGs,
quicklooks); :mod:`cup4soil.tiling` runs continents tile by tile on the EEA grid
(:func:`tiles`); :mod:`cup4soil.runtime` connects clusters; :mod:`cup4soil.sample` makes an
offline sample archive.

The stage namespaces of earlier releases keep working: ``cup4soil.masks``,
``cup4soil.store``, ``cup4soil.quicklook`` and ``cup4soil.cluster`` are the modules
``scmap.masks``, ``products.store``, ``products.quicklook`` and ``runtime.cluster``, also
importable under their old dotted names.
"""

from __future__ import annotations

import sys

from . import (
    covariates,
    cube,
    errors,
    models,
    openeo,
    products,
    runtime,
    sample,
    scmap,
    soilmap,
    sources,
    tiling,
)
from ._version import __version__
from .cube import load_s2
from .products import quicklook, store
from .runtime import cluster
from .scmap import masks
from .sources import search
from .tiling import tiles

# ``import cup4soil.store`` (and the others) as before the layout by stage.
for _name, _module in {"cluster": cluster, "masks": masks, "quicklook": quicklook,
                       "store": store}.items():
    sys.modules[f"{__name__}.{_name}"] = _module

__all__ = [
    "__version__", "cluster", "covariates", "cube", "errors", "load_s2", "masks", "models",
    "openeo", "products", "quicklook", "runtime", "sample", "scmap", "search", "soilmap", "sources",
    "store", "tiles", "tiling",
]
