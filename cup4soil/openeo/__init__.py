"""Stage — openEO: SCMaP as an openEO process graph, exported, run locally, submitted.

:func:`scmap_graph` exports the composite of :func:`cup4soil.scmap.composite` as a process
graph for the Copernicus Data Space (DLR's published graph with its defects fixed);
:func:`run_local` executes any such graph -- also DLR's own -- with
``openeo_processes_dask`` on a cube cup4soil built, so both worlds can be compared;
:func:`submit` runs a graph on a real openEO back-end and opens the result in the same
layout (:func:`to_composite`, :func:`open_result`).

Needs the ``openeo`` extra (``pip install "cup4soil[openeo]"``); importing this module
does not.
"""

from __future__ import annotations

from .engine import local_registry, run_local
from .graph import (
    CDSE_S2_COLLECTION,
    CDSE_WORLDCOVER_COLLECTION,
    DIFFERENCES,
    DLR_THRESHOLD_STAC,
    load_graph,
    output_labels,
    scmap_graph,
)
from .results import open_result, to_composite
from .submit import submit

__all__ = [
    "CDSE_S2_COLLECTION", "CDSE_WORLDCOVER_COLLECTION", "DIFFERENCES", "DLR_THRESHOLD_STAC",
    "load_graph", "local_registry", "open_result", "output_labels", "run_local",
    "scmap_graph", "submit", "to_composite",
]
