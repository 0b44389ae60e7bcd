"""Quicklooks people can read (issue 14 §8): title, colour bar or legend with units, nodata
colour, scale bar, north arrow, CRS caption; the stretch in the PNG's text chunks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from PIL import Image

from cup4soil import quicklook
from cup4soil.products.figures import NODATA_COLOUR, nice_length, scale_bar_metres

NY, NX = 30, 50


def _grid(crs: str = "EPSG:32633") -> dict[str, np.ndarray]:
    if crs == "EPSG:4326":
        return {"x": 13.0 + 0.001 * np.arange(NX), "y": 52.5 - 0.001 * np.arange(NY)}
    return {"x": 400010 + 20.0 * np.arange(NX), "y": 5800000 - 10 - 20.0 * np.arange(NY)}


def _product(crs: str = "EPSG:32633") -> xr.Dataset:
    rng = np.random.default_rng(0)
    src = rng.uniform(500, 4000, (3, NY, NX))
    src[:, :4, :4] = np.nan
    soc = rng.uniform(100, 300, (NY, NX))
    soc[0, :] = np.nan
    ds = xr.Dataset(
        {"SRC": (("band", "y", "x"), src, {"units": "reflectance x 10000"}),
         "BSF": (("y", "x"), rng.uniform(0, 1, (NY, NX)), {"units": "1"}),
         "MASK": (("y", "x"), rng.integers(0, 4, (NY, NX)).astype("uint8"),
                  {"flag_values": [1, 2, 3], "nodata": 0,
                   "flag_meanings": "bare_soil permanently_vegetated other_surface"}),
         "soc_0-30cm_Q0.5": (("y", "x"), soc, {"units": "dg/kg",
                                               "long_name": "Soil organic carbon, median"}),
         "soc_0-30cm_Q0.05": (("y", "x"), soc * 0.8, {"units": "dg/kg"}),
         "soc_0-30cm_Q0.95": (("y", "x"), soc * 1.3, {"units": "dg/kg"}),
         "socstock_0-30cm_Q0.5": (("y", "x"), soc / 3, {"units": "t/ha"}),
         "socstock_0-30cm_Q0.05": (("y", "x"), soc / 4, {"units": "t/ha"}),
         "socstock_0-30cm_Q0.95": (("y", "x"), soc / 2, {"units": "t/ha"}),
         "extrapolated": (("y", "x"), rng.choice(np.array([0, 1, 255], np.uint8),
                                                  (NY, NX)), {"nodata": 255})},
        coords={"band": ["B11", "B08", "B04"], **{k: v for k, v in _grid(crs).items()}})
    return ds.rio.write_crs(crs)


def _gids(fig) -> set[str]:
    out = {t.get_gid() for t in fig.texts}
    for ax in fig.axes:
        out |= {a.get_gid() for a in ax.get_children()}
    return out - {None}


def test_product_writes_every_quicklook_with_its_stretch(tmp_path):
    ds = _product()
    paths = quicklook.product(ds, tmp_path / "p")
    names = sorted(p.name for p in paths)
    assert names == sorted(["p-SRC-B11-B08-B04.png", "p-BSF.png", "p-MASK.png",
                            "p-soc_0-30cm_Q0.5.png", "p-soc_0-30cm-width90.png",
                            "p-socstock_0-30cm_Q0.5.png", "p-socstock_0-30cm-width90.png",
                            "p-extrapolated.png"])
    with Image.open(tmp_path / "p-soc_0-30cm_Q0.5.png") as im:
        text = dict(im.text)
    stretch = json.loads(text["stretch"])
    finite = ds["soc_0-30cm_Q0.5"].values[np.isfinite(ds["soc_0-30cm_Q0.5"].values)]
    assert stretch["vmin"] == pytest.approx(np.percentile(finite, 2))
    assert stretch["vmax"] == pytest.approx(np.percentile(finite, 98))
    assert stretch["method"] == "2-98 % percentiles"
    assert text["CRS"] == "EPSG:32633" and text["units"] == "dg/kg"
    with Image.open(tmp_path / "p-soc_0-30cm-width90.png") as im:
        width = json.loads(im.text["stretch"])
    w = ds["soc_0-30cm_Q0.95"].values - ds["soc_0-30cm_Q0.05"].values
    assert width["vmin"] == 0 and width["vmax"] == pytest.approx(
        np.percentile(w[np.isfinite(w)], 98))
    with Image.open(tmp_path / "p-SRC-B11-B08-B04.png") as im:
        rgb = json.loads(im.text["stretch"])
    b11 = ds["SRC"].sel(band="B11").values
    assert rgb["B11"] == pytest.approx(list(np.percentile(b11[np.isfinite(b11)], [2, 98])))
    with Image.open(tmp_path / "p-MASK.png") as im:
        assert json.loads(im.text["stretch"])["classes"]["1"] == "bare soil"
    with Image.open(tmp_path / "p-extrapolated.png") as im:
        assert json.loads(im.text["stretch"])["classes"]["1"].startswith("extrapolated")


def test_scalar_figure_has_title_colourbar_units_and_furniture():
    ds = _product()
    fig = quicklook.scalar_figure(ds["soc_0-30cm_Q0.5"], title="SOC")
    ax, cax = fig.axes  # the map and its colour bar
    assert ax.get_title() == "SOC"
    assert "dg/kg" in cax.get_ylabel()
    assert {"scale-bar", "north-arrow", "crs-caption"} <= _gids(fig)
    caption = next(t.get_text() for t in fig.texts if t.get_gid() == "crs-caption")
    assert "EPSG:32633" in caption
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["no data"]
    image = ax.get_images()[0]
    assert np.allclose(image.cmap.get_bad(), _rgba(NODATA_COLOUR))
    assert np.ma.is_masked(image.get_array()[0, 0])  # the NaN row is drawn as nodata


def _rgba(hexcolour: str) -> tuple[float, ...]:
    from matplotlib.colors import to_rgba

    return to_rgba(hexcolour)


def test_mask_and_false_colour_figures_have_legends():
    ds = _product()
    fig = quicklook.class_figure(ds["MASK"])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("1: bare soil") and labels[-1] == "no data / other value"
    assert {"scale-bar", "north-arrow", "crs-caption"} <= _gids(fig)
    fig = quicklook.false_colour_figure(ds["SRC"])
    ax = fig.axes[0]
    assert "B11" in ax.get_title()
    assert "2-98 %" in ax.get_legend().get_title().get_text()
    rgb = ax.get_images()[0].get_array()
    assert np.allclose(rgb[0, 0], _rgba(NODATA_COLOUR)[:3])  # nodata corner in grey


def test_scale_bar_lengths():
    assert [nice_length(v) for v in (1000, 4000, 9000, 30_000)] == [200, 1000, 2000, 5000]
    length, metres, label = scale_bar_metres((400000, 401000, 0, 1), "EPSG:32633")
    assert length == metres == 200 and label == "200 m"
    # geographic: degrees converted at the centre latitude, said in the label
    length, metres, label = scale_bar_metres((13.0, 13.1, 52.4, 52.6), "EPSG:4326")
    assert metres == 1000 and "approx." in label
    assert length == pytest.approx(1000 / (111_320 * np.cos(np.radians(52.5))))
    assert scale_bar_metres((0, 1, 0, 1), None) == (0.0, 0.0, "")


def test_geographic_and_ungeoreferenced_maps(tmp_path):
    fig = quicklook.scalar_figure(_product("EPSG:4326")["BSF"])
    assert "scale-bar" in _gids(fig)
    caption = next(t.get_text() for t in fig.texts if t.get_gid() == "crs-caption")
    assert "EPSG:4326" in caption and "degrees" in caption
    plain = xr.DataArray(np.ones((5, 6)), dims=("y", "x"), name="v")
    fig = quicklook.scalar_figure(plain)
    assert "scale-bar" not in _gids(fig)
    caption = next(t.get_text() for t in fig.texts if t.get_gid() == "crs-caption")
    assert "no scale bar" in caption
    path = quicklook.scalar_map(plain, tmp_path / "v.png", vmin=0, vmax=2)
    with Image.open(path) as im:
        assert json.loads(im.text["stretch"])["vmax"] == 2
