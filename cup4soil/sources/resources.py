"""Public resources cup4soil fetches by URL: DLR's PVIR2 threshold raster.

A file fetch and a local cache, nothing more: what the file means (a threshold resampled
onto a cube) is :mod:`cup4soil.scmap.threshold`'s business.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from ..errors import ThresholdError

__all__ = ["DLR_THRESHOLD_FILE", "DLR_THRESHOLD_URL", "THRESHOLD_ENV", "dlr_threshold_path"]

#: DLR's published PVIR2 threshold raster for Europe (EPSG:4326, south-up).
DLR_THRESHOLD_URL = (
    "https://raw.githubusercontent.com/Schiggebam/dlr_scmap_resources/refs/heads/main/"
    "th_S2_s2cr_buffered_cog.tif"
)
#: Environment variable naming a local copy of the DLR threshold raster (offline runs).
THRESHOLD_ENV = "CUP4SOIL_DLR_THRESHOLD"
#: File name of the raster in the cache folder.
DLR_THRESHOLD_FILE = "th_S2_s2cr_buffered_cog.tif"


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cup4soil"


def dlr_threshold_path() -> Path:
    """A local path to DLR's threshold raster.

    The file named by ``$CUP4SOIL_DLR_THRESHOLD`` if set; else the cached copy in
    ``$XDG_CACHE_HOME/cup4soil`` (``~/.cache/cup4soil``), fetched from
    :data:`DLR_THRESHOLD_URL` the first time.

    Raises
    ------
    ThresholdError
        ``$CUP4SOIL_DLR_THRESHOLD`` names no file, or the download failed (offline).
    """
    env = os.environ.get(THRESHOLD_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ThresholdError(f"{THRESHOLD_ENV}={env} does not name a file.")
        return path
    cache = _cache_dir()
    path = cache / DLR_THRESHOLD_FILE
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        # The module attribute is read at call time, so tests can point it at a local server.
        url = DLR_THRESHOLD_URL
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                tmp.write_bytes(resp.read())
        except OSError as exc:
            raise ThresholdError(
                f"could not fetch DLR's threshold raster from {url} ({exc}). "
                f"Offline, set {THRESHOLD_ENV} to a local copy, or pass threshold=<path|float>."
            ) from None
        tmp.replace(path)  # a complete file or none
    return path
