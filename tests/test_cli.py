"""The command line: demo end to end, search listing, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cup4soil import store
from cup4soil.cli import DemoReport, main, run_demo
from cup4soil.cli._common import storage_options


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "60", "--scenes-per-year", "5"]) == 0
    text = capsys.readouterr().out
    assert "items" in text and "tasks" in text and str(out / "demo.zarr") in text
    comp = store.open(str(out / "scmap.zarr"))
    assert {"SRC", "BSC", "BSF", "MASK", "VPC"} <= set(comp.data_vars)
    assert (comp.MASK.values == 1).any() and (comp.MASK.values == 3).any()
    assert "SOC model" in text and "held-out cropland pixels" in text
    soc = store.open(str(out / "soc.zarr"))
    assert {"soc", "soc_q05", "soc_q95", "soc_piw90"} <= set(soc.data_vars)
    assert soc.soc.attrs["units"] == "dg/kg" and soc.odc.geobox == comp.odc.geobox
    assert (out / "soc-model" / "model-card.json").exists()
    for png in ("scmap-SRC-B11-B08-B04.png", "scmap-BSF.png", "soc-soc.png",
                "soc-soc-piw90.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # each quicklook's stretch is in its product's attributes too (issue 14 §8)
    assert "soc-soc.png" in json.loads(soc.attrs["quicklooks"])
    assert json.loads(comp.BSF.attrs["quicklook_stretch"])["vmax"] == 1
    ds = store.open(str(out / "demo.zarr"))
    assert set(ds.data_vars) == {"VPC", "n_scenes"}
    assert ds.VPC.dims == ("y", "x") and int(ds.VPC.max()) > 0
    assert (ds.VPC.values <= ds.n_scenes.values).all()
    assert ds.rio.crs is not None and ds.rio.crs.to_epsg() == 32633
    assert "spatial_ref" in ds.coords
    # Running it again (as a library function) reuses the sample archive and replaces the
    # products; the command printed this report, line for line up to the timings.
    report = run_demo(out, size=60, scenes_per_year=5)
    assert isinstance(report, DemoReport)
    assert np.array_equal(store.open(str(out / "demo.zarr")).VPC.values, ds.VPC.values)
    assert report.vpc_url == str(out / "demo.zarr") and report.crs == "EPSG:32633"
    assert 0 < report.n_items < report.n_catalog_items
    assert report.vpc_min <= report.vpc_mean <= report.vpc_max == int(ds.VPC.max())
    assert report.vpc_max <= report.n_dates == report.cube_sizes["time"]
    assert report.cv.n <= 150 and report.truth.n > 0 and report.truth.picp90 > 0.5
    assert [label for label, _ in report.steps] == [
        "sample catalog", "search", "cube + mask graph", "compute + write Zarr",
        "SCMaP composite + write", "covariates (set 3) + write", "SOC model + map",
        "soil maps + SOC stock + AWC", "covariate sets + validation"]
    assert set(report.soil_truth) == {"soc", "nitrogen", "phh2o", "bdod", "clay", "sand", "silt"}
    assert report.validation_report.is_file() and (out / "covariate-sets.png").is_file()
    assert "validation-soc/report.md" in report.validation_report.read_text()
    for png in ("scatter.png", "residuals.png", "coverage.png"):
        assert (out / "validation-soc" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "soilmaps-soc_0-30cm_Q0.5.png").is_file()
    assert (out / "soilmaps-socstock_0-30cm-width90.png").is_file()
    maps = store.open(report.soilmaps_url)
    assert {"soc_0-30cm_Q0.05", "socstock_0-30cm_Q0.5", "awc_0-30cm_Q0.95"} <= set(maps.data_vars)
    cov = store.open(report.covariates_url)
    assert {"elevation", "worldcover", "VV_mean", "MOSAIC_B04"} <= set(cov.data_vars)
    assert report.n_features == len(cov.data_vars) and "covariates of set 3" in text
    printed = text.splitlines()
    n = len(report.lines()) - len(report.steps) - 1  # the timings differ between runs
    assert printed[:n] == report.lines()[:n]


def test_composite_command(sample, shared_data, tmp_path, capsys, monkeypatch):
    threshold = shared_data / "scmap/th_S2_s2cr_buffered_cog.tif"
    monkeypatch.setenv("CUP4SOIL_DLR_THRESHOLD", str(threshold))
    w, s, e, n = sample.bbox
    out = tmp_path / "c.zarr"
    args = ["composite", "--aoi", f"{w},{s},{e},{n}", "--time", "2019/2020",
            "--catalog", str(sample.catalog), "--out", str(out), "--by", "year"]
    assert main(args) == 0
    ds = store.open(str(out))
    assert list(ds.year.values) == [2019, 2020] and ds.BSC.dims == ("year", "y", "x")
    assert main(args) == 2  # the store exists: refused without --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--threshold", "0.2"]) == 0


def test_train_and_predict_commands(shared_data, tmp_path, capsys):
    import pandas as pd

    grid = pd.read_csv(shared_data / "soil/meuse/meuse.grid.csv")
    cov = grid.set_index(["y", "x"])[["dist", "ffreq", "soil"]].to_xarray()
    cov = cov.sortby("y", ascending=False).rio.write_crs("EPSG:28992")
    store.write(cov, str(tmp_path / "cov.zarr"))
    samples = str(shared_data / "soil/meuse/meuse.csv")
    args = ["train", samples, "--target", "om", "--unit", "%", "--covariates",
            str(tmp_path / "cov.zarr"), "--crs", "EPSG:28992", "--folds", "400 m",
            "--missing", "drop", "--out", str(tmp_path / "model")]
    with pytest.warns(UserWarning, match="samples dropped"):  # --missing drop says so
        assert main(args) == 0
    text = capsys.readouterr().out
    assert "MEC" in text and "PICP90" in text and "spatial blocks of 400 m" in text
    assert main(["predict", str(tmp_path / "model"), "--covariates", str(tmp_path / "cov.zarr"),
                 "--out", str(tmp_path / "om.zarr")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "model"), "--covariates", str(tmp_path / "cov.zarr"),
                 "--out", str(tmp_path / "om.zarr"), "--resume"]) == 0
    assert "(0 of 1 regions computed)" in capsys.readouterr().out
    om = store.open(str(tmp_path / "om.zarr"))
    assert set(om.data_vars) == {"om", "om_q05", "om_q95"}
    assert int(om.om.count()) == len(grid) and om.rio.crs.to_epsg() == 28992
    # a missing target column is one line naming the columns
    assert main(["train", samples, "--target", "OM", "--features", "dist",
                 "--out", str(tmp_path / "m2")]) == 2
    err = capsys.readouterr().err
    assert "target column 'OM' is not in the samples" in err and len(err.splitlines()) == 1


def test_search_lists_items(sample, capsys):
    w, s, e, n = sample.bbox
    code = main(["search", "--aoi", f"{w},{s},{e},{n}", "--time", "2020",
                 "--catalog", str(sample.catalog)])
    text = capsys.readouterr().out.splitlines()
    assert code == 0
    assert text[0].split()[:2] == ["id", "datetime"]
    assert text[-1].endswith("items")
    assert all("2020-" in line for line in text[1:-1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--aoi", "oderbruch", "--time", "2022/2018", "--catalog", "x"], "reversed"),
        (["search", "--aoi", "nowhere", "--time", "2020"], "neither a built-in name"),
        (["search", "--aoi", "oderbruch", "--time", "2020", "--catalog", "nasa"],
         "unknown catalog"),
    ],
)
def test_errors_are_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cup4soil: error:") and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_console_script_runs():
    done = subprocess.run([sys.executable, "-m", "cup4soil", "--help"], capture_output=True,
                          text=True, check=True)
    assert "demo" in done.stdout and "search" in done.stdout


def test_verbose_shows_the_traceback():
    with pytest.raises(Exception, match="unknown catalog"):
        main(["--verbose", "search", "--aoi", "oderbruch", "--time", "2020", "--catalog", "x"])


def test_storage_options_resume_and_info(s3_bucket, capsys, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _store_writer import product

    assert storage_options(["endpoint_url=http://x", "client_kwargs.region_name=eu",
                             "anon=false", "n=3"]) == {
        "endpoint_url": "http://x", "client_kwargs": {"region_name": "eu"}, "anon": False,
        "n": 3}
    bucket, options = s3_bucket
    url = f"{bucket}/p.zarr"
    store.write(product(), url, storage_options=options)
    opts = [f"--storage-option=key={options['key']}",
            f"--storage-option=secret={options['secret']}",
            f"--storage-option=endpoint_url={options['endpoint_url']}",
            "--storage-option=client_kwargs.region_name=us-east-1"]
    assert main(["info", url, *opts]) == 0
    text = capsys.readouterr().out
    assert "complete (16 of 16 regions)" in text and "EPSG:32633" in text
    assert "soc" in text and "dg/kg" in text and options["secret"] not in text
    assert main(["info", f"{bucket}/absent.zarr", *opts]) == 2
    assert "no product" in capsys.readouterr().err
