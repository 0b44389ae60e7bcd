"""Where a product's objects live, and what they say about its state.

A product at ``url`` (any fsspec URL: a path, ``s3://``, ``gs://``, ``az://``) is the Zarr
store at ``url`` and its *sidecar*, the sibling prefix ``url`` + :data:`SIDECAR`::

    url/zarr.json, <var>/...              Zarr (v3 by default) with CF metadata
    url.cup4soil/plan.json                regions and a fingerprint of the layout (written first)
    url.cup4soil/regions/<iy>-<ix>.json   one per finished region: SHA-256 per variable
    url.cup4soil/stac-item.json           the product's STAC Item
    url.cup4soil/complete.json            written last: its presence means "complete"

The sidecar lies outside the Zarr hierarchy, so Zarr readers (xarray, GDAL) meet only
arrays and groups there. Products written by cup4soil 0.1 kept these objects inside the
store (``url/.cup4soil-plan.json`` ...): :func:`locate` finds them, so such products are
still opened, inspected and resumed where they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec

from ..errors import ParameterError, redact

__all__ = [
    "COMPLETE_MARKER", "PLAN", "REGIONS", "SIDECAR", "STAC_ITEM", "Sidecar", "Status",
    "filesystem", "is_local", "locate", "read_status", "zarr_exists",
]

#: Suffix of a product's sidecar prefix: ``p.zarr`` keeps its state in ``p.zarr.cup4soil/``.
SIDECAR = ".cup4soil"
#: Object of the sidecar written last; its presence means "complete".
COMPLETE_MARKER = "complete.json"
#: Object of the sidecar written first: regions and the layout's fingerprint.
PLAN = "plan.json"
#: Folder of the sidecar holding one manifest per finished region.
REGIONS = "regions"
#: The product's STAC Item, in the sidecar.
STAC_ITEM = "stac-item.json"

# cup4soil 0.1: the same objects inside the Zarr store
_LEGACY = {"plan": ".cup4soil-plan.json", "regions": ".cup4soil-regions",
           "marker": ".cup4soil-complete.json", "stac_item": "stac-item.json"}


def filesystem(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """fsspec filesystem and root path (no trailing slash) of a product URL."""
    try:
        fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise ParameterError(f"cannot open {redact(url)}: {exc}. Install the fsspec backend "
                             "for this protocol (s3fs, gcsfs, adlfs).") from None
    return fs, str(root).rstrip("/")


def is_local(url: str) -> bool:
    """Whether ``url`` is a local path (Zarr then takes no storage options)."""
    return "://" not in url or url.startswith("file://")


@dataclass(frozen=True)
class Sidecar:
    """Paths (fsspec, without protocol) of a product's plan, manifests, item and marker."""

    plan: str
    regions: str
    marker: str
    stac_item: str
    legacy: bool = False

    @classmethod
    def beside(cls, root: str) -> Sidecar:
        """The sidecar of the product at ``root``: the sibling prefix ``root + SIDECAR``."""
        if "/" not in root.strip("/"):
            raise ParameterError(
                f"a product needs its own folder or prefix, not the root of a bucket or "
                f"file system ({root or '/'}); write to e.g. s3://bucket/name.zarr.")
        prefix = f"{root}{SIDECAR}"
        return cls(f"{prefix}/{PLAN}", f"{prefix}/{REGIONS}", f"{prefix}/{COMPLETE_MARKER}",
                   f"{prefix}/{STAC_ITEM}")

    @classmethod
    def inside(cls, root: str) -> Sidecar:
        """Where cup4soil 0.1 kept these objects: inside the Zarr store."""
        return cls(**{k: f"{root}/{v}" for k, v in _LEGACY.items()}, legacy=True)

    @property
    def prefix(self) -> str:
        """The folder holding the sidecar's objects (the product's root when legacy)."""
        return self.plan.rsplit("/", 1)[0]

    def manifest(self, key: str) -> str:
        """Path of the manifest of region ``key`` (``"<iy>-<ix>"``)."""
        return f"{self.regions}/{key}.json"


def locate(fs: Any, root: str) -> Sidecar:
    """The sidecar of the product at ``root``: beside it, or inside it for a 0.1 product."""
    new = Sidecar.beside(root)
    if fs.exists(new.plan):
        return new
    old = Sidecar.inside(root)
    if fs.exists(old.plan) or fs.exists(old.marker):
        return old
    return new


def zarr_exists(fs: Any, root: str) -> bool:
    """Whether a Zarr store (v3 or v2 root group) is at ``root``."""
    return bool(fs.exists(f"{root}/zarr.json") or fs.exists(f"{root}/.zgroup"))


@dataclass(frozen=True)
class Status:
    """How far the writing of a product got.

    Attributes
    ----------
    complete : bool
        The completion marker exists.
    written : int
        Regions with a manifest (all of them when complete).
    planned : int
        Regions in the plan (0 when there is no plan).
    """

    complete: bool
    written: int
    planned: int


def read_status(fs: Any, sidecar: Sidecar) -> Status:
    """The product's :class:`Status`, from its sidecar (the Zarr store is not read)."""
    complete = bool(fs.exists(sidecar.marker))
    try:
        plan = json.loads(fs.cat_file(sidecar.plan))
        total = len(plan.get("regions", []))
    except FileNotFoundError:
        return Status(complete, 0, 0)
    try:
        written = len(fs.ls(sidecar.regions, detail=False))
    except FileNotFoundError:
        written = 0
    return Status(complete, total if complete else written, total)
