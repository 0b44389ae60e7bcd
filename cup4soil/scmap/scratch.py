"""What a block task keeps of its time series between the passes: in memory, or spilled.

A block decodes each scene once. What the later steps need of it is kept here:

- :class:`SeriesStore` -- per stored scene (one with a valid pixel in the block), B02 of
  the valid observations (0 elsewhere) and the bare flags packed 8 pixels to a byte: the
  NMAD test reads it strip by strip over all scenes;
- :class:`RecordStore` -- per stored scene, the other nine bands of its valid observations
  only, in raster order: the outlier step reads back the few scenes that hold outliers.

Each lives in memory while it fits its budget and is otherwise written compactly to an
anonymous temporary file in Dask's ``temporary-directory`` (the system's by default): the
file has no name from the moment it is made and disappears when the task ends or dies, so
nothing is left behind, and the task's memory stays flat however long the series is.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import IO

import numpy as np

__all__ = ["RecordStore", "SeriesStore", "scratch_file"]


def scratch_file() -> IO[bytes]:
    """An anonymous temporary file for spilled series (gone when closed)."""
    import dask

    directory = dask.config.get("temporary-directory", None)
    return tempfile.TemporaryFile(dir=directory)


def _bytes(arr: np.ndarray) -> memoryview:
    """The array's bytes without a copy (when it is contiguous)."""
    return np.ascontiguousarray(arr).data.cast("B")


def _read_into(f: IO[bytes], out: np.ndarray, offset: int) -> None:
    view = out.reshape(-1).view(np.uint8).data
    got = os.preadv(f.fileno(), [view], offset)
    if got != view.nbytes:
        raise OSError(f"short read from the scratch file ({got} of {view.nbytes} bytes)")


class SeriesStore:
    """B02 (0 = not valid) and packed bare flags of a block's scenes with a valid pixel.

    Parameters
    ----------
    n_time
        Scenes the block may store (the series' length).
    shape
        ``(h, w)`` of the block.
    in_memory
        Keep it in memory (arrays for ``n_time`` scenes, whose pages are only taken when
        written) or spill it to a scratch file.
    """

    def __init__(self, n_time: int, shape: tuple[int, int], *, in_memory: bool) -> None:
        self.h, self.w = shape
        self.wb = (self.w + 7) // 8
        self.times: list[int] = []
        self.in_memory = in_memory
        self._file: IO[bytes] | None = None
        if in_memory:
            self._b02 = np.empty((n_time, self.h, self.w), np.uint16)
            self._bare = np.empty((n_time, self.h, self.wb), np.uint8)
        else:
            self._file = scratch_file()
        self._plane = self.h * self.w * 2 + self.h * self.wb  # bytes per scene on file

    def __len__(self) -> int:
        return len(self.times)

    def append(self, t: int, b02: np.ndarray, bare: np.ndarray) -> int:
        """Store scene ``t``; returns its slot."""
        slot = len(self.times)
        self.times.append(t)
        if self._file is None:
            self._b02[slot] = b02
            self._bare[slot] = bare
        else:
            self._file.write(_bytes(b02))
            self._file.write(_bytes(bare))
        return slot

    def strips(self, budget: int) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """``(r0, r1, b02, bare)`` over all stored scenes, ``r1 - r0`` rows at a time: the
        whole block in memory, strips of about ``budget`` bytes from a file."""
        s = len(self.times)
        if self._file is None:
            yield 0, self.h, self._b02[:s], self._bare[:s]
            return
        self._file.flush()
        per_row = max(1, s * (self.w * 2 + self.wb))
        rows = max(1, min(self.h, budget // per_row))
        for r0 in range(0, self.h, rows):
            r1 = min(self.h, r0 + rows)
            b02 = np.empty((s, r1 - r0, self.w), np.uint16)
            bare = np.empty((s, r1 - r0, self.wb), np.uint8)
            for i in range(s):
                base = i * self._plane
                _read_into(self._file, b02[i], base + r0 * self.w * 2)
                _read_into(self._file, bare[i], base + self.h * self.w * 2 + r0 * self.wb)
            yield r0, r1, b02, bare

    def scene(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """B02 and bare flags of one stored scene."""
        if self._file is None:
            return self._b02[slot], self._bare[slot]
        self._file.flush()
        b02 = np.empty((self.h, self.w), np.uint16)
        bare = np.empty((self.h, self.wb), np.uint8)
        _read_into(self._file, b02, slot * self._plane)
        _read_into(self._file, bare, slot * self._plane + self.h * self.w * 2)
        return b02, bare

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class RecordStore:
    """Per stored scene, the other bands of its valid observations ``(n_valid, bands)``
    uint16, in memory up to ``budget`` bytes and on a scratch file beyond."""

    def __init__(self, n_bands: int, budget: int) -> None:
        self.n_bands = n_bands
        self.budget = budget
        self.held = 0
        self._memory: dict[int, np.ndarray] = {}
        self._spilled: dict[int, tuple[int, int]] = {}  # slot -> (offset, rows)
        self._file: IO[bytes] | None = None
        self._end = 0

    def append(self, slot: int, records: np.ndarray) -> None:
        if self.held + records.nbytes <= self.budget:
            self._memory[slot] = records.copy()
            self.held += records.nbytes
            return
        if self._file is None:
            self._file = scratch_file()
        data = _bytes(records)
        self._file.write(data)
        self._spilled[slot] = (self._end, records.shape[0])
        self._end += data.nbytes

    @property
    def spilled(self) -> int:
        """Scenes written to the scratch file."""
        return len(self._spilled)

    def get(self, slot: int) -> np.ndarray:
        if slot in self._memory:
            return self._memory[slot]
        assert self._file is not None
        self._file.flush()
        offset, rows = self._spilled[slot]
        out = np.empty((rows, self.n_bands), np.uint16)
        if rows:
            _read_into(self._file, out, offset)
        return out

    def close(self) -> None:
        self._memory.clear()
        if self._file is not None:
            self._file.close()
