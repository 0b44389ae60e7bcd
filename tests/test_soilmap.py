"""cup4soil.soilmap: many properties in one call, SoilGrids names, calibrated intervals,
texture that sums to 100 %, and the inputs that would silently mislead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import assume, given
from hypothesis import strategies as st

from cup4soil import soilmap
from cup4soil.errors import ParameterError, SampleError
from cup4soil.models.calibration import conformal_offset, cross_conformal
from cup4soil.soilmap.texture import from_alr, interval_from_alr, to_alr

from helpers import raise_if_dask_computes

CRS = "EPSG:32633"
N = 80  # grid size, pixels of 20 m
PROPS = {"soc": "%", "phh2o": "pH", "nitrogen": "g/kg", "bdod": "g/cm3",
         "clay": "%", "sand": "%", "silt": "%"}


def _world(seed: int = 0) -> tuple[xr.Dataset, dict[str, np.ndarray]]:
    """Three covariates on a 20 m grid (EPSG:32633) and a soil that depends on them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:N, 0:N] / N
    a = np.sin(3 * xx) + 0.5 * yy
    b = np.cos(4 * yy) * xx
    c = rng.normal(size=(N, N))
    soc = 1.0 + 1.2 * (a - a.min())  # %
    clay = 10 + 25 * (b - b.min())  # %
    silt = 0.5 * (100 - clay) * (0.6 + 0.2 * a / np.abs(a).max())
    truth = {"soc": soc, "phh2o": 5.5 + 0.8 * b + 0.05 * c, "nitrogen": soc / 10.5 * 10,
             "bdod": 1.6 - 0.15 * soc, "clay": clay, "silt": silt, "sand": 100 - clay - silt}
    x = 400000 + 10 + 20 * np.arange(N)
    y = 5800000 - 10 - 20 * np.arange(N)
    ds = xr.Dataset({k: (("y", "x"), v.astype(np.float32)) for k, v in
                     {"cov_a": a, "cov_b": b, "cov_c": c}.items()},
                    coords={"y": y, "x": x})
    ds = ds.rio.write_crs("EPSG:32633")
    ds.attrs.update(time_start="2019-01-01T00:00:00", time_end="2021-12-31T23:59:59")
    return ds, truth


