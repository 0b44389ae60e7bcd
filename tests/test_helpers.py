"""The shared helpers themselves can fail (a helper that cannot fail proves nothing)."""

from __future__ import annotations

import socket

import dask
import dask.array as da
import pytest

from helpers import CallCounter, free_port, raise_if_dask_computes


def test_raise_if_dask_computes_counts() -> None:
    arr = da.ones(10, chunks=5)
    with raise_if_dask_computes():
        total = arr.sum()  # building only
    with raise_if_dask_computes(max_computes=1) as sched:
        assert int(total.compute()) == 10
    assert sched.total_computes == 1
    with pytest.raises(RuntimeError, match="Too many dask computations"), \
            raise_if_dask_computes(max_computes=1):
        total.compute()
        total.compute()


def test_call_counter_counts_per_key() -> None:
    counter = CallCounter(lambda x: x * 2, key=lambda x: int(x[0]) % 2)
    arr = da.from_array(list(range(6)), chunks=1).map_blocks(counter, dtype=int)
    with dask.config.set(scheduler="threads"):
        assert list(arr.compute()) == [0, 2, 4, 6, 8, 10]
    assert counter.total == 6 and counter.calls == {0: 3, 1: 3} and counter.most == 3


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
