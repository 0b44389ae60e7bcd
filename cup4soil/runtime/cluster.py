"""Dask clusters in one call: a local cluster, a Dask-Gateway, or a running scheduler.

>>> client = cup4soil.cluster.connect("local", workers=2)            # doctest: +SKIP
>>> client = cup4soil.cluster.connect("https://hub/services/dask-gateway",
...                                   workers=10, adaptive=(2, 40))   # doctest: +SKIP

The environment cup4soil's readers need (GDAL settings for cloud-optimised GeoTIFFs over
HTTP, the credentials variables of the client: AWS, Azure, Planetary Computer subscription
key) is captured once, on the client, and reaches every worker -- including those that join
later (adaptive scaling, restarts) -- through a worker plugin (:mod:`.env` says what goes
where). Before returning, the workers are checked for the packages the pipeline imports.
:func:`compute` (from :mod:`.progress`) computes lazy results under a progress bar.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ClusterError, ParameterError, redact
from .env import DEFAULT_WORKER_ENV, Environment, WorkerEnvironment, worker_environment
from .progress import compute

__all__ = [
    "DEFAULT_WORKER_ENV", "WorkerEnvironment", "close", "compute", "connect", "worker_environment",
]

log = logging.getLogger(__name__)

# What the pipeline imports on workers: checked before work is sent.
_REQUIRED = ("cup4soil", "numpy", "dask", "xarray", "rasterio", "odc.stac", "numba",
             "quantile_forest", "zarr")


def _check_workers(client: Any, required: Sequence[str]) -> dict[str, Any]:
    """Versions of the required modules on every worker; ClusterError if any is missing."""

    def probe(names: Sequence[str]) -> dict[str, str]:
        import importlib

        out = {}
        for n in names:
            try:
                mod = importlib.import_module(n)
                out[n] = str(getattr(mod, "__version__", "?"))
            except Exception as exc:
                out[n] = f"MISSING: {type(exc).__name__}: {exc}"
        return out

    found: dict[str, dict[str, str]] = client.run(probe, list(required))
    missing = {w: [n for n, v in r.items() if v.startswith("MISSING")] for w, r in found.items()}
    missing = {w: m for w, m in missing.items() if m}
    if missing:
        worker, mods = next(iter(missing.items()))
        raise ClusterError(
            f"{len(missing)} of {len(found)} workers cannot import {', '.join(mods)} (e.g. "
            f"{worker}); install cup4soil and its dependencies in the workers' environment "
            "(the same image or conda environment as the client).")
    from .._version import __version__

    theirs = {r.get("cup4soil", "?") for r in found.values()}
    if theirs - {__version__, "?"}:
        log.warning("workers run cup4soil %s, the client %s", sorted(theirs), __version__)
    return found


def _shutdown(cluster: Any) -> None:
    with contextlib.suppress(Exception):  # already closed, or interpreter shutdown
        cluster.close()
    gateway = getattr(cluster, "gateway", None)  # a Dask-Gateway cluster's own client
    if gateway is not None and hasattr(gateway, "_loop_runner"):
        # cluster.close() closed it; its __del__ would close it again once its loop has
        # stopped, printing "Exception ignored in Gateway.__del__" at interpreter exit.
        gateway.close = lambda: None


@functools.cache
def _gateway_client() -> type:
    """``dask_gateway.Gateway``, closed once: its ``__del__`` closes it again, which raises
    (in ``__del__``: an unraisable exception) once its event loop has stopped."""
    from dask_gateway import Gateway

    class _Gateway(Gateway):  # type: ignore[misc]
        _closed = False

        def close(self) -> None:
            if not self._closed:
                self._closed = True
                super().close()

    return _Gateway


def _gateway_cluster(address: str | None, *, workers: int | None,
                     worker_memory: float | None, adaptive: tuple[int, int] | None,
                     options: Mapping[str, Any] | None, auth: Any) -> Any:
    where = address or "the configured gateway (dask config gateway.address)"
    gateway = None
    try:
        gateway = _gateway_client()(address=address, auth=auth)
        offered = gateway.cluster_options()
    except Exception as exc:
        if gateway is not None:
            gateway.close()  # its __del__ would complain once the loop is gone
        text = redact(f"{type(exc).__name__}: {exc}")
        if re.search(r"\b(401|403)\b|Unauthorized|Forbidden|authenticat", text, re.I):
            raise ClusterError(f"the Dask-Gateway at {redact(where)} refused the "
                               f"credentials ({text}); check the auth= setting "
                               "(gateway.auth in dask config) and the password or token."
                               ) from None
        raise ClusterError(f"cannot reach the Dask-Gateway at {redact(where)} ({text}); "
                           "check the address and that the gateway is running.") from None
    wanted = dict(options or {})
    if worker_memory is not None:
        wanted.setdefault("worker_memory", worker_memory)
    unknown = [k for k in wanted if k not in offered]
    if unknown:
        gateway.close()
        raise ParameterError(f"cluster options {', '.join(unknown)} are not offered by this "
                             f"gateway; it offers {', '.join(offered) or 'none'}.")
    for k, v in wanted.items():
        offered[k] = v
    try:
        # the cluster object keeps its own connection to the gateway
        cluster = gateway.new_cluster(cluster_options=offered, shutdown_on_close=True)
    finally:
        gateway.close()
    if adaptive:
        cluster.adapt(minimum=adaptive[0], maximum=adaptive[1])
    elif workers:
        cluster.scale(workers)
    return cluster


def connect(target: str = "local", *, workers: int | None = None,
            worker_memory: str | float | None = None,
            adaptive: tuple[int, int] | None = None,
            options: Mapping[str, Any] | None = None, auth: Any = None,
            environment: Mapping[str, str] | None = None,
            threads_per_worker: int | None = None, wait: bool = True,
            timeout: float = 120.0, forward_credentials: bool | None = None) -> Any:
    """A ``distributed.Client`` for cup4soil work, with configured workers.

    Parameters
    ----------
    target : str
        ``"local"`` (a ``LocalCluster`` sized to this machine), ``"gateway"`` (the
        Dask-Gateway of the dask config), a Dask-Gateway URL (``http(s)://...``), or a
        scheduler address (``tcp://host:8786``).
    workers : int, optional
        Number of workers (local: default one per 2 cores; gateway: scaled to this).
    worker_memory : str or float, optional
        Memory per worker: ``"4GiB"`` locally; GiB as a gateway cluster option.
    adaptive : (int, int), optional
        Adaptive scaling between these numbers of workers.
    options : dict, optional
        Dask-Gateway cluster options (``gateway.cluster_options()`` names).
    auth : optional
        Dask-Gateway authentication (``"basic"``, ``"kerberos"``, ``"jupyterhub"`` or an
        auth object); default from the dask config.
    environment : dict, optional
        Extra environment variables for the workers (see :func:`worker_environment`).
    threads_per_worker : int, optional
        Threads per local worker.
    wait : bool
        Wait until ``workers`` (or the adaptive minimum) are up.
    timeout : float
        Seconds to wait for workers.
    forward_credentials : bool, optional
        Copy this process's credential variables (``AWS_*``, ``AZURE_*``, ``GS_*``,
        ``GOOGLE_APPLICATION_CREDENTIALS``, ``PC_SDK_*``) into the workers' environment.
        Default: yes for clusters cup4soil creates (``"local"``, Dask-Gateway), no for a
        running scheduler given by address -- its workers may serve other users, so their
        environment gets the GDAL settings and ``environment=`` only, unless you ask.

    Returns
    -------
    distributed.Client
        Its cluster (if cup4soil created one) shuts down when the client is closed with
        :func:`close` or at interpreter exit.
    """
    from distributed import Client, LocalCluster

    _check_arguments(target, workers=workers, worker_memory=worker_memory, adaptive=adaptive,
                     threads_per_worker=threads_per_worker, timeout=timeout)
    cluster: Any = None
    client: Any = None  # a distributed.Client
    if target == "local":
        n_cores = os.cpu_count() or 1
        n = workers or (adaptive[0] if adaptive else max(1, n_cores // 2))
        threads = threads_per_worker or max(1, n_cores // max(n, 1))
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=n, threads_per_worker=threads, memory_limit=worker_memory or "auto",
            processes=True, dashboard_address=":0")
        if adaptive:
            cluster.adapt(minimum=adaptive[0], maximum=adaptive[1])
        client = Client(cluster)  # type: ignore[no-untyped-call]
    elif target == "gateway" or target.startswith(("http://", "https://", "gateway://")):
        memory = None
        if worker_memory is not None:
            memory = float(re.sub(r"\s*GiB$", "", str(worker_memory)))
        cluster = _gateway_cluster(None if target == "gateway" else target, workers=workers,
                                   worker_memory=memory, adaptive=adaptive, options=options,
                                   auth=auth)
        client = cluster.get_client(set_as_default=True)
    elif re.match(r"^(tcp|tls|ucx|inproc)://|^[\w.-]+:\d+$", target):
        try:
            client = Client(target, timeout=f"{int(timeout)}s")  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {target} "
                               f"({type(exc).__name__}: {exc}).") from None
    else:
        raise ParameterError(f"target={target!r}: use 'local', 'gateway', a Dask-Gateway URL "
                             "(http(s)://...) or a scheduler address (tcp://host:port).")
    if cluster is not None:
        client._cup4soil_cluster = cluster  # close() shuts it down
        atexit.register(_shutdown, cluster)
    if forward_credentials is None:
        forward_credentials = cluster is not None  # workers of a cluster cup4soil created
    try:
        client.register_plugin(WorkerEnvironment(Environment.capture(
            environment, credentials=forward_credentials)))
        want = adaptive[0] if adaptive else workers
        if wait and want:
            client.wait_for_workers(want, timeout=timeout)
        _check_workers(client, _REQUIRED)
    except BaseException:
        close(client)
        raise
    return client


def _whole(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ParameterError(f"{name}={value!r} must be a whole number >= {low}.")
    return int(value)


def _check_arguments(target: object, *, workers: object, worker_memory: object,
                     adaptive: object, threads_per_worker: object, timeout: object) -> None:
    """Refuse arguments of :func:`connect` that cannot make a cluster, with their range."""
    if not isinstance(target, str) or not target.strip():
        raise ParameterError(f"target={target!r}: use 'local', 'gateway', a Dask-Gateway URL "
                             "(http(s)://...) or a scheduler address (tcp://host:port).")
    if workers is not None:
        _whole("workers", workers, 1)
    if threads_per_worker is not None:
        _whole("threads_per_worker", threads_per_worker, 1)
    if adaptive is not None:
        if (not isinstance(adaptive, tuple | list) or len(adaptive) != 2):
            raise ParameterError(f"adaptive={adaptive!r} must be (minimum, maximum) workers.")
        low = _whole("adaptive minimum", adaptive[0], 0)
        high = _whole("adaptive maximum", adaptive[1], 1)
        if low > high:
            raise ParameterError(f"adaptive={tuple(adaptive)}: the minimum is above the "
                                 "maximum; give (minimum, maximum) with minimum <= maximum.")
    if worker_memory is not None:
        from dask.utils import parse_bytes

        try:
            size = (float(worker_memory) if isinstance(worker_memory, int | float)
                    and not isinstance(worker_memory, bool)
                    else float(parse_bytes(str(worker_memory))))
        except (TypeError, ValueError):
            size = math.nan
        if not math.isfinite(size) or size <= 0:
            raise ParameterError(f"worker_memory={worker_memory!r} must be a positive size, "
                                 "e.g. '4GiB' (or a number: bytes locally, GiB on a "
                                 "Dask-Gateway).")
    try:
        seconds = float(timeout)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(timeout, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise ParameterError(f"timeout={timeout!r} must be a positive number of seconds.")


def close(client: Any) -> None:
    """Close a client from :func:`connect` and shut down the cluster it created."""
    cluster = getattr(client, "_cup4soil_cluster", None)
    try:
        client.close()
    finally:
        if cluster is not None:
            _shutdown(cluster)
