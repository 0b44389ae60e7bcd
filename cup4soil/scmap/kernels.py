"""Pure NumPy kernels: no xarray, no dask, no I/O.

They take and return plain arrays, so they are tested on small inputs and reused inside
``map_blocks`` / ``map_overlap`` / ``apply_ufunc``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
from scipy import ndimage

#: Sen2Cor SCL classes that are never a valid observation for SCMaP:
#: 0 no data, 1 saturated/defective, 2 dark area, 3 cloud shadow, 7 unclassified,
#: 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus, 11 snow.
INVALID_SCL: tuple[int, ...] = (0, 1, 2, 3, 7, 8, 9, 10, 11)
#: SCL classes dilated by the cloud buffer: shadow, medium and high cloud, cirrus.
CLOUD_SCL: tuple[int, ...] = (3, 8, 9, 10)


def scl_in(scl: np.ndarray, classes: Iterable[int]) -> np.ndarray:
    """Boolean array: SCL value is one of ``classes`` (a 256-entry lookup, fast for uint8)."""
    lut = np.zeros(256, dtype=bool)
    lut[list(classes)] = True
    out: np.ndarray = lut[np.clip(scl, 0, 255).astype(np.intp)]
    return out


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a boolean mask by a (2r+1) x (2r+1) square over its last two axes.

    Pixels beyond the array edge count as not masked, so the result of a block
    processed with an overlap of ``radius`` equals that of the whole array.
    """
    if radius <= 0:
        return mask.astype(bool, copy=True)
    size = (1,) * (mask.ndim - 2) + (2 * radius + 1, 2 * radius + 1)
    out: np.ndarray = ndimage.maximum_filter(mask.astype(np.uint8), size=size,
                                             mode="constant", cval=0) > 0
    return out


def cloud_buffer(scl: np.ndarray, radius: int, cloud_scl: Iterable[int] = CLOUD_SCL) -> np.ndarray:
    """True within ``radius`` pixels (square) of a cloud, shadow or cirrus pixel."""
    return dilate(scl_in(scl, cloud_scl), radius)


def any_nodata(*bands: np.ndarray) -> np.ndarray:
    """True where any of the bands is 0 (nodata)."""
    out = np.zeros(bands[0].shape, dtype=bool)
    for band in bands:
        out |= band == 0
    return out


# ------------------------------------------------------------------------------------ SCMaP

#: Consistency factor of the normalised median absolute deviation.
NMAD_FACTOR = 1.4826
#: WorldCover classes never counted as bare soil: built-up, permanent water.
WC_NOT_BARE: tuple[int, ...] = (50, 80)
#: WorldCover classes of MASK = 3 ("other surface").
WC_OTHER: tuple[int, ...] = (0, 50, 70, 80, 90, 95)


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b) in float32; NaN where the denominator is 0."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    den = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        out: np.ndarray = np.where(den != 0, (a - b) / den, np.float32(np.nan)).astype(np.float32)
    return out


def pvir2(b04: np.ndarray, b08: np.ndarray, b12: np.ndarray) -> np.ndarray:
    """PVIR2 = NDVI + NBR with NDVI = (B08 - B04)/(B08 + B04), NBR = (B08 - B12)/(B08 + B12)."""
    out: np.ndarray = normalized_difference(b08, b04) + normalized_difference(b08, b12)
    return out


#: No halo: every input covers the same pixels.
NO_HALO: tuple[int, int, int, int] = (0, 0, 0, 0)


class Observation(NamedTuple):
    """What :func:`observe` says about each observation."""

    valid: np.ndarray  # bool: a usable observation
    bare: np.ndarray  # bool: valid and bare soil (before the NMAD outlier test)
    pvir2: np.ndarray  # float32: NDVI + NBR


