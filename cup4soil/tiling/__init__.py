"""Continental runs on the EEA reference grid.

- :func:`tiles` -- the EEA grid cells (``10kmE432N321``) covering an AOI, with their GeoBoxes
  (:mod:`.grid`);
- :func:`plan` -- search once, assign items to tiles, estimate bytes, CPU, memory and output
  per tile, from metadata only (:mod:`.plan`); a :class:`Plan` is saved as ``plan.json``.
"""

from __future__ import annotations

from .grid import Tile, parse_code, tile, tiles
from .plan import Plan, Projection, TilePlan, plan

__all__ = ["Plan", "Projection", "Tile", "TilePlan", "parse_code", "plan", "tile", "tiles"]
