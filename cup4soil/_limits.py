"""The size guard: what one call should do, checked at plan time from shapes alone.

A cube, a composite or a prediction is refused before anything runs when it is larger than
one call of cup4soil should do -- all of Europe at 10 m (18 TB, 1.26 M tasks), or
``resolution=1e-6`` (which used to be killed for memory after 105 s) -- with the numbers and
the ways out: a coarser resolution, tiles (the tiling stage runs one resumable call per
tile), larger chunks, or an explicit ``max_pixels=`` (``--max-pixels``) to run it anyway.

The limits (measured on the project machine, 2 cores and 24 GiB; ``benchmarks/limits.py``
and ``docs/benchmarks.md``):

- :data:`DEFAULT_MAX_PIXELS` -- pixel observations (``time x y x``; a cube's bands are not
  counted, a prediction's grid has one time step): 2**35, about 3.4e10. A whole Sentinel-2
  tile for five years at 20 m (5490 x 5490 px x 365 dates, 1.1e10, SCMaP's reference run)
  fits three times; at the measured composite throughput of this machine (113 k
  observations per second and core, from COGs) it is about 40 hours on its two cores, or
  one hour on 80 cores. Anything larger is a continental run: tiles.
- :data:`DEFAULT_MAX_TASKS` -- Dask tasks: 10**6. Measured: a million tasks hold about
  1.7 GB in the client's materialised and pickled graph (1.7 kB per task) before the
  scheduler holds its own copy, and take half an hour of graph building on this machine;
  beyond it the scheduler, not the reading, is the limit.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import ParameterError, TooLargeError

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_MAX_TASKS", "check_size", "resolve_max_pixels"]

#: Most pixel observations (time x y x) one call plans, unless ``max_pixels=`` says more.
DEFAULT_MAX_PIXELS = 2**35
#: Most Dask tasks one call plans.
DEFAULT_MAX_TASKS = 10**6


def resolve_max_pixels(max_pixels: Any) -> float:
    """The pixel limit of a call: :data:`DEFAULT_MAX_PIXELS` for None, else a positive
    number (``math.inf``: no limit).

    Raises
    ------
    ParameterError
        Not a positive number.
    """
    if max_pixels is None:
        return float(DEFAULT_MAX_PIXELS)
    if isinstance(max_pixels, bool):
        raise ParameterError(f"max_pixels={max_pixels!r} is not a number of pixels.")
    try:
        value = float(max_pixels)
    except (TypeError, ValueError):
        raise ParameterError(
            f"max_pixels={max_pixels!r} is not a number of pixels; give a positive number "
            "(math.inf for no limit) or None for the default "
            f"({DEFAULT_MAX_PIXELS:.3g}).") from None
    if math.isnan(value) or value <= 0:
        raise ParameterError(
            f"max_pixels={max_pixels!r} must be a positive number of pixels (math.inf for no "
            f"limit), or None for the default ({DEFAULT_MAX_PIXELS:.3g}).")
    return value


def _count(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.3g} M"
    return f"{n:,.0f}"


def human_bytes(n: float) -> str:
    """``n`` bytes as ``"18.0 TB"`` (decimal units, as disks and clouds count)."""
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def check_size(what: str, *, shape: dict[str, int], nbytes: float, tasks: int,
               max_pixels: float, resolution: float | None = None,
               chunks_hint: str = "larger chunks") -> None:
    """Refuse a plan larger than one call should do.

    Parameters
    ----------
    what
        What is planned, for the message (``"the cube"``).
    shape
        Its sizes; the pixel observations are the product of ``time``, ``y`` and ``x``
        (those present).
    nbytes
        Bytes it holds (all bands/variables), for the message.
    tasks
        Dask tasks it takes.
    max_pixels
        The pixel limit (:func:`resolve_max_pixels`).
    resolution
        Its pixel size, metres: the message then says which resolution would fit.
    chunks_hint
        How to make fewer tasks (``"larger chunks={'y': 2048, 'x': 2048}"``).

    Raises
    ------
    TooLargeError
        With the numbers and the fixes.
    """
    pixels = math.prod(int(shape.get(d, 1)) for d in ("time", "y", "x"))
    dims = " x ".join(f"{shape[d]:,} {d}" for d in ("time", "y", "x") if d in shape)
    if pixels > max_pixels:
        fixes = []
        if resolution is not None:
            coarser = resolution * math.sqrt(pixels / max_pixels)
            fixes.append(f"a coarser resolution (at least {_round_up(coarser):g} m)")
        fixes.append("tiles (cup4soil.tiling: one resumable call per tile)")
        raise TooLargeError(
            f"{what} would be {pixels:.3g} pixel observations ({dims}; {human_bytes(nbytes)}"
            f" in {_count(tasks)} tasks), more than one call should do ({max_pixels:.3g}, "
            f"max_pixels). Use {' or '.join(fixes)}, or pass max_pixels={pixels:.3g} "
            "(--max-pixels) to run it anyway.")
    if tasks > DEFAULT_MAX_TASKS:
        raise TooLargeError(
            f"{what} would take {_count(tasks)} Dask tasks ({dims}; {human_bytes(nbytes)}), "
            f"more than one call should schedule ({_count(DEFAULT_MAX_TASKS)}). Use "
            f"{chunks_hint} or tiles (cup4soil.tiling).")


def _round_up(x: float) -> float:
    """``x`` rounded up to two significant digits (a resolution to suggest)."""
    if x <= 0 or not math.isfinite(x):
        return x
    scale = 10 ** (math.floor(math.log10(x)) - 1)
    return float(math.ceil(x / scale) * scale)
