"""SCMaP's block task: all products of one spatial block, one function per pass.

:func:`composite_block` is what runs in a Dask task. It receives its windows already bound
(:mod:`cup4soil.cube.windows`) and a :class:`~cup4soil.scmap.threshold.Threshold` cut to
the block, and chains the passes, each a plain function of NumPy arrays:

1. :func:`first_pass` -- SCL (with a halo for the cloud buffer) and the bands, a batch of
   time slices at a time, through the observation rule (:func:`kernels.observe`); only B02
   and two packed flags per observation are kept;
2. :func:`nmad_filter` -- SCMaP's outlier test on B02, strip by strip, clears the flags of
   outliers;
3. :func:`counts` -- VPC, BSC, BSF, MASK;
4. :func:`second_pass` -- the ten bands again, one time slice at a time, into
   moments of the bare and the valid observations;
5. :func:`band_products` -- SRC, SRC_STD, SRC_CI95, MREF, MREF_STD.

A block never holds its 11-band time series, and the second pass re-reads its input
instead of keeping the first pass's alive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from odc.geo.geobox import GeoBox

from ..cube.windows import WindowSource
from ..sources.sentinel2 import REFLECTANCE_BANDS, SCL
from . import kernels as _kernels
from .threshold import Threshold

__all__ = [
    "BAND_PRODUCTS", "BlockWindows", "FirstPass", "Params", "band_products",
    "composite_block", "counts", "first_pass", "nmad_filter", "second_pass",
]

BAND_PRODUCTS: tuple[str, ...] = ("SRC", "SRC_STD", "SRC_CI95", "MREF", "MREF_STD")
#: Working bytes per value of the strip-wise NMAD test (flags, sorted copies, deviations),
#: and the budget of one strip.
STRIP_BYTES_PER_VALUE = 14
STRIP_BYTES = 8 * 2**20


@dataclass(frozen=True)
class Params:
    """SCMaP's parameters, as they travel to every block task.

    Attributes
    ----------
    nmad_sigma, mref_nmad_sigma
        NMAD outlier factors for the bare (SRC) and valid (MREF) observations.
    min_bare
        Fewest bare observations for SRC and BSC.
    max_sun_zenith
        Largest valid sun zenith angle, degrees.
    radius
        Cloud buffer, pixels.
    products
        Products to make.
    bands
        Reflectance bands, in the order of the band products.
    """

    nmad_sigma: float
    mref_nmad_sigma: float
    min_bare: int
    max_sun_zenith: float
    radius: int
    products: tuple[str, ...]
    bands: tuple[str, ...] = REFLECTANCE_BANDS

    @property
    def need_src(self) -> bool:
        return any(p in self.products for p in ("SRC", "SRC_STD", "SRC_CI95"))

    @property
    def need_mref(self) -> bool:
        return any(p in self.products for p in ("MREF", "MREF_STD"))


@dataclass(frozen=True)
class BlockWindows:
    """What one block reads: SCL with a halo, the bands (and a per-pixel ``sza``) without.

    The halo ``(top, bottom, left, right)`` is the cloud buffer's reach into the
    neighbouring pixels (less at the cube's edge).
    """

    scl: WindowSource
    bands: WindowSource
    halo: tuple[int, int, int, int]


class FirstPass(NamedTuple):
    """What the first pass keeps of a block's series."""

    b02: np.ndarray  # (time, y, x) uint16
    valid: np.ndarray  # packed flags (kernels.flags_new)
    bare: np.ndarray  # packed flags: bare before the NMAD test
    vpc: np.ndarray  # (y, x) int32: valid observations
    below: np.ndarray  # (y, x) bool: a valid observation had PVIR2 < threshold


def first_pass(windows: BlockWindows, threshold: np.ndarray, worldcover: np.ndarray | None,
               sza: np.ndarray, params: Params) -> FirstPass:
    """Flags and B02 of every observation, read a batch of time slices at a time.

    A per-pixel sun zenith (variable ``sza`` of the bands' window) is read with the bands;
    else ``sza`` gives one angle per time step (NaN: unknown).
    """
    n_t = len(sza)
    h, w = threshold.shape
    b02 = np.zeros((n_t, h, w), dtype=np.uint16)
    valid = _kernels.flags_new(n_t, (h, w))
    bare = _kernels.flags_new(n_t, (h, w))
    vpc = np.zeros((h, w), dtype=np.int32)
    below = np.zeros((h, w), dtype=bool)
    per_pixel_sza = "sza" in windows.bands.names
    names = [*params.bands, "sza"] if per_pixel_sza else list(params.bands)
    # SCL comes with its halo, the bands without, so that both read whole chunks when
    # blocks follow the cube's chunks.
    k = min(windows.scl.batch_size([SCL]), windows.bands.batch_size(names))
    batches = zip(windows.scl.batches([SCL], size=k), windows.bands.batches(names, size=k),
                  strict=True)
    for (t0, scl_batch), (_, batch) in batches:
        for i in range(scl_batch[SCL].shape[0]):
            t = t0 + i
            obs = _kernels.observe(
                scl_batch[SCL][i], {b: batch[b][i] for b in params.bands}, threshold,
                radius=params.radius, landcover=worldcover,
                sza=batch["sza"][i] if per_pixel_sza else sza[t],
                max_sun_zenith=params.max_sun_zenith, halo=windows.halo,
            )
            with np.errstate(invalid="ignore"):
                below |= obs.valid & (obs.pvir2 < threshold)
            _kernels.flags_set(bare, t, obs.bare)
            _kernels.flags_set(valid, t, obs.valid)
            vpc += obs.valid
            b02[t] = batch["B02"][i]
    return FirstPass(b02, valid, bare, vpc, below)


def nmad_filter(first: FirstPass, params: Params) -> np.ndarray:
    """SCMaP's NMAD outlier test on B02: clears the bare flags (and, when MREF is made,
    the valid flags) of outliers in place; returns the bare count per pixel (int32).

    Strip by strip of rows: the sort's working copies stay small whatever the number of
    scenes.
    """
    n_t, h, w = first.b02.shape
    bsc = np.zeros((h, w), dtype=np.int32)
    strip = max(1, STRIP_BYTES // max(1, n_t * w * STRIP_BYTES_PER_VALUE))
    for r0 in range(0, h, strip):
        rows = slice(r0, min(h, r0 + strip))
        series = first.b02[:, rows]
        keep = _kernels.flags_unpack(first.bare, n_t, rows)
        keep &= series <= _kernels.nmad_upper_limit(series, keep, params.nmad_sigma)
        first.bare[:, rows] = _kernels.flags_pack(keep)
        bsc[rows] = keep.sum(axis=0)
        if params.need_mref:
            keep = _kernels.flags_unpack(first.valid, n_t, rows)
            keep &= series <= _kernels.nmad_upper_limit(series, keep, params.mref_nmad_sigma)
            first.valid[:, rows] = _kernels.flags_pack(keep)
    return bsc


def counts(vpc: np.ndarray, bsc: np.ndarray, below: np.ndarray,
           worldcover: np.ndarray | None, params: Params) -> dict[str, np.ndarray]:
    """VPC, BSC (0 below ``min_bare``), BSF and MASK of a block."""
    enough = bsc >= params.min_bare
    out: dict[str, np.ndarray] = {"VPC": vpc.astype(np.uint16)}
    out["BSC"] = np.where(enough, bsc, 0).astype(np.uint16)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["BSF"] = np.where(enough & (vpc > 0), bsc / np.maximum(out["VPC"], 1),
                              np.nan).astype(np.float32)
    mask = np.zeros(vpc.shape, dtype=np.uint8)
    mask[(vpc > 0) & ~below] = 2
    mask[enough] = 1
    if worldcover is not None:
        mask[np.isin(worldcover, _kernels.WC_OTHER)] = 3
    out["MASK"] = mask
    return out


def second_pass(bands: WindowSource, bare: np.ndarray, valid: np.ndarray | None,
                params: Params) -> tuple[_kernels.Moments, _kernels.Moments | None]:
    """Moments of the bands over the bare observations (and the valid ones, when
    ``valid`` flags are given), reading the bands again one batch at a time."""
    h, w = bare.shape[1:]
    shape = (len(params.bands), h, w)
    m_bare = _kernels.Moments(shape)
    m_valid = _kernels.Moments(shape) if valid is not None else None
    for t0, batch in bands.batches(params.bands):
        for i in range(batch[params.bands[0]].shape[0]):
            t = t0 + i
            bare_t = _kernels.flags_get(bare, t)
            valid_t = _kernels.flags_get(valid, t) if valid is not None else None
            if not (bare_t.any() or (valid_t is not None and valid_t.any())):
                continue  # nothing to add
            x = np.stack([batch[b][i] for b in params.bands]).astype(np.float64)
            m_bare.add(x, bare_t)
            if m_valid is not None and valid_t is not None:
                m_valid.add(x, valid_t)
    return m_bare, m_valid


def band_products(m_bare: _kernels.Moments, m_valid: _kernels.Moments | None,
                  enough: np.ndarray, params: Params) -> dict[str, np.ndarray]:
    """SRC, SRC_STD, SRC_CI95 (where ``enough`` bare observations) and MREF, MREF_STD."""
    out: dict[str, np.ndarray] = {}
    if params.need_src:
        keep = enough[None]
        std = m_bare.std()
        out["SRC"] = np.where(keep, m_bare.mean, np.nan).astype(np.float32)
        out["SRC_STD"] = np.where(keep, std, np.nan).astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            ci = 1.96 * std / np.sqrt(np.maximum(m_bare.n, 1))
        out["SRC_CI95"] = np.where(keep, ci, np.nan).astype(np.float32)
    if m_valid is not None:
        has = (m_valid.n > 0)[None]
        out["MREF"] = np.where(has, m_valid.mean, np.nan).astype(np.float32)
        out["MREF_STD"] = np.where(has, m_valid.std(), np.nan).astype(np.float32)
    return out


def composite_block(windows: BlockWindows, threshold: Threshold, geobox: GeoBox,
                    worldcover: np.ndarray | None, sza: np.ndarray,
                    params: Params) -> dict[str, np.ndarray]:
    """All products of one spatial block (the Dask task).

    Parameters
    ----------
    windows
        The block's bound windows.
    threshold
        The PVIR2 threshold (restricted to the block), evaluated on ``geobox``.
    geobox
        The block's grid.
    worldcover
        WorldCover classes of the block, or None.
    sza
        Sun zenith per time step, degrees (NaN: unknown), float64.
    params
        SCMaP's parameters.
    """
    first = first_pass(windows, threshold.on(geobox), worldcover, sza, params)
    bsc = nmad_filter(first, params)
    valid = first.valid if params.need_mref else None
    bare, vpc, below = first.bare, first.vpc, first.below
    del first  # B02's series is not needed any more: free it before the second pass
    out = counts(vpc, bsc, below, worldcover, params)
    if params.need_src or params.need_mref:
        m_bare, m_valid = second_pass(windows.bands, bare, valid, params)
        out.update(band_products(m_bare, m_valid, bsc >= params.min_bare, params))
    return out
