"""Quicklook PNGs of products, written with rasterio (no plotting library needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import BandError, ParameterError

__all__ = ["false_colour", "product", "scalar_map"]

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
    2-98 % stretch per band; nodata (NaN) in black.

    Raises
    ------
    BandError
        ``src`` has no ``band`` dimension or lacks one of ``bands``.
    ParameterError
        ``src`` is not one 2-D layer per band.
    """
    if not isinstance(src, xr.DataArray) or "band" not in src.dims:
        raise BandError(f"a false-colour quicklook needs a (band, y, x) DataArray such as "
                        f"SRC; got {type(src).__name__} with dims "
                        f"{tuple(map(str, getattr(src, 'dims', ())))}.")
    have = [str(b) for b in src["band"].values] if "band" in src.coords else []
    missing = [b for b in bands if b not in have]
    if missing:
        raise BandError(f"a false-colour quicklook of {src.name or 'this product'} needs bands "
                        f"{', '.join(bands)}; {', '.join(missing)} missing (it has "
                        f"{', '.join(have) or 'no band labels'}). Pass bands=(...) with three "
                        "of its bands.")
    if src.ndim != 3:
        raise ParameterError(f"a false-colour quicklook needs (band, y, x); "
                             f"{src.name or 'the variable'} has dims {src.dims}: select one "
                             "slice first, e.g. .isel(year=-1).")
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
    """A (y, x) map through a viridis-like ramp; NaN in black.

    Raises
    ------
    ParameterError
        ``da`` is not a 2-D DataArray.
    """
    if not isinstance(da, xr.DataArray) or da.ndim != 2:
        raise ParameterError(f"a quicklook map needs a 2-D (y, x) DataArray; got "
                             f"{type(da).__name__} with dims "
                             f"{tuple(map(str, getattr(da, 'dims', ())))}: select one slice "
                             "first, e.g. .isel(year=-1).")
    x = np.asarray(da.values, dtype=float)
    finite = x[np.isfinite(x)]
    lo = float(np.min(finite)) if vmin is None and finite.size else (vmin or 0.0)
    hi = float(np.max(finite)) if vmax is None and finite.size else (vmax or 1.0)
    idx = _stretch(np.where(np.isfinite(x), x, lo), lo, hi).astype(np.uint8)
    rgb = np.moveaxis(_LUT[idx], -1, 0)
    rgb[:, ~np.isfinite(x)] = 0
    return _write_png(path, rgb)


def product(ds: xr.Dataset, prefix: str | Path) -> list[Path]:
    """The standard quicklooks of a product, as ``<prefix>-<name>.png``.

    * ``SRC`` (band, y, x): false colour B11/B08/B04;
    * ``BSF``: bare surface frequency on 0-1;
    * a soil property map with quantiles (``soc``, ``soc_q05``, ``soc_q95``): the median
      (2-98 % stretch) and the width of the interval ``q95 - q05`` (0 to its 98th
      percentile).

    Other variables are skipped. Returns the paths written.

    Raises
    ------
    ParameterError
        ``ds`` is not a Dataset.
    """
    if not isinstance(ds, xr.Dataset):
        raise ParameterError(f"quicklook.product takes a Dataset (a product), not "
                             f"{type(ds).__name__}; use quicklook.scalar_map for one layer.")
    prefix = Path(prefix)
    out: list[Path] = []
    if "SRC" in ds and "band" in ds["SRC"].dims:
        bands = {str(b) for b in ds["SRC"].band.values}
        if {"B11", "B08", "B04"} <= bands:
            out.append(false_colour(ds["SRC"], f"{prefix}-SRC-B11-B08-B04.png"))
    if "BSF" in ds and ds["BSF"].ndim == 2:
        out.append(scalar_map(ds["BSF"], f"{prefix}-BSF.png", vmin=0, vmax=1))
    for name in ds.data_vars:
        lo, hi = f"{name}_q05", f"{name}_q95"
        if lo in ds and hi in ds and ds[name].ndim == 2:
            med = np.asarray(ds[name].values, float)
            finite = med[np.isfinite(med)]
            v = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
            out.append(scalar_map(ds[name], f"{prefix}-{name}.png", vmin=float(v[0]),
                                  vmax=float(v[1])))
            width = ds[hi] - ds[lo]
            w = np.asarray(width.values, float)
            top = float(np.percentile(w[np.isfinite(w)], 98)) if np.isfinite(w).any() else 1.0
            out.append(scalar_map(width, f"{prefix}-{name}-piw90.png", vmin=0, vmax=top))
    return out
