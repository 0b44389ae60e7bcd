"""Where a product's objects live, and what they say about its state.

A product at ``url`` (any fsspec URL: a path, ``s3://``, ``gs://``, ``az://``) is the Zarr
store at ``url`` and its *sidecar*, the sibling prefix ``url`` + :data:`SIDECAR`::

    url/zarr.json, <var>/...              Zarr (v3 by default) with CF metadata
    url.cup4soil/plan.json                regions and a fingerprint of the layout (written first)
    url.cup4soil/regions/<iy>-<ix>.json   one per finished region: SHA-256 per variable
    url.cup4soil/stac-item.json           the product's STAC Item
    url.cup4soil/complete.json            written last: its presence means "complete"
    url.cup4soil/lease.json               while a writer runs: its owner and expiry

The sidecar lies outside the Zarr hierarchy, so Zarr readers (xarray, GDAL) meet only
arrays and groups there. Products written by cup4soil 0.1 kept these objects inside the
store (``url/.cup4soil-plan.json`` ...): :func:`locate` finds them, so such products are
still opened, inspected and resumed where they are.

What is at a URL is decided by :func:`inspect` from fresh listings (fsspec caches listings
per file-system instance, for the life of the process: a notebook that looked at a product
before would see it as it was). A folder is a cup4soil product only if its plan says so;
anything else there -- a file, a folder of other files, a Zarr store another tool wrote --
is :data:`FOREIGN` and never written into or deleted. Small objects (plan, manifests,
marker, item) are written whole: on local disk to a temporary name, then renamed.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import fsspec

from ..errors import NotAProductError, ParameterError, redact

__all__ = [
    "COMPLETE_MARKER", "FOREIGN", "LEASE", "PLAN", "REGIONS", "SIDECAR", "STAC_ITEM", "Found",
    "Sidecar", "Status", "filesystem", "foreign_objects", "fresh", "inspect", "is_local",
    "locate", "read_status", "write_object", "zarr_exists",
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
#: The write lease (owner, expiry), in the sidecar while a writer runs.
LEASE = "lease.json"
#: What :func:`inspect` calls a URL holding something cup4soil did not write.
FOREIGN = "foreign"

# cup4soil 0.1: the same objects inside the Zarr store
_LEGACY = {"plan": ".cup4soil-plan.json", "regions": ".cup4soil-regions",
           "marker": ".cup4soil-complete.json", "stac_item": "stac-item.json",
           "lease": ".cup4soil-lease.json"}
# Objects a Zarr array or group keeps in its folder: metadata, chunks (v3 "c/0/0", v2 "0.0"
# or "0/0"; "c" and "0" for 0-d arrays).
_ZARR_KEY = re.compile(r"^(zarr\.json|\.zarray|\.zattrs|\.zgroup|c(/\d+)*|c(\.\d+)*|"
                       r"\d+([./]\d+)*)$")
_ZARR_ROOT = frozenset({"zarr.json", ".zgroup", ".zattrs", ".zmetadata"})


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
    lease: str
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
                   f"{prefix}/{STAC_ITEM}", f"{prefix}/{LEASE}")

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


def fresh(fs: Any, *paths: str) -> None:
    """Forget fsspec's cached listings of ``paths`` (and of their parents): the state of a
    product is always read from the storage, never from a listing cached earlier."""
    for p in paths:
        fs.invalidate_cache(p)


def _read(fs: Any, path: str) -> bytes | None:
    """An object's bytes, read directly (no listing involved); None when absent."""
    try:
        return bytes(fs.cat_file(path))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _json(fs: Any, path: str) -> dict[str, Any] | None:
    data = _read(fs, path)
    if data is None:
        return None
    try:
        out = json.loads(data)
    except ValueError:  # a torn object (written by a 0.1 writer, or not ours)
        return None
    return out if isinstance(out, dict) else None


def write_object(fs: Any, path: str, data: bytes, *, tmp: str | None = None) -> None:
    """Write a small object whole: readers see the old bytes or the new, never a part.

    Object stores replace objects atomically; local files are written to a temporary name
    (``tmp``, on the same disk; by default beside ``path``) and renamed.
    """
    if _local_fs(fs):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = tmp or f"{path}.{uuid.uuid4().hex}.tmp"
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    fs.pipe_file(path, data)
    fs.invalidate_cache(path)


