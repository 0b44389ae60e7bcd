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
import os
import re
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import dask.array as da
import numpy as np
import xarray as xr
from dask.delayed import delayed

from ..errors import (
    Cup4SoilError,
    IncompleteProductError,
    NotAProductError,
    ParameterError,
    redact,
)
from ..runtime.progress import compute
from .cf import GRID_MAPPING, json_safe, prepare, scrub, secret_values, spatial_dims
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
    read_status,
    refuse_foreign,
    write_object,
)
from .lease import DEFAULT_TIMEOUT, Lease
from .regions import Region, Target, done_regions, split, write_region
from .stac import item_of

__all__ = ["PROTECTED_ATTRS", "ProductInfo", "check_updatable", "update_attrs", "write"]

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
    #: The template's objects by Zarr format, as encoded by :func:`_check_template`.
    encoded: dict[int, dict[str, bytes]] = field(default_factory=dict)

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

def _compressors(zarr_format: int) -> tuple[Any, ...]:
    """The codecs of a product's spatial variables: Blosc LZ4 with byte shuffle (Zarr v2's
    default, which GDAL's Zarr driver reads).

    Zarr-python 3's default, Zstandard level 3, encodes SCMaP's float32 bands at about
    100 MB/s on one core -- a composite of 408 x 408 px took 0.29 s to encode, longer than
    its own kernels -- and compresses them less (1.60 against 1.64 with shuffled LZ4, which
    took 0.05 s; ``benchmarks/decode_limit.py`` writes it).
    """
    if zarr_format == 3:
        from zarr.codecs import BloscCodec

        return (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)
    import numcodecs

    return (numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),)


