"""The Zarr writer: a product written region by region, resumable.

:func:`write` runs four steps:

1. **layout** (:func:`_layout`) -- CF metadata, the region grid (whole Zarr chunks) and a
   fingerprint of what a resumed write must agree on;
2. **opening the target per mode** (:func:`_open_target`) -- ``"w-"`` refuses an existing
   product, ``"w"`` replaces it, ``"resume"`` checks the plan's fingerprint and finds the
   regions already done; a new write stores the metadata (template) and then the plan;
3. **region tasks** (:func:`_region_tasks`) -- one task per region left: compute its slice of
   every variable, write it, then its manifest (:mod:`.regions`); computed under a
   progress bar (:func:`cup4soil.runtime.progress.compute`);
4. **finishing** (:func:`_finish`) -- the STAC item, then the completion marker.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dask.array as da
import numpy as np
import xarray as xr
from dask.delayed import delayed

from ..errors import ParameterError, redact
from ..runtime.progress import compute
from .cf import GRID_MAPPING, json_safe, prepare, spatial_dims
from .layout import Sidecar, filesystem, is_local, locate, zarr_exists
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

def _open_target(fs: Any, root: str, url: str, options: dict[str, Any],
                 zarr_format: Literal[2, 3],
                 layout: _Layout, mode: Mode,
                 verify: bool) -> tuple[Target, Sidecar, set[str] | None]:
    """Prepare the store for ``mode``: where regions go, the product's sidecar, and the
    regions already done (None: the product is complete)."""

    def target(sidecar: Sidecar) -> Target:
        return Target(url, options, zarr_format, layout.fingerprint, sidecar.regions)

    try:
        found = locate(fs, root)  # beside the store, or inside a 0.1 product
        has_store = zarr_exists(fs, root)
        exists = has_store or fs.exists(found.plan)
    except Exception as exc:
        raise target(Sidecar.beside(root)).fail("", exc) from None
    if exists and mode == "w-":
        raise ParameterError(f"{redact(url)} already exists. Pass mode='w' to replace it, "
                             "mode='resume' to finish an interrupted write, or choose "
                             "another --out.")
    if has_store and mode == "resume":
        return target(found), found, _resume(fs, found, layout, target(found), verify)
    if exists:  # mode "w", or a sidecar left without its store: start afresh
        _remove(fs, root, found)
    sidecar = Sidecar.beside(root)
    _start(fs, sidecar, layout, target(sidecar))
    return target(sidecar), sidecar, set()


def _resume(fs: Any, sidecar: Sidecar, layout: _Layout, target: Target,
            verify: bool) -> set[str] | None:
    clean_url = redact(target.url)
    try:
        plan = json.loads(fs.cat_file(sidecar.plan))
    except FileNotFoundError:
        raise ParameterError(f"{clean_url} exists but was not written by cup4soil "
                             "(no plan); use mode='w' to replace it.") from None
    if plan.get("fingerprint") != layout.fingerprint:
        raise ParameterError(
            f"{clean_url} was started with a different dataset (variables, shapes, "
            "coordinates, attributes or region size differ), so it cannot be resumed "
            "with this one; use mode='w' to start over.")
    if fs.exists(sidecar.marker):
        return None
    fs.makedirs(sidecar.regions, exist_ok=True)  # local filesystems need the folder
    return done_regions(fs, target, layout.regions, layout.names, layout.positions, verify)


def _remove(fs: Any, root: str, sidecar: Sidecar) -> None:
    """Delete a product: the marker first, so it stops being complete before it changes."""
    if fs.exists(sidecar.marker):
        fs.rm(sidecar.marker)
    if not sidecar.legacy and fs.exists(sidecar.prefix):
        fs.rm(sidecar.prefix, recursive=True)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _start(fs: Any, sidecar: Sidecar, layout: _Layout, target: Target) -> None:
    """A new product: metadata (template), then the plan; the manifests' folder."""
    _write_template(layout, target)
    fs.makedirs(sidecar.regions, exist_ok=True)  # local filesystems need the folders
    fs.pipe_file(sidecar.plan, json.dumps(layout.plan()).encode())


def _write_template(layout: _Layout, target: Target) -> None:
    """Metadata, coordinates and non-spatial variables; spatial data stay unwritten."""
    template = layout.ds.copy()
    for n in layout.names:  # no pixel is computed for the template
        v = template[n]
        template[n] = v.copy(data=da.zeros(v.shape, dtype=v.dtype, chunks=v.data.chunks))
    if target.zarr_format == 3:
        # Zarr v3 has no stable fixed-length string type: labels (bands) as variable-length
        # strings; open() gives them back as fixed-length.
        text = [k for k, var in template.variables.items() if var.dtype.kind == "U"]
        template = template.assign_coords(
            {k: template[k].astype(object) for k in text if k in template.coords})
        for k in text:
            if k in template.data_vars:
                template[k] = template[k].astype(object)
    try:
        template.to_zarr(target.url, mode="w", compute=False, zarr_format=target.zarr_format,
                         consolidated=False,
                         storage_options=None if is_local(target.url) else
                         target.storage_options)
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

def _finish(fs: Any, sidecar: Sidecar, layout: _Layout, url: str, stac: bool) -> None:
    """The STAC item, then the completion marker (last: its presence means complete)."""
    if stac and GRID_MAPPING in layout.ds.coords:
        item = item_of(layout.ds, url, layout.dims)
        fs.pipe_file(sidecar.stac_item, json.dumps(item.to_dict(
            transform_hrefs=False)).encode())
    marker = {"complete": True, "variables": sorted(layout.variables),
              "regions": len(layout.regions), "fingerprint": layout.fingerprint,
              "finished": dt.datetime.now(dt.UTC).isoformat()}
    fs.pipe_file(sidecar.marker, json.dumps(marker).encode())


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
        ``"w-"`` refuses an existing store; ``"w"`` replaces it; ``"resume"`` keeps the
        regions an earlier, interrupted write finished (checked against their checksums)
        and computes the rest — the result is identical to an uninterrupted write.
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

    Returns
    -------
    ProductInfo
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
    layout = _layout(ds, chunks, provenance)
    target, sidecar, done = _open_target(fs, root, url, options, fmt, layout, mode, verify)
    todo = [] if done is None else [r for r in layout.regions if r.key not in done]
    if done is not None:
        compute(*_region_tasks(layout, target, todo), progress=progress, minimum=1.0)
        _finish(fs, sidecar, layout, redact(url), stac)
    return ProductInfo(redact(url), layout.variables, layout.nbytes, len(layout.regions),
                       len(todo), time.perf_counter() - t0)