def _local_fs(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def locate(fs: Any, root: str) -> Sidecar:
    """The sidecar of the product at ``root``: beside it, or inside it for a 0.1 product."""
    new = Sidecar.beside(root)
    old = Sidecar.inside(root)
    fresh(fs, new.plan, old.plan)
    if _read(fs, new.plan) is not None:
        return new
    if _read(fs, old.plan) is not None or _read(fs, old.marker) is not None:
        return old
    return new


def zarr_exists(fs: Any, root: str) -> bool:
    """Whether a Zarr store (v3 or v2 root group) is at ``root``."""
    return _read(fs, f"{root}/zarr.json") is not None or _read(fs, f"{root}/.zgroup") is not None


@dataclass(frozen=True)
class Found:
    """What is at a product's URL (see :func:`inspect`).

    Attributes
    ----------
    kind : str
        ``"absent"`` (nothing, or an empty folder), ``"product"`` (a cup4soil product: its
        plan exists; the store may be missing if a write stopped early), ``"file"`` (a
        regular file) or :data:`FOREIGN` (anything else: a folder of other files, a Zarr
        store without a cup4soil plan).
    sidecar : Sidecar
        Where the product's own objects are (or would go).
    store : bool
        A Zarr store (root group metadata) is at the URL.
    contents : tuple of str
        For :data:`FOREIGN`: what is there (names, at most a few).
    """

    kind: Literal["absent", "product", "file", "foreign"]
    sidecar: Sidecar
    store: bool = False
    contents: tuple[str, ...] = field(default=())

    def describe(self, url: str) -> str:
        """A sentence for messages: what is at ``url``."""
        url = redact(url)
        if self.kind == "file":
            return f"{url} is a file, not a product folder"
        shown = ", ".join(self.contents[:5]) + (" ..." if len(self.contents) > 5 else "")
        if self.store:
            return (f"{url} is a Zarr store that cup4soil did not write (it has no cup4soil "
                    f"plan in {redact(self.sidecar.prefix)}); it holds {shown}")
        return f"{url} is a folder that is not a cup4soil product; it holds {shown}"


def _names(fs: Any, path: str) -> list[str]:
    try:
        listed = fs.ls(path, detail=False, refresh=True)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted({str(p).rstrip("/").rsplit("/", 1)[-1] for p in listed} - {""})


def inspect(fs: Any, root: str) -> Found:
    """What is at ``root``, from fresh reads: nothing, a cup4soil product, a file, or
    something cup4soil did not write.

    Raises
    ------
    OSError, and what the file system raises for missing credentials or an unreachable
    endpoint (callers turn these into :class:`~cup4soil.errors.StoreError`).
    """
    sidecar = Sidecar.beside(root)
    fresh(fs, root, sidecar.plan, f"{root}/zarr.json")
    if fs.isfile(root):
        return Found("file", sidecar)
    found = locate(fs, root)
    store = zarr_exists(fs, root)
    if _read(fs, found.plan) is not None or (found.legacy and store):
        return Found("product", found, store)
    names = _names(fs, root) if fs.exists(root) else []
    if names:
        return Found("foreign", sidecar, store, tuple(names))
    # Nothing at the URL: the sidecar prefix must be ours (or absent) too.
    others = [n for n in _names(fs, sidecar.prefix)
              if n not in (PLAN, REGIONS, COMPLETE_MARKER, STAC_ITEM, LEASE)
              and not n.startswith(f"{LEASE}.")]
    if others:
        return Found("foreign", sidecar, False,
                     tuple(f"{sidecar.prefix.rsplit('/', 1)[-1]}/{n}" for n in others))
    return Found("absent", sidecar)


def refuse_foreign(found: Found, url: str, *, writing: bool) -> NotAProductError:
    """The error for a URL holding what cup4soil did not write."""
    if writing:
        return NotAProductError(
            f"{found.describe(url)}. cup4soil writes a product only into a new or empty "
            "folder, or over a cup4soil product, and never deletes what it did not write: "
            "choose another --out (url), or move these files away yourself.")
    return NotAProductError(
        f"{found.describe(url)}, so it cannot be opened as one. Check the path; to read a "
        "Zarr store written by another tool, use xarray.open_zarr (or pass "
        "allow_incomplete=True).")


def foreign_objects(fs: Any, root: str, sidecar: Sidecar) -> tuple[list[str], list[str]]:
    """The objects under a product's store: (Zarr's and cup4soil's, anything else).

    Zarr's are the root group's metadata and, in each folder holding array or group
    metadata, that metadata and chunk keys; cup4soil's are a 0.1 product's plan, manifests,
    item, marker and lease kept inside the store.
    """
    fresh(fs, root)
    try:
        paths = [str(p) for p in fs.find(root, withdirs=False)]
    except FileNotFoundError:
        return [], []
    rel = {p: p[len(root):].lstrip("/") for p in paths}
    nodes = {r.rsplit("/", 1)[0] for r in rel.values()
             if r.rsplit("/", 1)[-1] in ("zarr.json", ".zarray", ".zgroup") and "/" in r}
    legacy = {v.rsplit("/", 1)[-1] for v in (sidecar.plan, sidecar.marker, sidecar.stac_item)
              } if sidecar.legacy else set()
    ours: list[str] = []
    other: list[str] = []
    for p, r in rel.items():
        name = r.split("/", 1)[0]
        ok = (r in _ZARR_ROOT or r in legacy
              or (sidecar.legacy and (name == _LEGACY["regions"]
                                      or name.startswith(_LEGACY["lease"])))
              or (name in nodes and _ZARR_KEY.match(r[len(name) + 1:]) is not None))
        (ours if ok else other).append(p)
    return ours, other


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
    """The product's :class:`Status`, from its sidecar (the Zarr store is not read).

    Read fresh: the marker object itself (not a listing that may be cached), and the
    manifests' folder listed anew. A marker counts only if it says ``complete``.
    """
    fresh(fs, sidecar.marker, sidecar.plan, f"{sidecar.regions}/")
    marker = _json(fs, sidecar.marker)
    complete = bool(marker and marker.get("complete"))
    plan = _json(fs, sidecar.plan)
    if plan is None:
        return Status(complete, 0, 0)
    total = len(plan.get("regions", []))
    written = len([n for n in _names(fs, sidecar.regions) if n.endswith(".json")])
    return Status(complete, total if complete else written, total)
