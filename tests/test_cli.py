"""The command line: demo end to end, search listing, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cup4soil import store
from cup4soil.cli import main


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "60", "--scenes-per-year", "5"]) == 0
    text = capsys.readouterr().out
    assert "items" in text and "tasks" in text and str(out / "demo.zarr") in text
    comp = store.open(str(out / "scmap.zarr"))
    assert {"SRC", "BSC", "BSF", "MASK", "VPC"} <= set(comp.data_vars)
    assert (comp.MASK.values == 1).any() and (comp.MASK.values == 3).any()
    for png in ("scmap-SRC-B11-B08-B04.png", "scmap-BSF.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ds = store.open(str(out / "demo.zarr"))
    assert set(ds.data_vars) == {"VPC", "n_scenes"}
    assert ds.VPC.dims == ("y", "x") and int(ds.VPC.max()) > 0
    assert (ds.VPC.values <= ds.n_scenes.values).all()
    assert ds.rio.crs is None or ds.rio.crs.to_epsg() == 32633
    assert "spatial_ref" in ds.coords
    # Running it again reuses the sample archive and replaces the product.
    assert main(["demo", "--out", str(out), "--size", "60", "--scenes-per-year", "5"]) == 0
    assert np.array_equal(store.open(str(out / "demo.zarr")).VPC.values, ds.VPC.values)


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
