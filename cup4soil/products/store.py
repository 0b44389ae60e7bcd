"""Products as Zarr stores on local disk or object storage: resumable, region by region.

Layout of a product at ``url`` (any fsspec URL: a path, ``s3://``, ``gs://``, ``az://``)::

    url/zarr.json ...                     Zarr (v3 by default) with CF metadata
    url.cup4soil/plan.json                regions and a fingerprint of the layout (written first)
    url.cup4soil/regions/<iy>-<ix>.json   one per finished region: SHA-256 per variable
    url.cup4soil/stac-item.json           the product's STAC Item
    url.cup4soil/complete.json            written last: its presence means "complete"

:func:`write` writes the metadata once, then each spatial region (whole Zarr chunks, so
writers of distinct regions never touch the same object, nor the metadata) as its own task,
each followed by its manifest; only then the STAC item and the completion marker.
``mode="resume"`` keeps the regions whose manifests exist and whose checksums still match,
and computes the rest. :func:`open` refuses a product without the marker and says how many
regions are missing. :func:`update_attrs` adds attributes to a complete product (e.g. the
stretch of its quicklooks) without touching its data.

This module is the public face of the products stage; the work is done in
:mod:`.writer` (Zarr writer), :mod:`.regions` (region tasks), :mod:`.reader` (open, info),
:mod:`.layout` (where objects live, status), :mod:`.cf` (CF metadata), :mod:`.stac` and
:mod:`.cog`.
"""

from __future__ import annotations

from ..errors import IncompleteProductError
from .cog import to_cogs
from .layout import COMPLETE_MARKER
from .layout import PLAN as PLAN  # the sidecar's object names, as before
from .layout import REGIONS as REGIONS
from .layout import SIDECAR as SIDECAR
from .layout import STAC_ITEM as STAC_ITEM
from .reader import info, open
from .stac import stac_collection, stac_item
from .writer import ProductInfo, update_attrs, write

__all__ = [
    "COMPLETE_MARKER", "IncompleteProductError", "ProductInfo", "info", "open",
    "stac_collection", "stac_item", "to_cogs", "update_attrs", "write",
]
