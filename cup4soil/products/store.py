"""Products as Zarr stores on local disk or object storage: resumable, region by region.

Layout of a product at ``url`` (any fsspec URL: a path, ``s3://``, ``gs://``, ``az://``)::

    url/zarr.json ...                Zarr (v3 by default) with CF metadata
    url/.cup4soil-plan.json          regions and a fingerprint of the layout (written first)
    url/.cup4soil-regions/<iy>-<ix>.json   one per finished region: SHA-256 per variable
    url/stac-item.json               the product's STAC Item
    url/.cup4soil-complete.json      written last: its presence means "complete"

:func:`write` writes the metadata once, then each spatial region (whole Zarr chunks, so
writers of distinct regions never touch the same object, nor the metadata) as its own task,
each followed by its manifest; only then the STAC item and the completion marker.
``mode="resume"`` keeps the regions whose manifests exist and whose checksums still match,
and computes the rest. :func:`open` refuses a product without the marker and says how many
regions are missing.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import dask
import dask.array as da
import fsspec
import numpy as np
import xarray as xr

from ..errors import (
    Cup4SoilError,
    IncompleteProductError,
    ParameterError,
    StoreError,
    redact,
)

__all__ = [
    "COMPLETE_MARKER", "IncompleteProductError", "ProductInfo", "info", "open",
    "stac_collection", "stac_item", "to_cogs", "write",
]

#: Object written last into a product; its presence means "complete".
COMPLETE_MARKER = ".cup4soil-complete.json"
PLAN = ".cup4soil-plan.json"
REGIONS = ".cup4soil-regions"
STAC_ITEM = "stac-item.json"
_DEFAULT_REGION = 1024  # pixels per side when the data say nothing
# attribute names that may hold credentials: never written
_SECRET_KEY = re.compile(r"(token|secret|password|passwd|credential|signature|sas|"
                         r"access_key|api_key|apikey|^key$)", re.IGNORECASE)


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


def _fs(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """fsspec filesystem and root path of a product URL."""
    try:
        fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise ParameterError(f"cannot open {redact(url)}: {exc}. Install the fsspec backend "
                             "for this protocol (s3fs, gcsfs, adlfs).") from None
    return fs, root.rstrip("/")


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _scrub(value: Any) -> Any:
    """Attribute values without credentials: URLs lose query strings, secret-named keys go."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _scrub(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _json_safe(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# --- preparing a dataset: CF metadata, provenance, regions ----------------------------

def _spatial_dims(ds: xr.Dataset) -> tuple[str, str]:
    for y, x in (("y", "x"), ("latitude", "longitude"), ("lat", "lon")):
        if y in ds.dims and x in ds.dims:
            return y, x
    raise ParameterError(f"the dataset has no spatial dimensions (y, x); it has "
                         f"{', '.join(map(str, ds.dims))}.")


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


def _cf(ds: xr.Dataset, dims: tuple[str, str]) -> xr.Dataset:
    """CF conventions: a grid-mapping variable (WKT and EPSG), coordinate attributes,
    units/long_name and _FillValue on every data variable."""
    import odc.geo.xr  # noqa: F401
    import rioxarray  # noqa: F401

    out = ds
    gbox = None
    try:
        gbox = ds.odc.geobox
    except Exception:  # not georeferenced: written without a grid mapping
        gbox = None
    if gbox is not None and gbox.crs is not None:
        crs = gbox.crs
        out = out.rio.write_crs(str(crs.to_wkt()), grid_mapping_name="spatial_ref")
        out = out.rio.write_transform(gbox.affine, grid_mapping_name="spatial_ref")
        sr = out["spatial_ref"]
        sr.attrs["epsg_code"] = f"EPSG:{crs.epsg}" if crs.epsg else ""
        if crs.epsg:
            sr.attrs["epsg"] = int(crs.epsg)
        geographic = crs.geographic
        for d, axis in zip(dims, ("Y", "X"), strict=True):
            name = {"Y": "latitude", "X": "longitude"}[axis] if geographic else \
                {"Y": "projection_y_coordinate", "X": "projection_x_coordinate"}[axis]
            out[d].attrs.update(standard_name=name, axis=axis,
                                units="degrees" if geographic else "m",
                                long_name=f"{'y' if axis == 'Y' else 'x'} coordinate of "
                                          "pixel centre")
    for name in out.data_vars:
        var = out[name]
        attrs = dict(var.attrs)
        attrs.setdefault("long_name", str(name))
        attrs.setdefault("units", "1")
        if gbox is not None and dims[0] in var.dims:
            attrs.pop("grid_mapping", None)
            var.encoding["grid_mapping"] = "spatial_ref"
        var.attrs = attrs
    return out


