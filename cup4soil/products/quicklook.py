"""Quicklook PNGs of products that a person can read: a title, a colour bar with units (a
legend for classes), a visible nodata colour, a scale bar, a north arrow and the CRS in a
caption, drawn with matplotlib (bare figures, no pyplot state).

The stretch of every map (its ``vmin``/``vmax`` and how they were chosen) is written into
the PNG's text chunks (key ``stretch``, JSON), with ``Title`` and ``CRS``. Read them back
with ``PIL.Image.open(path).text``. :func:`product` with ``record_in=`` also records them
in the attributes of the product the maps were drawn from (``quicklooks``,
``quicklook_stretch``).

Each ``*_figure`` function returns the :class:`matplotlib.figure.Figure` before it is
saved; the functions without the suffix save it and return the path.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import BandError, ParameterError
from .figures import NODATA_COLOUR, add_map_furniture, save_png

__all__ = ["class_figure", "class_map", "false_colour", "false_colour_figure", "product",
           "scalar_figure", "scalar_map"]

#: Longest side of the image drawn, in pixels: larger layers are subsampled (every k-th
#: pixel) for display; the stretch is taken from the same pixels.
MAX_SIDE = 2000
#: SCMaP's MASK classes (``flag_values``/``flag_meanings`` when the layer lacks them).
MASK_CLASSES = {1: ("bare soil", "#a6611a"), 2: ("permanently vegetated", "#4dac26"),
                3: ("other surface (built-up, water)", "#2c7bb6")}
#: Root attribute of a product recording its quicklooks (JSON: PNG name -> stretch, ...).
QUICKLOOKS_ATTR = "quicklooks"
#: Attribute of a variable drawn alone: its quicklook's stretch (JSON, as in the PNG).
STRETCH_ATTR = "quicklook_stretch"
#: Attribute of a variable drawn alone: its quicklook's PNG file name.
PNG_ATTR = "quicklook_png"
_CLASS_COLOURS = ("#a6611a", "#4dac26", "#2c7bb6", "#fdb863", "#b2abd2", "#e66101")


def _check_2d(da: Any, what: str) -> None:
    if not isinstance(da, xr.DataArray) or da.ndim != 2:
        raise ParameterError(f"a {what} needs a 2-D (y, x) DataArray; got "
                             f"{type(da).__name__} with dims "
                             f"{tuple(map(str, getattr(da, 'dims', ())))}: select one slice "
                             "first, e.g. .isel(year=-1).")


def _step(shape: tuple[int, ...]) -> int:
    return max(1, math.ceil(max(shape[-2:]) / MAX_SIDE))


def _extent(da: xr.DataArray) -> tuple[tuple[float, float, float, float], str]:
    """(left, right, bottom, top) in CRS units from the x/y coordinates (pixel centres),
    and the image origin; pixel indices when the layer has no coordinates."""
    ydim, xdim = da.dims[-2], da.dims[-1]
    if xdim in da.coords and ydim in da.coords and da.sizes[xdim] > 1 and da.sizes[ydim] > 1:
        xs = np.asarray(da[xdim], float)
        ys = np.asarray(da[ydim], float)
        dx, dy = (xs[-1] - xs[0]) / (xs.size - 1), (ys[-1] - ys[0]) / (ys.size - 1)
        left, right = xs[0] - dx / 2, xs[-1] + dx / 2
        top, bottom = ys[0] - dy / 2, ys[-1] + dy / 2
        origin = "upper" if dy < 0 else "lower"
        if origin == "lower":
            top, bottom = bottom, top
        return (float(min(left, right)), float(max(left, right)), float(min(top, bottom)),
                float(max(top, bottom))), origin
    h, w = da.shape[-2:]
    return (0.0, float(w), float(h), 0.0), "upper"


def _crs_of(obj: xr.DataArray | xr.Dataset) -> str | None:
    """The CRS of a layer (``EPSG:<code>`` where it has one): rioxarray's/odc's
    spatial_ref, a ``crs`` attribute, or None."""
    from .._xrutil import crs_label

    found = _find_crs(obj)
    try:
        return None if found is None else crs_label(found)
    except ValueError:  # not a CRS pyproj reads: the caption says "unknown CRS"
        return None


def _find_crs(obj: xr.DataArray | xr.Dataset) -> Any:
    for name in ("spatial_ref",):
        if name in obj.coords:
            a = obj.coords[name].attrs
            for k in ("crs_wkt", "spatial_ref"):
                if k in a:
                    return a[k]
    if "crs" in obj.attrs:
        return obj.attrs["crs"]
    try:
        import odc.geo.xr  # noqa: F401  (registers the .odc accessor)

        crs = obj.odc.crs
        return None if crs is None else str(crs)
    except Exception:  # not georeferenced: the caption says so
        return None


def _values(da: xr.DataArray, step: int) -> np.ndarray:
    x = np.asarray(da.values[..., ::step, ::step], dtype=float)
    nodata = da.attrs.get("nodata", da.encoding.get("_FillValue"))
    if isinstance(nodata, int | float) and math.isfinite(nodata):
        x = np.where(x == nodata, np.nan, x)
    return x


def _new_figure(shape: tuple[int, int], *, extra_width: float = 1.6) -> Any:
    from matplotlib.figure import Figure

    h, w = shape
    width = 7.0
    height = min(max(width * h / max(w, 1), 3.0), 10.0)
    return Figure(figsize=(width + extra_width, height + 0.9), layout="constrained")


def _nodata_handle() -> Any:
    from matplotlib.patches import Patch

    return Patch(facecolor=NODATA_COLOUR, edgecolor="grey", label="no data")


def _scalar(da: xr.DataArray, *, vmin: float | None, vmax: float | None,
            title: str | None, units: str | None, cmap: str,
            method: str | None = None) -> tuple[Any, dict[str, Any]]:
    import matplotlib as mpl

    _check_2d(da, "quicklook map")
    step = _step(da.shape)
    x = _values(da, step)
    finite = x[np.isfinite(x)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1e-12 if math.isfinite(lo) else 1.0
    stretch = {"vmin": float(lo), "vmax": float(hi),
               "method": method or ("given" if vmin is not None and vmax is not None
                                    else "data minimum/maximum"),
               "subsample": step}
    extent, origin = _extent(da)
    crs = _crs_of(da)
    units = units if units is not None else str(da.attrs.get("units", ""))
    name = str(da.name) if da.name is not None else "layer"
    title = title or str(da.attrs.get("long_name", name))
    cm = mpl.colormaps[cmap].with_extremes(bad=NODATA_COLOUR)
    fig = _new_figure(x.shape)
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(x), cmap=cm, vmin=lo, vmax=hi, extent=extent,
                   origin=origin, interpolation="nearest")
    below = bool(finite.size and finite.min() < lo)
    above = bool(finite.size and finite.max() > hi)
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max",
              (True, True): "both"}[(below, above)]
    cb = fig.colorbar(im, ax=ax, shrink=0.85, extend=extend)
    cb.set_label(f"{name} ({units})" if units else name)
    ax.set_title(title, fontsize=11)
    ax.legend(handles=[_nodata_handle()], loc="upper left", fontsize=8, framealpha=0.8)
    add_map_furniture(fig, ax, extent, crs)
    return fig, {"Title": title, "stretch": stretch, "units": units, "CRS": str(crs or "unknown")}


def scalar_figure(da: xr.DataArray, *, vmin: float | None = None, vmax: float | None = None,
                  title: str | None = None, units: str | None = None,
                  cmap: str = "viridis") -> Any:
    """The figure of a (y, x) map: ramp ``cmap`` from ``vmin`` to ``vmax`` (default: the
    data's range), colour bar with ``units`` (default: the layer's ``units``), nodata in
    light grey, scale bar, north arrow, CRS caption.

    Raises
    ------
    ParameterError
        ``da`` is not a 2-D DataArray.
    """
    return _scalar(da, vmin=vmin, vmax=vmax, title=title, units=units, cmap=cmap)[0]


def scalar_map(
    da: xr.DataArray, path: str | Path, *, vmin: float | None = None,
    vmax: float | None = None, title: str | None = None, units: str | None = None,
    cmap: str = "viridis",
) -> Path:
    """Write :func:`scalar_figure` as a PNG (the stretch in its ``stretch`` text chunk).

    Raises
    ------
    ParameterError
        ``da`` is not a 2-D DataArray.
    """
    fig, meta = _scalar(da, vmin=vmin, vmax=vmax, title=title, units=units, cmap=cmap)
    return save_png(fig, path, meta)


def _false_colour(src: xr.DataArray, bands: tuple[str, str, str], title: str | None
                  ) -> tuple[Any, dict[str, Any]]:
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
    step = _step(src.shape)
    layers = []
    stretch: dict[str, Any] = {"method": "2-98 % percentiles per band", "subsample": step}
    valid = None
    for b in bands:
        x = _values(src.sel(band=b), step)
        finite = x[np.isfinite(x)]
        lo, hi = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
        stretch[b] = [float(lo), float(hi)]
        layers.append(np.clip((x - lo) / max(float(hi - lo), 1e-12), 0, 1))
        valid = np.isfinite(x) if valid is None else valid & np.isfinite(x)
    assert valid is not None
    rgb = np.stack(layers, axis=-1)
    grey = np.array([int(NODATA_COLOUR[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    rgb[~valid] = grey
    extent, origin = _extent(src.isel(band=0))
    crs = _crs_of(src)
    title = title or (f"{src.name or 'SRC'} false colour: R={bands[0]}, G={bands[1]}, "
                      f"B={bands[2]}")
    fig = _new_figure(rgb.shape[:2], extra_width=0.3)
    ax = fig.add_subplot()
    ax.imshow(rgb, extent=extent, origin=origin, interpolation="nearest")
    ax.set_title(title, fontsize=11)
    units = str(src.attrs.get("units", "reflectance"))
    ranges = "; ".join(f"{b} {stretch[b][0]:.0f}-{stretch[b][1]:.0f}" for b in bands)
    ax.legend(handles=[_nodata_handle()], loc="upper left", fontsize=8, framealpha=0.8,
              title=f"2-98 % stretch ({units}): {ranges}", title_fontsize=7)
    add_map_furniture(fig, ax, extent, crs)
    return fig, {"Title": title, "stretch": stretch, "units": units, "CRS": str(crs or "unknown")}


def false_colour_figure(src: xr.DataArray, *,
                        bands: tuple[str, str, str] = ("B11", "B08", "B04"),
                        title: str | None = None) -> Any:
    """The figure of a ``(band, y, x)`` composite in false colour (SWIR1/NIR/red by
    default), each band stretched between its 2nd and 98th percentile (stated in the
    legend), nodata in light grey.

    Raises
    ------
    BandError
        ``src`` has no ``band`` dimension or lacks one of ``bands``.
    ParameterError
        ``src`` is not one 2-D layer per band.
    """
    return _false_colour(src, bands, title)[0]


def false_colour(
    src: xr.DataArray, path: str | Path, *, bands: tuple[str, str, str] = ("B11", "B08", "B04"),
    title: str | None = None,
) -> Path:
    """Write :func:`false_colour_figure` as a PNG (the per-band stretch in its ``stretch``
    text chunk).

    Raises
    ------
    BandError
        ``src`` has no ``band`` dimension or lacks one of ``bands``.
    ParameterError
        ``src`` is not one 2-D layer per band.
    """
    fig, meta = _false_colour(src, bands, title)
    return save_png(fig, path, meta)


def _classes_of(da: xr.DataArray, classes: Mapping[int, str] | None
                ) -> dict[int, tuple[str, str]]:
    if classes is not None:
        return {int(k): (v, _CLASS_COLOURS[i % len(_CLASS_COLOURS)])
                for i, (k, v) in enumerate(classes.items())}
    values, meanings = da.attrs.get("flag_values"), da.attrs.get("flag_meanings")
    if values is not None and meanings:
        names = str(meanings).split()
        out = {}
        for i, (v, n) in enumerate(zip(list(np.atleast_1d(values)), names, strict=False)):
            known = MASK_CLASSES.get(int(v))
            colour = known[1] if known else _CLASS_COLOURS[i % len(_CLASS_COLOURS)]
            out[int(v)] = (n.replace("_", " "), colour)
        return out
    return dict(MASK_CLASSES)


def _class(da: xr.DataArray, classes: Mapping[int, str] | None, title: str | None
           ) -> tuple[Any, dict[str, Any]]:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    _check_2d(da, "class map")
    step = _step(da.shape)
    x = np.asarray(da.values[::step, ::step])
    table = _classes_of(da, classes)
    keys = sorted(table)
    index = np.full(x.shape, np.nan)
    for i, k in enumerate(keys):
        index[x == k] = i
    cm = ListedColormap([table[k][1] for k in keys]).with_extremes(bad=NODATA_COLOUR)
    extent, origin = _extent(da)
    crs = _crs_of(da)
    name = str(da.name) if da.name is not None else "classes"
    title = title or str(da.attrs.get("long_name", name))
    fig = _new_figure(x.shape, extra_width=0.3)
    ax = fig.add_subplot()
    ax.imshow(np.ma.masked_invalid(index), cmap=cm, vmin=-0.5, vmax=len(keys) - 0.5,
              extent=extent, origin=origin, interpolation="nearest")
    shares = {k: float(np.mean(x == k)) for k in keys}
    handles = [Patch(facecolor=table[k][1], label=f"{k}: {table[k][0]} "
                     f"({100 * shares[k]:.0f} %)") for k in keys]
    handles.append(Patch(facecolor=NODATA_COLOUR, edgecolor="grey",
                         label="no data / other value"))
    ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.85,
              title=f"{name} classes", title_fontsize=8)
    ax.set_title(title, fontsize=11)
    add_map_furniture(fig, ax, extent, crs)
    stretch = {"method": "classes", "classes": {str(k): table[k][0] for k in keys},
               "subsample": step}
    return fig, {"Title": title, "stretch": stretch, "units": "class", "CRS": str(crs or "unknown")}


def class_figure(da: xr.DataArray, *, classes: Mapping[int, str] | None = None,
                 title: str | None = None) -> Any:
    """The figure of a class layer (SCMaP's ``MASK``): one colour per class with a legend
    (names from ``classes``, else the layer's ``flag_values``/``flag_meanings``), other
    values and nodata in light grey.

    Raises
    ------
    ParameterError
        ``da`` is not a 2-D DataArray.
    """
    return _class(da, classes, title)[0]


def class_map(da: xr.DataArray, path: str | Path, *,
              classes: Mapping[int, str] | None = None, title: str | None = None) -> Path:
    """Write :func:`class_figure` as a PNG.

    Raises
    ------
    ParameterError
        ``da`` is not a 2-D DataArray.
    """
    fig, meta = _class(da, classes, title)
    return save_png(fig, path, meta)


def _percentiles(x: xr.DataArray, q: tuple[float, float]) -> tuple[float, float]:
    v = _values(x, _step(x.shape))
    v = v[np.isfinite(v)]
    if not v.size:
        return 0.0, 1.0
    lo, hi = np.percentile(v, q)
    return float(lo), float(hi)


@dataclass(frozen=True)
class _Job:
    """One quicklook of :func:`product`: where it goes, which variables it shows, how."""

    png: Path
    variables: tuple[str, ...]  # the product's variables it is drawn from
    layer: str  # what it shows: a variable, or an expression of them
    draw: Callable[[], tuple[Any, dict[str, Any]]]


def _median_jobs(ds: xr.Dataset, name: str, path: str, lo: str, hi: str, wpath: str,
                 units: str, label: str) -> list[_Job]:
    """The median's map (2-98 % stretch) and the 90 % interval width's (0 to its 98th
    percentile)."""
    stem = name.removesuffix("_Q0.5")

    def median() -> tuple[Any, dict[str, Any]]:
        vmin, vmax = _percentiles(ds[name], (2, 98))
        return _scalar(ds[name], vmin=vmin, vmax=vmax, title=f"{label}: median (Q0.5)",
                       units=units, cmap="viridis", method="2-98 % percentiles")

    def width() -> tuple[Any, dict[str, Any]]:
        w = ds[hi] - ds[lo]
        _, top = _percentiles(w, (0, 98))
        return _scalar(w.rename(f"{stem} Q0.95 − Q0.05"), vmin=0.0, vmax=top,
                       title=f"{label}: width of the 90 % prediction interval",
                       units=units, cmap="magma", method="0 to the 98th percentile")

    return [_Job(Path(path), (name,), name, median),
            _Job(Path(wpath), (lo, hi), f"{hi} - {lo}", width)]


def _jobs(ds: xr.Dataset, prefix: Path) -> list[_Job]:
    """The quicklooks :func:`product` draws, in order (nothing is drawn yet)."""
    jobs: list[_Job] = []
    if "SRC" in ds and "band" in ds["SRC"].dims and ds["SRC"].ndim == 3:
        bands = {str(b) for b in ds["SRC"].band.values}
        if {"B11", "B08", "B04"} <= bands:
            jobs.append(_Job(Path(f"{prefix}-SRC-B11-B08-B04.png"), ("SRC",),
                             "SRC (B11, B08, B04)",
                             lambda: _false_colour(ds["SRC"], ("B11", "B08", "B04"), None)))
    if "BSF" in ds and ds["BSF"].ndim == 2:
        jobs.append(_Job(Path(f"{prefix}-BSF.png"), ("BSF",), "BSF", lambda: _scalar(
            ds["BSF"], vmin=0, vmax=1, title="Bare surface frequency (BSF)",
            units=str(ds["BSF"].attrs.get("units", "1")), cmap="YlOrBr")))
    if "MASK" in ds and ds["MASK"].ndim == 2:
        jobs.append(_Job(Path(f"{prefix}-MASK.png"), ("MASK",), "MASK",
                         lambda: _class(ds["MASK"], None, "SCMaP mask (MASK)")))
    if "extrapolated" in ds and ds["extrapolated"].ndim == 2:
        jobs.append(_Job(Path(f"{prefix}-extrapolated.png"), ("extrapolated",), "extrapolated",
                         lambda: _class(ds["extrapolated"],
                                        {0: "inside the training range",
                                         1: "extrapolated (> 10 % outside)"},
                                        "Covariates outside the training range")))
    for name in map(str, ds.data_vars):
        if ds[name].ndim != 2:
            continue
        units = str(ds[name].attrs.get("units", ""))
        lo, hi = f"{name}_q05", f"{name}_q95"
        if lo in ds and hi in ds:  # a cup4soil.models prediction
            jobs += _median_jobs(ds, name, f"{prefix}-{name}.png", lo, hi,
                                 f"{prefix}-{name}-piw90.png", units, name)
            continue
        if name.endswith("_Q0.5"):  # SoilGrids naming: <prop>_<depth>_Q0.5
            stem = name.removesuffix("_Q0.5")
            lo, hi = f"{stem}_Q0.05", f"{stem}_Q0.95"
            if lo in ds and hi in ds:
                label = str(ds[name].attrs.get("long_name", stem)).split(",")[0]
                jobs += _median_jobs(ds, name, f"{prefix}-{name}.png", lo, hi,
                                     f"{prefix}-{stem}-width90.png", units,
                                     f"{label} ({stem})")
    return jobs


def _record_url(ds: xr.Dataset, record_in: str | os.PathLike[str] | bool | None) -> str | None:
    """The product URL the quicklooks are recorded in (None: not recorded)."""
    if record_in is None or record_in is False:
        return None
    if record_in is True:
        source = ds.encoding.get("source")
        if not source:
            raise ParameterError(
                "record_in=True takes the product's URL from ds.encoding['source'], which "
                "store.open sets; this dataset has none (it was not opened from a product, "
                "or was rebuilt since). Pass the product's URL: record_in='path/to/p.zarr'.")
        return str(source)
    if isinstance(record_in, str | os.PathLike):
        return os.fspath(record_in)
    raise ParameterError(f"record_in must be a product's URL or path, True or None; got "
                         f"{type(record_in).__name__}.")


def _check_drawn_from(ds: xr.Dataset, jobs: list[_Job], url: str,
                      storage_options: Mapping[str, Any] | None) -> None:
    """Refuse to record quicklooks in a product they were not drawn from: each variable
    drawn must be in the product with the same sizes and spatial coordinates."""
    from ..errors import redact
    from . import reader, writer

    writer.check_updatable(url, storage_options=storage_options)
    target = reader.open(url, storage_options=storage_options)
    for name in sorted({v for job in jobs for v in job.variables}):
        fix = ("draw them from the product itself: quicklook.product(store.open(url), prefix, "
               "record_in=True).")
        if name not in target.data_vars:
            raise ParameterError(f"record_in={redact(url)}: the product there has no "
                                 f"variable {name}, so its quicklook cannot be recorded there; "
                                 + fix)
        mine, theirs = ds[name], target[name]
        same = dict(mine.sizes) == dict(theirs.sizes) and all(
            np.array_equal(np.asarray(mine[d]), np.asarray(theirs[d]))
            for d in mine.dims[-2:] if d in mine.coords and d in theirs.coords)
        if not same:
            raise ParameterError(f"record_in={redact(url)}: the product's {name} is on "
                                 f"another grid ({dict(theirs.sizes)}) than the layer drawn "
                                 f"({dict(mine.sizes)}); " + fix)


def _record(url: str, drawn: list[tuple[_Job, dict[str, Any]]],
            storage_options: Mapping[str, Any] | None) -> None:
    """Record each quicklook's stretch in the product's attributes (see :func:`product`)."""
    from .cf import json_safe
    from .writer import update_attrs

    entries = {job.png.name: {"variables": list(job.variables), "layer": job.layer,
                              "Title": meta["Title"], "units": meta["units"],
                              "CRS": meta["CRS"], "stretch": json_safe(meta["stretch"])}
               for job, meta in drawn}

    def merged(current: Any) -> str:
        old: Any = {}
        if current is not None:
            try:
                old = json.loads(current) if isinstance(current, str) else None
            except ValueError:
                old = None
            if not isinstance(old, dict):
                raise ParameterError(
                    f"the product at {url} has an attribute {QUICKLOOKS_ATTR!r} that is not "
                    "cup4soil's record of quicklooks (a JSON object); it is left as it is. "
                    "Rename that attribute, or draw without record_in.")
        return json.dumps({**old, **entries})

    per_variable = {job.variables[0]: {
        STRETCH_ATTR: json.dumps(json_safe(meta["stretch"])), PNG_ATTR: job.png.name}
        for job, meta in drawn if len(job.variables) == 1}
    update_attrs(url, {QUICKLOOKS_ATTR: merged}, variables=per_variable,
                 storage_options=storage_options)


def product(
    ds: xr.Dataset,
    prefix: str | Path,
    *,
    record_in: str | os.PathLike[str] | bool | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Path]:
    """The standard quicklooks of a product, as ``<prefix>-<name>.png``.

    * ``SRC`` (band, y, x): false colour B11/B08/B04 (``-SRC-B11-B08-B04.png``);
    * ``BSF``: bare surface frequency on 0-1; ``MASK``: SCMaP's classes with a legend;
      ``extrapolated`` (soil maps): pixels outside the training range;
    * a property with quantiles, cup4soil's model naming (``soc``, ``soc_q05``,
      ``soc_q95``: ``-soc.png``, ``-soc-piw90.png``) or SoilGrids' (``soc_0-30cm_Q0.5``,
      ``_Q0.05``, ``_Q0.95``, also SOC stock and AWC: ``-soc_0-30cm_Q0.5.png``,
      ``-soc_0-30cm-width90.png``): the median (2-98 % stretch) and the width of the
      90 % interval Q0.95 − Q0.05 (0 to its 98th percentile).

    Other variables are skipped. Each PNG has its stretch in its text chunk ``stretch``.

    Parameters
    ----------
    ds : xarray.Dataset
        The product (in memory or lazy: the layers drawn are read).
    prefix : str or Path
        Path prefix of the PNGs; folders are created.
    record_in : str, path-like or True, optional
        Also record each quicklook's stretch in the attributes of the product at this URL
        (True: ``ds.encoding["source"]``, which :func:`cup4soil.store.open` sets), a
        complete product :func:`cup4soil.store.write` wrote, holding the variables drawn
        on the same grid (checked before anything is drawn). The root attribute
        ``quicklooks`` is a JSON object: PNG file name → ``variables`` (drawn from),
        ``layer``, ``Title``, ``units``, ``CRS`` and ``stretch`` as in the PNG (earlier
        entries of other PNGs are kept); each variable drawn alone gets
        ``quicklook_stretch`` (the PNG's ``stretch`` text, JSON) and ``quicklook_png``
        (its file name). Strings of JSON, as cup4soil's other structured attributes, so
        that netCDF and GDAL can carry them. The data are not touched
        (:func:`cup4soil.store.update_attrs`).
    storage_options : dict, optional
        fsspec options of ``record_in`` (credentials, ``endpoint_url`` ...): a product
        opened with options needs them again here; never written anywhere.

    Returns
    -------
    list of Path
        The PNGs written.

    Raises
    ------
    ParameterError
        ``ds`` is not a Dataset; ``record_in=True`` without ``ds.encoding["source"]``; a
        variable drawn is not in the product of ``record_in`` or lies on another grid;
        nothing is at ``record_in``.
    NotAProductError
        ``record_in`` is not a product cup4soil wrote (nothing is drawn or changed).
    IncompleteProductError
        The product of ``record_in`` was not written completely.
    """
    if not isinstance(ds, xr.Dataset):
        raise ParameterError(f"quicklook.product takes a Dataset (a product), not "
                             f"{type(ds).__name__}; use quicklook.scalar_map for one layer.")
    jobs = _jobs(ds, Path(prefix))
    url = _record_url(ds, record_in)
    if url is not None:
        _check_drawn_from(ds, jobs, url, storage_options)
    out: list[Path] = []
    drawn: list[tuple[_Job, dict[str, Any]]] = []
    for job in jobs:
        fig, meta = job.draw()
        out.append(save_png(fig, job.png, meta))
        drawn.append((job, meta))
    if url is not None and drawn:
        _record(url, drawn, storage_options)
    return out
