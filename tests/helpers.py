"""Shared test helpers: a compute-counting scheduler, a call counter for tasks, a free port.

``raise_if_dask_computes`` follows flox's tests: a scheduler that counts how many times a
graph is computed and fails past ``max_computes`` -- so "building the graph computes
nothing" is ``with raise_if_dask_computes(): ...`` and "one compute" is ``max_computes=1``.
:class:`CallCounter` counts calls of a function per argument key, thread-safely, for "each
upstream chunk runs once per pass".
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import dask

__all__ = ["CallCounter", "CountingScheduler", "free_port", "raise_if_dask_computes"]


class CountingScheduler:
    """A Dask scheduler (synchronous) that counts computes and refuses more than allowed."""

    def __init__(self, max_computes: int = 0) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many dask computations were scheduled: {self.total_computes} > "
                f"max_computes={self.max_computes}"
            )
        return dask.get(dsk, keys, **kwargs)


@contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[CountingScheduler]:
    """Fail if Dask computes more than ``max_computes`` times inside the block."""
    scheduler = CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler


class CallCounter:
    """Wraps ``func``; counts its calls per ``key(*args, **kwargs)`` (thread-safe)."""

    def __init__(self, func: Callable[..., Any],
                 key: Callable[..., Hashable] | None = None) -> None:
        self.func = func
        self.key = key or (lambda *a, **k: None)
        self.calls: Counter[Hashable] = Counter()
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls[self.key(*args, **kwargs)] += 1
        return self.func(*args, **kwargs)

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def most(self) -> int:
        """The largest number of calls for any one key (0 if never called)."""
        return max(self.calls.values(), default=0)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
