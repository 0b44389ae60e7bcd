"""The Zarr writer: a product written region by region, resumable.

:func:`write` runs four steps:

1. **layout** (:func:`_layout`) -- CF metadata, the region grid (whole Zarr chunks) and a
   fingerprint of what a resumed write must agree on; the metadata is encoded once in
   memory (:func:`_check_template`), so an input that cannot be written fails here, before
   anything at the URL is touched;
2. **opening the target per mode** (:func:`_open_target`) -- what is at the URL is read
   fresh (:func:`.layout.inspect`): a file, or a folder or Zarr store cup4soil did not
   write, is refused in every mode and never touched; ``"w-"`` refuses an existing
   product. Then the write takes the product's lease (:mod:`.lease`: a second writer
   refuses) and, only then, ``"w"`` deletes the old product (marker first; only the
   objects cup4soil and Zarr wrote, refusing if anything else is inside) and ``"resume"``
   checks the plan's fingerprint and finds the regions already done. A new write stores
   the plan first (so a stopped write is always recognised as cup4soil's), then the
   metadata (template), then marks the plan as past the template;
3. **region tasks** (:func:`_region_tasks`) -- one task per region left: compute its slice of
   every variable, write it, then its manifest (:mod:`.regions`); computed under a
   progress bar (:func:`cup4soil.runtime.progress.compute`);
4. **finishing** (:func:`_finish`) -- after checking the lease is still held: the STAC
   item, then the completion marker; the lease is released in every case.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dask.array as da
import numpy as np
import xarray as xr
from dask.delayed import delayed

from ..errors import Cup4SoilError, NotAProductError, ParameterError, redact
from ..runtime.progress import compute
from .cf import GRID_MAPPING, json_safe, prepare, secret_values, spatial_dims
from .failures import is_storage_failure, storage_error
from .layout import (
    FOREIGN,
    Found,
    Sidecar,
    filesystem,
    foreign_objects,
    fresh,
    inspect,
    is_local,
    refuse_foreign,
    write_object,
)
from .lease import DEFAULT_TIMEOUT, Lease
from .regions import Region, Target, done_regions, split, write_region
from .stac import item_of

__all__ = ["ProductInfo", "write"]

_DEFAULT_REGION = 1024  # pixels per side when the data say nothing
Mode = Literal["w-", "w", "resume"]


@dataclass(frozen=True)
class ProductInfo:
    """What :func:`write` produced.

    Attributes
    ----------
    url : str
        Where the Zarr store is (query strings removed).
    variables : tuple of str
        Names of the data variables.
    nbytes : int
        Uncompressed size of the data variables, bytes.
    regions : int
        Number of spatial regions of the product.
    computed : int
        Regions computed and written by this call (the rest were already done).
    seconds : float
        Wall time of the call, seconds.
    """

    url: str
    variables: tuple[str, ...]
    nbytes: int
    regions: int = 0
    computed: int = 0
    seconds: float = 0.0


# --- 1. layout ----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _Layout:
    """The prepared dataset and how it is cut into regions."""

    ds: xr.Dataset  # CF metadata; spatial variables chunked by region
    dims: tuple[str, str]
    size: tuple[int, int]  # region (and Zarr chunk) size, pixels (y, x)
    names: tuple[str, ...]  # spatial variables: written region by region
    positions: tuple[int, ...]  # axis of dims[0] in each of them (dims[1] right after)
    regions: tuple[Region, ...]
    fingerprint: str

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(map(str, self.ds.data_vars))

    @property
    def nbytes(self) -> int:
        return int(sum(v.nbytes for v in self.ds.data_vars.values()))

    def plan(self) -> dict[str, Any]:
        """The plan object: what a resumed write must agree on."""
        return {"fingerprint": self.fingerprint, "regions": [r.key for r in self.regions],
                "region_size": list(self.size), "variables": list(self.names),
                "started": dt.datetime.now(dt.UTC).isoformat()}


def _region_size(ds: xr.Dataset, dims: tuple[str, str],
                 chunks: int | Mapping[str, int] | None) -> tuple[int, int]:
    if isinstance(chunks, int):
        return chunks, chunks
    if isinstance(chunks, Mapping):
        return int(chunks.get(dims[0], _DEFAULT_REGION)), int(chunks.get(dims[1],
                                                                         _DEFAULT_REGION))
    size = []
    for d in dims:  # the data's own chunking, when it has one
        c = ds.chunksizes.get(d) if ds.chunks else None
        size.append(int(c[0]) if c else min(ds.sizes[d], _DEFAULT_REGION))
    return size[0], size[1]


def _chunk_by_region(ds: xr.Dataset, dims: tuple[str, str],
                     size: tuple[int, int]) -> xr.Dataset:
    """Spatial variables as dask arrays chunked by region (= Zarr chunks); others loaded."""
    out = ds.copy()
    chunks: dict[Any, int] = {d: -1 for d in out.dims}
    chunks.update({dims[0]: size[0], dims[1]: size[1]})
    for name in out.data_vars:
        var = out[name]
        if dims[0] in var.dims and dims[1] in var.dims:
            out[name] = var.chunk({d: chunks[d] for d in var.dims})
            out[name].encoding["chunks"] = tuple(
                chunks[d] if chunks[d] != -1 else var.sizes[d] for d in var.dims)
        elif isinstance(var.data, da.Array):
            out[name] = var.compute()
    return out


def _fingerprint(ds: xr.Dataset, size: tuple[int, int]) -> str:
    """Hash of what a resumed write must agree on: variables, shapes, dtypes, coordinates
    and attributes (not the graph, whose names differ between processes)."""
    h = hashlib.sha256()
    layout = {
        "vars": {str(n): [list(map(str, v.dims)), list(v.shape), str(v.dtype)]
                 for n, v in ds.data_vars.items()},
        "region": list(size),
        "attrs": {k: v for k, v in ds.attrs.items() if k not in ("cup4soil_written",)},
    }
    h.update(json.dumps(json_safe(layout), sort_keys=True, default=str).encode())
    for name, c in sorted(ds.coords.items()):
        if c.ndim and c.size < 10_000_000:
            h.update(str(name).encode())
            h.update(np.ascontiguousarray(c.values).tobytes()
                     if c.dtype != object else str(c.values.tolist()).encode())
    return h.hexdigest()


def _layout(ds: xr.Dataset, chunks: int | Mapping[str, int] | None,
            provenance: Mapping[str, Any] | None) -> _Layout:
    dims = spatial_dims(ds)
    size = _region_size(ds, dims, chunks)
    if min(size) < 1:
        raise ParameterError(f"chunks={chunks}: region sizes must be positive.")
    out = _chunk_by_region(prepare(ds, dims=dims, provenance=provenance), dims, size)
    names = tuple(str(n) for n, v in out.data_vars.items()
                  if dims[0] in v.dims and dims[1] in v.dims)
    positions = tuple(out[n].dims.index(dims[0]) for n in names)
    for n, p in zip(names, positions, strict=True):
        if out[n].dims[p + 1] != dims[1]:
            raise ParameterError(f"variable {n} has dims {out[n].dims}; put {dims[1]} right "
                                 f"after {dims[0]} (ds.transpose(..., '{dims[0]}', "
                                 f"'{dims[1]}')).")
    regions = split((out.sizes[dims[0]], out.sizes[dims[1]]), size)
    return _Layout(out, dims, size, names, positions, tuple(regions),
                   _fingerprint(out, size))


# --- 2. opening the target per mode ---------------------------------------------------------

def _template(layout: _Layout, zarr_format: int) -> xr.Dataset:
    """Metadata, coordinates and non-spatial variables; spatial data stay unwritten."""
    template = layout.ds.copy()
    for n in layout.names:  # no pixel is computed for the template
        v = template[n]
        template[n] = v.copy(data=da.zeros(v.shape, dtype=v.dtype, chunks=v.data.chunks))
    if zarr_format == 3:
        # Zarr v3 has no stable fixed-length string type: labels (bands) as variable-length
        # strings; open() gives them back as fixed-length.
        text = [k for k, var in template.variables.items() if var.dtype.kind == "U"]
        template = template.assign_coords(
            {k: template[k].astype(object) for k in text if k in template.coords})
        for k in text:
            if k in template.data_vars:
                template[k] = template[k].astype(object)
    return template


def _check_template(layout: _Layout, zarr_format: Literal[2, 3]) -> None:
    """Encode the metadata into memory: what cannot be written is refused before anything
    at the URL changes (a failure here is the dataset's, not the storage's)."""
    import zarr

    with warnings.catch_warnings():
        # Zarr's own warnings show again, once, when the product is written.
        warnings.simplefilter("ignore")
        try:
            _template(layout, zarr_format).to_zarr(
                zarr.storage.MemoryStore(), mode="w", compute=False,
                zarr_format=zarr_format, consolidated=False)
        except Exception as exc:
            raise ParameterError(f"the dataset cannot be written as Zarr v{zarr_format}: "
                                 f"{type(exc).__name__}: {exc}. Fix the variable's "
                                 "attributes or encoding named there.") from None


def _inspect(fs: Any, root: str, url: str, options: Mapping[str, Any]) -> Found:
    """What is at the URL; storage failures (credentials, endpoint) as StoreError."""
    try:
        return inspect(fs, root)
    except Exception as exc:
        if isinstance(exc, Cup4SoilError) or not is_storage_failure(exc):
            raise
        raise storage_error(redact(url), exc, secrets=secret_values(options),
                            action="open") from None


def _open_target(fs: Any, root: str, url: str, options: dict[str, Any],
                 zarr_format: Literal[2, 3], layout: _Layout, mode: Mode, verify: bool,
                 found: Found) -> tuple[Target, Sidecar, set[str] | None]:
    """Prepare the store for ``mode`` (the lease held): where regions go, the product's
    sidecar, and the regions already done (None: the product is complete)."""

    def target(sidecar: Sidecar) -> Target:
        return Target(url, options, zarr_format, layout.fingerprint, sidecar.regions)

    new = Sidecar.beside(root)
    try:
        if found.kind == "product":
            plan = _plan(fs, found.sidecar)
            started = plan is not None and plan.get("state", "regions") != "template"
            if mode == "resume" and found.store and started:
                return (target(found.sidecar), found.sidecar,
                        _resume(fs, found.sidecar, plan, layout, target(found.sidecar),
                                verify))
            # mode "w"; or a write that stopped before its metadata was whole: start afresh
            _remove(fs, root, url, found.sidecar)
        _start(fs, new, layout, target(new))
    except Exception as exc:
        if isinstance(exc, Cup4SoilError) or not is_storage_failure(exc):
            raise
        raise target(new).fail("", exc, where=redact(url)) from None
    return target(new), new, set()


def _plan(fs: Any, sidecar: Sidecar) -> dict[str, Any] | None:
    fresh(fs, sidecar.plan)
    try:
        plan = json.loads(fs.cat_file(sidecar.plan))
    except (FileNotFoundError, ValueError):
        return None
    return plan if isinstance(plan, dict) else None


def _resume(fs: Any, sidecar: Sidecar, plan: dict[str, Any] | None, layout: _Layout,
            target: Target, verify: bool) -> set[str] | None:
    clean_url = redact(target.url)
    if plan is None:  # pragma: no cover - inspect() found a plan
        raise NotAProductError(f"{clean_url} exists but was not written by cup4soil (no "
                               "plan); choose another URL.")
    if plan.get("fingerprint") != layout.fingerprint:
        raise ParameterError(
            f"{clean_url} was started with a different dataset (variables, shapes, "
            "coordinates, attributes or region size differ), so it cannot be resumed "
            "with this one; use mode='w' to start over.")
    fresh(fs, sidecar.marker)
    try:
        marker = json.loads(fs.cat_file(sidecar.marker))
    except (FileNotFoundError, ValueError):
        marker = None
    if isinstance(marker, dict) and marker.get("complete"):
        return None
    fs.makedirs(sidecar.regions, exist_ok=True)  # local filesystems need the folder
    for p in fs.ls(sidecar.regions, detail=False, refresh=True):
        if str(p).endswith(".tmp"):  # a manifest whose writer was killed mid-write
            fs.rm_file(p)
    return done_regions(fs, target, layout.regions, layout.names, layout.positions, verify)


def _remove(fs: Any, root: str, url: str, sidecar: Sidecar) -> None:
    """Delete a cup4soil product, only what cup4soil and Zarr wrote: the marker first (so it
    stops being complete before it changes), the sidecar's objects, then the store's.

    Refuses (deleting nothing) if the store holds anything else.
    """
    ours, other = foreign_objects(fs, root, sidecar)
    if other:
        shown = ", ".join(p[len(root):].lstrip("/") for p in other[:5])
        raise NotAProductError(
            f"{redact(url)} is a cup4soil product, but it also holds {shown}"
            f"{' ...' if len(other) > 5 else ''}, which cup4soil did not write; it deletes "
            "nothing it did not write, so move these away before replacing the product "
            "(or choose another URL).")
    fresh(fs, sidecar.marker, sidecar.regions)
    if fs.exists(sidecar.marker):
        fs.rm_file(sidecar.marker)
    paths = [sidecar.plan, sidecar.stac_item]
    with contextlib.suppress(FileNotFoundError):
        paths += [str(p) for p in fs.ls(sidecar.regions, detail=False, refresh=True)
                  if str(p).endswith((".json", ".tmp"))]
    for p in [*paths, *ours]:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(p)
    if is_local(root):  # folders left empty (on object stores they vanish by themselves)
        _remove_empty_folders(sidecar.regions, root)
    fresh(fs, root, sidecar.prefix)


def _remove_empty_folders(*roots: str) -> None:
    import contextlib
    import os

    for top in roots:
        if not os.path.isdir(top):
            continue
        for folder, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only if empty


def _write_plan(fs: Any, sidecar: Sidecar, layout: _Layout, state: str) -> None:
    write_object(fs, sidecar.plan, json.dumps({**layout.plan(), "state": state}).encode())


def _start(fs: Any, sidecar: Sidecar, layout: _Layout, target: Target) -> None:
    """A new product: the plan (so a stopped write is recognised as cup4soil's), the
    metadata (template), the manifests' folder, then the plan marked past the template."""
    _write_plan(fs, sidecar, layout, "template")
    _write_template(layout, target)
    fs.makedirs(sidecar.regions, exist_ok=True)  # local filesystems need the folder
    _write_plan(fs, sidecar, layout, "regions")


def _write_template(layout: _Layout, target: Target) -> None:
    """Metadata, coordinates and non-spatial variables; spatial data stay unwritten."""
    try:
        # "w-": the URL holds nothing (checked, and the lease held): never delete here
        _template(layout, target.zarr_format).to_zarr(
            target.url, mode="w-", compute=False, zarr_format=target.zarr_format,
            consolidated=False,
            storage_options=None if is_local(target.url) else target.storage_options)
    except Exception as exc:
        raise target.fail("zarr.json", exc) from None


# --- 3. region tasks ------------------------------------------------------------------------

def _region_tasks(layout: _Layout, target: Target, todo: Sequence[Region]) -> list[Any]:
    """One delayed task per region: compute its slice of every variable, write, manifest."""
    tasks = []
    for r in todo:
        arrays = []
        for n, p in zip(layout.names, layout.positions, strict=True):
            part = layout.ds[n].data[r.index(layout.ds[n].ndim, p)]
            # One piece per variable, by key and unoptimised: passing the arrays themselves
            # would optimise each variable's graph alone, fusing a task the variables share
            # (e.g. a composite block producing all products) into each, computing it once
            # per variable.
            (piece,) = part.rechunk(part.shape).to_delayed(optimize_graph=False).ravel()
            arrays.append(piece)
        tasks.append(delayed(write_region, pure=False)(
            target, r, layout.names, layout.positions, *arrays))
    return tasks


# --- 4. finishing ---------------------------------------------------------------------------

def _finish(fs: Any, sidecar: Sidecar, layout: _Layout, url: str, stac: bool,
            zarr_format: int) -> None:
    """The STAC item, then the completion marker (last: its presence means complete)."""
    if stac and GRID_MAPPING in layout.ds.coords:
        item = item_of(layout.ds, url, layout.dims, zarr_format=zarr_format)
        write_object(fs, sidecar.stac_item, json.dumps(item.to_dict(
            transform_hrefs=False)).encode())
    marker = {"complete": True, "variables": sorted(layout.variables),
              "regions": len(layout.regions), "fingerprint": layout.fingerprint,
              "zarr_format": zarr_format, "finished": dt.datetime.now(dt.UTC).isoformat()}
    write_object(fs, sidecar.marker, json.dumps(marker).encode())


def write(
    ds: xr.Dataset,
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    mode: Mode = "w-",
    zarr_format: int = 3,
    chunks: int | Mapping[str, int] | None = None,
    progress: bool = False,
    stac: bool = True,
    provenance: Mapping[str, Any] | None = None,
    verify: bool = True,
    lease_timeout: float = DEFAULT_TIMEOUT,
) -> ProductInfo:
    """Compute ``ds`` and write it as a Zarr product, region by region.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset to write (lazy or in memory) with spatial dimensions ``y``/``x``.
    url : str
        Local path or fsspec URL (``s3://bucket/prefix.zarr`` ...). The product's state
        (plan, region manifests, STAC item, completion marker) goes to the sibling prefix
        ``url + ".cup4soil"``.
    storage_options : dict, optional
        Passed to fsspec (credentials, ``endpoint_url`` ...). Never written anywhere.
    mode : {"w-", "w", "resume"}
        ``"w-"`` refuses an existing product; ``"w"`` replaces a cup4soil product;
        ``"resume"`` keeps the regions an earlier, interrupted write finished (checked
        against their checksums) and computes the rest — the result is identical to an
        uninterrupted write. In every mode, a URL holding anything cup4soil did not write
        (a file, other files, a Zarr store of another tool) is refused and left untouched.
    zarr_format : {3, 2}
        Zarr format version.
    chunks : int or dict, optional
        Region (and Zarr chunk) size in pixels along y/x; default: the data's chunks, else
        1024. Each region is one task: compute, write, manifest.
    progress : bool
        Show a progress bar (dask's, in terminals and notebooks).
    stac : bool
        Write the product's STAC item (``stac-item.json`` in its sidecar).
    provenance : dict, optional
        Extra provenance attributes (secrets are dropped).
    verify : bool
        With ``mode="resume"``, re-read finished regions and compare checksums.
    lease_timeout : float
        Seconds the write lease lives without renewal (renewed every quarter of it while
        the write runs). Another writer refuses while the lease is held; a lease of a
        writer that died expires after this time (at once if it ran on this machine).

    Returns
    -------
    ProductInfo

    Raises
    ------
    NotAProductError
        The URL holds a file or anything else cup4soil did not write.
    ProductLockedError
        Another writer is writing the product.
    StoreError
        The storage failed (:class:`~cup4soil.errors.StorageFullError` when the disk is
        full); the product is left incomplete and can be resumed.
    """
    t0 = time.perf_counter()
    if mode not in ("w-", "w", "resume"):
        raise ParameterError(f"mode={mode!r} is unknown; use 'w-', 'w' or 'resume'.")
    if zarr_format not in (2, 3):
        raise ParameterError(f"zarr_format={zarr_format} must be 2 or 3.")
    if not isinstance(ds, xr.Dataset):
        raise ParameterError(f"store.write takes an xarray Dataset, not {type(ds).__name__}; "
                             "use da.to_dataset(name=...) first.")
    fmt: Literal[2, 3] = 3 if zarr_format == 3 else 2
    options = dict(storage_options or {})
    fs, root = filesystem(url, options)
    Sidecar.beside(root)  # a bucket's root cannot be a product
    layout = _layout(ds, chunks, provenance)
    _check_template(layout, fmt)
    found = _check_target(fs, root, url, options, mode)
    lease = Lease(fs, Sidecar.beside(root).lease, url, timeout=lease_timeout)
    try:
        lease.acquire()
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        raise Target(url, options, fmt, "", "").fail("", exc, where=redact(url)) from None
    try:
        # looked at again under the lease: another writer may have finished meanwhile
        found = _check_target(fs, root, url, options, mode)
        target, sidecar, done = _open_target(fs, root, url, options, fmt, layout, mode,
                                             verify, found)
        todo = [] if done is None else [r for r in layout.regions if r.key not in done]
        if done is not None:
            compute(*_region_tasks(layout, target, todo), progress=progress, minimum=1.0)
            lease.check()
            try:
                _finish(fs, sidecar, layout, redact(url), stac, fmt)
            except Exception as exc:
                if not is_storage_failure(exc):
                    raise
                raise target.fail("", exc, where=redact(url)) from None
    finally:
        lease.release()
    return ProductInfo(redact(url), layout.variables, layout.nbytes, len(layout.regions),
                       len(todo), time.perf_counter() - t0)


def _check_target(fs: Any, root: str, url: str, options: Mapping[str, Any],
                  mode: Mode) -> Found:
    """Refuse a URL holding what cup4soil did not write (every mode), and an existing
    product in mode ``"w-"``."""
    found = _inspect(fs, root, url, options)
    if found.kind in ("file", FOREIGN):
        raise refuse_foreign(found, url, writing=True)
    if found.kind == "product" and mode == "w-":
        raise ParameterError(f"{redact(url)} already exists. Pass mode='w' to replace it, "
                             "mode='resume' to finish an interrupted write, or choose "
                             "another --out.")
    return found
