"""Cross-validation: folds (k-fold, a fold column, spatial blocks), the CV loop and the
metrics SoilGrids reports (MEC, RMSE, ME, CCC, PICP)."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from ..errors import ParameterError, SampleError
from ._typing import FloatArray, IntArray
from .calibration import conformal_offset, cross_conformal
from .design import Design
from .predictor import Method, Predictor, Tune, interval, quantile_name
from .samples import Samples

__all__ = ["CrossValidation", "FoldSpec", "Folds", "assign_folds", "cross_validate",
           "cv_metrics"]

#: ``folds=``: k, the name of a fold column, or a block size in metres (2000.0, "2 km").
FoldSpec = int | str | float

_BLOCK = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(m|km)\s*$")
#: Spatial blocks are dealt to at most this many folds.
MAX_BLOCK_FOLDS = 10


def cv_metrics(observed: npt.ArrayLike, predicted: npt.ArrayLike,
               lower: npt.ArrayLike | None = None, upper: npt.ArrayLike | None = None, *,
               level: int = 90) -> dict[str, float]:
    """Validation metrics as SoilGrids reports them.

    Returns
    -------
    dict
        ``MEC`` (model efficiency coefficient, 1 − Σ(y − ŷ)² / Σ(y − ȳ)², the R² of the
        1:1 line), ``RMSE``, ``ME`` (mean error, mean(ŷ − y): positive means
        overestimation), ``CCC`` (Lin's concordance correlation), ``PICP<level>`` (share
        of observations inside [lower, upper]) and ``n``; in the target's units.
    """
    y = np.asarray(observed, float)
    p = np.asarray(predicted, float)
    err = p - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    out = {
        "MEC": 1 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan"),
        "RMSE": float(np.sqrt(np.mean(err**2))),
        "ME": float(np.mean(err)),
    }
    cov = float(np.mean((y - y.mean()) * (p - p.mean())))
    den = y.var() + p.var() + (y.mean() - p.mean()) ** 2
    out["CCC"] = float(2 * cov / den) if den > 0 else float("nan")
    if lower is not None and upper is not None:
        out[f"PICP{level}"] = float(np.mean((y >= np.asarray(lower))
                                            & (y <= np.asarray(upper))))
    out["n"] = int(y.size)
    return out


# --- folds -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Folds:
    """The fold of every sample.

    Attributes
    ----------
    labels : ndarray of int, shape (n,)
        Fold per sample, 0 ... k - 1.
    description : str
        For the model card: ``"random 10-fold"``, ``"column 'fold' (10 folds)"``,
        ``"spatial blocks of 400 m (...)"``.
    grouped : bool
        Spatial blocks: an inner CV (tuning) keeps each fold's samples together.
    """

    labels: IntArray
    description: str
    grouped: bool

    def groups(self, rows: IntArray) -> IntArray | None:
        """The fold labels of ``rows`` when inner CVs must respect them, else None."""
        return self.labels[rows] if self.grouped else None


def assign_folds(folds: FoldSpec, samples: Samples, rng: np.random.Generator) -> Folds:
    """Folds from ``train(folds=...)``: shuffled k-fold, a fold column, or square blocks of
    a size in metres dealt whole to at most ten folds.

    Raises
    ------
    ParameterError
        ``folds`` is none of these, or k < 2, or a block size <= 0.
    SampleError
        Fewer samples than folds; a fold column with missing values or one fold; blocks
        without coordinates, or all samples in one block.
    """
    n = len(samples.table)
    if isinstance(folds, bool):
        raise ParameterError("folds must be an int, a column name or a block size in metres.")
    if isinstance(folds, int | np.integer):
        k = int(folds)
        if k < 2:
            raise ParameterError(f"folds={k}: cross-validation needs at least 2 folds.")
        if k > n:
            raise SampleError(f"{n} usable samples are fewer than folds={k}; use fewer folds "
                              "or more samples.")
        return Folds(rng.permutation(np.arange(n) % k), f"random {k}-fold", grouped=False)
    size: float | None = None
    if isinstance(folds, float):
        size = float(folds)
    elif isinstance(folds, str) and (m := _BLOCK.match(folds)):
        size = float(m.group(1)) * (1000 if m.group(2) == "km" else 1)
    if size is None:
        if not isinstance(folds, str) or folds not in samples.table:
            raise ParameterError(
                f"folds={folds!r} is neither an int, a column of the samples nor a block size "
                "such as '2 km' or 2000.0 (metres).")
        labels = samples.table[folds].to_numpy()
        if pd.isna(labels).any():
            raise SampleError(f"fold column {folds!r} has missing values.")
        _, codes = np.unique(labels, return_inverse=True)
        if codes.max() < 1:
            raise SampleError(f"fold column {folds!r} holds a single fold.")
        return Folds(codes, f"column {folds!r} ({codes.max() + 1} folds)", grouped=False)
    if size <= 0:
        raise ParameterError(f"block size {size} m must be positive.")
    block, n_blocks = _blocks(samples, size)
    k = min(MAX_BLOCK_FOLDS, n_blocks)
    if k < 2:
        raise SampleError(f"all samples fall in one {size:g} m block; use smaller blocks.")
    order = rng.permutation(n_blocks)
    return Folds(order[block] % k,
                 f"spatial blocks of {size:g} m ({n_blocks} blocks, {k} folds)", grouped=True)


def _blocks(samples: Samples, size: float) -> tuple[IntArray, int]:
    """The square block (of ``size`` metres) of every sample, and the number of blocks."""
    if samples.x is None or samples.y is None:
        raise SampleError("spatially blocked folds need point coordinates; the samples have "
                          "no x/y columns or geometry.")
    x, y = samples.x, samples.y
    if samples.crs is None:
        # stacklevel 4: the warning points at the caller of train()
        warnings.warn("the samples have no CRS; blocked folds take their coordinates as "
                      "metres.", UserWarning, stacklevel=4)
    else:
        from pyproj import CRS, Transformer

        c = CRS.from_user_input(samples.crs)
        if c.is_geographic:  # blocks in metres: project to the samples' UTM zone
            from odc.geo.crs import CRS as OdcCRS

            lon, lat = float(np.nanmean(x)), float(np.nanmean(y))
            utm = OdcCRS.utm(lon, lat)
            x, y = Transformer.from_crs(c, utm.to_wkt(), always_xy=True).transform(x, y)
    bx = np.floor(np.asarray(x) / size).astype(np.int64)
    by = np.floor(np.asarray(y) / size).astype(np.int64)
    _, block = np.unique(np.stack([bx, by], 1), axis=0, return_inverse=True)
    block = block.ravel()
    return block, int(block.max()) + 1


# --- the CV loop -------------------------------------------------------------------------

@dataclass(frozen=True)
class CrossValidation:
    """Result of :func:`cross_validate`.

    Attributes
    ----------
    metrics : dict
        :func:`cv_metrics` of the median and the outer two quantiles.
    predictions : pandas.DataFrame
        Per sample: ``x``, ``y`` (when the samples have coordinates), ``observed``,
        ``predicted`` (median), the outer two quantiles (``q05``, ``q95``, calibrated when
        ``calibrate``) and ``fold``.
    calibration : dict
        ``PICP<level>`` and ``width<level>`` (mean interval width, target units) of the
        out-of-fold intervals ``before`` and ``after`` cross-conformal calibration, and the
        final model's ``offset`` (from all out-of-fold scores); offset 0 and equal figures
        when not calibrated.
    """

    metrics: dict[str, float]
    predictions: pd.DataFrame
    calibration: dict[str, float]


def cross_validate(method: Method, design: Design, folds: Folds, *,
                   quantiles: tuple[float, ...], tune: Tune = False,
                   random_state: int = 0, calibrate: bool = True) -> CrossValidation:
    """Predict every fold with a :class:`Predictor` fitted (and tuned) on the other folds;
    with ``calibrate``, conformalise the out-of-fold intervals fold by fold with the other
    folds' scores (:func:`cup4soil.models.calibration.cross_conformal`)."""
    x, y = design.x, design.y
    pred: FloatArray = np.full((y.size, len(quantiles)), np.nan)
    for k in np.unique(folds.labels):
        test = folds.labels == k
        train = np.flatnonzero(~test)
        fitted = Predictor.fit(method, x[train], y[train], quantiles=quantiles,
                               groups=folds.groups(train), tune=tune,
                               random_state=random_state)
        pred[test] = fitted.predict_quantiles(x[test])
    lo, med, hi = interval(quantiles)
    level = round((quantiles[hi] - quantiles[lo]) * 100)
    frac = quantiles[hi] - quantiles[lo]
    before = {f"PICP{level}": float(np.mean((y >= pred[:, lo]) & (y <= pred[:, hi]))),
              f"width{level}": float(np.mean(pred[:, hi] - pred[:, lo]))}
    offset = 0.0
    if calibrate:
        # the final model's offset: every out-of-fold score (before calibration)
        offset = conformal_offset(y, pred[:, lo], pred[:, hi], level=frac)
        pred[:, lo], pred[:, hi] = cross_conformal(y, pred[:, lo], pred[:, hi], folds.labels,
                                                   level=frac)
        pred[:, lo] = np.minimum(pred[:, lo], pred[:, med])
        pred[:, hi] = np.maximum(pred[:, hi], pred[:, med])
    metrics = cv_metrics(y, pred[:, med], pred[:, lo], pred[:, hi], level=level)
    table = pd.DataFrame({"observed": y, "predicted": pred[:, med],
                          quantile_name(quantiles[lo]): pred[:, lo],
                          quantile_name(quantiles[hi]): pred[:, hi], "fold": folds.labels})
    if design.samples.x is not None:
        table.insert(0, "x", design.samples.x)
        table.insert(1, "y", design.samples.y)
    after = {f"PICP{level}": metrics[f"PICP{level}"],
             f"width{level}": float(np.mean(pred[:, hi] - pred[:, lo]))}
    calibration = {**{f"{k}_before": v for k, v in before.items()},
                   **{f"{k}_after": v for k, v in after.items()}, "offset": offset}
    return CrossValidation(metrics, table, calibration)
