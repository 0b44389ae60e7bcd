"""The hidden topsoil (0-30 cm) of the synthetic world beyond SOC: management, total
nitrogen, pH, bulk density and texture, with the correlations real soils show.

- **Management.** Each cropland field is tilled conventionally (ploughed after harvest) or
  under conservation tillage (mulch, no plough). Conservation fields are more likely where
  the field's SOC is high: the joint distribution of a world where reduced tillage keeps
  organic matter in the topsoil. Sentinel-1 sees the tillage as surface roughness (a
  ploughed field is radar-bright over winter); Sentinel-2 hardly does.
- **Total N** follows SOC through a C:N ratio of about 10.5 (SOC-N correlation ~0.95).
- **Texture**: clay is high in the old river channel and the hollows (alluvial clays),
  low on the sandy plateau; silt takes a share of the rest and sand what remains, so clay,
  silt and sand sum to 100 %.
- **Bulk density** falls with SOC (and with clay; grassland and forest are looser).
- **pH** is set by land cover (limed cropland ~6.6, grassland ~6.1, acid forest ~4.7), a
  per-field liming history, conservation tillage (acidifying: no lime ploughed in), clay
  (buffering) and leaching on the sandy plateau.

Each property draws from its own random stream, so adding one leaves the others -- and
every Sentinel-2 scene -- unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .world import WC_BUILT, WC_CROP, WC_GRASS, WC_TREE, WC_WATER, Draws, FloatArray, smooth_noise

__all__ = ["CONSERVATION", "CONVENTIONAL", "Soil", "make_soil"]

CONVENTIONAL, CONSERVATION = "conventional", "conservation"


@dataclass(frozen=True)
class Soil:
    """Topsoil properties on the area's 10 m grid (conventional units).

    Attributes
    ----------
    management
        Tillage of each field id (index 0 unused): True = conservation tillage.
    nitrogen
        Total N, g/kg.
    phh2o
        pH in water.
    bdod
        Bulk density of the fine earth, kg/dm³ (g/cm³).
    clay, silt, sand
        Particle size fractions, percent by mass; they sum to 100.
    """

    management: npt.NDArray[np.bool_]
    nitrogen: FloatArray
    phh2o: FloatArray
    bdod: FloatArray
    clay: FloatArray
    silt: FloatArray
    sand: FloatArray


def make_soil(
    *, soc: npt.NDArray[np.floating], soc_latent: FloatArray, channel: FloatArray,
    plateau: FloatArray, cover: npt.NDArray[np.uint8], fields: npt.NDArray[np.integer],
    field_class: npt.NDArray[np.uint8], draws: Draws,
) -> Soil:
    """The topsoil of the area (every layer ``(n, n)``; ``soc`` in percent)."""
    n = soc.shape[0]
    n_fields = len(field_class) - 1
    soc_pct = soc.astype(np.float64)
    # Management per field, more often conservation where the field's SOC is high.
    mean_latent = np.zeros(n_fields + 1)
    ids = np.arange(1, n_fields + 1)
    if n_fields:
        sums = np.bincount(fields.ravel(), weights=soc_latent.ravel(), minlength=n_fields + 1)
        counts = np.bincount(fields.ravel(), minlength=n_fields + 1)
        mean_latent[ids] = sums[ids] / np.maximum(counts[ids], 1)
    p_conservation = 0.1 + 0.8 / (1.0 + np.exp(-3.0 * mean_latent))
    management = draws("management").random(n_fields + 1) < p_conservation
    management &= field_class == WC_CROP
    management[0] = False
    conservation = management[fields] & (fields > 0)

    # Texture: alluvial clay in the channel and hollows, sand on the plateau.
    clay = (14.0 + 10.0 * channel + 3.0 * soc_latent - 7.0 * plateau
            + 2.5 * smooth_noise(draws("clay"), (n, n), n / 15))
    clay = np.clip(clay, 3.0, 55.0)
    silt_share = np.clip(0.38 - 0.08 * plateau
                         + 0.06 * smooth_noise(draws("silt"), (n, n), n / 12), 0.1, 0.7)
    silt = (100.0 - clay) * silt_share
    sand = 100.0 - clay - silt

    # Total N through the C:N ratio.
    rng = draws("c:n ratio")
    cn = 10.5 + 1.0 * smooth_noise(rng, (n, n), n / 8) + 1.2 * smooth_noise(rng, (n, n), 1.5)
    nitrogen = soc_pct * 10.0 / cn

    # Bulk density: looser with organic matter, clay and permanent vegetation.
    loose = np.isin(cover, (WC_GRASS, WC_TREE))
    bdod = (1.62 - 0.085 * soc_pct - 0.0035 * (clay - 15.0) - 0.1 * loose
            + 0.03 * smooth_noise(draws("bulk density"), (n, n), n / 20))
    bdod = np.clip(bdod, 0.9, 1.8)

    # pH by land cover, liming history per field, tillage and clay.
    base = np.full((n, n), 6.6)
    base[cover == WC_GRASS] = 6.1
    base[cover == WC_TREE] = 4.7
    base[cover == WC_BUILT] = 7.2
    base[cover == WC_WATER] = 7.0
    rng = draws("ph")
    liming = np.concatenate([[0.0], 0.15 * rng.standard_normal(n_fields)])
    ph = (base + liming[fields] * (fields > 0) - 0.35 * conservation + 0.04 * (clay - 15.0)
          - 0.5 * plateau + 0.1 * smooth_noise(rng, (n, n), n / 10))
    ph = np.clip(ph, 3.8, 8.2)
    return Soil(management=management, nitrogen=nitrogen, phh2o=ph, bdod=bdod, clay=clay,
                silt=silt, sand=sand)
