"""Continental runs on the EEA reference grid.

- :func:`tiles` -- the EEA grid cells (``10kmE432N321``) covering an AOI, with their GeoBoxes
  (:mod:`.grid`).
"""

from __future__ import annotations

from .grid import Tile, parse_code, tile, tiles

__all__ = ["Tile", "parse_code", "tile", "tiles"]