def _prepare(ds: xr.Dataset, *, dims: tuple[str, str], region: tuple[int, int],
             provenance: Mapping[str, Any] | None) -> xr.Dataset:
    from .._version import __version__

    drop = [n for n, c in ds.coords.items() if c.dtype == object and n not in ds.dims]
    out = ds.drop_vars(drop)
    out = _cf(out, dims)
    for name, var in out.variables.items():
        # The writer owns encodings: stale ones from a source file can conflict.
        var.encoding = {k: v for k, v in var.encoding.items() if k in ("dtype", "grid_mapping")}
        var.attrs = _json_safe(_scrub(dict(var.attrs)))
        if name in out.data_vars:
            nodata = var.attrs.get("nodata")
            if np.issubdtype(var.dtype, np.integer):
                # counts have no nodata unless declared: 0 is a value, not a fill
                var.encoding["_FillValue"] = None if nodata is None else var.dtype.type(nodata)
            elif np.issubdtype(var.dtype, np.floating):
                var.encoding["_FillValue"] = var.dtype.type(np.nan if nodata is None or (
                    isinstance(nodata, float) and math.isnan(nodata)) else nodata)
            if "nodata" in var.attrs and isinstance(var.attrs["nodata"], float) and \
                    math.isnan(var.attrs["nodata"]):
                var.attrs["nodata"] = "nan"  # JSON has no NaN
    attrs = _scrub(dict(out.attrs))
    for name in out.data_vars:  # provenance carried by a variable becomes global
        for key in ("input_items", "processing_baselines", "time_start", "time_end"):
            if key in out[name].attrs:
                attrs.setdefault(key, out[name].attrs.pop(key))
    attrs.update({
        "Conventions": "CF-1.8",
        "cup4soil_version": __version__,
        "cup4soil_written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **({"provenance": _scrub(dict(provenance))} if provenance else {}),
    })
    out.attrs = _json_safe(attrs)
    # regions are whole Zarr chunks; data variables become dask arrays chunked by region
    cy, cx = region
    chunks = {d: -1 for d in out.dims}
    chunks.update({dims[0]: cy, dims[1]: cx})
    for name in out.data_vars:
        var = out[name]
        if dims[0] in var.dims and dims[1] in var.dims:
            out[name] = var.chunk({d: chunks[d] for d in var.dims})
            out[name].encoding["chunks"] = tuple(
                chunks[d] if chunks[d] != -1 else var.sizes[d] for d in var.dims)
        elif isinstance(var.data, da.Array):
            out[name] = var.compute()
    return out


