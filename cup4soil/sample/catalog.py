"""The handle of a written sample archive: where it is, what it covers, its hidden truth."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio

from ..errors import ParameterError, SampleError
from .world import WC_CROP

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

__all__ = ["SampleCatalog"]

#: Truth rasters of archives whose ``truth.json`` predates its ``layers`` table.
_DEFAULT_LAYERS = {"soc": "average", "worldcover": "nearest", "fields": "nearest"}
#: Soil properties of the samples besides SOC: truth units -> SoilGrids mapped units.
_MAPPED = {"nitrogen": 100.0, "phh2o": 10.0, "bdod": 100.0, "clay": 10.0, "silt": 10.0,
           "sand": 10.0}


@dataclass(frozen=True)
class SampleCatalog:
    """Where a generated sample archive lives and what it covers.

    Attributes
    ----------
    root
        Folder holding ``catalog.json``, the COGs and ``truth/``.
    bbox
        Lon/lat bounds ``(west, south, east, north)`` of the area, degrees.
    crs
        CRS of the rasters (``"EPSG:32633"``).
    n_items
        Number of Sentinel-2 STAC items (scenes, including the duplicate delivery).
    time_range
        The archive's years as a search time range (``"2018/2022"``).
    collections
        Items per collection of the catalog (``sentinel-2-l2a``, ``sentinel-1-rtc``,
        ``cop-dem-glo-30``, ``esa-worldcover``).
    """

    root: Path
    bbox: tuple[float, float, float, float]
    crs: str
    n_items: int
    time_range: str
    collections: Mapping[str, int] = field(default_factory=dict)

    @property
    def catalog(self) -> Path:
        """Path of the static ``catalog.json``."""
        return self.root / "catalog.json"

    @property
    def truth_dir(self) -> Path:
        """Folder of the hidden truth rasters and ``truth.json``."""
        return self.root / "truth"

    def truth(self) -> dict[str, Any]:
        """The hidden truth's JSON part (fields, crops, bare windows, per-scene bare fields)."""
        doc: dict[str, Any] = json.loads((self.truth_dir / "truth.json").read_text())
        return doc

    def _layers(self) -> dict[str, str]:
        """Truth raster name -> resampling (``"average"`` or ``"nearest"``)."""
        layers = self.truth().get("layers")
        if not layers:
            return dict(_DEFAULT_LAYERS)
        return {name: str(spec["resampling"]) for name, spec in layers.items()}

    def truth_on(self, name: str, geobox: Any) -> xr.DataArray:
        """A truth raster on another grid: a soil property (``"soc"`` %, ``"nitrogen"``
        g/kg, ``"phh2o"`` pH, ``"bdod"`` kg/dm³, ``"clay"``/``"silt"``/``"sand"`` %), the
        ``"elevation"`` (m), or a categorical layer (``"worldcover"``, ``"fields"``,
        ``"management"``).

        Continuous layers are averaged; the categorical ones are resampled by nearest
        neighbour (0 outside the sample area). The result's ``units`` attribute says the
        layer's units.

        Parameters
        ----------
        name
            Name of the truth raster (a file ``truth/<name>.tif``).
        geobox
            The target grid (an ``odc.geo`` GeoBox, e.g. ``cube.odc.geobox``).

        Returns
        -------
        xarray.DataArray
        """
        import xarray as xr
        from odc.geo.geobox import GeoBox
        from odc.geo.xr import assign_crs, xr_coords

        layers = self._layers()
        if name not in layers:
            raise ParameterError(f"no truth raster {name!r}; use {', '.join(layers)}.")
        with rasterio.open(self.truth_dir / f"{name}.tif") as src:
            data = src.read(1)
            grid = GeoBox(src.shape, src.transform, src.crs)
            tags = src.tags(1)
        if grid.crs is None:
            raise SampleError(f"the truth raster {name}.tif in {self.truth_dir} has no CRS. "
                              "Make the archive again with make_catalog(..., overwrite=True).")
        da = assign_crs(xr.DataArray(data, dims=("y", "x"), coords=xr_coords(grid)), grid.crs)
        attrs = {k: tags[k] for k in ("units", "long_name") if k in tags}
        if layers[name] == "average":
            out: xr.DataArray = da.odc.reproject(geobox, resampling="average").load()
            out.attrs.update(attrs)
            return out
        out = da.odc.reproject(geobox, resampling="nearest", dst_nodata=0).load()
        out = out.astype(data.dtype).rename(name)
        out.attrs.update(attrs)
        return out

    def soil_samples(self, n: int = 150, *, seed: int = 0, margin_m: float = 20.0) -> pd.DataFrame:
        """Topsoil samples drawn from the hidden truth, as a field campaign would take them.

        Points sit on cropland (WorldCover 40), at least ``margin_m`` inside a field, and
        are jittered within their truth pixel.

        Parameters
        ----------
        n : int
            Number of samples (fewer if the cropland has fewer eligible pixels).
        seed : int
            Random seed.
        margin_m : float
            Minimum distance from a field edge, metres.

        Returns
        -------
        pandas.DataFrame
            ``x``, ``y`` (metres, in :attr:`crs`), ``soc`` (dg/kg), ``field``, and -- where
            the archive has them -- ``nitrogen`` (cg/kg), ``phh2o`` (pH×10), ``bdod``
            (cg/cm³), ``clay``, ``silt``, ``sand`` (g/kg): each property in SoilGrids' mapped
            units under its SoilGrids name, rounded like SoilGrids' integers (texture
            rounded so that the three sum to 1000 g/kg). The points do not depend on the
            properties: ``x``, ``y``, ``soc`` and ``field`` are as before they existed.
        """
        import pandas as pd
        from scipy.ndimage import binary_erosion

        with rasterio.open(self.truth_dir / "soc.tif") as src:
            soc = src.read(1).astype(np.float64)  # percent
            transform = src.transform
        with rasterio.open(self.truth_dir / "worldcover.tif") as src:
            cover = src.read(1)
        with rasterio.open(self.truth_dir / "fields.tif") as src:
            fields = src.read(1)
        r = max(round(margin_m / abs(transform.a)), 0)
        ok = np.zeros(cover.shape, bool)
        for fid in np.unique(fields[(cover == WC_CROP) & (fields > 0)]):
            inner = fields == fid
            ok |= binary_erosion(inner, iterations=r) if r else inner
        rows, cols = np.nonzero(ok)
        rng = np.random.default_rng(seed)
        pick = rng.choice(rows.size, size=min(n, rows.size), replace=False)
        jitter = rng.uniform(0.05, 0.95, size=(pick.size, 2))
        xs, ys = transform * (cols[pick] + jitter[:, 0], rows[pick] + jitter[:, 1])
        table = pd.DataFrame({"x": np.asarray(xs), "y": np.asarray(ys),
                              "soc": np.round(soc[rows[pick], cols[pick]] * 100.0, 1),
                              "field": fields[rows[pick], cols[pick]]})
        at = (rows[pick], cols[pick])
        for name, factor in _MAPPED.items():
            path = self.truth_dir / f"{name}.tif"
            if not path.is_file():  # an archive from before issue 13
                continue
            with rasterio.open(path) as src:
                table[name] = np.round(src.read(1).astype(np.float64)[at] * factor)
        if {"clay", "silt", "sand"} <= set(table.columns):
            # Rounded parts of a whole: sand takes the rounding, texture sums to 1000 g/kg.
            table["sand"] = 1000.0 - table["clay"] - table["silt"]
        return table