def observe_valid(
    scl: np.ndarray,
    bands: Iterable[np.ndarray],
    *,
    radius: int,
    sza: np.ndarray | float | None = None,
    max_sun_zenith: float = 70.0,
    halo: tuple[int, int, int, int] = NO_HALO,
    invalid_scl: Iterable[int] = INVALID_SCL,
    cloud_scl: Iterable[int] = CLOUD_SCL,
) -> np.ndarray:
    """SCMaP validity of observations: the validity half of :func:`observe`.

    An observation is valid when its SCL class is usable, no band is nodata (0), no
    cloud, shadow or cirrus pixel lies within ``radius`` pixels (a square), and the sun
    zenith is at most ``max_sun_zenith`` -- an unknown (NaN) sun zenith does not invalidate.

    Parameters
    ----------
    scl
        Scene classification, ``(..., y, x)`` -- with ``halo`` extra pixels on each side.
    bands
        Reflectance bands (DN, 0 = nodata), each ``(..., y, x)`` without the halo.
    radius
        Cloud buffer in pixels (100 m at 20 m resolution = 5 px: an 11 x 11 square).
    sza
        Sun zenith angle, degrees, broadcastable to the bands (one value per observation,
        or per pixel); None: no limit.
    max_sun_zenith
        Largest valid sun zenith angle, degrees.
    halo
        ``(top, bottom, left, right)`` pixels of ``scl`` beyond the bands' window: the
        cloud buffer reaches into them. Beyond the halo, pixels count as cloud-free, so a
        window with a halo of at least ``radius`` (or reaching the image edge) gives the
        same result as the whole image.
    invalid_scl, cloud_scl
        SCL classes that are never valid, and those the buffer grows around.
    """
    top, bottom, left, right = halo
    clouds = cloud_buffer(scl, radius, cloud_scl)
    if top or bottom or left or right:
        core = (..., slice(top, scl.shape[-2] - bottom), slice(left, scl.shape[-1] - right))
        clouds, scl = clouds[core], scl[core]
    valid: np.ndarray = ~(scl_in(scl, invalid_scl) | any_nodata(*bands) | clouds)
    if sza is not None:
        with np.errstate(invalid="ignore"):
            valid &= ~(np.asarray(sza) > max_sun_zenith)
    return valid


def observe(
    scl: np.ndarray,
    bands: Mapping[str, np.ndarray],
    threshold: np.ndarray | float,
    *,
    radius: int,
    landcover: np.ndarray | None = None,
    sza: np.ndarray | float | None = None,
    max_sun_zenith: float = 70.0,
    halo: tuple[int, int, int, int] = NO_HALO,
) -> Observation:
    """SCMaP's observation rule: which observations are valid, and which are bare soil.

    Bare: valid, PVIR2 <= ``threshold`` (NaN PVIR2 is never bare) and the land cover not
    built-up or water (WorldCover 50, 80). Validity as in :func:`observe_valid`.

    Parameters
    ----------
    scl
        Scene classification, ``(..., y, x)`` with ``halo`` (see :func:`observe_valid`).
    bands
        Reflectance bands by name (DN, 0 = nodata, ``(..., y, x)``); all of them decide
        nodata, ``B04``, ``B08`` and ``B12`` give PVIR2.
    threshold
        PVIR2 threshold, broadcastable to the bands (float32 per pixel, or one value).
    landcover
        ESA WorldCover classes ``(y, x)``, or None.
    radius, sza, max_sun_zenith, halo
        As for :func:`observe_valid`.
    """
    valid = observe_valid(scl, bands.values(), radius=radius, sza=sza,
                          max_sun_zenith=max_sun_zenith, halo=halo)
    p = pvir2(bands["B04"], bands["B08"], bands["B12"])
    with np.errstate(invalid="ignore"):
        bare = valid & (p <= threshold)
    if landcover is not None:
        bare &= ~np.isin(landcover, WC_NOT_BARE)
    return Observation(valid, bare, p)


