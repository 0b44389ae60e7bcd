"""Quicklook PNGs of products, written with rasterio (no plotting library needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["false_colour", "scalar_map"]

# A perceptually ordered ramp (viridis anchors), interpolated to 256 entries.
_ANCHORS = np.array([
    [68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37],
], dtype=float)
_LUT = np.stack([np.interp(np.linspace(0, 4, 256), np.arange(5), _ANCHORS[:, c])
                 for c in range(3)], axis=1).astype(np.uint8)


def _write_png(path: str | Path, rgb: np.ndarray) -> Path:
    import rasterio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = rgb.shape[1:]
    with rasterio.open(path, "w", driver="PNG", width=w, height=h, count=3,
                       dtype="uint8") as dst:
        dst.write(rgb)
    return path


def _stretch(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((x - lo) / max(hi - lo, 1e-12) * 255, 0, 255)


def false_colour(
    src: xr.DataArray, path: str | Path, *, bands: tuple[str, str, str] = ("B11", "B08", "B04")
) -> Path:
    """SWIR1/NIR/red composite of a ``(band, y, x)`` reflectance product (x 10000), with a
    2-98 % stretch per band; nodata (NaN) in black."""
    layers = []
    for b in bands:
        x = np.asarray(src.sel(band=b).values, dtype=float)
        finite = x[np.isfinite(x)]
        lo, hi = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
        layers.append(np.where(np.isfinite(x), _stretch(x, lo, hi), 0))
    return _write_png(path, np.stack(layers).astype(np.uint8))


def scalar_map(
    da: xr.DataArray, path: str | Path, *, vmin: float | None = None, vmax: float | None = None
) -> Path:
    """A (y, x) map through a viridis-like ramp; NaN in black."""
    x = np.asarray(da.values, dtype=float)
    finite = x[np.isfinite(x)]
    lo = float(np.min(finite)) if vmin is None and finite.size else (vmin or 0.0)
    hi = float(np.max(finite)) if vmax is None and finite.size else (vmax or 1.0)
    idx = _stretch(np.where(np.isfinite(x), x, lo), lo, hi).astype(np.uint8)
    rgb = np.moveaxis(_LUT[idx], -1, 0)
    rgb[:, ~np.isfinite(x)] = 0
    return _write_png(path, rgb)
