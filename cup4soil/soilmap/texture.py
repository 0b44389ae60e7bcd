"""Texture fractions that sum to 1000 g/kg: additive log-ratios (ALR) and back.

Pure array code. Sand, silt and clay are a composition: three separate models would give
fractions that do not sum to 100 %. cup4soil models the two additive log-ratios with clay
as the common part,

    a_sand = ln(sand / clay),    a_silt = ln(silt / clay),

and back-transforms: ``clay = 1000 / (1 + e^a_sand + e^a_silt)``, ``sand = clay · e^a_sand``,
``silt = clay · e^a_silt`` — every pixel sums to 1000 g/kg by construction (Aitchison 1986;
the choice of the DSM literature, e.g. Lark & Bishop 2007). Zero fractions are floored at
:data:`FLOOR` g/kg before the log.

Interval ends go through the back-transform where each fraction is monotone in both
ratios (clay falls with both; sand rises with ``a_sand`` and falls with ``a_silt``; silt
the other way round): e.g. clay's 5 % end is the back-transform of both ratios' 95 %
ends. That is the comonotone (conservative) corner; the conformal calibration of
:mod:`cup4soil.models.calibration` then sets each fraction's interval to its nominal
coverage on out-of-fold predictions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["FLOOR", "FRACTIONS", "from_alr", "interval_from_alr", "to_alr"]

#: The fractions, in the order of :func:`from_alr`'s output.
FRACTIONS = ("clay", "sand", "silt")
#: g/kg: a fraction reported as 0 is taken as this before the log-ratio.
FLOOR = 1.0

Array = npt.NDArray[np.float64]


def to_alr(clay: npt.ArrayLike, sand: npt.ArrayLike, silt: npt.ArrayLike
           ) -> tuple[Array, Array]:
    """``ln(sand / clay)`` and ``ln(silt / clay)`` (fractions in any one unit)."""
    c, s, t = (np.maximum(np.asarray(v, np.float64), FLOOR) for v in (clay, sand, silt))
    return np.log(s / c), np.log(t / c)


def from_alr(a_sand: npt.ArrayLike, a_silt: npt.ArrayLike, *, total: float = 1000.0
             ) -> tuple[Array, Array, Array]:
    """Clay, sand and silt (summing to ``total``) from the two log-ratios."""
    a1 = np.asarray(a_sand, np.float64)
    a2 = np.asarray(a_silt, np.float64)
    # shift by the largest exponent: no overflow for any finite ratio
    m = np.maximum(np.maximum(a1, a2), 0.0)
    e0, e1, e2 = np.exp(-m), np.exp(a1 - m), np.exp(a2 - m)
    den = e0 + e1 + e2
    return total * e0 / den, total * e1 / den, total * e2 / den


def interval_from_alr(lo_sand: npt.ArrayLike, hi_sand: npt.ArrayLike,
                      lo_silt: npt.ArrayLike, hi_silt: npt.ArrayLike, *,
                      total: float = 1000.0) -> dict[str, tuple[Array, Array]]:
    """Each fraction's (lower, upper) from the ratios' interval ends (comonotone corners)."""
    clay_lo = from_alr(hi_sand, hi_silt, total=total)[0]
    clay_hi = from_alr(lo_sand, lo_silt, total=total)[0]
    sand_lo = from_alr(lo_sand, hi_silt, total=total)[1]
    sand_hi = from_alr(hi_sand, lo_silt, total=total)[1]
    silt_lo = from_alr(hi_sand, lo_silt, total=total)[2]
    silt_hi = from_alr(lo_sand, hi_silt, total=total)[2]
    return {"clay": (clay_lo, clay_hi), "sand": (sand_lo, sand_hi), "silt": (silt_lo, silt_hi)}
