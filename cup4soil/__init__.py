"""cup4soil: European soil-health maps from public Earth-observation archives.

The chain: :func:`search` STAC catalogs -> :func:`load_s2` a lazy, harmonised
Sentinel-2 cube -> :mod:`cup4soil.masks` SCMaP validity -> :mod:`cup4soil.scmap`
bare-soil composites -> :mod:`cup4soil.models` soil property maps with 90 % intervals ->
products written with :mod:`cup4soil.store`.
:mod:`cup4soil.sample` makes an offline sample archive.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import cluster, errors, masks, models, quicklook, sample, scmap, store
from .catalog import search
from .cube import load_s2

try:
    __version__ = version("cup4soil")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "__version__", "cluster", "errors", "load_s2", "masks", "models", "quicklook", "sample",
    "scmap", "search", "store",
]
