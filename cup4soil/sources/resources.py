"""Public resources cup4soil fetches by URL: DLR's PVIR2 threshold raster.

A file fetch with a pinned checksum and a local cache, nothing more (pooch does the
download, the temporary file and the hash check): what the file means (a threshold
resampled onto a cube) is :mod:`cup4soil.scmap.threshold`'s business.
"""

from __future__ import annotations

import os
from pathlib import Path

import requests

from ..errors import ThresholdError

__all__ = [
    "DLR_THRESHOLD_FILE", "DLR_THRESHOLD_SHA256", "DLR_THRESHOLD_URL", "THRESHOLD_ENV",
    "dlr_threshold_path",
]

#: DLR's published PVIR2 threshold raster for Europe (EPSG:4326, south-up).
DLR_THRESHOLD_URL = (
    "https://raw.githubusercontent.com/Schiggebam/dlr_scmap_resources/refs/heads/main/"
    "th_S2_s2cr_buffered_cog.tif"
)
#: SHA-256 of the raster as published (and as in the tests' shared copy): a download that
#: differs is refused rather than used (DLR may change the file behind the same URL).
DLR_THRESHOLD_SHA256 = "1b3780fa093b5eab00a16ed35db6b77953197f35c1ecc2ea97ec411f64fee7b1"
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
    if path.is_file():
        return path
    # The module attribute is read at call time, so tests can point it at a local server.
    url = DLR_THRESHOLD_URL
    # Imported here, not at module level: pooch imports tqdm.auto, which prints a warning in
    # every Jupyter kernel without ipywidgets, and only a download needs it.
    import pooch

    try:
        # pooch writes to a temporary name and renames after the hash check: a complete,
        # verified file or none.
        fetched = pooch.retrieve(url, known_hash=f"sha256:{DLR_THRESHOLD_SHA256}",
                                 fname=DLR_THRESHOLD_FILE, path=cache, progressbar=False)
    except ValueError as exc:  # pooch's hash mismatch
        raise ThresholdError(
            f"the raster fetched from {url} is not the one cup4soil was tested with "
            f"(SHA-256 {DLR_THRESHOLD_SHA256[:12]}...; {str(exc).splitlines()[0][:160]}). "
            f"If DLR published a new version on purpose, download it yourself and set "
            f"{THRESHOLD_ENV} to it, or pass threshold=<path|float>."
        ) from None
    except (OSError, requests.RequestException) as exc:
        raise ThresholdError(
            f"could not fetch DLR's threshold raster from {url} ({type(exc).__name__}). "
            f"Offline, set {THRESHOLD_ENV} to a local copy, or pass threshold=<path|float>."
        ) from None
    return Path(fetched)