def masked_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median over axis 0 of the values where ``mask`` is True (NaN where none), float64.

    Exact, vectorised: masked-out values are sorted to the end, then the middle one (or the
    mean of the two middle ones, numpy's convention) is taken per pixel. Integer input is
    sorted in its own dtype (the sentinel is the dtype's maximum: a real value equal to it
    sorts to the same place and is still taken correctly), so a uint16 series costs 2 bytes
    per observation, not 8.
    """
    if np.issubdtype(values.dtype, np.integer):
        data = np.where(mask, values, np.iinfo(values.dtype).max).astype(values.dtype)
    else:
        data = np.where(mask, values.astype(np.float64), np.inf)
    data.sort(axis=0)
    n = mask.sum(axis=0)
    lo = np.clip((n - 1) // 2, 0, None)
    hi = np.clip(n // 2, 0, None)
    a = np.take_along_axis(data, lo[None], axis=0)[0].astype(np.float64)
    b = np.take_along_axis(data, hi[None], axis=0)[0].astype(np.float64)
    with np.errstate(invalid="ignore"):
        med = (a + b) / 2
    out: np.ndarray = np.where(n > 0, med, np.nan)
    return out


def nmad_upper_limit(b02: np.ndarray, mask: np.ndarray, sigma: float,
                     min_excess: float = 80.0) -> np.ndarray:
    """Upper B02 limit above which an observation is an outlier (SCMaP's NMAD test).

    An observation is an outlier if ``B02 > med + sigma * nmad`` **and** ``B02 > med +
    min_excess``, i.e. if it exceeds the larger of the two. ``med`` and ``nmad = 1.4826 *
    median(|B02 - med|)`` are taken over the masked observations; +inf where there are none.
    """
    med = masked_median(b02, mask)
    if np.issubdtype(b02.dtype, np.integer):
        # |B02 - med| * 2 is a whole number (med may end in .5) below 2^17: int32 arithmetic,
        # sorted as uint32 -- a quarter of the memory of float64.
        twice_med = np.nan_to_num(2 * med, nan=0).astype(np.int32)
        twice = 2 * b02.astype(np.int32)
        twice -= twice_med[None]
        np.abs(twice, out=twice)
        nmad = NMAD_FACTOR * masked_median(twice.view(np.uint32), mask) / 2
    else:
        dev = np.abs(b02.astype(np.float64) - med[None])
        nmad = NMAD_FACTOR * masked_median(dev, mask)
    limit = np.maximum(med + sigma * nmad, med + min_excess)
    return np.where(np.isnan(limit), np.inf, limit)


class Moments:
    """Per-pixel count, mean and sum of squared deviations, updated one observation at a
    time (Welford).

    Numerically stable where raw sums of squares of DNs (~10^7 each) would lose the small
    variance of a bare soil pixel.

    Parameters
    ----------
    shape
        Shape of one observation, e.g. ``(bands, y, x)``.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.n = np.zeros(shape[-2:], dtype=np.int32)
        self.mean = np.zeros(shape, dtype=np.float64)
        self.m2 = np.zeros(shape, dtype=np.float64)

    def add(self, x: np.ndarray, mask: np.ndarray) -> None:
        """Add one observation ``x`` (``shape``) where ``mask`` (y, x) is True."""
        n_new = self.n + mask
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(mask, 1.0 / np.maximum(n_new, 1), 0.0)
        delta = x - self.mean
        self.mean += delta * w
        self.m2 += np.where(mask, delta * (x - self.mean), 0.0)
        self.n = n_new

    def std(self) -> np.ndarray:
        """Sample standard deviation (n - 1, like openEO's ``sd``); NaN where n < 2."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out: np.ndarray = np.where(self.n >= 2, np.sqrt(np.maximum(self.m2, 0) / (self.n - 1)),
                                       np.nan)
        return out


# ------------------------------------------------------------------------- packed time flags


def flags_new(n_time: int, shape: tuple[int, int]) -> np.ndarray:
    """Boolean flags over (time, y, x) packed 8 scenes to a byte: 1/8 of a bool array."""
    return np.zeros(((n_time + 7) // 8, *shape), dtype=np.uint8)


def flags_set(bits: np.ndarray, t: int, mask: np.ndarray) -> None:
    """Set the flags of scene ``t`` to ``mask`` (which must start cleared)."""
    bits[t >> 3] |= mask.astype(np.uint8) << np.uint8(t & 7)


def flags_get(bits: np.ndarray, t: int) -> np.ndarray:
    """The flags of scene ``t`` as a boolean (y, x) array."""
    out: np.ndarray = ((bits[t >> 3] >> np.uint8(t & 7)) & 1).astype(bool)
    return out


def flags_unpack(bits: np.ndarray, n_time: int, rows: slice) -> np.ndarray:
    """All scenes' flags for a strip of rows, as a boolean (time, rows, x) array."""
    return np.unpackbits(bits[:, rows], axis=0, count=n_time, bitorder="little").astype(bool)


def flags_pack(flags: np.ndarray) -> np.ndarray:
    """Inverse of :func:`flags_unpack` for a strip."""
    return np.packbits(flags, axis=0, bitorder="little")
