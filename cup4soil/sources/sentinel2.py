"""Sentinel-2 L2A item metadata: band aliases, processing baselines, harmonisation, duplicates.

Pure functions on :class:`pystac.Item` objects (no pixel I/O), so the cube can plan its
reads before any data is touched -- the same split odc-stac makes in ``_mdtools``.

The alias table was derived from the recorded items in ``shared/data/stac`` (Planetary
Computer ``sentinel-2-l2a``; Earth Search v1 ``sentinel-2-l2a`` and ``sentinel-2-c1-l2a``)
and from the Copernicus Data Space STAC item layout (``B02_10m`` ... ``SCL_20m``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pystac

from ..errors import BandError

__all__ = [
    "ALL_BANDS", "BAND_ALIASES", "BASELINE_04_START", "BOA_ADD_OFFSET", "NATIVE_GSD",
    "REFLECTANCE_BANDS", "SCL", "asset_key", "boa_add_offset", "check_bands", "deduplicate",
    "describe", "dn_offset", "mean_sun_zenith", "mgrs_tile", "processing_baseline",
]

#: Canonical reflectance bands of cup4soil, in wavelength order.
REFLECTANCE_BANDS: tuple[str, ...] = (
    "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12",
)
#: Scene classification layer (Sen2Cor), categorical.
SCL = "SCL"
ALL_BANDS: tuple[str, ...] = (*REFLECTANCE_BANDS, SCL)

#: Canonical band -> asset keys per catalog convention, in order of preference.
#: CDSE lists each band at several resolutions; the native one comes first so that
#: coarser outputs are made by cup4soil's own averaging, not ESA's resampling.
BAND_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "planetary-computer": {b: (b,) for b in ALL_BANDS},
    "earth-search": {
        "B02": ("blue",), "B03": ("green",), "B04": ("red",),
        "B05": ("rededge1",), "B06": ("rededge2",), "B07": ("rededge3",),
        "B08": ("nir",), "B8A": ("nir08",), "B11": ("swir16",), "B12": ("swir22",),
        "SCL": ("scl",),
    },
    "cdse": {
        "B02": ("B02_10m", "B02_20m", "B02_60m"), "B03": ("B03_10m", "B03_20m", "B03_60m"),
        "B04": ("B04_10m", "B04_20m", "B04_60m"), "B05": ("B05_20m", "B05_60m"),
        "B06": ("B06_20m", "B06_60m"), "B07": ("B07_20m", "B07_60m"),
        "B08": ("B08_10m",), "B8A": ("B8A_20m", "B8A_60m"),
        "B11": ("B11_20m", "B11_60m"), "B12": ("B12_20m", "B12_60m"),
        "SCL": ("SCL_20m", "SCL_60m"),
    },
}

#: Native ground sampling distance of each band, metres.
NATIVE_GSD: dict[str, float] = {
    "B02": 10.0, "B03": 10.0, "B04": 10.0, "B08": 10.0,
    "B05": 20.0, "B06": 20.0, "B07": 20.0, "B8A": 20.0, "B11": 20.0, "B12": 20.0, "SCL": 20.0,
}

#: BOA_ADD_OFFSET of processing baseline 04.00 and later, in DN.
BOA_ADD_OFFSET = -1000
#: First day of processing baseline 04.00.
BASELINE_04_START = dt.datetime(2022, 1, 25, tzinfo=dt.UTC)


def check_bands(bands: Sequence[str] | None) -> tuple[str, ...]:
    """Validate requested canonical band names (default: all ten reflectance bands + SCL)."""
    if bands is None:
        return ALL_BANDS
    if isinstance(bands, str):
        bands = [bands]
    out: list[str] = []
    for b in bands:
        canon = str(b).upper()
        if canon not in ALL_BANDS:
            raise BandError(
                f"band {b!r} is not a cup4soil band. Choose from {', '.join(ALL_BANDS)}."
            )
        if canon not in out:
            out.append(canon)
    return tuple(out)


def _eo_band_names(asset: pystac.Asset) -> list[str]:
    bands = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    return [str(b.get("name", "")) for b in bands if isinstance(b, Mapping)]


def asset_key(item: pystac.Item, band: str) -> str:
    """The asset key that holds canonical ``band`` in ``item``, whatever the catalog.

    Raises
    ------
    BandError
        If the item has no asset for that band.
    """
    for table in BAND_ALIASES.values():
        for key in table.get(band, ()):
            if key in item.assets:
                return key
    # Unknown convention: fall back on the eo:bands name of a single-band asset.
    for key, asset in item.assets.items():
        if _eo_band_names(asset) == [band]:
            return key
    raise BandError(
        f"item {item.id!r} has no asset for band {band} (its assets are "
        f"{', '.join(sorted(item.assets))}). Choose other bands with bands=[...] or search a "
        "Sentinel-2 L2A collection."
    )


_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})_")


def processing_baseline(item: pystac.Item) -> float | None:
    """Processing baseline as a number (``4.0`` for ``"04.00"``), or None if unknown."""
    props = item.properties
    for key in ("s2:processing_baseline", "processing:version", "sentinel:processing_baseline"):
        value = props.get(key)
        if value not in (None, ""):
            try:
                return float(value)
            except (TypeError, ValueError):
                pass
    for text in (props.get("s2:product_uri"), item.id):
        m = _BASELINE_IN_NAME.search(str(text or ""))
        if m:
            return float(f"{m.group(1)}.{m.group(2)}")
    return None


def _raster_scale_offset(asset: pystac.Asset) -> tuple[float, float] | None:
    """(scale, offset) from the raster extension, STAC 1.0 or 1.1 style, if present."""
    fields = asset.extra_fields
    for entry in fields.get("raster:bands") or []:
        if isinstance(entry, Mapping) and "offset" in entry:
            return float(entry.get("scale", 1.0) or 1.0), float(entry["offset"])
    if "raster:offset" in fields:
        return float(fields.get("raster:scale", 1.0) or 1.0), float(fields["raster:offset"])
    for entry in fields.get("bands") or []:
        if isinstance(entry, Mapping) and "raster:offset" in entry:
            return float(entry.get("raster:scale", 1.0) or 1.0), float(entry["raster:offset"])
    return None


def dn_offset(item: pystac.Item, band: str) -> int:
    """DN shift that brings ``band`` of ``item`` onto the pre-04.00 scale.

    ``harmonised DN = DN + dn_offset``. The raster extension's offset is authoritative where
    a catalog provides it (Earth Search v1, CDSE: ``offset / scale = -0.1 / 0.0001 = -1000``);
    otherwise the processing baseline decides (Planetary Computer), and failing that the
    acquisition date (baseline 04.00 began on 2022-01-25).
    """
    if band == SCL:
        return 0
    asset = item.assets[asset_key(item, band)]
    so = _raster_scale_offset(asset)
    if so is not None:
        scale, offset = so
        # Offsets are given in reflectance units; convert to DN on the 1/10000 scale.
        return round(offset / scale) if scale else 0
    when = item.datetime or item.common_metadata.start_datetime
    return boa_add_offset(processing_baseline(item), when)


def boa_add_offset(baseline: float | None, when: dt.datetime | None = None) -> int:
    """``BOA_ADD_OFFSET`` (DN) that a scene's L2A DNs carry: the processing baseline rule.

    Baseline 04.00 and later carry :data:`BOA_ADD_OFFSET`, earlier ones none. Where the
    baseline is unknown (None) the acquisition time ``when`` decides (04.00 began on
    :data:`BASELINE_04_START`); with neither, no offset.
    """
    if baseline is not None:
        return BOA_ADD_OFFSET if baseline >= 4.0 else 0
    return BOA_ADD_OFFSET if when is not None and when >= BASELINE_04_START else 0


def mean_sun_zenith(item: pystac.Item) -> float:
    """Scene-mean solar zenith angle, degrees (NaN where the item does not say)."""
    props = item.properties
    if props.get("s2:mean_solar_zenith") is not None:
        return float(props["s2:mean_solar_zenith"])
    if props.get("view:sun_elevation") is not None:
        return 90.0 - float(props["view:sun_elevation"])
    return float("nan")


def mgrs_tile(item: pystac.Item) -> str:
    """MGRS tile code such as ``33UVU`` (falls back to the item id)."""
    props = item.properties
    if props.get("s2:mgrs_tile"):
        return str(props["s2:mgrs_tile"])
    if props.get("grid:code"):
        return str(props["grid:code"]).removeprefix("MGRS-")
    if props.get("mgrs:utm_zone") is not None:
        return f"{props['mgrs:utm_zone']}{props.get('mgrs:latitude_band', '')}" + str(
            props.get("mgrs:grid_square", "")
        )
    m = re.search(r"_T?(\d{2}[C-X][A-Z]{2})_", item.id)
    return m.group(1) if m else item.id


def _generation_key(item: pystac.Item) -> str:
    props = item.properties
    return str(
        props.get("s2:generation_time") or props.get("processing:datetime")
        or props.get("updated") or props.get("created") or ""
    )


@dataclass(frozen=True)
class _Choice:
    baseline: float
    generated: str
    priority: int


def deduplicate(
    items: Iterable[pystac.Item], *, collection_priority: Sequence[str] = ()
) -> list[pystac.Item]:
    """Keep one item per (MGRS tile, sensing second): the newest processing baseline.

    Ties are broken by generation time, then by ``collection_priority`` (earlier wins).
    Order of first appearance is preserved.
    """
    best: dict[tuple[str, str], tuple[_Choice, pystac.Item]] = {}
    order: list[tuple[str, str]] = []
    rank = {c: i for i, c in enumerate(collection_priority)}
    for item in items:
        when = item.datetime or item.common_metadata.start_datetime
        key = (mgrs_tile(item), when.strftime("%Y%m%dT%H%M%S") if when else item.id)
        choice = _Choice(
            baseline=processing_baseline(item) or 0.0,
            generated=_generation_key(item),
            priority=-rank.get(item.collection_id or "", len(rank)),
        )
        if key not in best:
            order.append(key)
            best[key] = (choice, item)
        elif (choice.baseline, choice.generated, choice.priority) > (
            best[key][0].baseline, best[key][0].generated, best[key][0].priority
        ):
            best[key] = (choice, item)
    return [best[k][1] for k in order]


def describe(item: pystac.Item) -> dict[str, Any]:
    """A short summary of an item for listings."""
    when = item.datetime or item.common_metadata.start_datetime
    return {
        "id": item.id,
        "datetime": when.isoformat() if when else None,
        "cloud_cover": item.properties.get("eo:cloud_cover"),
        "collection": item.collection_id,
        "baseline": processing_baseline(item),
    }
