"""SCMaP's block engine as compiled kernels: pure array code (NumPy + Numba), no I/O.

The NumPy kernels of :mod:`cup4soil.scmap.kernels` state SCMaP's rules one array operation
at a time; a block task composites with these instead, which do the same in few passes
over the block's memory (the figures are in ``docs/benchmarks.md``):

- :func:`dilate_core` -- the cloud buffer: a (2r+1)^2 square dilation by running counts,
  rows then columns, only for the block's own pixels;
- :func:`observe_batch` -- the observation rule (:func:`kernels.observe`) for a batch of
  time slices, one pass, time-major: validity, PVIR2, bare, the B02 series, the packed
  bare flags and the compact record of every valid observation's other bands;
- :func:`accumulate` -- per pixel, the moments of the valid and the bare observations of
  the batch, band by band in registers;
- :func:`nmad_limits` -- SCMaP's NMAD outlier limits from the B02 series, per pixel;
- :func:`subtract_outliers` -- removes the outliers of one scene from the moments;
- :func:`finish_moments` -- mean and sample standard deviation (n - 1), float32.

**Moments are exact integer sums.** Per pixel and band ``S1 = sum(x)`` (uint32) and
``S2 = sum(x^2)`` (uint64) of uint16 DNs hold exactly for up to 65 535 observations (the
range of VPC), and ``n S2 - S1^2`` fits uint64 too, so the variance has no cancellation at
all -- unlike raw float sums, and more precisely than Welford's float64 update, which
rounds at every step. Integer sums are also order-free: the products do not depend on the
block or batch layout, and an outlier found after the pass is *subtracted* exactly, so the
time series is decoded once. 12 bytes per pixel and band, against 16 for Welford's mean and
M2 in float64.

Rounding follows the NumPy kernels operation by operation (PVIR2 in float32, the median
and NMAD in float64 from integer order statistics), so counts are bit-identical to them.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "BARE", "MAX_OBSERVATIONS", "VALID", "accumulate", "dilate_core", "finish_moments",
    "nmad_limits", "observe_batch", "packed_width", "subtract_outliers",
]

#: Bits of an observation's code (:func:`observe_batch`).
VALID = np.uint8(1)
BARE = np.uint8(2)
#: Most observations a pixel's integer moments hold exactly (and VPC's uint16 range).
MAX_OBSERVATIONS = 65535
#: Consistency factor of the normalised median absolute deviation (as kernels.NMAD_FACTOR).
_NMAD_FACTOR = 1.4826

# The kernels compile on first use (a few seconds per process, once per Dask worker), not
# from Numba's on-disk cache: see cup4soil/models/forest.py for why.
_jit = numba.njit(nogil=True, boundscheck=False, cache=False)


def packed_width(w: int) -> int:
    """Bytes per row of flags packed 8 pixels to a byte along x."""
    return (w + 7) // 8


@_jit
def dilate_core(cloud: np.ndarray, radius: int, top: int, left: int, h: int, w: int,
                out: np.ndarray) -> None:
    """Cloud buffer of the core pixels: ``out[t, y, x]`` is True when ``cloud[t]`` has a
    True pixel in the (2 radius + 1)^2 square around core pixel ``(y, x)``.

    ``cloud`` is ``(k, H, W)`` over the core with its halo (the core starts at row ``top``
    and column ``left`` and is ``h`` x ``w``); pixels beyond the window count as clear
    (scipy's ``maximum_filter`` with ``mode="constant"``, as :func:`kernels.dilate`).
    """
    k, hh, ww = cloud.shape
    rows = np.zeros((hh, w), np.bool_)
    for t in range(k):
        found = False
        for y in range(hh):
            for x in range(ww):
                if cloud[t, y, x]:
                    found = True
                    break
            if found:
                break
        if not found:
            out[t] = False
            continue
        # Rows: any cloud in columns x - r .. x + r (window coordinates), by a running count.
        for y in range(hh):
            count = 0
            for x in range(min(ww, left - radius), min(ww, left + radius)):
                if x >= 0 and cloud[t, y, x]:
                    count += 1
            for xc in range(w):
                x = left + xc
                hi = x + radius
                if hi < ww and cloud[t, y, hi]:
                    count += 1
                rows[y, xc] = count > 0
                lo = x - radius
                if lo >= 0 and cloud[t, y, lo]:
                    count -= 1
        # Columns of the row result: any in rows y - r .. y + r.
        for xc in range(w):
            count = 0
            for y in range(min(hh, top - radius), min(hh, top + radius)):
                if y >= 0 and rows[y, xc]:
                    count += 1
            for yc in range(h):
                y = top + yc
                hi = y + radius
                if hi < hh and rows[hi, xc]:
                    count += 1
                out[t, yc, xc] = count > 0
                lo = y - radius
                if lo >= 0 and rows[lo, xc]:
                    count -= 1


@_jit
def observe_batch(scl: np.ndarray, clouds: np.ndarray, bands: tuple[np.ndarray, ...],
                  sza_bad: np.ndarray, sza_bad_px: np.ndarray, threshold: np.ndarray,
                  not_bare: np.ndarray, invalid_scl: np.ndarray, bidx: np.ndarray,
                  codes: np.ndarray, b02: np.ndarray, bare_bits: np.ndarray,
                  records: np.ndarray, n_valid: np.ndarray, vpc: np.ndarray,
                  below: np.ndarray, keep_records: bool) -> None:
    """SCMaP's observation rule for a batch of ``k`` time slices of a block, in one pass.

    Parameters
    ----------
    scl : (k, h, w) uint8
        Scene classification of the block's pixels.
    clouds : (k, h, w) bool
        Within the cloud buffer (:func:`dilate_core`).
    bands : tuple of (k, h, w) uint16
        Reflectance DNs (0 = nodata), all C-contiguous.
    sza_bad : (k,) bool
        The scene's sun is too low.
    sza_bad_px : (k, h, w) or (0, 0, 0) bool
        Per pixel, when the cube has a per-pixel sun zenith.
    threshold : (h, w) float32
        PVIR2 threshold; bare is PVIR2 <= threshold.
    not_bare : (h, w) bool
        Land cover never bare (WorldCover built-up, water).
    invalid_scl : (256,) bool
        SCL classes that are never valid.
    bidx : (4,) int
        Positions of B02, B04, B08 and B12 in ``bands``.
    codes : (k, h, w) uint8, out
        ``VALID | BARE`` per observation.
    b02 : (k, h, w) uint16, out
        B02 of valid observations, 0 elsewhere (so the series itself says which are valid).
    bare_bits : (k, h, packed_width(w)) uint8, out
        Bare flags packed 8 pixels to a byte along x.
    records : (k, h * w, len(bands) - 1) uint16, out
        Per slice, the other bands of its valid observations in raster order.
    n_valid : (k,) int64, out
        Valid observations per slice.
    vpc : (h, w) int32, in/out
        Valid observations per pixel, incremented.
    below : (h, w) bool, in/out
        Set where a valid observation had PVIR2 < threshold (MASK's "not permanently
        vegetated").
    keep_records : bool
        Whether to fill ``records``.
    """
    k, h, w = scl.shape
    nb = len(bands)
    i02, i04, i08, i12 = bidx[0], bidx[1], bidx[2], bidx[3]
    per_pixel_sza = sza_bad_px.shape[0] > 0
    nan32 = np.float32(np.nan)
    for t in range(k):
        j = 0
        for y in range(h):
            for xb in range(bare_bits.shape[2]):
                bare_bits[t, y, xb] = 0
            for x in range(w):
                ok = not invalid_scl[scl[t, y, x]] and not clouds[t, y, x] and not sza_bad[t]
                if ok and per_pixel_sza and sza_bad_px[t, y, x]:
                    ok = False
                if ok:
                    for b in range(nb):
                        if bands[b][t, y, x] == 0:
                            ok = False
                            break
                code = np.uint8(0)
                if ok:
                    a4 = np.float32(bands[i04][t, y, x])
                    a8 = np.float32(bands[i08][t, y, x])
                    a12 = np.float32(bands[i12][t, y, x])
                    d1 = a8 + a4
                    d2 = a8 + a12
                    nd1 = (a8 - a4) / d1 if d1 != 0 else nan32
                    nd2 = (a8 - a12) / d2 if d2 != 0 else nan32
                    p = np.float32(nd1 + nd2)
                    thr = threshold[y, x]
                    code = VALID
                    if p < thr:
                        below[y, x] = True
                    if p <= thr and not not_bare[y, x]:
                        code = VALID | BARE
                        bare_bits[t, y, x >> 3] |= np.uint8(1) << np.uint8(x & 7)
                    vpc[y, x] += 1
                    b02[t, y, x] = bands[i02][t, y, x]
                    if keep_records:
                        c = 0
                        for b in range(nb):
                            if b != i02:
                                records[t, j, c] = bands[b][t, y, x]
                                c += 1
                    j += 1
                else:
                    b02[t, y, x] = 0
                codes[t, y, x] = code
        n_valid[t] = j


@_jit
def accumulate(codes: np.ndarray, bands: tuple[np.ndarray, ...], s1_bare: np.ndarray,
               s2_bare: np.ndarray, s1_valid: np.ndarray, s2_valid: np.ndarray,
               need_bare: bool, need_valid: bool) -> None:
    """Add a batch's valid and bare observations to the moments, pixel by pixel.

    ``s1_*`` (h, w, bands) uint32 and ``s2_*`` (h, w, bands) uint64: sums of DNs and of
    their squares (a set not needed may be given as a (0, 0, 0) array).
    """
    k, h, w = codes.shape
    nb = len(bands)
    # Pixel by pixel, each observation's bands added straight into the pixel's sums (a few
    # hundred bytes, in cache): 2-3x faster than summing each band over the batch first,
    # which read every observation's code once per band.
    for y in range(h):
        for x in range(w):
            for t in range(k):
                c = codes[t, y, x]
                if c == 0:
                    continue
                bare = need_bare and (c & BARE) != 0
                for b in range(nb):
                    v = np.uint32(bands[b][t, y, x])
                    v2 = np.uint64(v) * np.uint64(v)
                    if need_valid:
                        s1_valid[y, x, b] += v
                        s2_valid[y, x, b] += v2
                    if bare:
                        s1_bare[y, x, b] += v
                        s2_bare[y, x, b] += v2


@_jit
def _median_sorted(vals: np.ndarray, n: int) -> float:
    """Median of the first ``n`` values of a sorted array (NumPy's: mean of the middle two)."""
    lo = (n - 1) // 2
    hi = n // 2
    return (np.float64(vals[lo]) + np.float64(vals[hi])) / 2


@_jit
def _upper_limit(vals: np.ndarray, n: int, sigma: float, min_excess: float) -> float:
    """SCMaP's NMAD upper limit of ``vals[:n]`` (sorted in place); +inf when ``n == 0``.

    As :func:`kernels.nmad_upper_limit` for integer series: the deviations are taken
    twice, as whole numbers (the median may end in .5). Once the values are sorted, the
    deviations below and above the median are two sorted runs: their median is found by
    merging the runs up to the middle, without a second sort.
    """
    if n == 0:
        return np.inf
    vals[:n].sort()
    med = _median_sorted(vals, n)
    twice_med = np.int32(2 * med)
    lo = (n - 1) // 2
    hi = n // 2
    # The first value above the median: left of it the deviations grow towards index 0,
    # from it on towards n - 1.
    r = lo
    while r > 0 and np.int32(2) * np.int32(vals[r - 1]) > twice_med:
        r -= 1
    while r < n and np.int32(2) * np.int32(vals[r]) <= twice_med:
        r += 1
    left = r - 1
    d_lo = np.int32(0)
    d_hi = np.int32(0)
    for step in range(hi + 1):
        if left >= 0 and (r >= n or twice_med - np.int32(2) * np.int32(vals[left])
                          <= np.int32(2) * np.int32(vals[r]) - twice_med):
            d = twice_med - np.int32(2) * np.int32(vals[left])
            left -= 1
        else:
            d = np.int32(2) * np.int32(vals[r]) - twice_med
            r += 1
        if step == lo:
            d_lo = d
        if step == hi:
            d_hi = d
    nmad = _NMAD_FACTOR * ((np.float64(d_lo) + np.float64(d_hi)) / 2) / 2
    return max(med + sigma * nmad, med + min_excess)


@_jit
def nmad_limits(b02: np.ndarray, bare_bits: np.ndarray, sigma_bare: float, sigma_valid: float,
                need_valid: bool, min_excess: float, limit_bare: np.ndarray,
                limit_valid: np.ndarray, n_bare: np.ndarray, out_bare: np.ndarray,
                out_valid: np.ndarray, has_outlier: np.ndarray, y0: int = 0,
                y1: int = -1) -> None:
    """SCMaP's NMAD outlier test on B02, per pixel of a strip of rows (rows ``y0:y1`` of
    it; ``y1 = -1``: to its end -- threads share a strip by rows).

    Parameters
    ----------
    b02 : (s, rows, w) uint16
        The strip's B02 series over the ``s`` stored scenes, 0 where not valid.
    bare_bits : (s, rows, packed_width(w)) uint8
        Bare flags (before the test).
    sigma_bare, sigma_valid
        Outlier factors of the bare (SRC) and valid (MREF, only if ``need_valid``) sets.
    min_excess
        An outlier also exceeds the median by more than this, DN.
    limit_bare, limit_valid : (rows, w) float64, out
        Upper limits: an observation of the set with B02 above it is an outlier.
    n_bare, out_bare, out_valid : (rows, w) int32, out
        Bare observations, and outliers of each set.
    has_outlier : (s,) bool, in/out
        Set for the scenes holding an outlier.
    y0, y1
        The strip's rows this call computes.
    """
    s, rows, w = b02.shape
    vals = np.empty(max(s, 1), np.uint16)
    for y in range(y0, rows if y1 < 0 else y1):
        for x in range(w):
            xb = x >> 3
            bit = np.uint8(1) << np.uint8(x & 7)
            n = 0
            for i in range(s):
                v = b02[i, y, x]
                if v != 0 and bare_bits[i, y, xb] & bit:
                    vals[n] = v
                    n += 1
            n_bare[y, x] = n
            lim = _upper_limit(vals, n, sigma_bare, min_excess)
            limit_bare[y, x] = lim
            m = 0
            if n > 0:
                for i in range(s):
                    v = b02[i, y, x]
                    if v != 0 and bare_bits[i, y, xb] & bit and v > lim:
                        m += 1
                        has_outlier[i] = True
            out_bare[y, x] = m
            if not need_valid:
                continue
            n = 0
            for i in range(s):
                v = b02[i, y, x]
                if v != 0:
                    vals[n] = v
                    n += 1
            lim = _upper_limit(vals, n, sigma_valid, min_excess)
            limit_valid[y, x] = lim
            m = 0
            if n > 0:
                for i in range(s):
                    v = b02[i, y, x]
                    if v != 0 and v > lim:
                        m += 1
                        has_outlier[i] = True
            out_valid[y, x] = m


@_jit
def subtract_outliers(b02: np.ndarray, bare_bits: np.ndarray, records: np.ndarray, i02: int,
                      limit_bare: np.ndarray, limit_valid: np.ndarray, need_bare: bool,
                      need_valid: bool, s1_bare: np.ndarray, s2_bare: np.ndarray,
                      s1_valid: np.ndarray, s2_valid: np.ndarray) -> None:
    """Remove one scene's outliers from the moments.

    ``b02`` (h, w) and ``bare_bits`` are the scene's stored B02 (0 = not valid) and bare
    flags; ``records`` (n_valid, bands - 1) its valid observations' other bands in raster
    order (:func:`observe_batch`); B02 is band ``i02``.
    """
    h, w = b02.shape
    nb = records.shape[1] + 1
    j = 0
    for y in range(h):
        for x in range(w):
            v02 = b02[y, x]
            if v02 == 0:
                continue
            is_bare = ((bare_bits[y, x >> 3] >> np.uint8(x & 7)) & np.uint8(1)) != 0
            out_b = need_bare and is_bare and v02 > limit_bare[y, x]
            out_v = need_valid and v02 > limit_valid[y, x]
            if out_b or out_v:
                c = 0
                for b in range(nb):
                    if b == i02:
                        v = np.uint32(v02)
                    else:
                        v = np.uint32(records[j, c])
                        c += 1
                    v2 = np.uint64(v) * np.uint64(v)
                    if out_b:
                        s1_bare[y, x, b] -= v
                        s2_bare[y, x, b] -= v2
                    if out_v:
                        s1_valid[y, x, b] -= v
                        s2_valid[y, x, b] -= v2
            j += 1


@_jit
def finish_moments(s1: np.ndarray, s2: np.ndarray, n: np.ndarray, keep: np.ndarray,
                   mean: np.ndarray, std: np.ndarray, ci: np.ndarray) -> None:
    """Mean and sample standard deviation (n - 1) of the moments, float32 ``(bands, h, w)``.

    NaN where ``keep`` is False; the standard deviation also where n < 2. ``ci`` (same
    shape, or (0, 0, 0) for none) gets ``1.96 std / sqrt(n)``.
    """
    h, w, nb = s1.shape
    with_ci = ci.shape[0] > 0
    nan32 = np.float32(np.nan)
    for y in range(h):
        for x in range(w):
            m = n[y, x]
            if not keep[y, x] or m <= 0:
                for b in range(nb):
                    mean[b, y, x] = nan32
                    std[b, y, x] = nan32
                    if with_ci:
                        ci[b, y, x] = nan32
                continue
            nn = np.uint64(m)
            for b in range(nb):
                a = s1[y, x, b]
                mean[b, y, x] = np.float32(np.float64(a) / np.float64(m))
                if m < 2:
                    sd = np.nan
                else:
                    # Exact: n S2 - S1^2 < 2^64 for n <= 65535 uint16 values.
                    num = nn * s2[y, x, b] - np.uint64(a) * np.uint64(a)
                    sd = np.sqrt(np.float64(num) / (np.float64(m) * np.float64(m - 1)))
                std[b, y, x] = np.float32(sd)
                if with_ci:
                    ci[b, y, x] = np.float32(1.96 * sd / np.sqrt(np.float64(max(m, 1))))
