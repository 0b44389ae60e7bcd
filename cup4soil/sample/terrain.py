"""The relief of the synthetic world: a valley side, an old river channel and depressions.

The Oderbruch is a flat floodplain under the slopes of the Barnim plateau; the sample's
relief has the same parts at a small scale: a scarp rising ~25 m to a plateau in the west,
an old, meandering Oder channel about 3 m deep, and shallow depressions. The depressions
follow the large-scale part of the hidden SOC field (``soc_latent``): wetter hollows
collect organic matter, so SOC is higher in depressions -- the relation a terrain
covariate can find. The field is made on the world's 10 m grid extended by a margin on each
side, so that a DEM written from it covers the area plus what terrain derivatives (a 500 m
topographic position index) need around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from .world import Draws, FloatArray, Grid, smooth_noise

__all__ = ["MARGIN_PX", "Relief", "make_relief"]

#: Margin of the relief around the area, 10 m pixels (covers a 500 m TPI and a buffer).
MARGIN_PX = 160


@dataclass(frozen=True)
class Relief:
    """Elevation and its designed parts on the area's grid extended by ``margin`` pixels.

    Attributes
    ----------
    elevation
        Metres above the geoid, ``(n + 2 margin, n + 2 margin)``.
    channel
        Closeness to the old river channel's axis, 0..1.
    plateau
        0 on the floodplain, 1 on the plateau above the scarp.
    margin
        Pixels of extension on each side of the area.
    """

    elevation: FloatArray
    channel: FloatArray
    plateau: FloatArray
    margin: int

    def area(self, layer: FloatArray) -> FloatArray:
        """The part of an extended layer that lies on the area."""
        m = self.margin
        return layer[m:layer.shape[0] - m, m:layer.shape[1] - m]


def make_relief(grid: Grid, soc_latent: npt.NDArray[np.float64], draws: Draws,
                margin: int = MARGIN_PX) -> Relief:
    """The relief of ``grid``'s area (plus ``margin``), its depressions under high SOC."""
    n = grid.size
    size = n + 2 * margin
    rng = draws("terrain")
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    # Metres east/south of the area's upper-left corner.
    east, south = (cols - margin + 0.5) * 10.0, (rows - margin + 0.5) * 10.0
    side = n * 10.0
    # The scarp: a logistic step to the plateau in the west, its foot wandering a little.
    foot = 0.12 * side + 60.0 * np.sin(2 * np.pi * south / 1700.0 + rng.uniform(0, 2 * np.pi))
    plateau = 1.0 / (1.0 + np.exp((east - foot) / 45.0))
    # The old channel: meanders from north to south through the east of the area.
    axis = 0.62 * side + 0.08 * side * np.sin(2 * np.pi * south / (0.9 * side)
                                               + rng.uniform(0, 2 * np.pi))
    channel = np.exp(-0.5 * ((east - axis) / 45.0) ** 2)
    # Depressions under high SOC: the SOC field is periodic on the area, so it tiles the
    # margin without a seam.
    latent = np.pad(soc_latent, margin, mode="wrap")
    micro = smooth_noise(rng, (size, size), 8.0)
    elevation = (
        8.0 + 0.0015 * (side - east)           # the floodplain falls gently to the Oder
        + 25.0 * plateau                       # the Barnim slope
        - 3.0 * channel                        # the old channel
        - 1.6 * latent                         # hollows where SOC is high
        + 0.35 * micro                         # micro-relief
    )
    elevation = ndimage.gaussian_filter(elevation, 1.0)
    return Relief(elevation=elevation, channel=channel, plateau=plateau, margin=margin)
