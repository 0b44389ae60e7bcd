"""Compute lazy results with a progress bar, on the current distributed client or locally.

One implementation for :func:`cup4soil.cluster.compute` (composites, predictions) and
:func:`cup4soil.store.write` (region tasks). On a terminal the local bar is Dask's
``ProgressBar``; written to a file or a pipe (a log, a batch job's output) it would redraw
itself ten times a second into one ever-growing line, so there a line is printed at each
quarter of the tasks instead.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from dask.callbacks import Callback

__all__ = ["compute"]


class LineProgress(Callback):
    """Dask callback printing ``25% Completed | 3.1 s`` lines at each quarter of the tasks
    (for output that is not a terminal)."""

    def __init__(self, out: TextIO | None = None, *, minimum: float = 0.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._out = out
        self._minimum = minimum
        self._done = self._total = self._shown = 0
        self._t0 = 0.0

    def _start_state(self, dsk: Any, state: Any) -> None:
        self._t0 = time.perf_counter()
        self._done, self._shown = 0, 0
        self._total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        self._done += 1
        self._show()

    def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
        if not errored:
            self._done = max(self._done, self._total)
            self._show()

    def _show(self) -> None:
        quarter = 4 * self._done // max(self._total, 1)
        elapsed = time.perf_counter() - self._t0
        if quarter <= self._shown or elapsed < self._minimum:
            return
        self._shown = quarter
        out = self._out or sys.stdout
        print(f"{25 * quarter}% Completed | {elapsed:.1f} s", file=out, flush=True)


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
    if not _is_terminal(sys.stdout):
        with LineProgress(minimum=minimum):
            return tuple(dask_compute(*collections))  # type: ignore[no-untyped-call]
    from dask.diagnostics.progress import ProgressBar

    with ProgressBar(minimum=minimum):  # type: ignore[no-untyped-call]
        return tuple(dask_compute(*collections))  # type: ignore[no-untyped-call]


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
