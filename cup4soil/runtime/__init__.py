"""Runtime: cluster connection (:mod:`.cluster`), the worker environment (:mod:`.env`),
compute with progress (:mod:`.progress`).

Infrastructure every stage may use; imports no stage.
"""

from __future__ import annotations

from . import cluster, env, progress

__all__ = ["cluster", "env", "progress"]
