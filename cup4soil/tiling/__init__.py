"""Continental runs on the EEA reference grid: tiles, plans, runs that resume, one mosaic.

- :func:`tiles` -- the EEA grid cells (``10kmE432N321``) covering an AOI, with their GeoBoxes
  (:mod:`.grid`);
- :func:`plan` -- search once, assign items to tiles, estimate bytes, CPU, memory and output
  per tile, from metadata only (:mod:`.plan`); a :class:`Plan` is saved as ``plan.json``;
- :func:`run` -- every tile's composite into one mosaic Zarr, failures isolated and retried,
  resumable, a STAC collection of tiles at the end; :func:`status` (:mod:`.run`).
"""

from __future__ import annotations

from .grid import Tile, parse_code, tile, tiles
from .plan import Plan, Projection, TilePlan, plan
from .run import RunResult, TileState, run, status

__all__ = ["Plan", "Projection", "RunResult", "Tile", "TilePlan", "TileState", "parse_code",
           "plan", "run", "status", "tile", "tiles"]
