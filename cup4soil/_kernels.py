"""Pure NumPy kernels: no xarray, no dask, no I/O.

They take and return plain arrays, so they are tested on small inputs and reused inside
``map_blocks`` / ``map_overlap`` / ``apply_ufunc``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

#: Sen2Cor SCL classes that are never a valid observation for SCMaP:
#: 0 no data, 1 saturated/defective, 2 dark area, 3 cloud shadow, 7 unclassified,
#: 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus, 11 snow.
INVALID_SCL: tuple[int, ...] = (0, 1, 2, 3, 7, 8, 9, 10, 11)
#: SCL classes dilated by the cloud buffer: shadow, medium and high cloud, cirrus.
CLOUD_SCL: tuple[int, ...] = (3, 8, 9, 10)


def shift_dn(dn: np.ndarray, offset: int) -> np.ndarray:
    """Apply a DN offset, keeping 0 as nodata and clipping valid values to [1, 65535].

    Parameters
    ----------
    dn
        Unsigned integer digital numbers, 0 = nodata.
    offset
        DN shift (``-1000`` brings processing baseline >= 04.00 onto the old scale).
    """
    if offset == 0:
        return dn
    shifted = np.clip(dn.astype(np.int32) + int(offset), 1, np.iinfo(np.uint16).max)
    return np.where(dn == 0, 0, shifted).astype(dn.dtype)


def scl_in(scl: np.ndarray, classes: Iterable[int]) -> np.ndarray:
    """Boolean array: SCL value is one of ``classes`` (a 256-entry lookup, fast for uint8)."""
    lut = np.zeros(256, dtype=bool)
    lut[list(classes)] = True
    return lut[np.clip(scl, 0, 255).astype(np.intp)]


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a boolean mask by a (2r+1) x (2r+1) square over its last two axes.

    Pixels beyond the array edge count as not masked, so the result of a block
    processed with an overlap of ``radius`` equals that of the whole array.
    """
    if radius <= 0:
        return mask.astype(bool, copy=True)
    size = (1,) * (mask.ndim - 2) + (2 * radius + 1, 2 * radius + 1)
    return ndimage.maximum_filter(mask.astype(np.uint8), size=size, mode="constant", cval=0) > 0


def cloud_buffer(scl: np.ndarray, radius: int, cloud_scl: Iterable[int] = CLOUD_SCL) -> np.ndarray:
    """True within ``radius`` pixels (square) of a cloud, shadow or cirrus pixel."""
    return dilate(scl_in(scl, cloud_scl), radius)


def any_nodata(*bands: np.ndarray) -> np.ndarray:
    """True where any of the bands is 0 (nodata)."""
    out = np.zeros(bands[0].shape, dtype=bool)
    for band in bands:
        out |= band == 0
    return out


def valid_from_parts(
    scl: np.ndarray,
    buffered_clouds: np.ndarray,
    *bands: np.ndarray,
    invalid_scl: Iterable[int] = INVALID_SCL,
) -> np.ndarray:
    """Validity given the (already dilated) cloud buffer: usable class, data, no cloud."""
    return ~(scl_in(scl, invalid_scl) | any_nodata(*bands) | buffered_clouds)


def valid_mask(
    scl: np.ndarray,
    nodata: np.ndarray,
    *,
    radius: int,
    invalid_scl: Iterable[int] = INVALID_SCL,
    cloud_scl: Iterable[int] = CLOUD_SCL,
) -> np.ndarray:
    """SCMaP validity of each observation of a whole array, before the sun-zenith limit.

    Parameters
    ----------
    scl
        Scene classification, ``(..., y, x)``.
    nodata
        True where any reflectance band is nodata, same shape.
    radius
        Cloud buffer in pixels (100 m at 20 m resolution = 5 px: an 11 x 11 square).
    """
    cloud = cloud_buffer(scl, radius, cloud_scl)
    return ~(scl_in(scl, invalid_scl) | nodata | cloud)
