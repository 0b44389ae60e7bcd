"""Runtime: cluster connection, the worker environment, compute with progress.

Infrastructure every stage may use; imports no stage.
"""

from __future__ import annotations

from . import cluster

__all__ = ["cluster"]
