"""Stage 1 — sources: STAC search, AOI and time parsing, URL signing, per-collection metadata.

Knows catalogs and item metadata, never pixels or science: nothing here imports a later stage.
"""

from __future__ import annotations

from .aoi import AOILike, TimeLike, parse_aoi, parse_time
from .search import CATALOGS, CatalogSpec, search

__all__ = ["CATALOGS", "AOILike", "CatalogSpec", "TimeLike", "parse_aoi", "parse_time", "search"]
