"""Derived indicators with propagated 90 % intervals: SOC stock and available water
capacity, lazily and chunk by chunk from a :meth:`SoilMapModel.predict` product.

**Correlation.** The Monte Carlo draws every input from its pixel's predicted distribution
(:mod:`.kernels`); ``correlation="independent"`` draws them independently (the usual
assumption of error propagation), ``"comonotone"`` with one shared probability (the
inputs' errors perfectly rank-correlated: the widest interval for a product of
increasing inputs). The truth of a map is usually in between; both are offered so a user
can see the range. For SOC stock the first-order formula
σ_stock / stock ≈ √((σ_SOC / SOC)² + (σ_BD / BD)²) (independent) is compared in
``docs/soilmap.md``.

**Pedotransfer.** Water capacity uses Saxton & Rawls (2006) eqs. 1–2 written out in
:func:`.kernels.awc_saxton_rawls` (about 10 lines): no maintained PyPI package exposes
them vectorised over arrays without pulling in a whole hydrology stack, and the published
equations are checked against the paper's texture-class table in the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
import xarray as xr

from ..errors import ParameterError
from . import kernels
from .maps import DEPTH, layer_name

__all__ = ["CORRELATIONS", "awc", "soc_stock"]

CORRELATIONS = ("independent", "comonotone")
_Q = ("Q0.05", "Q0.5", "Q0.95")


def _quantiles(maps: xr.Dataset, prop: str) -> tuple[xr.DataArray, ...]:
    names = [layer_name(prop, q) for q in _Q]
    absent = [n for n in names if n not in maps]
    if absent:
        raise ParameterError(f"the maps lack {', '.join(absent)}; predict {prop} with "
                             "cup4soil.soilmap (SoilGrids layer names) first.")
    return tuple(maps[n] for n in names)


def _mc(func: Callable[..., Any], inputs: list[tuple[xr.DataArray, ...]], *,
        correlation: str, n_draws: int, seed: int) -> list[xr.DataArray]:
    """Q0.05, Q0.5, Q0.95 of ``func`` of the inputs, lazily, block by block."""
    if correlation not in CORRELATIONS:
        raise ParameterError(f"correlation={correlation!r}: use one of "
                             f"{', '.join(CORRELATIONS)}.")
    if n_draws < 20:
        raise ParameterError(f"n_draws={n_draws}: a 90 % interval needs at least 20 draws.")
    u = kernels.draws(n_draws, len(inputs), correlation, seed)
    ref = inputs[0][0]
    arrays = [(a if isinstance(a.data, da.Array) else a.chunk(1024)).data
              for trio in inputs for a in trio]
    arrays = [a.rechunk(arrays[0].chunks) for a in arrays]

    def block(*blocks: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        shape = blocks[0].shape
        flat = [np.asarray(b, np.float64).ravel() for b in blocks]
        trios = [(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]) for i in range(len(inputs))]
        q = kernels.monte_carlo(func, trios, u)
        return q.reshape((3, *shape)).astype(np.float32)

    out = da.map_blocks(  # type: ignore[no-untyped-call]  # dask.array has no hints
        block, *arrays, dtype=np.float32, new_axis=0,
        chunks=((3,), *arrays[0].chunks), meta=np.empty((0, 0, 0), np.float32))
    return [xr.DataArray(out[i], dims=ref.dims, coords=ref.coords) for i in range(3)]


def soc_stock(maps: xr.Dataset, *, coarse: float | xr.DataArray = 0.0,
              depth_cm: float = 30.0, correlation: str = "independent", n_draws: int = 200,
              seed: int = 0) -> xr.Dataset:
    """SOC stock 0–30 cm (t/ha) with its 90 % interval.

    stock = SOC [g/kg] × BD [kg/dm³] × depth [cm] × (1 − coarse) × 0.1, from the maps'
    ``soc`` (dg/kg) and ``bdod`` (cg/cm³) quantiles by Monte Carlo.

    Parameters
    ----------
    maps : xarray.Dataset
        :meth:`SoilMapModel.predict` output with ``soc`` and ``bdod``.
    coarse : float or DataArray
        Volume fraction of coarse fragments (0–1); a constant (default 0) or a layer.
    depth_cm : float
        Layer thickness, cm.
    correlation : {"independent", "comonotone"}
        How SOC's and BD's errors are drawn together (see the module docstring).
    n_draws : int
        Monte Carlo draws per pixel.

    Returns
    -------
    xarray.Dataset
        ``socstock_0-30cm_Q0.05``, ``_Q0.5``, ``_Q0.95`` (float32, t/ha).
    """
    if isinstance(coarse, (int, float)) and not 0 <= coarse < 1:
        raise ParameterError(f"coarse={coarse}: a volume fraction in [0, 1).")
    soc = _quantiles(maps, "soc")
    bd = _quantiles(maps, "bdod")

    def f(s: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # mapped units: dg/kg -> g/kg, cg/cm³ -> kg/dm³
        return kernels.soc_stock(s / 10.0, b / 100.0, depth_cm=depth_cm)

    qs = _mc(f, [soc, bd], correlation=correlation, n_draws=n_draws, seed=seed)
    factor = 1.0 - coarse
    out = {}
    for name, q in zip(_Q, qs, strict=True):
        v = q * factor
        v.attrs = {"units": "t/ha", "depth": DEPTH, "statistic": name,
                   "quantile": float(name[1:]),
                   "long_name": f"soil organic carbon stock 0-{depth_cm:g} cm, {name}",
                   "coarse_fragments": (f"{coarse:g} (constant)" if isinstance(coarse, float | int)
                                        else "layer"),
                   "correlation": correlation, "n_draws": n_draws,
                   "formula": "SOC[g/kg] * BD[kg/dm3] * depth[cm] * (1 - coarse) * 0.1"}
        out[f"socstock_0-{depth_cm:g}cm_{name}"] = v.astype(np.float32)
    ds = xr.Dataset(out, attrs={k: maps.attrs[k] for k in ("time_start", "time_end")
                                if k in maps.attrs})
    return ds


def awc(maps: xr.Dataset, *, om_factor: float = 1.724, depth_cm: float = 30.0,
        units: str = "mm", correlation: str = "independent", n_draws: int = 200,
        seed: int = 0) -> xr.Dataset:
    """Available water capacity (θ33 − θ1500, Saxton & Rawls 2006) with its 90 % interval.

    Parameters
    ----------
    maps : xarray.Dataset
        :meth:`SoilMapModel.predict` output with ``sand``, ``clay`` and ``soc``.
    om_factor : float
        Organic matter = SOC × this (van Bemmelen's 1.724 by default).
    depth_cm : float
        Layer thickness for ``units="mm"``.
    units : {"mm", "%"}
        Water in the layer (mm) or volume percent.
    correlation, n_draws, seed
        As :func:`soc_stock` (sand, clay and SOC drawn together or independently).

    Returns
    -------
    xarray.Dataset
        ``awc_0-30cm_Q0.05``, ``_Q0.5``, ``_Q0.95`` (float32).
    """
    if units not in ("mm", "%"):
        raise ParameterError(f"units={units!r}: 'mm' (in the layer) or '%' (volume).")
    sand, clay, soc = (_quantiles(maps, p) for p in ("sand", "clay", "soc"))
    scale = depth_cm * 10.0 if units == "mm" else 100.0

    def f(s: npt.NDArray[np.float64], c: npt.NDArray[np.float64],
          o: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # g/kg -> fraction; SOC dg/kg -> % (/100) -> organic matter
        w = kernels.awc_saxton_rawls(s / 1000.0, c / 1000.0, o / 100.0 * om_factor)[2]
        return np.clip(w, 0.0, None) * scale

    qs = _mc(f, [sand, clay, soc], correlation=correlation, n_draws=n_draws, seed=seed)
    out = {}
    for name, q in zip(_Q, qs, strict=True):
        q.attrs = {"units": units if units == "mm" else "% (volume)", "depth": DEPTH,
                   "statistic": name, "quantile": float(name[1:]),
                   "long_name": f"available water capacity 0-{depth_cm:g} cm (Saxton & Rawls "
                                f"2006), {name}",
                   "om_factor": om_factor, "correlation": correlation, "n_draws": n_draws}
        out[f"awc_0-{depth_cm:g}cm_{name}"] = q
    return xr.Dataset(out, attrs={k: maps.attrs[k] for k in ("time_start", "time_end")
                                  if k in maps.attrs})
