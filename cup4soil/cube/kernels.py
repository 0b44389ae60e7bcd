"""Pure NumPy kernels of the cube stage (harmonisation): no xarray, no dask, no I/O."""

from __future__ import annotations

import numpy as np

__all__ = ["shift_dn"]


def shift_dn(dn: np.ndarray, offset: int) -> np.ndarray:
    """Apply a DN offset, keeping 0 as nodata and clipping valid values to [1, 65535].

    Parameters
    ----------
    dn
        Unsigned integer digital numbers, 0 = nodata.
    offset
        DN shift (``-1000`` brings processing baseline >= 04.00 onto the old scale).
    """
    if offset == 0:
        return dn
    shifted = np.clip(dn.astype(np.int32) + int(offset), 1, np.iinfo(np.uint16).max)
    return np.where(dn == 0, 0, shifted).astype(dn.dtype)
