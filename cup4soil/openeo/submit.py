"""Run a process graph on a real openEO back-end and open its result like a composite.

Authentication is the openEO client's own: ``auth="oidc"`` runs
``Connection.authenticate_oidc()`` -- a stored refresh token, else the device code flow
(a URL to open), or client credentials from ``OPENEO_AUTH_METHOD=client_credentials``,
``OPENEO_AUTH_CLIENT_ID`` and ``OPENEO_AUTH_CLIENT_SECRET``. cup4soil never sees, stores or
prints a token; the back-end's messages pass through :func:`cup4soil.errors.redact`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import xarray as xr

from ..errors import BackendError, ParameterError
from ._deps import require
from .graph import bind_parameters, load_graph, parameter_values
from .results import open_result

__all__ = ["FORMATS", "submit"]

_WHAT = "openeo.submit"
#: Output formats the result can be opened from, and their file suffixes.
FORMATS = {"netcdf": ".nc", "gtiff": ".tif"}


def _connect(backend: Any, auth: str | None, auth_options: Mapping[str, Any] | None) -> Any:
    openeo = require("openeo", _WHAT)
    if isinstance(backend, openeo.Connection):
        con = backend
    elif isinstance(backend, str) and backend.startswith(("http://", "https://")):
        con = openeo.connect(backend)
    else:
        raise ParameterError(
            f"backend={backend!r}: give the back-end's URL (https://openeo.dataspace."
            "copernicus.eu) or an openeo.Connection.")
    if auth == "oidc":
        con.authenticate_oidc(**dict(auth_options or {}))
    elif auth is not None:
        raise ParameterError(f"auth={auth!r}: use 'oidc' (the client's OIDC flows) or None "
                             "(a connection that is already authenticated, or none needed).")
    return con


def submit(
    graph: Any,
    backend: Any,
    *,
    job: Literal["sync", "batch"] = "sync",
    out: str | Path | None = None,
    format: str = "netCDF",
    auth: str | None = "oidc",
    auth_options: Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any] | None = None,
    title: str | None = None,
    job_options: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = print,
) -> xr.Dataset:
    """Run ``graph`` on an openEO back-end, download the result and open it.

    Parameters
    ----------
    graph
        A process graph (:func:`scmap_graph`'s, a JSON file, a client ``DataCube``).
    backend
        The back-end's URL (e.g. ``https://openeo.dataspace.copernicus.eu``) or an
        ``openeo.Connection``.
    job
        ``"sync"``: one synchronous request (small areas); ``"batch"``: a batch job,
        started and waited for.
    out
        Where to keep the downloaded result file; it must not exist yet (nothing is
        overwritten). Default: a temporary file, removed once the result is read.
    format
        ``"netCDF"`` (default; keeps the band labels) or ``"GTiff"``.
    auth
        ``"oidc"``: the client's OpenID Connect flows (``auth_options`` are passed to
        ``Connection.authenticate_oidc``, e.g. ``provider_id``); ``None``: no
        authentication here.
    parameters
        Values of the graph's parameters, if it has any (a user-defined process, e.g.
        DLR's ``bounding_box``, ``temporal_extent``, ``nmad_sigma``); declared defaults
        for the others. They are substituted by value before the graph is sent.
    title, job_options
        Batch job title and back-end options (e.g. executor memory).
    progress
        Called with each job status line (default ``print``; ``None`` for silence).

    Returns
    -------
    xarray.Dataset
        The result in :func:`cup4soil.scmap.composite`'s layout (loaded in memory).
    """
    rest = require("openeo.rest", _WHAT)
    if job not in ("sync", "batch"):
        raise ParameterError(f"job={job!r}: use 'sync' or 'batch'.")
    suffix = FORMATS.get(str(format).lower())
    if suffix is None:
        raise ParameterError(f"format={format!r}: use 'netCDF' or 'GTiff'.")
    target = Path(out) if out is not None else None
    if target is not None and target.exists():
        raise ParameterError(f"{target} exists; cup4soil does not overwrite it. Choose "
                             "another path or remove it first.")
    doc = load_graph(graph)
    # Bound by value here, also inside callbacks, and checked: the client ignores values for
    # parameters the process does not declare, and keeps a callback's references.
    flat = bind_parameters(doc, parameter_values(doc, parameters))
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
    con = _connect(backend, auth, auth_options)
    tmp = Path(tempfile.mkdtemp(prefix="cup4soil-openeo-")) if target is None else None
    path = target if target is not None else (tmp or Path(".")) / f"result{suffix}"
    part = path.with_name(path.name + ".part")
    if part.exists():
        raise ParameterError(f"{part} exists; cup4soil does not overwrite it. Remove it or "
                             "choose another --out.")
    try:
        try:
            cube = con.datacube_from_flat_graph({"process_graph": flat})
            if job == "sync":
                cube.download(part, format=format)
            else:
                batch = cube.create_job(out_format=format, title=title,
                                        job_options=dict(job_options or {}) or None)
                batch.start_and_wait(print=progress or (lambda _msg: None))
                assets = batch.get_results().get_assets()
                if len(assets) != 1:
                    raise BackendError(
                        f"batch job {batch.job_id} returned {len(assets)} assets "
                        f"({', '.join(a.name for a in assets)}); cup4soil opens one raster.")
                assets[0].download(part)
        except rest.JobFailedException as exc:
            raise BackendError(f"{exc} Inspect its logs with connection.job(job_id).logs().") \
                from None
        except (rest.OpenEoClientException, OSError) as exc:
            raise BackendError(f"the openEO back-end failed: {exc}") from None
        part.replace(path)  # a complete download or nothing under the final name
        return open_result(path)
    finally:
        part.unlink(missing_ok=True)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
