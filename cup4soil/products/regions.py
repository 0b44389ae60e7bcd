"""Region tasks, run on workers: write one region of every variable, then its manifest.

A region is a rectangle of whole Zarr chunks, so tasks of distinct regions never write the
same object, and none touches the metadata. Its manifest (one small JSON object in the
product's sidecar) records the SHA-256 of each variable's slice; resume trusts a region
only while these checksums match what the store holds.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from dask.base import compute
from dask.delayed import delayed

from ..errors import StoreError, redact
from .cf import secret_values
from .failures import storage_error
from .layout import filesystem, fresh, is_local, write_object

__all__ = ["WRITE_THREADS", "Region", "Target", "checksum", "done_regions", "read_region",
           "split", "write_region"]

#: Threads a region task writes its variables with.
WRITE_THREADS = 4


@dataclass(frozen=True)
class Target:
    """Where regions go; small and picklable, travels to every worker."""

    url: str
    storage_options: dict[str, Any] = field(repr=False)
    zarr_format: Literal[2, 3]
    fingerprint: str  # keys the cached Zarr group: a rewritten store is opened afresh
    manifests: str  # fsspec path of the folder of region manifests

    def fail(self, key: str, exc: BaseException, *, where: str | None = None,
             action: str = "write") -> StoreError:
        """A :class:`StoreError` for object ``key`` of the product (or the object at URL
        ``where``) that says what went wrong and what to do, credentials blanked."""
        return storage_error(where or f"{redact(self.url).rstrip('/')}/{key}", exc,
                             secrets=secret_values(self.storage_options), action=action)

    def group(self) -> Any:
        """The product's root Zarr group, opened read-write (cached per process)."""
        return _group(self.url, json.dumps(self.storage_options, sort_keys=True),
                      self.zarr_format, self.fingerprint)


@functools.lru_cache(maxsize=8)
def _group(url: str, options: str, zarr_format: Literal[2, 3], fingerprint: str) -> Any:
    import zarr

    so = json.loads(options)
    return zarr.open_group(url, mode="r+", zarr_format=zarr_format,
                           storage_options=None if is_local(url) else so)


@dataclass(frozen=True)
class Region:
    """Region ``(iy, ix)``: rows ``ys`` and columns ``xs`` of the spatial grid."""

    iy: int
    ix: int
    ys: slice
    xs: slice

    @property
    def key(self) -> str:
        return f"{self.iy}-{self.ix}"

    def index(self, ndim: int, pos: int) -> tuple[slice, ...]:
        """Index of this region in an array whose y axis is ``pos`` (x right after)."""
        index = [slice(None)] * ndim
        index[pos], index[pos + 1] = self.ys, self.xs
        return tuple(index)


def split(shape: tuple[int, int], size: tuple[int, int]) -> list[Region]:
    """The regions of a ``shape`` (y, x) grid, ``size`` pixels per side, row by row."""
    ny, nx = shape
    out = []
    for iy, y0 in enumerate(range(0, ny, size[0])):
        for ix, x0 in enumerate(range(0, nx, size[1])):
            out.append(Region(iy, ix, slice(y0, min(y0 + size[0], ny)),
                              slice(x0, min(x0 + size[1], nx))))
    return out


def checksum(a: np.ndarray) -> str:
    """SHA-256 of an array's bytes (C order)."""
    # hashed through the buffer: no copy of the bytes
    return hashlib.sha256(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data).hexdigest()


def _chunk_key(arr: Any, index: tuple[slice, ...], zarr_format: int, name: str) -> str:
    """The first Zarr chunk object a region write touches (for error messages)."""
    try:
        ids = [(s.start or 0) // c for s, c in zip(index, arr.chunks, strict=True)]
        sep = "/c/" if zarr_format == 3 else "/"
        joiner = "/" if zarr_format == 3 else "."
        return f"{name}{sep}{joiner.join(map(str, ids))}"
    except Exception:  # pragma: no cover - best effort only
        return name


def write_region(target: Target, region: Region, names: Sequence[str],
                 ydim_pos: Sequence[int], *arrays: np.ndarray) -> str:
    """Write one region of every variable, then its manifest. Returns the region key.

    The variables are encoded and written by a few threads at once (Zarr's codecs and
    SHA-256 release the GIL): a region is often a whole small product, one chunk per
    variable, which one thread would write one after the other.
    """
    try:
        group = target.group()
    except Exception as exc:
        raise target.fail("", exc) from None

    def one(name: str, pos: int, arr: np.ndarray) -> str:
        index = region.index(arr.ndim, pos)
        try:
            group[name][index] = arr
        except Exception as exc:
            raise target.fail(_chunk_key(group[name], index, target.zarr_format, name),
                              exc) from None
        return checksum(arr)

    jobs = list(zip(names, ydim_pos, arrays, strict=True))
    if len(jobs) > 1:
        with ThreadPoolExecutor(min(WRITE_THREADS, len(jobs)),
                                thread_name_prefix="cup4soil-region") as pool:
            futures = [pool.submit(one, *job) for job in jobs]
            wait(futures)
        # the first failure in the variables' order, whatever finished first
        sums = {name: f.result() for (name, _, _), f in zip(jobs, futures, strict=True)}
    else:
        sums = {name: one(name, pos, arr) for name, pos, arr in jobs}
    manifest = {"region": region.key, "sha256": sums,
                "written": dt.datetime.now(dt.UTC).isoformat()}
    fs, _ = filesystem(target.url, target.storage_options)
    path = f"{target.manifests}/{region.key}.json"
    try:
        write_object(fs, path, json.dumps(manifest).encode())
    except Exception as exc:
        raise target.fail("", exc, where=fs.unstrip_protocol(path)) from None
    return region.key


def read_region(target: Target, region: Region, name: str, pos: int) -> np.ndarray:
    """What the store holds for one region of variable ``name``."""
    arr = target.group()[name]
    return np.asarray(arr[region.index(arr.ndim, pos)])


def done_regions(fs: Any, target: Target, regions: Sequence[Region], names: Sequence[str],
                 positions: Sequence[int], verify: bool) -> set[str]:
    """Regions whose manifests exist (and, with ``verify``, whose data still match)."""
    fresh(fs, target.manifests)
    try:
        listed = fs.ls(target.manifests, detail=False, refresh=True)
    except FileNotFoundError:
        return set()
    have = {p.rstrip("/").rsplit("/", 1)[-1].removesuffix(".json") for p in listed
            if str(p).endswith(".json")}
    by_key = {r.key: r for r in regions}

    def check(key: str) -> str | None:
        try:
            manifest = json.loads(fs.cat_file(f"{target.manifests}/{key}.json"))
        except Exception:  # half-written manifest: recompute the region
            return None
        if not verify:
            return key
        for name, pos in zip(names, positions, strict=True):
            if manifest.get("sha256", {}).get(name) != checksum(
                    read_region(target, by_key[key], name, pos)):
                return None
        return key

    todo = [k for k in have if k in by_key]
    results = compute(*[delayed(check)(k) for k in todo],  # type: ignore[no-untyped-call]
                      scheduler="threads")
    return {k for k in results if k is not None}
