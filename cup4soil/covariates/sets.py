"""The covariate sets of CUP4SOIL's cross-validation slide, on the composite's grid.

1. DEM and terrain, land cover, (geology / parent material as ``extra`` layers), simple
   radar products from Sentinel-1;
2. set 1 + the SCMaP mean reflectance composite (MREF);
3. set 1 + a mosaic of MREF and the soil reflectance composite (SRC): SRC where the pixel
   was bare at least three times (BSC >= 3), MREF elsewhere, and a layer saying which.

:func:`stack` returns them as one Dataset of 2-D layers (what
:func:`cup4soil.models.train` takes as ``covariates``), lazy until written or computed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from .._xrutil import layers as _layers
from ..errors import BandError, ParameterError
from ..sources.aoi import TimeLike
from .grid import GridLike, as_geobox, check_on_grid, layer_attrs
from .landcover import worldcover as _worldcover
from .sar import sentinel1 as _sentinel1
from .topography import terrain as _terrain

__all__ = ["MIN_BARE", "SETS", "stack"]

#: What each set holds.
SETS: dict[int, str] = {
    1: "terrain (Copernicus DEM), land cover (ESA WorldCover), Sentinel-1 statistics, extra "
       "layers (geology, parent material)",
    2: "set 1 + SCMaP mean reflectance composite (MREF)",
    3: "set 1 + mosaic of the soil reflectance composite (SRC where BSC >= 3) and MREF",
}
#: Fewest bare observations for the mosaic to take SRC.
MIN_BARE = 3

Component = bool | Mapping[str, Any] | xr.Dataset | xr.DataArray | None


def _time_of(composite: xr.Dataset | None, time: TimeLike | None) -> TimeLike | None:
    if time is not None:
        return time
    if composite is not None and "time_start" in composite.attrs:
        return f"{str(composite.attrs['time_start'])[:10]}/{str(composite.attrs['time_end'])[:10]}"
    return None


def _build(component: Component, what: str, builder: Any, geobox: GeoBox,
           defaults: dict[str, Any]) -> xr.Dataset | xr.DataArray | None:
    """A component as given (checked to be on the grid), built, or left out."""
    if component is None or component is False:
        return None
    if isinstance(component, (xr.Dataset, xr.DataArray)):
        check_on_grid(component, geobox, what)
        return component
    opts: dict[str, Any] = dict(defaults)
    if isinstance(component, Mapping):
        opts.update({str(k): v for k, v in component.items()})
    elif component is not True:
        raise ParameterError(
            f"{what}={component!r}: pass True (build it), a dict of options, a Dataset on "
            "the composite's grid, or False (leave it out).")
    built: xr.Dataset | xr.DataArray = builder(geobox, **opts)
    return built


def _composite_layers(composite: xr.Dataset, which: int) -> dict[str, xr.DataArray]:
    """MREF (set 2) or the SRC/MREF mosaic and its source layer (set 3), as 2-D layers."""
    need = ["MREF"] if which == 2 else ["MREF", "SRC", "BSC"]
    missing = [v for v in need if v not in composite.data_vars]
    if missing:
        raise BandError(
            f"set {which} needs {', '.join(need)} of the composite, which lacks "
            f"{', '.join(missing)}. Compute the composite with those products "
            "(cup4soil.scmap.composite(..., products=None) makes all).")
    common = {
        "source": f"SCMaP composite of {composite.attrs.get('n_scenes', '?')} Sentinel-2 scenes",
        "resampling": "none (the composite's grid)",
        "time_start": str(composite.attrs.get("time_start", "unknown"))[:10],
        "time_end": str(composite.attrs.get("time_end", "unknown"))[:10],
    }
    mref = composite["MREF"]
    units = str(mref.attrs.get("units", "1e-4 reflectance"))
    if which == 2:
        out = _layers(xr.Dataset({"MREF": mref}))
        for name, var in out.items():
            var.attrs = layer_attrs(units=units, long_name=f"mean reflectance composite, "
                                    f"{name.split('_', 1)[1]}", **common)
        return out
    use_src = (composite["BSC"] >= MIN_BARE) & composite["SRC"].notnull()
    mosaic = composite["SRC"].where(use_src, mref).astype("float32")
    out = _layers(xr.Dataset({"MOSAIC": mosaic}))
    for name, var in out.items():
        var.attrs = layer_attrs(
            units=units, long_name=f"SRC where BSC >= {MIN_BARE}, else MREF, "
            f"{name.split('_', 1)[1]}", **common)
    first = next(iter(out.values()))
    src_px = use_src.isel(band=0, drop=True) if "band" in use_src.dims else use_src
    # 1 where SRC, 2 where MREF, 0 where the mosaic has no value.
    source = (src_px.astype("uint8") + 2 * (~src_px & first.notnull()).astype("uint8"))
    source = source.astype("uint8").transpose("y", "x")
    source.attrs = layer_attrs(units="1", long_name="mosaic source: 1 SRC (bare soil), 2 MREF, "
                               "0 neither", flag_values=[0, 1, 2],
                               flag_meanings="none soil_reflectance_composite "
                                             "mean_reflectance_composite", **common)
    out["MOSAIC_SOURCE"] = source
    return out


def stack(
    composite: xr.Dataset | None = None,
    *,
    set: int = 1,
    sentinel1: Component = True,
    terrain: Component = True,
    landcover: Component = True,
    extra: Sequence[xr.Dataset | xr.DataArray] = (),
    catalog: str | os.PathLike[str] = "planetary-computer",
    time: TimeLike | None = None,
    geobox: GridLike | None = None,
    resolution: float = 20.0,
    crs: Any = None,
) -> xr.Dataset:
    """A CUP4SOIL covariate set on the composite's grid, as one Dataset of 2-D layers (lazy).

    Parameters
    ----------
    composite
        SCMaP products (:func:`cup4soil.scmap.composite`, one period: no ``year``
        dimension). Its grid is the covariates' grid; its time span the default ``time``.
        Needed for sets 2 and 3.
    set
        1, 2 or 3 (see :data:`SETS`).
    sentinel1, terrain, landcover
        ``True``: build with defaults from ``catalog`` (and ``time``); a dict: build with
        these options (e.g. ``{"orbit": "descending"}``, ``{"dem": "my-dem.tif"}``); a
        Dataset/DataArray already made (it must be exactly on the grid); ``False``: leave
        out.
    extra
        More layers on the grid (e.g. :func:`cup4soil.covariates.raster` of a geology map).
    catalog
        Catalog the components are built from.
    time
        Sentinel-1 span (default: the composite's).
    geobox, resolution, crs
        The grid when there is no composite (set 1 only): a GeoBox or an AOI.

    Returns
    -------
    xarray.Dataset
        One 2-D variable per layer (banded products as ``MREF_B02``, ...), each with
        ``units``, ``source``, ``resampling`` and, where meaningful, ``time_start``/
        ``time_end``.

    Raises
    ------
    ParameterError
        Set 2 or 3 without a composite, a composite with a ``year`` dimension, an unknown set.
    GridMismatchError
        A given layer is not exactly on the composite's grid.
    """
    if set not in (1, 2, 3) or isinstance(set, bool):
        raise ParameterError(f"set={set!r}: CUP4SOIL's covariate sets are 1, 2 and 3.")
    if composite is None and set in (2, 3):
        raise ParameterError(
            f"set {set} adds the SCMaP {'MREF' if set == 2 else 'SRC/MREF mosaic'} to set 1: "
            "pass the composite (cup4soil.scmap.composite(...), or store.open of its Zarr).")
    if composite is not None:
        if not isinstance(composite, xr.Dataset):
            raise ParameterError("composite must be the Dataset of SCMaP products.")
        if "year" in composite.dims:
            raise ParameterError(
                "the composite has a year dimension (by='year'); pick one period first, "
                "e.g. composite.sel(year=2022).")
        grid = as_geobox(composite)
        if geobox is not None and as_geobox(geobox, resolution=resolution, crs=crs) != grid:
            raise ParameterError("give the composite or a geobox, not both on different grids.")
    elif geobox is not None:
        grid = as_geobox(geobox, resolution=resolution, crs=crs)
    else:
        raise ParameterError("set 1 without a composite needs geobox= (a GeoBox or an AOI).")
    span = _time_of(composite, time)
    layers: dict[str, xr.DataArray] = {}

    def add(found: xr.Dataset | xr.DataArray | None) -> None:
        if found is None:
            return
        ds = found.to_dataset(name=str(found.name or "layer")) if isinstance(
            found, xr.DataArray) else found
        for name, var in _layers(ds).items():
            if name in layers:
                raise ParameterError(f"two covariates are named {name!r}; rename one.")
            if "source" not in var.attrs and "source" in ds.attrs:
                var.attrs["source"] = ds.attrs["source"]
            layers[name] = var

    if sentinel1 is True and span is None:
        raise ParameterError("Sentinel-1 statistics need time= (or a composite whose span to "
                             "use), or sentinel1=False.")
    add(_build(terrain, "terrain", _terrain, grid, {"catalog": catalog}))
    add(_build(landcover, "landcover", _worldcover, grid, {"catalog": catalog}))
    add(_build(sentinel1, "sentinel1", _s1_builder(span), grid, {"catalog": catalog}))
    for i, layer in enumerate(extra):
        if not isinstance(layer, (xr.Dataset, xr.DataArray)):
            raise ParameterError(f"extra[{i}] is a {type(layer).__name__}; give Datasets or "
                                 "DataArrays (e.g. cup4soil.covariates.raster(...)).")
        check_on_grid(layer, grid, f"extra[{i}]")
        add(layer)
    if set in (2, 3):
        assert composite is not None
        for name, var in _composite_layers(composite, set).items():
            if name in layers:
                raise ParameterError(f"two covariates are named {name!r}; rename one.")
            layers[name] = var
    if not layers:
        raise ParameterError("no covariates: every component was left out.")
    # Every layer is on the grid (checked or built so): one set of coordinates for all, the
    # composite's own where there is one, so that nothing is realigned by float noise.
    if composite is not None and "spatial_ref" in composite.coords:
        coords = {"y": composite["y"], "x": composite["x"],
                  "spatial_ref": composite["spatial_ref"]}
    else:
        coords = {str(k): v for k, v in xr_coords(grid, crs_coord_name="spatial_ref").items()}
    out = xr.Dataset({name: var.drop_vars([c for c in var.coords if c not in var.dims])
                      .assign_coords(y=coords["y"].values, x=coords["x"].values)
                      for name, var in layers.items()})
    out = out.assign_coords(spatial_ref=coords["spatial_ref"])
    for var in out.data_vars.values():
        var.encoding["grid_mapping"] = "spatial_ref"
    out.attrs.update({
        "title": f"CUP4SOIL covariate set {set} (cup4soil.covariates.stack)",
        "covariate_set": int(set), "description": SETS[set],
    })
    return out


def _s1_builder(span: TimeLike | None) -> Any:
    def build(geobox: GeoBox, **opts: Any) -> xr.Dataset:
        when = opts.pop("time", span)
        return _sentinel1(geobox, when, **opts)

    return build

