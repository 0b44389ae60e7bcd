"""Where a map extrapolates: pixels whose covariates lie outside the training range.

The rule (per covariate, then any): with ``lo``/``hi`` the covariate's minimum and maximum
over the training samples, a pixel is *extrapolated* when its value is below
``lo - margin × (hi − lo)`` or above ``hi + margin × (hi − lo)`` for at least one covariate
(default ``margin`` :data:`MARGIN` = 0.1, i.e. 10 % of the training range beyond either
end). A forest predicts a constant beyond the range it was trained on, so such pixels get
the prediction of the training range's edge and an interval that knows nothing of the
distance. A covariate constant in training (``hi == lo``) flags any other value.

Pure NumPy (the block kernel and the training ranges); the lazy layer is made in
:meth:`cup4soil.soilmap.SoilMapModel.predict`, its share by :func:`extrapolation_share`
after compute.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FLAG_NODATA", "MARGIN", "SHARE_WARN", "ExtrapolationWarning", "check_extrapolation",
           "extrapolated_block", "share", "training_ranges"]

#: Share of the training range a value may lie beyond either end before it is flagged.
MARGIN = 0.1
#: Share of extrapolated pixels above which :func:`check_extrapolation` warns.
SHARE_WARN = 0.1
#: Value of the ``extrapolated`` layer where a covariate is missing (no prediction).
FLAG_NODATA = 255


class ExtrapolationWarning(UserWarning):
    """Many pixels of a map have covariates far outside the training range."""


def training_ranges(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Per covariate (column of ``x``, samples × covariates) its finite minimum and maximum,
    as a (covariates, 2) array; NaN for a covariate with no finite value."""
    a = np.asarray(x, np.float64)
    out = np.full((a.shape[1], 2), np.nan)
    for j in range(a.shape[1]):
        col = a[:, j][np.isfinite(a[:, j])]
        if col.size:
            out[j] = col.min(), col.max()
    return out


def extrapolated_block(block: npt.NDArray[Any], ranges: npt.NDArray[np.float64],
                       margin: float = MARGIN) -> npt.NDArray[np.uint8]:
    """The flag of a ``(covariates, y, x)`` block: 1 extrapolated, 0 inside the widened
    training range, :data:`FLAG_NODATA` where any covariate is missing (NaN)."""
    f = block.shape[0]
    lo = ranges[:, 0].reshape(f, 1, 1)
    hi = ranges[:, 1].reshape(f, 1, 1)
    pad = margin * (hi - lo)
    with np.errstate(invalid="ignore"):
        outside = ((block < lo - pad) | (block > hi + pad)).any(axis=0)
    missing = ~np.isfinite(block).all(axis=0)
    out: npt.NDArray[np.uint8] = np.asarray(outside, np.uint8)
    out[missing] = FLAG_NODATA
    return out


def share(flag: npt.ArrayLike) -> tuple[float, int, int]:
    """Share of extrapolated pixels among pixels with covariates: (share, n flagged,
    n with covariates)."""
    a = np.asarray(flag)
    valid = a != FLAG_NODATA
    n = int(valid.sum())
    k = int((a[valid] == 1).sum())
    return (k / n if n else 0.0), k, n


def check_extrapolation(flag: npt.ArrayLike, *, threshold: float = SHARE_WARN,
                what: str = "the map") -> float:
    """The share of extrapolated pixels; an :class:`ExtrapolationWarning` with the numbers
    when it exceeds ``threshold``."""
    s, k, n = share(flag)
    if s > threshold:
        warnings.warn(
            f"{what}: {k} of {n} pixels ({100 * s:.1f} %) have a covariate more than "
            f"{100 * MARGIN:.0f} % of its training range outside it; the predictions there "
            "extrapolate (see the 'extrapolated' layer). Add samples covering those "
            "conditions, or mask the flagged pixels.", ExtrapolationWarning, stacklevel=2)
    return s
