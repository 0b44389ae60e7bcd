"""Small things a new user trips over (issue 18, part 4): what the demo prints and says it
does, what ``cup4soil info`` shows, and a Zarr v3 write without warnings."""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from pathlib import Path

import numpy as np
import odc.geo.xr  # noqa: F401  (the .odc accessor)
import xarray as xr
from zarr.errors import UnstableSpecificationWarning, ZarrFutureWarning

from cup4soil import store
from cup4soil.cli.demo import DemoReport, Metrics
from cup4soil.cli.main import build_parser, main


def _report(**changes) -> DemoReport:
    m = Metrics(n=10, mec=0.5, rmse=1.0, picp90=0.9)
    base = DemoReport(
        sample_root=Path("/tmp/s"), n_items=5, n_catalog_items=6,
        cube_sizes={"y": 2, "x": 2, "time": 5}, crs="EPSG:32633", bands=("B02",),
        n_tasks=3, vpc_min=1, vpc_mean=17, vpc_max=30, n_dates=40, vpc_url="a",
        scmap_url="b", threshold=0.137, bare_fraction=0.5, vegetated_fraction=0.2,
        median_bsf=0.3, covariates_url="d", n_features=10, folds="10", cv=m, soc_url="c",
        soc_median=100.0,
        piw90_median=40.0, truth=m, quicklooks=())
    return dataclasses.replace(base, **changes)


def test_demo_reports_the_mean_valid_pixel_count_as_a_mean():
    line = next(x for x in _report(vpc_mean=17).lines() if x.strip().startswith("VPC"))
    assert "mean 17" in line and "median" not in line


def _demo_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["demo"]


def test_demo_help_describes_the_whole_chain():
    text = " ".join(_demo_parser().format_help().split())
    for step in ("search", "cube", "valid pixel count", "composites", "covariate",
                 "soil samples",
                 "quantile regression forest", "SOC", "90 % interval", "truth", "Zarr",
                 "quicklook"):
        assert step in text, step


def _product() -> xr.Dataset:
    y = 5_800_000 - 20.0 * np.arange(4) - 10
    x = 400_000 + 20.0 * np.arange(4) + 10
    src = xr.DataArray(np.full((2, 4, 4), 1234.0, np.float32), dims=("band", "y", "x"),
                       coords={"band": ["B02", "B04"], "y": y, "x": x},
                       attrs={"units": "1", "long_name": "soil reflectance composite"})
    ds = xr.Dataset({"SRC": src}).odc.assign_crs("EPSG:32633")
    ds.attrs.update(title="test", threshold=0.137, by="year",
                    cup4soil_model="abc123", property="soc", method="qrf",
                    cv='{"MEC": 0.5}')
    return ds


def test_zarr_v3_product_with_band_labels_writes_and_reads_without_warnings(tmp_path):
    """Band labels are text: Zarr v3's fixed-length strings have no stable specification
    (zarr's UnstableSpecificationWarning on every write); products store them as
    variable-length strings and read them back as they were."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.write(_product(), str(tmp_path / "p.zarr"), zarr_format=3)
        back = store.open(str(tmp_path / "p.zarr")).load()
    ours = [w for w in caught if issubclass(w.category, ZarrFutureWarning)
            or w.category.__module__.startswith(("zarr", "cup4soil"))]
    assert not ours, [str(w.message)[:120] for w in ours]
    assert list(back.band.values) == ["B02", "B04"]


def test_the_warning_checked_above_is_what_fixed_length_text_gives(tmp_path):
    """The check can fail: Zarr v3 with fixed-length labels warns."""
    ds = xr.Dataset(coords={"band": np.array(["B02", "B04"])})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds.to_zarr(tmp_path / "plain.zarr", zarr_format=3, consolidated=False)
    assert any(issubclass(w.category, UnstableSpecificationWarning) for w in caught)


def test_info_text_shows_threshold_and_model_provenance(tmp_path, capsys):
    url = str(tmp_path / "p.zarr")
    store.write(_product(), url, zarr_format=2)
    assert main(["info", url]) == 0
    out = capsys.readouterr().out
    for key, value in (("threshold", "0.137"), ("by", "year"), ("cup4soil_model", "abc123"),
                       ("property", "soc"), ("method", "qrf"), ("cv", '"MEC": 0.5')):
        line = next((x for x in out.splitlines() if x.strip().startswith(key)), "")
        assert value in line, (key, out)
