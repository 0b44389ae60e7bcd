"""A product written as a template for a whole grid, then region by region by many graphs.

:func:`cup4soil.store.write` computes one dataset's graph; a continental mosaic is written
by many independent graphs (one per tile), each at its own time, possibly failing and
retried, from processes that may be killed and restarted. :class:`MosaicWriter` keeps the
writer's rules and internals (:mod:`.writer`, :mod:`.regions`, :mod:`.lease`): the URL is
inspected fresh and anything cup4soil did not write is refused; the lease is held while
writing; the plan (with the layout's fingerprint) is written before the metadata; each
region is whole Zarr chunks with a manifest of checksums; resume trusts a region only while
its checksums match; the completion marker is written last, only by :meth:`finish`.

What differs: the template is written once from a lazy dataset (nothing computed), regions
may be larger than Zarr chunks (``chunks`` divides ``region``), and the caller hands in the
data of each region (:meth:`MosaicWriter.region_task`) when it has built its graph.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import xarray as xr
from dask.delayed import Delayed, delayed

from ..errors import Cup4SoilError, ParameterError, redact
from .failures import is_storage_failure
from .layout import Sidecar, filesystem, fresh, write_object
from .lease import DEFAULT_TIMEOUT, Lease
from .regions import Region, Target, done_regions, write_region
from .writer import _check_target, _check_template, _finish, _Layout, _layout, _open_target

__all__ = ["MosaicWriter"]


class MosaicWriter:
    """Open (create or resume) a product laid out as ``template``, written region by region.

    Parameters
    ----------
    template : xarray.Dataset
        The whole product, lazy (dask arrays; never computed): variables, dims, dtypes,
        coordinates and attributes. Spatial dims ``y``/``x``.
    url : str
        Local path or fsspec URL of the Zarr store.
    region : int
        Region side, pixels: the unit of writing and of resume.
    chunks : int
        Zarr chunk side, pixels; must divide ``region``.
    storage_options : dict, optional
        Passed to fsspec.
    zarr_format : {3, 2}
        Zarr format.
    lease_timeout : float
        Seconds the write lease lives without renewal.

    Notes
    -----
    Always opens in ``"resume"`` mode: a product started with the same layout keeps its
    verified regions; one started with another layout is refused.
    """

    def __init__(self, template: xr.Dataset, url: str, *, region: int, chunks: int,
                 storage_options: Mapping[str, Any] | None = None, zarr_format: int = 3,
                 lease_timeout: float = DEFAULT_TIMEOUT, verify: bool = True) -> None:
        if zarr_format not in (2, 3):
            raise ParameterError(f"zarr_format={zarr_format} must be 2 or 3.")
        if chunks < 1 or region % chunks:
            raise ParameterError(f"chunks={chunks} must divide the region size {region}.")
        fmt: Literal[2, 3] = 3 if zarr_format == 3 else 2
        self.url = url
        self.zarr_format = fmt
        self.options = dict(storage_options or {})
        self.fs, self.root = filesystem(url, self.options)
        Sidecar.beside(self.root)
        layout = _layout(template.assign_attrs(mosaic_chunks=int(chunks)), region, None)
        for n, p in zip(layout.names, layout.positions, strict=True):
            enc = layout.ds[n].encoding  # Zarr chunks: a divisor of the region
            sides = list(enc["chunks"])
            sides[p], sides[p + 1] = min(sides[p], chunks), min(sides[p + 1], chunks)
            enc["chunks"] = tuple(sides)
        self.layout: _Layout = layout
        _check_template(layout, fmt)
        found = _check_target(self.fs, self.root, url, self.options, "resume")
        self.lease = Lease(self.fs, Sidecar.beside(self.root).lease, url, timeout=lease_timeout)
        try:
            self.lease.acquire()
        except Exception as exc:
            if not is_storage_failure(exc):
                raise
            raise Target(url, self.options, fmt, "", "").fail("", exc,
                                                               where=redact(url)) from None
        try:
            found = _check_target(self.fs, self.root, url, self.options, "resume")
            self.target, self.sidecar, done = _open_target(
                self.fs, self.root, url, self.options, fmt, layout, "resume", verify, found)
        except BaseException:
            self.lease.release()
            raise
        self.complete = done is None
        self._done: set[str] = ({r.key for r in layout.regions} if done is None
                                else set(done))

    # --- regions -------------------------------------------------------------------------

    @property
    def regions(self) -> tuple[Region, ...]:
        """All regions, row by row from the top-left."""
        return self.layout.regions

    @property
    def names(self) -> tuple[str, ...]:
        """Variables written region by region."""
        return self.layout.names

    def done(self, *, refresh: bool = False) -> set[str]:
        """Keys of the regions written (verified when the writer opened; ``refresh``: the
        manifests listed anew, not re-verified)."""
        if refresh and not self.complete:
            self._done = done_regions(self.fs, self.target, self.regions, self.layout.names,
                                      self.layout.positions, verify=False)
        return set(self._done)

    def region_task(self, region: Region, data: xr.Dataset) -> Delayed:
        """A delayed task writing ``data`` (the region's slice of every spatial variable,
        lazy) into ``region``, then its manifest. Returns the region's key when run."""
        pieces = []
        for n, p in zip(self.layout.names, self.layout.positions, strict=True):
            want = self.layout.ds[n]
            if n not in data:
                raise ParameterError(f"the region's data lack variable {n}.")
            var = data[n].transpose(*want.dims).astype(want.dtype)
            shape = tuple(s.stop - s.start if i in (p, p + 1) else want.shape[i]
                          for i, s in enumerate(region.index(want.ndim, p)))
            if var.shape != shape:
                raise ParameterError(f"variable {n} of region {region.key} has shape "
                                     f"{var.shape}, the product expects {shape}.")
            arr = var.data if hasattr(var.data, "dask") else var.chunk().data
            # one piece per variable, unoptimised: the variables share their upstream tasks
            (piece,) = arr.rechunk(arr.shape).to_delayed(optimize_graph=False).ravel()
            pieces.append(piece)
        return delayed(write_region, pure=False)(  # type: ignore[no-any-return]
            self.target, region, self.layout.names, self.layout.positions, *pieces)

    def mark(self, keys: Sequence[str]) -> None:
        """Record regions as written (after their tasks returned)."""
        self._done.update(keys)

    # --- sidecar objects -----------------------------------------------------------------

    def sidecar_path(self, name: str) -> str:
        """Path (fsspec) of an object ``name`` in the product's sidecar prefix."""
        return f"{self.sidecar.prefix}/{name}"

    def write_json(self, name: str, data: Any) -> None:
        """Write a small JSON object whole into the sidecar (e.g. a state file)."""
        self.lease.check()
        write_object(self.fs, self.sidecar_path(name), json.dumps(data).encode())

    def read_json(self, name: str) -> Any:
        """A JSON object of the sidecar, or None."""
        path = self.sidecar_path(name)
        fresh(self.fs, path)
        try:
            return json.loads(self.fs.cat_file(path))
        except (FileNotFoundError, ValueError):
            return None

    # --- finishing -----------------------------------------------------------------------

    def finish(self, *, stac: bool = True) -> None:
        """Write the product's STAC item and the completion marker (every region must be
        written)."""
        left = {r.key for r in self.regions} - self._done
        if left:
            raise ParameterError(f"{len(left)} regions are not written yet; the product "
                                 "cannot be marked complete.")
        self.lease.check()
        try:
            _finish(self.fs, self.sidecar, self.layout, redact(self.url), stac,
                    self.zarr_format)
        except Exception as exc:
            if isinstance(exc, Cup4SoilError) or not is_storage_failure(exc):
                raise
            raise self.target.fail("", exc, where=redact(self.url)) from None
        self.complete = True

    def close(self) -> None:
        """Release the lease (idempotent)."""
        self.lease.release()

    def __enter__(self) -> MosaicWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
