"""Issue 14's outputs: the validation report and ``cup4soil validate`` (§7)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from test_soilmap import CRS, _samples, _world

from cup4soil import soilmap, store
from cup4soil.cli import main
from cup4soil.errors import NotAProductError
from cup4soil.products.report import MARKER, validation_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    """A small soc/phh2o product written by cup4soil, and independent points."""
    cov, truth = _world()
    model = soilmap.train(_samples(truth), {"soc": "%", "phh2o": "pH"}, covariates=cov,
                          folds="800 m", crs=CRS, n_estimators=20)
    folder = tmp_path_factory.mktemp("validate")
    url = str(folder / "maps.zarr")
    store.write(model.predict(cov, chunks=40), url)
    held = _samples(truth, n=60, seed=9)
    csv = folder / "held.csv"
    held.to_csv(csv, index=False)
    return url, csv, held


def _metrics_in(md: str) -> dict[str, float]:
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    names = [c.strip() for c in lines[0].strip("|").split("|")]
    vals = [float(c) for c in lines[2].strip("|").split("|")]
    return dict(zip(names, vals, strict=True))


def test_validate_command_writes_the_report(product, tmp_path, capsys):
    url, csv, held = product
    out = tmp_path / "report"
    assert main(["validate", url, str(csv), "--property", "soc", "--unit", "%", "--crs", CRS,
                 "--out", str(out)]) == 0
    assert "report written" in capsys.readouterr().out
    metrics, table = soilmap.validate(store.open(url), held, "soc", unit="%", crs=CRS)
    got = _metrics_in((out / "report.md").read_text())
    assert set(got) == {"ME", "RMSE", "MEC", "CCC", "PICP90", "n"}
    for k, v in got.items():
        assert v == pytest.approx(metrics[k], abs=6e-4), k
    for name in ("scatter.png", "residuals.png", "coverage.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG
        with Image.open(out / name) as im:
            im.verify()
        assert f"({name})" in (out / "report.md").read_text()
    assert "<table" in (out / "report.html").read_text()
    # the map coordinates are the map's CRS (here the same as the points')
    np.testing.assert_allclose(table["x_map"], table["x"])
    assert table.attrs["crs"] == CRS
    # a second run replaces cup4soil's own report
    assert main(["validate", url, str(csv), "--property", "soc", "--unit", "%", "--crs", CRS,
                 "--out", str(out), "--no-html"]) == 0


@pytest.mark.parametrize(("argv", "message"), [
    (["--property", "nitrogen"], "lack nitrogen_0-30cm_Q0.5"),
    (["--property", "soc", "--column", "nope"], "no column 'nope'"),
    (["--property", "soc", "--crs", "EPSG:4326"], "no point has both"),
    (["--property", "nonsense"], "property 'nonsense'"),
])
def test_validate_command_refuses_bad_inputs(product, tmp_path, capsys, argv, message):
    url, csv, _ = product
    if "--crs" not in argv:
        argv = [*argv, "--crs", CRS]
    code = main(["validate", url, str(csv), *argv, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing written before the inputs are checked


def test_report_never_writes_into_a_user_folder(product, tmp_path, capsys):
    url, csv, held = product
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    code = main(["validate", url, str(csv), "--property", "soc", "--unit", "%", "--crs", CRS,
                 "--out", str(user)])
    assert code == 2 and "did not write" in capsys.readouterr().err
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    metrics, table = soilmap.validate(store.open(url), held, "soc", unit="%", crs=CRS)
    with pytest.raises(NotAProductError, match="is a file"):
        validation_report(metrics, table, user / "notes.txt", property="soc", units="dg/kg")
    # an empty folder is fine, and is marked as cup4soil's
    (tmp_path / "empty").mkdir()
    validation_report(metrics, table, tmp_path / "empty", property="soc", units="dg/kg")
    assert (tmp_path / "empty" / MARKER).is_file()


def test_residual_map_has_map_furniture(product):
    url, _, held = product
    from cup4soil.products.report import residual_figure

    _, table = soilmap.validate(store.open(url), held, "soc", unit="%", crs=CRS)
    fig = residual_figure(table, property="soc", units="dg/kg", crs=CRS)
    gids = {a.get_gid() for ax in fig.axes for a in ax.get_children()}
    gids |= {t.get_gid() for t in fig.texts}
    assert {"scale-bar", "north-arrow", "crs-caption"} <= gids
    cbar_label = fig.axes[1].get_ylabel()
    assert "dg/kg" in cbar_label
    caption = next(t.get_text() for t in fig.texts if t.get_gid() == "crs-caption")
    assert re.search(r"EPSG:32633", caption)


# --- SoilMapModel save/load ----------------------------------------------------------------

def test_soilmap_model_round_trip(tmp_path):
    from test_soilmap import PROPS

    from cup4soil.errors import ModelError, ParameterError

    cov, truth = _world()
    table = _samples(truth)
    table.loc[:29, "bdod"] = np.nan
    model = soilmap.train(table, PROPS, covariates=cov, folds="800 m", crs=CRS,
                          n_estimators=15)
    path = model.save(tmp_path / "sm")
    back = soilmap.load(path)
    assert back.properties == model.properties and back.features == model.features
    assert back.folds == model.folds and back.time_start == model.time_start
    feats = pd.DataFrame(np.random.default_rng(3).normal(size=(50, 3)),
                         columns=list(model.features))
    pd.testing.assert_frame_equal(back.predict_table(feats), model.predict_table(feats))
    pd.testing.assert_frame_equal(back.cv, model.cv, check_dtype=False)
    pd.testing.assert_frame_equal(back.cv_predictions["clay"], model.cv_predictions["clay"],
                                  check_dtype=False)
    # never over a model without overwrite, never into a folder of other files
    with pytest.raises(ParameterError, match="overwrite=True"):
        model.save(path)
    assert model.save(path, overwrite=True) == path
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ParameterError, match="not a cup4soil soil-map model"):
        model.save(other, overwrite=True)
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    # another format, a single-property model, an incomplete folder: clear errors
    card = path / "soilmap-card.json"
    card.write_text(card.read_text().replace("cup4soil-soilmap/1", "cup4soil-soilmap/99"))
    with pytest.raises(ModelError, match="format 'cup4soil-soilmap/99'"):
        soilmap.load(path)
    with pytest.raises(ModelError, match=r"cup4soil\.models\.load"):
        soilmap.load(path / "models" / "soc")
    with pytest.raises(ModelError, match="is missing"):
        soilmap.load(other)


# --- extrapolation flag (§9) ---------------------------------------------------------------

def _slow_flag(block, ranges, margin):
    f, h, w = block.shape
    out = np.zeros((h, w), np.uint8)
    for i in range(h):
        for j in range(w):
            v = block[:, i, j]
            if not np.isfinite(v).all():
                out[i, j] = 255
                continue
            for k in range(f):
                lo, hi = ranges[k]
                pad = margin * (hi - lo)
                if v[k] < lo - pad or v[k] > hi + pad:
                    out[i, j] = 1
    return out


@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**32 - 1),
       st.sampled_from([0.0, 0.1, 0.5]))
def test_extrapolation_kernel_matches_reference(f, h, w, seed, margin):
    from cup4soil.soilmap.extrapolation import extrapolated_block, training_ranges

    rng = np.random.default_rng(seed)
    train_x = rng.normal(size=(20, f))
    train_x[0, 0] = np.nan  # missing training values do not widen the range
    ranges = training_ranges(train_x)
    assert np.isfinite(ranges).all()
    block = rng.normal(scale=2.0, size=(f, h, w))
    block[rng.random((f, h, w)) < 0.1] = np.nan
    np.testing.assert_array_equal(extrapolated_block(block, ranges, margin),
                                  _slow_flag(block, ranges, margin))


def test_extrapolated_layer_is_lazy_and_flags_the_shifted_area():
    from cup4soil.soilmap.extrapolation import ExtrapolationWarning, check_extrapolation

    from helpers import raise_if_dask_computes

    cov, truth = _world()
    model = soilmap.train(_samples(truth), {"soc": "%"}, covariates=cov, folds="800 m",
                          crs=CRS, n_estimators=10)
    assert model.feature_ranges is not None and model.feature_ranges.shape == (3, 2)
    shifted = cov.copy()
    a = shifted["cov_a"].values.copy()
    lo, hi = model.feature_ranges[list(model.features).index("cov_a")]
    a[:20, :] = hi + 0.5 * (hi - lo)  # a quarter of the map far beyond the training range
    a[20:22, :] = np.nan
    shifted["cov_a"] = (("y", "x"), a)
    with raise_if_dask_computes():
        maps = model.predict(shifted, chunks=32)
    flag = maps["extrapolated"].values
    assert flag.dtype == np.uint8 and (flag[:20] == 1).all()
    assert (flag[20:22] == 255).all()
    assert maps["extrapolated"].attrs["margin"] == 0.1
    block = np.stack([shifted[f].values for f in model.features]).astype(np.float64)
    np.testing.assert_array_equal(flag, _slow_flag(block, model.feature_ranges, 0.1))
    k, n = int((flag == 1).sum()), int((flag != 255).sum())
    assert n == 80 * 78 and k >= 1600
    with pytest.warns(ExtrapolationWarning, match=rf"{k} of {n} pixels \({100 * k / n:.1f} %\)"):
        share = check_extrapolation(flag, what="the soc map")
    assert share == pytest.approx(k / n)
    assert check_extrapolation(model.predict(cov)["extrapolated"].values) <= 0.1  # no warning
    back = soilmap.load(model.save(Path(tempfile.mkdtemp()) / "m"))
    np.testing.assert_array_equal(back.feature_ranges, model.feature_ranges)


# --- SoilGrids-style scaled-integer COGs (§5) ----------------------------------------------

def test_scaled_integer_cogs(tmp_path):
    import rasterio

    from cup4soil.errors import ParameterError
    from cup4soil.products.cog import to_cogs

    cov, truth = _world()
    model = soilmap.train(_samples(truth), {"soc": "%", "phh2o": "pH"}, covariates=cov,
                          folds="800 m", crs=CRS, n_estimators=10)
    maps = model.predict(cov, chunks=40).compute()
    maps["soc_0-30cm_Q0.5"][:3, :3] = np.nan
    hrefs = to_cogs(maps, str(tmp_path / "cogs"), scaled=True)
    with rasterio.open(hrefs["soc_0-30cm_Q0.5"]) as src:
        assert src.dtypes[0] == "int16" and src.nodata == -32768
        assert src.scales[0] == 1 and src.offsets[0] == 0
        tags = src.tags()
        assert tags["units"] == "dg/kg" and "divide by 10" in tags["conversion"]
        assert src.crs.to_epsg() == 32633
        data = src.read(1)
    want = maps["soc_0-30cm_Q0.5"].values
    assert (data[:3, :3] == -32768).all()
    np.testing.assert_array_equal(data[3:], np.rint(want[3:]).astype(np.int16))
    with rasterio.open(hrefs["phh2o_0-30cm_uncertainty"]) as src:
        assert src.dtypes[0] == "int16" and src.scales[0] == pytest.approx(0.1)
        unc = src.read(1, masked=True) * src.scales[0]
    np.testing.assert_allclose(unc, maps["phh2o_0-30cm_uncertainty"].values, atol=0.05 + 1e-9)
    with rasterio.open(hrefs["extrapolated"]) as src:  # not a property layer: its own type
        assert src.dtypes[0] == "uint8"
    # float COGs without the option
    with rasterio.open(to_cogs(maps, str(tmp_path / "f"))["soc_0-30cm_Q0.5"]) as src:
        assert src.dtypes[0] == "float32"
    big = maps[["soc_0-30cm_mean"]].copy()
    big["soc_0-30cm_mean"] = big["soc_0-30cm_mean"] * 1000
    with pytest.raises(ParameterError, match="do not fit a scaled int16"):
        to_cogs(big, str(tmp_path / "big"), scaled=True)