def _samples(truth: dict[str, np.ndarray], n: int = 160, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    flat = rng.choice(N * N, n, replace=False)
    r, c = flat // N, flat % N
    t = pd.DataFrame({"x": 400000 + 20 * c + 10.0, "y": 5800000 - 20 * r - 10.0})
    for k, v in truth.items():
        t[k] = v[r, c] + (rng.normal(0, 0.03 * np.std(v), n) if k not in
                          ("clay", "silt", "sand") else 0)
    t["sand"] = 100 - t["clay"] - t["silt"]
    return t


@pytest.fixture(scope="module")
def world():
    return _world()


@pytest.fixture(scope="module")
def trained(world):
    cov, truth = world
    table = _samples(truth)
    table.loc[:29, "bdod"] = np.nan  # bulk density measured at fewer points
    return soilmap.train(table, PROPS, covariates=cov, folds="800 m", crs=CRS,
                         n_estimators=40), table


def test_all_properties_in_one_call(trained, world):
    model, table = trained
    cov, truth = world
    assert model.properties == ("soc", "nitrogen", "phh2o", "bdod", "clay", "sand", "silt")
    # each property on its own rows, the same folds for all
    assert model.cv.loc["bdod", "n"] == len(table) - 30
    assert model.cv.loc["soc", "n"] == len(table)
    f_soc = model.cv_predictions["soc"]["fold"].to_numpy()
    f_bd = model.cv_predictions["bdod"]["fold"].to_numpy()
    assert (f_soc[30:] == f_bd).all()
    assert "800 m" in model.folds
    print(model.cv.to_string())
    assert (model.cv["MEC"] > 0.2).all(), model.cv
    assert model.cv.loc["soc", "MEC"] > 0.8
    with raise_if_dask_computes():
        maps = model.predict(cov, chunks=32)
    assert "soc_0-30cm_mean" in maps and "silt_0-30cm_uncertainty" in maps
    assert len(maps.data_vars) == 36  # 7 properties x 5 statistics + extrapolated
    v = maps["soc_0-30cm_Q0.05"]
    assert v.attrs["units"] == "dg/kg" and v.attrs["depth"] == "0-30cm"
    assert v.attrs["conversion_factor"] == 10
    assert maps["phh2o_0-30cm_Q0.5"].attrs["units"] == "pH*10"
    assert maps["bdod_0-30cm_mean"].attrs["units"] == "cg/cm³"
    assert maps.attrs["time_start"] == "2019-01-01T00:00:00"
    assert maps.attrs["time_end"] == "2021-12-31T23:59:59"
    m = maps.compute()
    total = (m["clay_0-30cm_Q0.5"] + m["sand_0-30cm_Q0.5"] + m["silt_0-30cm_Q0.5"]).values
    np.testing.assert_allclose(total, 1000.0, rtol=1e-5)
    total = (m["clay_0-30cm_mean"] + m["sand_0-30cm_mean"] + m["silt_0-30cm_mean"]).values
    np.testing.assert_allclose(total, 1000.0, rtol=1e-5)
    for p in model.properties:
        lo, med, hi = (m[f"{p}_0-30cm_{s}"].values for s in ("Q0.05", "Q0.5", "Q0.95"))
        assert (lo <= med).all() and (med <= hi).all()
        np.testing.assert_allclose(m[f"{p}_0-30cm_uncertainty"].values,
                                   (hi - lo) / med, rtol=1e-5, atol=1e-6)
    # the maps follow the truth (mapped units: SOC % -> dg/kg)
    r = np.corrcoef(m["soc_0-30cm_Q0.5"].values.ravel(), truth["soc"].ravel())[0, 1]
    assert r > 0.9
    from cup4soil.errors import TooLargeError

    with pytest.raises(TooLargeError):
        model.predict(cov, max_pixels=1000)
    # chunk-invariant and equal to the table prediction
    m2 = model.predict(cov, chunks=50).compute()
    for k in ("soc_0-30cm_Q0.95", "sand_0-30cm_mean"):
        np.testing.assert_array_equal(m[k].values, m2[k].values)
    tab = model.predict_table(cov.to_dataframe().reset_index().iloc[:50])
    np.testing.assert_allclose(tab["soc_0-30cm_Q0.5"].to_numpy(),
                               m["soc_0-30cm_Q0.5"].values.ravel()[:50], rtol=1e-6)


def test_calibration_reports_before_and_after(trained):
    model, _ = trained
    cv = model.cv
    for col in ("PICP90", "PICP90_before", "width90_before", "width90_after"):
        assert col in cv
    # 4 blocked folds on a tiny area: coverage is noisy (texture's two log-ratio intervals
    # back-transformed: 0.74-0.75 with the default ensemble's sharper intervals, 0.78-0.85
    # with method="qrf"); the calibration test below is strict
    assert ((cv["PICP90"] >= 0.7) & (cv["PICP90"] <= 1.0)).all(), cv
    m = model.models["soc"]
    assert m.calibration["offset"] == m.predictor.interval_offset


def off0_expected(y, lo, hi):
    return conformal_offset(y[1::2], lo[1::2], hi[1::2], level=0.9)


def test_conformal_offset_by_hand():
    y = np.arange(10.0)
    lo, hi = y - 1, y + 1
    # all scores -1: every point inside by 1, the interval can shrink by 1
    assert conformal_offset(y, lo, hi, level=0.9) == -1.0
    hi2 = hi.copy()
    hi2[:3] = y[:3] - 2  # three scores of +2
    # rank ceil(11 * 0.5) = 6 of sorted scores [-1]*7 + [2]*3 -> -1; rank 10 -> 2
    assert conformal_offset(y, lo, hi2, level=0.5) == -1.0
    assert conformal_offset(y, lo, hi2, level=0.9) == 2.0
    folds = np.arange(10) % 2
    clo, chi = cross_conformal(y, lo, hi2, folds, level=0.9)
    np.testing.assert_allclose(chi[0::2], hi2[0::2] + off0_expected(y, lo, hi2))
    # fold 0's offset from fold 1's scores only (rows 1, 3, ..: one score of 2 at row 1)
    off0 = conformal_offset(y[1::2], lo[1::2], hi2[1::2], level=0.9)
    np.testing.assert_allclose(clo[0::2], lo[0::2] - off0)


def test_calibration_repairs_blocked_coverage():
    """Residual-quantile intervals of a random forest come from a random inner CV: under
    spatially blocked CV (a map's extrapolation) they under-cover; the conformal offset from
    the blocked out-of-fold scores brings PICP90 to 0.9."""
    from cup4soil import models

    rng = np.random.default_rng(3)
    n = 300
    x, y = rng.uniform(0, 10000, n), rng.uniform(0, 10000, n)
    f0 = rng.normal(size=n)
    hidden = np.sin(x / 900) + np.cos(y / 1100)
    t = pd.DataFrame({"x": x, "y": y, "f0": f0, "f1": x / 1000, "f2": y / 1000,
                      "z": f0 + 2 * hidden + rng.normal(0, 0.1, n)})
    kw = {"features": ["f0", "f1", "f2"], "folds": "2 km", "crs": "EPSG:32633",
          "method": "rf", "n_estimators": 50}
    raw = models.train(t, "z", calibrate=False, **kw)
    cal = models.train(t, "z", **kw)
    assert raw.cv["PICP90"] < 0.8
    assert 0.85 <= cal.cv["PICP90"] <= 0.95
    assert cal.calibration["PICP90_before"] == pytest.approx(raw.cv["PICP90"])
    assert cal.calibration["width90_after"] > cal.calibration["width90_before"]
    assert raw.calibration["offset"] == 0.0
    assert cal.predictor.interval_offset > 0


def test_offset_survives_save_and_load(tmp_path):
    from cup4soil import models

    rng = np.random.default_rng(0)
    t = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    t["z"] = t["a"] + rng.normal(0, 0.5, 60)
    m = models.train(t, "z", features=["a", "b"], folds=5)
    assert m.predictor.interval_offset != 0.0
    back = models.load(m.save(tmp_path / "m"))
    assert back.predictor.interval_offset == m.predictor.interval_offset
    pd.testing.assert_frame_equal(back.predict_table(t), m.predict_table(t))


@given(st.lists(st.tuples(st.floats(1, 1000), st.floats(1, 1000), st.floats(1, 1000)),
                min_size=1, max_size=20))
def test_alr_round_trip(parts):
    a = np.array(parts)
    frac = 1000 * a / a.sum(1, keepdims=True)
    assume((frac >= 1.0).all())  # below 1 g/kg a fraction is floored (FLOOR)
    a1, a2 = to_alr(frac[:, 0], frac[:, 1], frac[:, 2])
    clay, sand, silt = from_alr(a1, a2)
    np.testing.assert_allclose(np.stack([clay, sand, silt], 1), frac, rtol=1e-9, atol=1e-9)


@given(st.floats(-5, 5), st.floats(0, 3), st.floats(-5, 5), st.floats(0, 3),
       st.floats(0, 1), st.floats(0, 1))
def test_texture_interval_brackets_every_inner_point(l1, w1, l2, w2, u, v):
    """The comonotone corners bound each fraction over the whole rectangle of ratios."""
    ends = interval_from_alr(np.array([l1]), np.array([l1 + w1]), np.array([l2]),
                             np.array([l2 + w2]))
    fr = from_alr(np.array([l1 + u * w1]), np.array([l2 + v * w2]))
    for k, name in enumerate(("clay", "sand", "silt")):
        lo, hi = ends[name]
        assert lo[0] <= fr[k][0] * (1 + 1e-12) + 1e-9
        assert fr[k][0] <= hi[0] * (1 + 1e-12) + 1e-9


def test_inputs_that_would_mislead(world):
    cov, truth = world
    t = _samples(truth)
    with pytest.raises(SampleError, match=r"median is [\d.]+ dg/kg .*implausible"):
        soilmap.train(t, {"soc": "dg/kg"}, covariates=cov, folds="800 m", crs=CRS, n_estimators=20)
    with pytest.raises(SampleError, match="at least 20"):
        soilmap.train(t.iloc[:15], {"soc": "%"}, covariates=cov, folds=3, crs=CRS)
    with pytest.raises(ParameterError, match="give all three"):
        soilmap.train(t, {"clay": "%", "sand": "%"}, covariates=cov, folds="800 m",
                      crs=CRS, n_estimators=20)
    bad = t.copy()
    bad["sand"] = bad["sand"] + 20
    with pytest.raises(SampleError, match="differ from 100 %"):
        soilmap.train(bad, {"clay": "%", "sand": "%", "silt": "%"}, covariates=cov,
                      folds="800 m", crs=CRS, n_estimators=20)
    dup = pd.concat([t, t.iloc[:20]], ignore_index=True)
    with pytest.warns(UserWarning, match="20 samples repeat another sample's location"):
        m = soilmap.train(dup, {"soc": "%"}, covariates=cov, folds=5, crs=CRS, n_estimators=20)
    folds = m.cv_predictions["soc"]["fold"].to_numpy()
    assert (folds[:20] == folds[-20:]).all()


def test_stored_product_opens_with_a_fixed_variable_order(world, tmp_path):
    """store.open lists variables in one order every time (training on a stored covariate
    product must be reproducible), whatever the store's listing order."""
    from cup4soil import store

    cov, _ = world
    ds = cov.assign(zz=cov["cov_a"] * 2, aa=cov["cov_b"] + 1).chunk({"y": 40, "x": 40})
    url = str(tmp_path / "cov.zarr")
    store.write(ds, url)
    orders = {tuple(store.open(url).data_vars) for _ in range(5)}
    assert orders == {("aa", "cov_a", "cov_b", "cov_c", "zz")}


def test_compare_covariate_sets(world, tmp_path):
    """The set that carries the soil's information wins by more than the folds' spread."""
    cov, truth = world
    t = _samples(truth)
    sets = {1: cov[["cov_c"]], 2: cov[["cov_a", "cov_c"]], 3: cov}
    png = tmp_path / "sets.png"
    table = soilmap.compare(t, {"soc": "%", "phh2o": "pH"}, sets=(1, 2, 3), covariates=sets,
                            folds="800 m", crs=CRS, plot=png, n_estimators=20)
    assert list(table.index) == [(p, k) for p in ("soc", "phh2o") for k in (1, 2, 3)]
    soc = table.loc["soc"]
    assert soc.loc[3, "MEC"] - soc.loc[1, "MEC"] > soc.loc[3, "MEC_fold_sd"]
    ph = table.loc["phh2o"]  # pH follows cov_b, only in set 3
    assert ph.loc[3, "MEC"] - ph.loc[2, "MEC"] > ph.loc[3, "MEC_fold_sd"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(table.attrs["models"]) == {1, 2, 3}
    with pytest.raises(ParameterError, match="covariate set 2"):
        soilmap.compare(t, {"soc": "%"}, sets=(2,), covariates={1: cov}, crs=CRS)


def test_validate_at_independent_points(trained, world):
    model, _ = trained
    cov, truth = world
    maps = model.predict(cov, chunks=40)
    held = _samples(truth, n=60, seed=9)  # other points, same truth
    metrics, table = soilmap.validate(maps, held, "soc", unit="%", crs=CRS)
    assert metrics["n"] == 60 and metrics["MEC"] > 0.8
    np.testing.assert_allclose(table["observed"], held["soc"] * 100)
    assert set(metrics) == {"MEC", "RMSE", "ME", "CCC", "PICP90", "n"}
    with pytest.raises(SampleError, match="no column"):
        soilmap.validate(maps, held.drop(columns="soc"), "soc", unit="%", crs=CRS)


def test_map_and_compare_commands(world, tmp_path, capsys):
    from cup4soil import store
    from cup4soil.cli import main

    cov, truth = world
    cov_url = str(tmp_path / "cov.zarr")
    store.write(cov.chunk({"y": 40, "x": 40}), cov_url)
    t = _samples(truth)
    t["SOC_target"] = t["soc"]
    csv = tmp_path / "s.csv"
    t.drop(columns=["soc"]).to_csv(csv, index=False)
    out = str(tmp_path / "maps.zarr")
    assert main(["map", "--samples", str(csv), "--property", "SOC_target:%", "--property",
                 "phh2o:pH", "--covariates", cov_url, "--folds", "800 m", "--crs", CRS,
                 "--out", out]) == 0
    maps = store.open(out)
    assert {"soc_0-30cm_Q0.5", "phh2o_0-30cm_uncertainty"} <= set(maps.data_vars)
    assert maps.attrs["time_start"] == "2019-01-01T00:00:00"
    assert "PICP90_before" in capsys.readouterr().out
    assert main(["compare", "--samples", str(csv), "--property", "SOC_target:%",
                 "--set", f"1={cov_url}", "--folds", "800 m", "--crs", CRS]) == 0
    assert "MEC_fold_sd" in capsys.readouterr().out
    assert main(["map", "--samples", str(csv), "--property", ":%", "--covariates", cov_url,
                 "--out", str(tmp_path / "x.zarr")]) == 2
    assert "COLUMN[:UNIT]" in capsys.readouterr().err
