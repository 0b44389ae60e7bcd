"""Pure array code of the derived indicators: SOC stock, Saxton & Rawls (2006) water
capacity, and Monte Carlo over per-pixel predicted distributions.

A pixel's predicted distribution is known by three quantiles (5 %, 50 %, 95 %). The Monte
Carlo takes the two-piece normal through them: below the median a normal of standard
deviation (Q0.5 − Q0.05) / z, above it one of (Q0.95 − Q0.5) / z (z = Φ⁻¹(0.95) ≈ 1.645),
so each draw's quantile function reproduces the three predicted quantiles exactly and keeps
their skew. Every pixel uses the same draws (a fixed seed), so results do not depend on
chunking.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

__all__ = ["Z95", "awc_saxton_rawls", "draws", "monte_carlo", "quantile_function",
           "soc_stock"]

Array = npt.NDArray[np.float64]
#: Φ⁻¹(0.95).
Z95 = float(ndtri(0.95))
#: Pixels per Monte Carlo slab: bounds the memory of a slab to pixels × draws × 8 bytes.
SLAB = 8192


def soc_stock(soc_gkg: npt.ArrayLike, bd_kgdm3: npt.ArrayLike, *, depth_cm: float = 30.0,
              coarse: npt.ArrayLike = 0.0) -> Array:
    """SOC stock (t/ha) = SOC [g/kg] × BD [kg/dm³] × depth [cm] × (1 − coarse) × 0.1."""
    out: Array = (np.asarray(soc_gkg, np.float64) * np.asarray(bd_kgdm3, np.float64)
                  * depth_cm * (1.0 - np.asarray(coarse, np.float64)) * 0.1)
    return out


def awc_saxton_rawls(sand: npt.ArrayLike, clay: npt.ArrayLike, om: npt.ArrayLike
                     ) -> tuple[Array, Array, Array]:
    """Wilting point θ1500, field capacity θ33 and available water θ33 − θ1500 (m³/m³) by
    Saxton & Rawls (2006), eqs. 1 and 2.

    Parameters
    ----------
    sand, clay : array_like
        Mass fractions (0–1).
    om : array_like
        Organic matter, % by mass.
    """
    s = np.asarray(sand, np.float64)
    c = np.asarray(clay, np.float64)
    o = np.asarray(om, np.float64)
    t1500 = (-0.024 * s + 0.487 * c + 0.006 * o + 0.005 * s * o - 0.013 * c * o
             + 0.068 * s * c + 0.031)
    th1500 = t1500 + (0.14 * t1500 - 0.02)
    t33 = (-0.251 * s + 0.195 * c + 0.011 * o + 0.006 * s * o - 0.027 * c * o
           + 0.452 * s * c + 0.299)
    th33 = t33 + (1.283 * t33**2 - 0.374 * t33 - 0.015)
    return th1500, th33, th33 - th1500


def quantile_function(u: npt.ArrayLike, q05: npt.ArrayLike, q50: npt.ArrayLike,
                      q95: npt.ArrayLike) -> Array:
    """The two-piece normal's quantile at probability ``u`` (broadcasting)."""
    z = ndtri(np.asarray(u, np.float64))
    lo = (np.asarray(q50) - np.asarray(q05)) / Z95
    hi = (np.asarray(q95) - np.asarray(q50)) / Z95
    out: Array = np.asarray(q50) + z * np.where(z < 0, lo, hi)
    return out


def draws(n_draws: int, n_vars: int, correlation: str, seed: int = 0) -> Array:
    """Probabilities ``(n_draws, n_vars)`` for the Monte Carlo: independent uniforms, or one
    uniform shared by every variable (``"comonotone"``). Stratified (one draw per 1/n
    stratum of the first variable), so few draws resolve the tails evenly."""
    rng = np.random.default_rng(seed)
    first = (rng.permutation(n_draws) + rng.uniform(size=n_draws)) / n_draws
    if correlation == "comonotone":
        return np.repeat(first[:, None], n_vars, axis=1)
    if correlation == "independent":
        rest = [(rng.permutation(n_draws) + rng.uniform(size=n_draws)) / n_draws
                for _ in range(n_vars - 1)]
        return np.stack([first, *rest], 1)
    raise ValueError(f"correlation={correlation!r}")


def monte_carlo(func: object, inputs: list[tuple[Array, Array, Array]], u: Array,
                levels: tuple[float, ...] = (0.05, 0.5, 0.95)) -> Array:
    """Quantiles ``(len(levels), n_pixels)`` of ``func(*values)`` where each input's values
    are drawn from its pixel's two-piece normal at the probabilities ``u``
    (``(n_draws, n_inputs)``); NaN where an input is NaN."""
    n = inputs[0][0].size
    out = np.full((len(levels), n), np.nan)
    for start in range(0, n, SLAB):
        sl = slice(start, min(start + SLAB, n))
        vals = [quantile_function(u[:, i][:, None], q[0][sl][None], q[1][sl][None],
                                  q[2][sl][None]) for i, q in enumerate(inputs)]
        res = func(*vals)  # type: ignore[operator]
        out[:, sl] = np.quantile(res, levels, axis=0)
    return out
