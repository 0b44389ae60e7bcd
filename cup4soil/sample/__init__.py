"""The synthetic sample archive: a hidden truth and a Sentinel-2 L2A archive made from it.

Used by the demo and the tests; offline, deterministic.
"""

from __future__ import annotations

from .archive import SampleCatalog, make_catalog

__all__ = ["SampleCatalog", "make_catalog"]
