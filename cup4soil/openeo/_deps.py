"""The optional openEO packages, imported only when a function needs them.

``import cup4soil`` (and ``import cup4soil.openeo``) never imports the openEO client or the
local engine: the core install does not need them. A call that does needs the ``openeo``
extra and says so when it is missing.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import OptionalDependencyError

__all__ = ["EXTRA", "require"]

#: The extra of ``pyproject.toml`` that installs the client and the local engine.
EXTRA = "openeo"


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (``"openeo"``, ``"openeo_processes_dask"`` ...) for ``what``.

    Raises
    ------
    OptionalDependencyError
        If it (or one of its own dependencies) is not installed; the message names
        ``pip install "cup4soil[openeo]"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module
        raise OptionalDependencyError(EXTRA, what, missing) from None