def _fingerprint(ds: xr.Dataset, region: tuple[int, int]) -> str:
    """Hash of what a resumed write must agree on: variables, shapes, dtypes, coordinates
    and attributes (not the graph, whose names differ between processes)."""
    h = hashlib.sha256()
    layout = {
        "vars": {str(n): [list(map(str, v.dims)), list(v.shape), str(v.dtype)]
                 for n, v in ds.data_vars.items()},
        "region": list(region),
        "attrs": {k: v for k, v in ds.attrs.items() if k not in ("cup4soil_written",)},
    }
    h.update(json.dumps(_json_safe(layout), sort_keys=True, default=str).encode())
    for name, c in sorted(ds.coords.items()):
        if c.ndim and c.size < 10_000_000:
            h.update(str(name).encode())
            h.update(np.ascontiguousarray(c.values).tobytes()
                     if c.dtype != object else str(c.values.tolist()).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class _Region:
    iy: int
    ix: int
    ys: slice
    xs: slice

    @property
    def key(self) -> str:
        return f"{self.iy}-{self.ix}"


def _regions(ds: xr.Dataset, dims: tuple[str, str], region: tuple[int, int]) -> list[_Region]:
    ny, nx = ds.sizes[dims[0]], ds.sizes[dims[1]]
    out = []
    for iy, y0 in enumerate(range(0, ny, region[0])):
        for ix, x0 in enumerate(range(0, nx, region[1])):
            out.append(_Region(iy, ix, slice(y0, min(y0 + region[0], ny)),
                               slice(x0, min(x0 + region[1], nx))))
    return out


# --- region tasks (run on workers) -----------------------------------------------------

@dataclass(frozen=True)
class _Target:
    """Where a region goes; small and picklable, travels to every worker."""

    url: str
    storage_options: dict[str, Any] = field(repr=False)
    zarr_format: int
    fingerprint: str  # keys the cached Zarr group: a rewritten store is opened afresh


@functools.lru_cache(maxsize=8)
def _group(url: str, options: str, zarr_format: int, fingerprint: str) -> Any:
    import zarr

    so = json.loads(options)
    return zarr.open_group(url, mode="r+", zarr_format=zarr_format,
                           storage_options=None if _is_local(url) else so)


def _checksum(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _secrets(options: Mapping[str, Any]) -> list[str]:
    return [str(v) for k, v in options.items()
            if isinstance(v, str) and len(v) >= 4 and _SECRET_KEY.search(str(k))]


def _fail(target: _Target, key: str, exc: BaseException) -> StoreError:
    reason = f"{type(exc).__name__}: {exc}"
    for s in _secrets(target.storage_options):
        reason = reason.replace(s, "***")
    return StoreError(f"{redact(target.url).rstrip('/')}/{key}", reason)


def _write_region(target: _Target, region: _Region, names: Sequence[str],
                  ydim_pos: Sequence[int], *arrays: np.ndarray) -> str:
    """Write one region of every variable, then its manifest. Returns the region key."""
    group = _group(target.url, json.dumps(target.storage_options, sort_keys=True),
                   target.zarr_format, target.fingerprint)
    sums = {}
    for name, pos, arr in zip(names, ydim_pos, arrays, strict=True):
        index = [slice(None)] * arr.ndim
        index[pos], index[pos + 1] = region.ys, region.xs
        try:
            group[name][tuple(index)] = arr
        except Exception as exc:
            chunk = _chunk_key(group[name], index, target.zarr_format, name)
            raise _fail(target, chunk, exc) from None
        sums[name] = _checksum(arr)
    manifest = {"region": region.key, "sha256": sums,
                "written": dt.datetime.now(dt.UTC).isoformat()}
    fs, root = _fs(target.url, target.storage_options)
    key = f"{REGIONS}/{region.key}.json"
    try:
        fs.pipe_file(f"{root}/{key}", json.dumps(manifest).encode())
    except Exception as exc:
        raise _fail(target, key, exc) from None
    return region.key


def _chunk_key(arr: Any, index: list[slice], zarr_format: int, name: str) -> str:
    """The first Zarr chunk object a region write touches (for error messages)."""
    try:
        ids = [(s.start or 0) // c for s, c in zip(index, arr.chunks, strict=True)]
        sep = "/c/" if zarr_format == 3 else "/"
        joiner = "/" if zarr_format == 3 else "."
        return f"{name}{sep}{joiner.join(map(str, ids))}"
    except Exception:  # pragma: no cover - best effort only
        return name


def _read_region(target: _Target, region: _Region, name: str, pos: int) -> np.ndarray:
    group = _group(target.url, json.dumps(target.storage_options, sort_keys=True),
                   target.zarr_format, target.fingerprint)
    arr = group[name]
    index = [slice(None)] * arr.ndim
    index[pos], index[pos + 1] = region.ys, region.xs
    return arr[tuple(index)]


def _done_regions(fs: Any, root: str, target: _Target, regions: list[_Region],
                  names: Sequence[str], positions: Sequence[int], verify: bool) -> set[str]:
    """Regions whose manifests exist (and, with ``verify``, whose data still match)."""
    try:
        listed = fs.ls(f"{root}/{REGIONS}", detail=False)
    except FileNotFoundError:
        return set()
    have = {p.rstrip("/").rsplit("/", 1)[-1].removesuffix(".json") for p in listed}
    by_key = {r.key: r for r in regions}

    def check(key: str) -> str | None:
        try:
            manifest = json.loads(fs.cat_file(f"{root}/{REGIONS}/{key}.json"))
        except Exception:  # half-written manifest: recompute the region
            return None
        if not verify:
            return key
        for name, pos in zip(names, positions, strict=True):
            if manifest.get("sha256", {}).get(name) != _checksum(
                    _read_region(target, by_key[key], name, pos)):
                return None
        return key

    todo = [k for k in have if k in by_key]
    results = dask.compute(*[dask.delayed(check)(k) for k in todo], scheduler="threads")
    return {k for k in results if k is not None}


# --- the public functions --------------------------------------------------------------

def write(
    ds: xr.Dataset,
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    mode: Literal["w-", "w", "resume"] = "w-",
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
        Local path or fsspec URL (``s3://bucket/prefix.zarr`` ...).
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
        Write ``stac-item.json`` into the product.
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
    options = dict(storage_options or {})
    fs, root = _fs(url, options)
    clean_url = redact(url)
    dims = _spatial_dims(ds)
    region = _region_size(ds, dims, chunks)
    if min(region) < 1:
        raise ParameterError(f"chunks={chunks}: region sizes must be positive.")
    out = _prepare(ds, dims=dims, region=region, provenance=provenance)
    fingerprint = _fingerprint(out, region)
    regions = _regions(out, dims, region)
    marker_path = f"{root}/{COMPLETE_MARKER}"
    names = [str(n) for n, v in out.data_vars.items() if dims[0] in v.dims and dims[1] in v.dims]
    positions = [out[n].dims.index(dims[0]) for n in names]
    for n, p in zip(names, positions, strict=True):
        if out[n].dims[p + 1] != dims[1]:
            raise ParameterError(f"variable {n} has dims {out[n].dims}; put {dims[1]} right "
                                 f"after {dims[0]} (ds.transpose(..., '{dims[0]}', "
                                 f"'{dims[1]}')).")
    target = _Target(url, options, zarr_format, fingerprint)
    nbytes = int(sum(v.nbytes for v in out.data_vars.values()))

    try:
        exists = fs.exists(f"{root}/zarr.json") or fs.exists(f"{root}/.zgroup") or \
            fs.exists(f"{root}/{PLAN}")
    except Exception as exc:
        raise _fail(target, "", exc) from None
    done: set[str] = set()
    if exists and mode == "w-":
        raise ParameterError(f"{clean_url} already exists. Pass mode='w' to replace it, "
                             "mode='resume' to finish an interrupted write, or choose "
                             "another --out.")
    if exists and mode == "resume":
        try:
            plan = json.loads(fs.cat_file(f"{root}/{PLAN}"))
        except FileNotFoundError:
            raise ParameterError(f"{clean_url} exists but was not written by cup4soil "
                                 "(no plan); use mode='w' to replace it.") from None
        if plan.get("fingerprint") != fingerprint:
            raise ParameterError(
                f"{clean_url} was started with a different dataset (variables, shapes, "
                "coordinates, attributes or region size differ), so it cannot be resumed "
                "with this one; use mode='w' to start over.")
        if fs.exists(marker_path):
            return ProductInfo(clean_url, tuple(map(str, out.data_vars)), nbytes,
                               len(regions), 0, time.perf_counter() - t0)
        done = _done_regions(fs, root, target, regions, names, positions, verify)
    else:
        if exists:  # mode "w": the old product stops being complete before it changes
            if fs.exists(marker_path):
                fs.rm(marker_path)
            fs.rm(root, recursive=True)
        _write_template(out, target, names)
        plan = {"fingerprint": fingerprint, "regions": [r.key for r in regions],
                "region_size": list(region), "variables": names,
                "started": dt.datetime.now(dt.UTC).isoformat()}
        fs.pipe_file(f"{root}/{PLAN}", json.dumps(plan).encode())
    fs.makedirs(f"{root}/{REGIONS}", exist_ok=True)  # local filesystems need the folder

    todo = [r for r in regions if r.key not in done]
    tasks = []
    for r in todo:
        arrays = []
        for n, p in zip(names, positions, strict=True):
            index = [slice(None)] * out[n].ndim
            index[p], index[p + 1] = r.ys, r.xs
            part = out[n].data[tuple(index)]
            # One piece per variable, by key and unoptimised: passing the arrays themselves
            # would optimise each variable's graph alone, fusing a task the variables share
            # (e.g. a composite block producing all products) into each, computing it once
            # per variable.
            (piece,) = part.rechunk(part.shape).to_delayed(optimize_graph=False).ravel()
            arrays.append(piece)
        tasks.append(dask.delayed(_write_region, pure=False)(target, r, names, positions,
                                                             *arrays))
    _run(tasks, progress)
    if stac and "spatial_ref" in out.coords:
        item = _stac_item_from(out, clean_url, dims)
        fs.pipe_file(f"{root}/{STAC_ITEM}", json.dumps(item.to_dict(
            transform_hrefs=False)).encode())
    marker = {"complete": True, "variables": sorted(map(str, out.data_vars)),
              "regions": len(regions), "fingerprint": fingerprint,
              "finished": dt.datetime.now(dt.UTC).isoformat()}
    fs.pipe_file(marker_path, json.dumps(marker).encode())
    return ProductInfo(clean_url, tuple(map(str, out.data_vars)), nbytes, len(regions),
                       len(todo), time.perf_counter() - t0)


def _write_template(out: xr.Dataset, target: _Target, names: Sequence[str]) -> None:
    """Metadata, coordinates and non-spatial variables; spatial data stay unwritten."""
    template = out.copy()
    for n in names:  # no pixel is computed for the template
        v = template[n]
        template[n] = v.copy(data=da.zeros(v.shape, dtype=v.dtype, chunks=v.data.chunks))
    try:
        template.to_zarr(target.url, mode="w", compute=False, zarr_format=target.zarr_format,
                         consolidated=False,
                         storage_options=None if _is_local(target.url) else
                         target.storage_options)
    except Exception as exc:
        raise _fail(target, "zarr.json", exc) from None


def _run(tasks: list[Any], progress: bool) -> None:
    if not tasks:
        return
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        client = None
    if client is not None:
        futures = client.compute(tasks)
        if progress:
            from distributed import progress as dprogress

            dprogress(futures)
        client.gather(futures)
        return
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar(minimum=1.0):
            dask.compute(*tasks)
    else:
        dask.compute(*tasks)


def _status(fs: Any, root: str) -> tuple[bool, int, int]:
    """(complete, regions written, regions planned)."""
    complete = fs.exists(f"{root}/{COMPLETE_MARKER}")
    try:
        plan = json.loads(fs.cat_file(f"{root}/{PLAN}"))
        total = len(plan.get("regions", []))
    except FileNotFoundError:
        return complete, 0, 0
    try:
        written = len(fs.ls(f"{root}/{REGIONS}", detail=False))
    except FileNotFoundError:
        written = 0
    return complete, (total if complete else written), total


def open(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    allow_incomplete: bool = False,
) -> xr.Dataset:
    """Open a product lazily; refuse one whose writing never finished.

    Raises
    ------
    IncompleteProductError
        If the completion marker is missing and ``allow_incomplete`` is False; the message
        says how many regions are written.
    """
    fs, root = _fs(url, storage_options)
    if not fs.exists(root):
        raise Cup4SoilError(f"there is no product at {redact(url)}. Check the path or URL.")
    complete, written, total = _status(fs, root)
    if not complete and not allow_incomplete:
        missing = f" {written} of {total} regions are written;" if total else ""
        raise IncompleteProductError(
            f"the product at {redact(url)} is incomplete (its writing never finished):"
            f"{missing} resume it with store.write(..., mode='resume') (--resume), or pass "
            "allow_incomplete=True to inspect what is there.")
    with warnings.catch_warnings():
        # zarr notes our marker/manifests as unknown objects in the hierarchy
        warnings.filterwarnings("ignore", message=".*is not recognized as a component")
        warnings.filterwarnings("ignore", message=".*Object at .* is not recognized")
        return xr.open_zarr(
            url,
            consolidated=False,
            storage_options=None if _is_local(url) else dict(storage_options or {}),
            # Integer products stay integer: nodata is a value named by its attribute, as
            # odc-stac and rioxarray users handle DN cubes (not NaN-masked floats).
            mask_and_scale=False,
            decode_coords="all",  # the CF grid mapping comes back as the spatial_ref coord
        )


def info(url: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A product's variables, grid, completeness and provenance (opens metadata only).

    Returns
    -------
    dict
        ``url``, ``complete``, ``regions`` (written, planned), ``variables`` (name → dims,
        dtype, units, long_name), ``grid`` (crs, shape, resolution, bounds),
        ``provenance`` (the product's global attributes).
    """
    fs, root = _fs(url, storage_options)
    if not fs.exists(root):
        raise Cup4SoilError(f"there is no product at {redact(url)}. Check the path or URL.")
    complete, written, total = _status(fs, root)
    ds = open(url, storage_options=storage_options, allow_incomplete=True)
    grid: dict[str, Any] = {}
    try:
        import odc.geo.xr  # noqa: F401

        g = ds.odc.geobox
        if g is not None:
            grid = {"crs": f"EPSG:{g.crs.epsg}" if g.crs.epsg else g.crs.to_wkt(),
                    "shape": list(g.shape),
                    "resolution": [abs(g.resolution.y), abs(g.resolution.x)],
                    "bounds": list(g.boundingbox)}
    except Exception:  # not georeferenced
        grid = {}
    return {
        "url": redact(url), "complete": complete, "regions": [written, total],
        "variables": {str(n): {"dims": list(map(str, v.dims)), "dtype": str(v.dtype),
                               "units": v.attrs.get("units", ""),
                               "long_name": v.attrs.get("long_name", "")}
                      for n, v in ds.data_vars.items()},
        "grid": grid, "provenance": dict(ds.attrs),
    }


# --- STAC --------------------------------------------------------------------------------

_PROJ = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
_RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
_CUBE = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
_RASTER_TYPES = {"uint8": "uint8", "uint16": "uint16", "int16": "int16", "int32": "int32",
                 "uint32": "uint32", "float32": "float32", "float64": "float64",
                 "int8": "int8", "int64": "int64", "uint64": "uint64"}


def _times(attrs: Mapping[str, Any]) -> tuple[dt.datetime | None, dt.datetime | None]:
    def parse(v: Any) -> dt.datetime | None:
        if not v:
            return None
        t = dt.datetime.fromisoformat(str(v)[:19])
        return t.replace(tzinfo=dt.UTC)

    return parse(attrs.get("time_start")), parse(attrs.get("time_end"))


def _stac_item_from(ds: xr.Dataset, url: str, dims: tuple[str, str],
                    cogs: Mapping[str, str] | None = None) -> Any:
    import odc.geo.xr  # noqa: F401
    import pystac
    from shapely.geometry import box, mapping

    gbox = ds.odc.geobox
    if gbox is None:
        raise ParameterError("a STAC item needs a georeferenced product (x/y and a CRS).")
    bounds = gbox.geographic_extent.boundingbox
    bbox = [bounds.left, bounds.bottom, bounds.right, bounds.top]
    start, end = _times(ds.attrs)
    written = dt.datetime.now(dt.UTC)
    name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".zarr") or "product"
    props: dict[str, Any] = {
        "title": str(ds.attrs.get("title", name)),
        "created": written.isoformat(),
        "proj:code": f"EPSG:{gbox.crs.epsg}" if gbox.crs.epsg else None,
        "proj:shape": list(gbox.shape),
        "proj:transform": list(gbox.affine)[:6],
        "proj:bbox": list(gbox.extent.boundingbox),
        "cup4soil:version": ds.attrs.get("cup4soil_version"),
    }
    if gbox.crs.epsg is None:
        props["proj:wkt2"] = gbox.crs.to_wkt()
    if start and end:
        props.update(start_datetime=start.isoformat(), end_datetime=end.isoformat())
    res = gbox.resolution
    cube_dims: dict[str, Any] = {
        dims[1]: {"type": "spatial", "axis": "x", "extent": [bounds.left, bounds.right]
                  if gbox.crs.geographic else [gbox.extent.boundingbox.left,
                                               gbox.extent.boundingbox.right],
                  "step": abs(res.x), "reference_system": props["proj:code"] or
                  props.get("proj:wkt2")},
        dims[0]: {"type": "spatial", "axis": "y", "extent": [gbox.extent.boundingbox.bottom,
                                                             gbox.extent.boundingbox.top],
                  "step": abs(res.y), "reference_system": props["proj:code"] or
                  props.get("proj:wkt2")},
    }
    for d in ds.dims:
        if d in dims:
            continue
        values = ds[d].values.tolist() if d in ds.coords else list(range(ds.sizes[d]))
        cube_dims[str(d)] = ({"type": "temporal", "values": [str(v) for v in values]}
                             if str(d) == "time" else {"type": "other" if str(d) != "band"
                                                       else "bands",
                                                       "values": _json_safe(values)})
    cube_vars = {str(n): {"dimensions": list(map(str, v.dims)), "type": "data",
                          "unit": str(v.attrs.get("units", "")),
                          "description": str(v.attrs.get("long_name", n))}
                 for n, v in ds.data_vars.items()}
    props["cube:dimensions"] = cube_dims
    props["cube:variables"] = cube_vars
    item = pystac.Item(id=name, geometry=json.loads(json.dumps(mapping(box(*bbox)))), bbox=bbox,
                       datetime=None if (start and end) else written,
                       properties=_json_safe(props),
                       stac_extensions=[_PROJ, _CUBE] + ([_RASTER] if cogs else []))
    item.add_asset("zarr", pystac.Asset(
        href=redact(url), media_type="application/vnd+zarr", roles=["data"],
        title="Zarr store", extra_fields={"xarray:open_kwargs": {"engine": "zarr",
                                                                  "consolidated": False}}))
    for var, href in (cogs or {}).items():
        base = ds.get(var)
        band: dict[str, Any] = {}
        if base is not None:
            band = {"data_type": _RASTER_TYPES.get(str(base.dtype), "other"),
                    "unit": str(base.attrs.get("units", ""))}
            nodata = base.attrs.get("nodata")
            if nodata is not None:
                band["nodata"] = "nan" if isinstance(nodata, str) else nodata
        item.add_asset(var, pystac.Asset(
            href=redact(href), media_type=pystac.MediaType.COG, roles=["data"], title=var,
            extra_fields={"raster:bands": [band]} if band else {}))
    return item


def stac_item(url: str, *, storage_options: Mapping[str, Any] | None = None,
              cogs: Mapping[str, str] | None = None) -> Any:
    """The STAC Item of a product: projection and datacube extensions, the Zarr store as an
    asset (its URL without any query string), optional COG assets with raster metadata.

    Parameters
    ----------
    url : str
        The product.
    cogs : dict, optional
        Variable name → COG href (e.g. from :func:`to_cogs`), added as assets.

    Returns
    -------
    pystac.Item
    """
    ds = open(url, storage_options=storage_options)
    dims = _spatial_dims(ds)
    return _stac_item_from(ds, redact(url), dims, cogs)


def stac_collection(items: Sequence[Any], *, id: str, description: str,
                    title: str | None = None, license: str = "CC-BY-4.0") -> Any:
    """A STAC Collection for a product family (e.g. yearly SOC maps), extent from items."""
    import pystac

    if not items:
        raise ParameterError("a collection needs at least one item.")
    bboxes = np.array([it.bbox for it in items])
    bbox = [float(bboxes[:, 0].min()), float(bboxes[:, 1].min()), float(bboxes[:, 2].max()),
            float(bboxes[:, 3].max())]
    times = []
    for it in items:
        for k in ("start_datetime", "end_datetime"):
            if it.properties.get(k):
                times.append(dt.datetime.fromisoformat(it.properties[k]))
        if it.datetime is not None:
            times.append(it.datetime)
    interval = [[min(times), max(times)]] if times else [[None, None]]
    coll = pystac.Collection(
        id=id, description=description, title=title or id, license=license,
        extent=pystac.Extent(pystac.SpatialExtent([bbox]),
                             pystac.TemporalExtent(interval)),
        stac_extensions=[_PROJ, _CUBE])
    for it in items:
        coll.add_item(it.clone())
    return coll


# --- COGs ------------------------------------------------------------------------------

def to_cogs(ds: xr.Dataset, prefix: str, *,
            storage_options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """One Cloud-Optimized GeoTIFF per 2-D variable, with overviews.

    Banded variables are split SoilSuite-style (``SRC`` → ``SRC_B02`` ...); other extra
    dimensions likewise (``BSC_2021``). Files are written locally, then copied to
    ``prefix`` when it is a remote URL.

    Returns
    -------
    dict
        Variable name → href of its COG.
    """
    import os
    import tempfile

    import rioxarray  # noqa: F401

    layers: dict[str, xr.DataArray] = {}
    for name, var in ds.data_vars.items():
        extra = [d for d in var.dims if d not in ("y", "x")]
        if not extra:
            layers[str(name)] = var
        elif len(extra) == 1:
            for label in var[extra[0]].values:
                layers[f"{name}_{label}"] = var.sel({extra[0]: label}, drop=True)
        else:
            raise ParameterError(f"{name} has dims {var.dims}; select down to (band, y, x).")
    fs, root = _fs(prefix, storage_options)
    local = _is_local(prefix)
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, var in layers.items():
            path = os.path.join(root if local else tmp, f"{name}.tif")
            if local:
                fs.makedirs(root, exist_ok=True)
            arr = var.transpose("y", "x").load()
            nodata = arr.attrs.get("nodata")
            if isinstance(nodata, str):
                nodata = float(nodata)
            if nodata is None and np.issubdtype(arr.dtype, np.floating):
                nodata = float("nan")
            arr.rio.write_nodata(nodata, encoded=False, inplace=True)
            arr.attrs = {k: v for k, v in arr.attrs.items()
                         if isinstance(v, str | int | float) and k != "nodata"}
            arr.rio.to_raster(path, driver="COG", compress="DEFLATE", overviews="AUTO",
                              blocksize=256, resampling="average"
                              if np.issubdtype(arr.dtype, np.floating) else "nearest")
            if local:
                out[name] = path
            else:
                dest = f"{root}/{name}.tif"
                try:
                    fs.put_file(path, dest)
                except Exception as exc:
                    raise StoreError(dest, f"{type(exc).__name__}: {exc}") from None
                out[name] = f"{prefix.rstrip('/')}/{name}.tif"
    return out
