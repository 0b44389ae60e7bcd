"""Compute lazy results with a progress bar, on the current distributed client or locally.

One implementation for :func:`cup4soil.cluster.compute` (composites, predictions) and
:func:`cup4soil.store.write` (region tasks).
"""

from __future__ import annotations

from typing import Any

__all__ = ["compute"]


def _current_client() -> Any:
    """The default ``distributed.Client`` of this process, or None."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):  # no distributed, or no client
        return None


def compute(*collections: Any, progress: bool = True, minimum: float = 0.0) -> tuple[Any, ...]:
    """Compute lazy results (composites, predictions, cubes) with a progress bar.

    On the current distributed client (e.g. from :func:`cup4soil.cluster.connect`) the
    collections are submitted together and distributed's progress bar follows them (a
    widget in notebooks, text in terminals); otherwise dask's local scheduler runs them
    under its ``ProgressBar``. Either way they are computed as one graph, so tasks they
    share run once.

    Parameters
    ----------
    *collections
        xarray or dask objects, e.g. ``scmap.composite(...)`` or ``model.predict(...)``.
    progress : bool
        Show the bar (False: compute quietly).
    minimum : float
        Local scheduler only: show the bar only for computations longer than this, seconds.

    Returns
    -------
    tuple
        The computed objects, in order.
    """
    from dask.base import compute as dask_compute

    if not collections:
        return ()
    client = _current_client()
    if client is not None:
        futures = client.compute(list(collections))
        if progress:
            from distributed import progress as show

            show(futures)  # type: ignore[no-untyped-call]
        return tuple(client.gather(futures))
    if not progress:
        return tuple(dask_compute(*collections))  # type: ignore[no-untyped-call]
    from dask.diagnostics.progress import ProgressBar

    with ProgressBar(minimum=minimum):  # type: ignore[no-untyped-call]
        return tuple(dask_compute(*collections))  # type: ignore[no-untyped-call]
