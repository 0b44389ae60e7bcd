"""Map furniture for the PNGs people look at: scale bar, north arrow, CRS caption, nodata
colour, and PNG text metadata.

Bare :class:`matplotlib.figure.Figure` objects, never pyplot: no global backend switch and
no figure registry, so a notebook's own plotting state is left alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NODATA_COLOUR", "add_map_furniture", "nice_length", "save_png",
           "scale_bar_metres"]

#: Colour of pixels without data on every map (light grey: distinct from any ramp's end).
NODATA_COLOUR = "#d3d3d3"
#: Metres per degree of latitude (and of longitude at the equator) on the WGS 84 sphere
#: approximation used for a scale bar on a geographic grid.
_M_PER_DEG = 111_320.0


def nice_length(span_m: float) -> float:
    """A round bar length (1, 2 or 5 × 10^k m) of about a quarter of ``span_m`` metres."""
    if not math.isfinite(span_m) or span_m <= 0:
        return 0.0
    target = span_m / 4
    k = math.floor(math.log10(target))
    best = 10.0**k
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * 10.0**k <= target:
            best = m * 10.0**k
    return best


def _crs(crs: Any) -> Any:
    from pyproj import CRS

    try:
        return CRS.from_user_input(crs) if crs is not None else None
    except Exception:  # pyproj.exceptions.CRSError: then no scale bar, said in the caption
        return None


def scale_bar_metres(extent: tuple[float, float, float, float], crs: Any
                     ) -> tuple[float, float, str]:
    """The scale bar of a map: its length in data units, in metres, and a label.

    Parameters
    ----------
    extent : (left, right, bottom, top)
        The map's extent in ``crs`` units.
    crs : CRS-like or None
        Projected (units metres, or feet etc. converted by the axis' unit factor) or
        geographic (degrees converted at the centre latitude: approximate, said in the
        label). ``None`` or an unknown CRS: no bar (length 0).
    """
    c = _crs(crs)
    left, right, bottom, top = extent
    if c is None:
        return 0.0, 0.0, ""
    if c.is_geographic:
        lat = math.radians((bottom + top) / 2)
        per_unit = _M_PER_DEG * max(math.cos(lat), 1e-6)
        note = " (approx., at the centre latitude)"
    else:
        per_unit = float(c.axis_info[0].unit_conversion_factor) if c.axis_info else 1.0
        note = ""
    metres = nice_length(abs(right - left) * per_unit)
    if metres <= 0:
        return 0.0, 0.0, ""
    label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
    return metres / per_unit, metres, label + note


def add_map_furniture(fig: Any, ax: Any, extent: tuple[float, float, float, float],
                      crs: Any) -> None:
    """Scale bar (lower right), north arrow (upper right) and the CRS as a caption.

    The north arrow points to grid north (up), which is true north to within the grid's
    convergence (< 2° over a UTM zone's central part). Artists carry the gids
    ``scale-bar``, ``north-arrow`` and ``crs-caption``.
    """
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    from .._xrutil import crs_label

    length, _, label = scale_bar_metres(extent, crs)
    if length > 0:
        bar = AnchoredSizeBar(ax.transData, length, label, loc="lower right", pad=0.4,
                              borderpad=0.5, sep=3, frameon=True, size_vertical=0,
                              fontproperties={"size": 8})
        bar.patch.set_alpha(0.8)
        bar.set_gid("scale-bar")
        ax.add_artist(bar)
    arrow = ax.annotate("N", xy=(0.95, 0.96), xytext=(0.95, 0.84), xycoords="axes fraction",
                        ha="center", va="center", fontsize=10, fontweight="bold",
                        arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.5},
                        bbox={"boxstyle": "circle,pad=0.15", "fc": "white", "alpha": 0.8,
                              "lw": 0})
    arrow.set_gid("north-arrow")
    try:
        name = crs_label(crs) if crs is not None else "unknown CRS"
    except ValueError:
        name = "unknown CRS"
    if len(name) > 60:  # a WKT: its name only
        c = _crs(crs)
        name = c.name if c is not None else name[:60]
    c = _crs(crs)
    units = ("degrees" if c is not None and c.is_geographic else "metres"
             if c is not None else "unknown units")
    text = f"CRS: {name} (axes in {units})"
    if length <= 0:
        text += "; no scale bar: the CRS is unknown"
    cap = fig.text(0.01, 0.005, text, fontsize=7, ha="left", va="bottom")
    cap.set_gid("crs-caption")
    ax.set_xlabel("x" if c is None or not c.is_geographic else "longitude", fontsize=8)
    ax.set_ylabel("y" if c is None or not c.is_geographic else "latitude", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.ticklabel_format(useOffset=False, style="plain")  # whole coordinates, no "1e6"


def save_png(fig: Any, path: str | Path, metadata: Mapping[str, Any], *, dpi: int = 100
             ) -> Path:
    """Write ``fig`` as a PNG whose text chunks hold ``metadata`` (values that are not
    strings as JSON), plus ``Software: cup4soil``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"Software": "cup4soil"}
    meta.update({k: v if isinstance(v, str) else json.dumps(v, default=_json)
                 for k, v in metadata.items()})
    fig.savefig(path, dpi=dpi, metadata=meta)
    return path


def _json(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON: {type(v).__name__}")
