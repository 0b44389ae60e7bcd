"""Every import of a dependency's private module, in one place.

Each name here is not part of its library's public API. The tested version ranges are
pinned in ``pyproject.toml`` (``odc-loader>=0.6,<0.7``); ``tests/test_cube.py`` compares the
read plan with ``odc.stac.load`` pixel for pixel, so a change in these helpers shows up in CI.
"""

from __future__ import annotations

# odc-loader's default nodata fuser (first valid value wins) and its fill-value rule: the
# read plan fuses exactly as odc-stac's chunk reader does.
from odc.loader._fuser import fuser_for_nodata
from odc.loader._reader import resolve_dst_fill_value

__all__ = ["fuser_for_nodata", "resolve_dst_fill_value"]


def odc_cloud_defaults() -> dict[str, str]:
    """odc-loader's GDAL options when nothing is configured (``GDAL_CLOUD_DEFAULTS``): the
    cube's reader replaces their retry settings with its own (``cube/readers.py``)."""
    from odc.loader._rio import GDAL_CLOUD_DEFAULTS

    return dict(GDAL_CLOUD_DEFAULTS)


__all__ += ["odc_cloud_defaults"]


def stackstac_gdal_env(always: dict[str, str]) -> object:
    """stackstac's default GDAL environment (``DEFAULT_GDAL_ENV``, a ``LayeredEnv`` whose
    layers are private attributes) with ``always`` added to its base layer."""
    from stackstac.rio_env import LayeredEnv
    from stackstac.rio_reader import DEFAULT_GDAL_ENV as D

    return LayeredEnv(always={**D._always, **always}, open=dict(D._open),
                      open_vrt=dict(D._open_vrt), read=dict(D._read))


__all__ += ["stackstac_gdal_env"]


def svr_gamma(svr: object) -> float:
    """The RBF kernel's coefficient a fitted ``sklearn.svm.SVR`` used (``_gamma``: its
    ``gamma`` parameter may be ``"scale"``, resolved from the training data at fit time)."""
    return float(svr._gamma)  # type: ignore[attr-defined]


__all__ += ["svr_gamma"]
