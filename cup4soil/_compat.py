"""Every import of a dependency's private module, in one place.

Each name here is not part of its library's public API. The tested version ranges are
pinned in ``pyproject.toml`` (``odc-loader>=0.6,<0.7``); ``tests/test_cube.py`` compares the
read plan with ``odc.stac.load`` pixel for pixel, so a change in these helpers shows up in CI.
"""

from __future__ import annotations

# odc-loader's default nodata fuser (first valid value wins) and its fill-value rule: the
# read plan fuses exactly as odc-stac's chunk reader does.
from odc.loader._fuser import fuser_for_nodata
from odc.loader._reader import resolve_dst_fill_value

__all__ = ["fuser_for_nodata", "resolve_dst_fill_value"]
