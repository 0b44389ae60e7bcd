"""The seed's covariate-set table: cross-validated skill per property × covariate set.

CUP4SOIL's slides compare covariate set 1 (Sentinel-1, terrain, land cover), set 2 (+ the
SCMaP mean reflectance MREF) and set 3 (+ the bare-soil SRC/MREF mosaic) by the
cross-validated MEC and RMSE of each property. :func:`compare` trains every set with the
same folds (made once from the samples) so that the differences are the covariates', and
reports the spread of the per-fold MEC — a difference smaller than that spread is noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ParameterError
from ..models.cv import FoldSpec
from .maps import SoilMapModel, train

__all__ = ["compare", "plot_compare"]


def _fold_spread(pred: pd.DataFrame) -> float:
    """Standard deviation over folds of the per-fold MEC, each fold's errors measured
    against the variance about the mean of *all* samples (a spatial fold's own variance can
    be tiny, which makes its own MEC meaningless)."""
    y = pred["observed"].to_numpy(float)
    mean = float(np.mean(y))
    mec = []
    for _, g in pred.groupby("fold"):
        obs, est = g["observed"].to_numpy(float), g["predicted"].to_numpy(float)
        sst = float(np.sum((obs - mean) ** 2))
        if sst > 0:
            mec.append(1.0 - float(np.sum((obs - est) ** 2)) / sst)
    return float(np.std(mec, ddof=1)) if len(mec) > 1 else float("nan")


def compare(samples: Any, properties: Mapping[str, str | None] | Sequence[str],
            sets: Sequence[int] = (1, 2, 3), *, covariates: Mapping[int, xr.Dataset] | None = None,
            composite: xr.Dataset | None = None, folds: FoldSpec = "2 km",
            random_state: int = 0, plot: str | Path | None = None,
            stack_options: Mapping[str, Any] | None = None,
            **train_options: Any) -> pd.DataFrame:
    """Cross-validated MEC, RMSE and PICP90 per property and covariate set.

    Parameters
    ----------
    samples, properties
        As :func:`cup4soil.soilmap.train`.
    sets : sequence of int
        Covariate sets to compare (1, 2, 3: :data:`cup4soil.covariates.SETS`).
    covariates : mapping of set to Dataset, optional
        The sets already built; otherwise each is :func:`cup4soil.covariates.stack` of
        ``composite`` with ``stack_options``.
    composite : xarray.Dataset, optional
        The SCMaP composite the sets are built on.
    folds : int, str or float
        As :func:`cup4soil.soilmap.train`; the same folds for every set.
    plot : path, optional
        Write the bar chart (MEC and RMSE per property, one bar per set) to this PNG.
    **train_options
        Passed to :func:`cup4soil.soilmap.train`.

    Returns
    -------
    pandas.DataFrame
        Index (property, set); columns ``MEC``, ``RMSE``, ``PICP90``, ``n`` and
        ``MEC_fold_sd`` (the standard deviation of the per-fold MEC); ``attrs["models"]``
        holds the :class:`SoilMapModel` of each set.
    """
    if not sets:
        raise ParameterError("sets is empty; compare at least one covariate set.")
    built: dict[int, xr.Dataset] = {}
    for k in sets:
        if covariates is not None and k in covariates:
            built[k] = covariates[k]
        elif composite is not None or k == 1:
            from ..covariates import stack

            built[k] = stack(composite, set=k, **dict(stack_options or {}))
        else:
            raise ParameterError(f"covariate set {k}: pass covariates={{{k}: ...}} or the "
                                 "composite to build it from.")
    rows = []
    fitted: dict[int, SoilMapModel] = {}
    for k, cov in built.items():
        m = train(samples, properties, covariates=cov, folds=folds, random_state=random_state,
                  **train_options)
        fitted[k] = m
        for p in m.properties:
            r = m.cv.loc[p]
            rows.append({"property": p, "set": k, "MEC": float(r["MEC"]),
                         "RMSE": float(r["RMSE"]), "PICP90": float(r["PICP90"]),
                         "n": int(r["n"]),
                         "MEC_fold_sd": _fold_spread(m.cv_predictions[p])})
    table = pd.DataFrame(rows).set_index(["property", "set"])
    props = list(dict.fromkeys(r["property"] for r in rows))
    table = table.reindex([(p, k) for p in props for k in built])  # property by property
    table.attrs["models"] = fitted
    table.attrs["folds"] = next(iter(fitted.values())).folds
    if plot is not None:
        plot_compare(table, plot)
    return table


def plot_compare(table: pd.DataFrame, path: str | Path) -> Path:
    """The covariate-set table as bar charts (MEC with the folds' spread, RMSE in mapped
    units) per property, one bar per set, written as a PNG."""
    # A bare Figure, not pyplot: no global backend switch and no figure registry, so a
    # notebook's own plotting state is left alone.
    from matplotlib.figure import Figure

    props = list(dict.fromkeys(table.index.get_level_values("property")))
    sets = sorted(set(table.index.get_level_values("set")))
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    width = 0.8 / len(sets)
    x = np.arange(len(props))
    for i, k in enumerate(sets):
        sub = table.xs(k, level="set").reindex(props)
        axes[0].bar(x + i * width, sub["MEC"], width, yerr=sub["MEC_fold_sd"], capsize=2,
                    label=f"set {k}")
        axes[1].bar(x + i * width, sub["RMSE"] / sub["RMSE"].max(), width, label=f"set {k}")
    for ax, title in zip(axes, ("MEC (error bar: SD over folds)",
                                "RMSE relative to the worst set"), strict=True):
        ax.set_xticks(x + width * (len(sets) - 1) / 2, props)
        ax.set_title(title)
        ax.axhline(0, color="black", lw=0.5)
    axes[0].legend()
    fig.suptitle(f"Cross-validation by covariate set ({table.attrs.get('folds', '')})")
    path = Path(path)
    fig.savefig(path, dpi=100, metadata={"Software": "cup4soil"})
    return path
