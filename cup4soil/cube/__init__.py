"""Stage 2 — cube: lazy, harmonised Sentinel-2 cubes (odc-stac read plans or stackstac).

Builds on :mod:`cup4soil.sources`; knows no SCMaP science and no storage.
"""

from __future__ import annotations

from .load import load_s2

__all__ = ["load_s2"]