def _template(layout: _Layout, zarr_format: int) -> xr.Dataset:
    """Metadata, coordinates and non-spatial variables; spatial data stay unwritten."""
    unique = uuid.uuid4().hex
    # no pixel is computed for the template; the zeros are named because the graph is never
    # computed and dask would otherwise tokenise (pickle) each creation function. One
    # assign: one merge, not one per variable.
    template = layout.ds.assign({
        n: layout.ds[n].copy(data=da.zeros(layout.ds[n].shape, dtype=layout.ds[n].dtype,
                                           chunks=layout.ds[n].data.chunks,
                                           name=f"cup4soil-template-{n}-{unique}"))
        for n in layout.names})
    for n in layout.names:
        template[n].encoding["compressors"] = _compressors(zarr_format)
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
    at the URL changes (a failure here is the dataset's, not the storage's). The encoded
    objects are kept in ``layout.encoded``: :func:`_write_template` puts the same at the URL.
    """
    import zarr

    held: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _template(layout, zarr_format).to_zarr(
                zarr.storage.MemoryStore(held), mode="w", compute=False,
                zarr_format=zarr_format, consolidated=False)
        except Exception as exc:
            raise ParameterError(f"the dataset cannot be written as Zarr v{zarr_format}: "
                                 f"{type(exc).__name__}: {exc}. Fix the variable's "
                                 "attributes or encoding named there.") from None
    for w in caught:  # Zarr's own warnings, once (the template is not encoded again)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    layout.encoded[zarr_format] = {k: v.to_bytes() for k, v in held.items()}


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
    """Metadata, coordinates and non-spatial variables; spatial data stay unwritten.

    The objects :func:`_check_template` encoded are written as they are (encoding the
    template again took as long as writing a small composite's pixels); the URL holds
    nothing of the product (checked, and the lease held).
    """
    fmt: Literal[2, 3] = 3 if target.zarr_format == 3 else 2
    if fmt not in layout.encoded:
        _check_template(layout, fmt)
    encoded = layout.encoded[fmt]
    try:
        fs, root = filesystem(target.url, target.storage_options)
        if is_local(target.url):
            for key, data in encoded.items():
                path = os.path.join(root, *key.split("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "xb") as f:  # "x": never over a file that is there
                    f.write(data)
        else:
            fs.pipe({f"{root}/{key}": data for key, data in encoded.items()})
            fs.invalidate_cache(root)
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


# --- attributes of a complete product ---------------------------------------------------------

#: Attribute keys :func:`update_attrs` refuses to change (besides every key starting with
#: ``_``, xarray's and Zarr's): they say how values are decoded or what they mean (CF, the
#: grid mapping, ``nodata``, SoilGrids' ``units``/``conversion``/``depth``), or record the
#: write itself (cup4soil's provenance). Changing one would make the data say something else;
#: write the product again to change them.
PROTECTED_ATTRS = frozenset({
    "units", "nodata", "grid_mapping", "coordinates", "scale_factor", "add_offset",
    "missing_value", "valid_min", "valid_max", "valid_range", "calendar", "bounds",
    "flag_values", "flag_meanings", "flag_masks", "conversion", "depth", "standard_name",
    "axis", "Conventions", "cup4soil_version", "cup4soil_written", "provenance",
    "input_items", "processing_baselines", "time_start", "time_end",
})

#: An attribute value given to :func:`update_attrs`, or a function of the current value.
AttrValue = Any


def check_updatable(url: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
    """Refuse, as :func:`update_attrs` does, a URL that holds no complete cup4soil product.

    Raises
    ------
    ParameterError
        Nothing is at ``url``.
    NotAProductError
        ``url`` holds a file, other files or a Zarr store cup4soil did not write.
    IncompleteProductError
        The product's writing never finished.
    StoreError
        The storage cannot be reached.
    """
    options = dict(storage_options or {})
    fs, root = filesystem(url, options)
    _complete_product(fs, root, url, options)


def _complete_product(fs: Any, root: str, url: str, options: Mapping[str, Any]) -> Found:
    """What is at the URL if it is a complete cup4soil product; refuses anything else."""
    clean = redact(url)
    found = _inspect(fs, root, url, options)
    if found.kind == "absent":
        raise ParameterError(f"there is no product at {clean}, so no attribute can be "
                             "recorded there. Check the path or URL (a product is what "
                             "store.write wrote there).")
    if found.kind in ("file", FOREIGN):
        raise NotAProductError(
            f"{found.describe(url)}. cup4soil records attributes only in products it wrote "
            "(store.write) and changes nothing it did not write; if this store is yours, set "
            "its attributes with zarr or xarray yourself.")
    try:
        status = read_status(fs, found.sidecar)
    except Exception as exc:
        if isinstance(exc, Cup4SoilError) or not is_storage_failure(exc):
            raise
        raise storage_error(clean, exc, secrets=secret_values(options), action="open") from None
    if not found.store and status.complete:
        raise ParameterError(
            f"there is no product at {clean}: only its sidecar {redact(found.sidecar.prefix)} "
            "is there (the Zarr store was moved or deleted). Copy or move a product's store "
            "and sidecar together.")
    if not found.store or not status.complete:
        written = (f" {status.written} of {status.planned} regions are written;"
                   if status.planned else "")
        raise IncompleteProductError(
            f"the product at {clean} is incomplete (its writing never finished):{written} "
            "cup4soil records attributes only in complete products. Finish it with "
            "store.write(..., mode='resume') (--resume), then record them again.")
    return found


def _check_attrs(attrs: Mapping[str, AttrValue], where: str) -> None:
    if not isinstance(attrs, Mapping):
        raise ParameterError(f"{where} attributes must be a dict, not {type(attrs).__name__}.")
    for key in attrs:
        if not isinstance(key, str) or not key:
            raise ParameterError(f"{where} attribute name {key!r} must be a non-empty string.")
        if key.startswith("_") or key in PROTECTED_ATTRS:
            raise ParameterError(
                f"{where} attribute {key!r} is not changed by update_attrs: it says how the "
                "values are decoded or what they mean, or records the write itself. Write "
                "the product again (store.write) to change it, or choose another name.")
        if not scrub({key: 0}):
            raise ParameterError(f"{where} attribute {key!r} looks like a credential; "
                                 "cup4soil never writes credentials into a product.")


def _new_value(key: str, value: AttrValue, current: Any, where: str) -> Any:
    """The JSON value to store: ``value``, or ``value(current)`` when it is a function."""
    new = value(current) if callable(value) else value
    safe = json_safe(scrub(new))
    try:
        json.dumps(safe, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"{where} attribute {key!r}: a {type(new).__name__} value cannot be stored as "
            f"JSON ({exc}); give a str, number, bool, list or dict (no NaN or infinity), "
            "or json.dumps it yourself.") from None
    return safe


def _updated(attrs: Mapping[str, Any], new: Mapping[str, AttrValue], where: str
             ) -> dict[str, Any]:
    out = dict(attrs)
    for key, value in new.items():
        out[key] = _new_value(key, value, attrs.get(key), where)
    return out


def _read_json(fs: Any, path: str) -> dict[str, Any] | None:
    fresh(fs, path)
    try:
        doc = json.loads(fs.cat_file(path))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return doc if isinstance(doc, dict) else None


def _arrays(fs: Any, root: str, fmt: int) -> dict[str, dict[str, Any]]:
    """The store's arrays (direct children of the root group): name -> metadata document
    (v3 ``zarr.json``; v2 ``.zattrs``, empty when absent)."""
    fresh(fs, root)
    out = {}
    for p in fs.ls(root, detail=False, refresh=True):
        name = str(p).rstrip("/").rsplit("/", 1)[-1]
        if fmt == 3:
            doc = _read_json(fs, f"{root}/{name}/zarr.json")
            if doc is not None and doc.get("node_type") == "array":
                out[name] = doc
        elif _read_json(fs, f"{root}/{name}/.zarray") is not None:
            out[name] = _read_json(fs, f"{root}/{name}/.zattrs") or {}
    return out


def _data_variables(arrays: Mapping[str, dict[str, Any]], fmt: int) -> list[str]:
    """Arrays that are neither a dimension's coordinate nor a grid mapping."""
    not_data: set[str] = set()
    for doc in arrays.values():
        attrs = doc.get("attributes", {}) if fmt == 3 else doc
        dims = doc.get("dimension_names") if fmt == 3 else doc.get("_ARRAY_DIMENSIONS")
        not_data.update(str(d) for d in dims or ())
        if isinstance(attrs.get("grid_mapping"), str):
            not_data.add(attrs["grid_mapping"])
    return sorted(set(arrays) - not_data)


#: Name pattern of the temporary files of :func:`update_attrs` (local disk), in the sidecar.
_ATTR_TMP = "update-attrs-{}.tmp"


def _replace_document(fs: Any, path: str, data: bytes, sidecar_prefix: str) -> None:
    """Replace one metadata document whole: on object stores one PUT; on local disk a
    temporary file in the product's sidecar (outside the Zarr hierarchy, where a file left
    by a crash would make readers warn and :func:`write` refuse), then renamed over it."""
    write_object(fs, path, data, tmp=f"{sidecar_prefix}/{_ATTR_TMP.format(uuid.uuid4().hex)}")


def _remove_stale_tmp(fs: Any, sidecar_prefix: str) -> None:
    """Temporary documents an update killed mid-write left in the sidecar (ours only)."""
    ours = re.compile(r"^update-attrs-[0-9a-f]{32}\.tmp$")  # _ATTR_TMP
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for p in fs.ls(sidecar_prefix, detail=False, refresh=True):
            if ours.match(str(p).rstrip("/").rsplit("/", 1)[-1]):
                fs.rm_file(p)


def _dump(doc: Mapping[str, Any]) -> bytes:
    # indented as zarr writes its metadata; a NaN already there (a fill value) stays as is
    return json.dumps(doc, indent=2).encode()


def update_attrs(
    url: str,
    attrs: Mapping[str, AttrValue] | None = None,
    *,
    variables: Mapping[str, Mapping[str, AttrValue]] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    lease_timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Add or replace attributes of a complete product that :func:`write` wrote.

    The product's data, its manifests and its completion marker are left as they are: only
    the Zarr metadata documents change (``zarr.json``, or ``.zattrs`` and a consolidated
    ``.zmetadata`` where one exists; Zarr v3 consolidated metadata in the root ``zarr.json``
    is updated with it). Each document is replaced whole (on local disk a temporary file
    renamed over it; on object stores one PUT), variables first and the root last, under the
    product's write lease, so a crash leaves every document old or new and the product
    opens either way.

    Parameters
    ----------
    url : str
        Local path or fsspec URL of the product.
    attrs : dict, optional
        Root (global) attributes to add or replace. A value must be JSON-serialisable
        (NumPy scalars and arrays are converted; no NaN); a callable value is called with
        the attribute's current value (None when absent) under the lease and its result
        stored, for read-modify-write edits such as appending to ``history``.
    variables : dict, optional
        Per data variable, attributes to add or replace (same rules as ``attrs``).
    storage_options : dict, optional
        Passed to fsspec (credentials, ``endpoint_url`` ...). Never written anywhere.
    lease_timeout : float
        Seconds the lease lives without renewal (see :func:`write`).

    Raises
    ------
    ParameterError
        Nothing is at ``url``; an unknown variable; a key starting with ``_`` or in
        :data:`PROTECTED_ATTRS` (how values are decoded or what they mean, or the write's
        own provenance: write the product again to change these); a key that looks like a
        credential; a value that is not JSON.
    NotAProductError
        ``url`` holds a file, other files, or a Zarr store cup4soil did not write: nothing
        is changed.
    IncompleteProductError
        The product's writing never finished: resume it first.
    ProductLockedError
        A writer is writing the product.
    StoreError
        The storage failed.
    """
    attrs = {} if attrs is None else attrs
    variables = {} if variables is None else variables
    _check_attrs(attrs, "root")
    if not isinstance(variables, Mapping):
        raise ParameterError(f"variables must be a dict of variable name -> attributes, not "
                             f"{type(variables).__name__}.")
    for name, va in variables.items():
        _check_attrs(va, f"variable {name!r}:")
    options = dict(storage_options or {})
    fs, root = filesystem(url, options)
    Sidecar.beside(root)  # a bucket's root is no product
    _complete_product(fs, root, url, options)  # refused before the lease is taken
    lease = Lease(fs, Sidecar.beside(root).lease, url, timeout=lease_timeout)
    with _storage_failures(url, options, "update the attributes of"):
        lease.acquire()
    try:
        # looked at again under the lease: a writer may have replaced it meanwhile
        _complete_product(fs, root, url, options)
        with _storage_failures(url, options, "update the attributes of"):
            prefix = Sidecar.beside(root).prefix
            _remove_stale_tmp(fs, prefix)
            writes = _attr_documents(fs, root, url, attrs, variables)
            lease.check()
            for path, data in writes:
                _replace_document(fs, path, data, prefix)
    finally:
        lease.release()


@contextlib.contextmanager
def _storage_failures(url: str, options: Mapping[str, Any], action: str) -> Iterator[None]:
    """A storage failure (credentials, endpoint, permissions) as cup4soil's StoreError,
    the URL redacted and no secret of ``options`` in it; anything else as it is."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, Cup4SoilError) or not is_storage_failure(exc):
            raise
        raise storage_error(redact(url), exc, secrets=secret_values(options),
                            action=action) from None


def _attr_documents(fs: Any, root: str, url: str, attrs: Mapping[str, AttrValue],
                    variables: Mapping[str, Mapping[str, AttrValue]]
                    ) -> list[tuple[str, bytes]]:
    """The metadata documents to write, in order (variables, consolidated, root), all
    computed before the first is written (a refusal changes nothing)."""
    root_doc = _read_json(fs, f"{root}/zarr.json")
    fmt = 3 if root_doc is not None else 2
    arrays = _arrays(fs, root, fmt)
    data = _data_variables(arrays, fmt)
    unknown = [n for n in variables if n not in data]
    if unknown:
        raise ParameterError(f"the product at {redact(url)} has no data variable "
                             f"{', '.join(map(repr, unknown))}; it has {', '.join(data)}.")
    writes: list[tuple[str, bytes]] = []
    new_var: dict[str, dict[str, Any]] = {}
    for name, va in variables.items():
        old = arrays[name].get("attributes", {}) if fmt == 3 else arrays[name]
        new_var[name] = _updated(old, va, f"variable {name!r}:")
        if fmt == 3:
            writes.append((f"{root}/{name}/zarr.json",
                           _dump({**arrays[name], "attributes": new_var[name]})))
        else:
            writes.append((f"{root}/{name}/.zattrs", _dump(new_var[name])))
    if fmt == 3:
        assert root_doc is not None
        new_root = _updated(root_doc.get("attributes", {}), attrs, "root")
        doc = {**root_doc, "attributes": new_root}
        inline = (doc.get("consolidated_metadata") or {}).get("metadata")
        if isinstance(inline, dict):
            for name, a in new_var.items():
                if isinstance(inline.get(name), dict):
                    inline[name] = {**inline[name], "attributes": a}
        writes.append((f"{root}/zarr.json", _dump(doc)))
        return writes
    new_root = _updated(_read_json(fs, f"{root}/.zattrs") or {}, attrs, "root")
    writes.append((f"{root}/.zattrs", _dump(new_root)))
    consolidated = _read_json(fs, f"{root}/.zmetadata")
    meta = (consolidated or {}).get("metadata")
    if consolidated is not None and isinstance(meta, dict):
        meta[".zattrs"] = new_root
        for name, a in new_var.items():
            meta[f"{name}/.zattrs"] = a
        writes.append((f"{root}/.zmetadata", _dump(consolidated)))
    return writes
