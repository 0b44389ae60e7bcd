"""Soil property models on real soil data (LimeSoDa, Meuse) and the sample archive."""

from __future__ import annotations

import json

import dask
import dask.array
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import cup4soil
from cup4soil import models, scmap
from cup4soil.errors import CovariateError, ModelError, ParameterError, SampleError
from cup4soil.models import forest as _forest
from cup4soil.models.calibration import cross_conformal

from helpers import raise_if_dask_computes

LIMESODA_NON_FEATURES = {"SOC_target", "pH_target", "Clay_target", "fold"}


@pytest.fixture(scope="module")
def bb250(shared_data):
    return pd.read_csv(shared_data / "soil/limesoda/BB.250.csv")


def _features(table):
    return [c for c in table.columns
            if c not in LIMESODA_NON_FEATURES and not c.startswith(("x_", "y_"))]


@pytest.fixture(scope="module")
def soc_bb(bb250):
    return models.train(bb250, "SOC_target", unit="%", features=_features(bb250), folds="fold")


@pytest.fixture(scope="module")
def meuse(shared_data):
    t = pd.read_csv(shared_data / "soil/meuse/meuse.csv")
    t["log_zinc"] = np.log(t["zinc"])
    return t


@pytest.fixture(scope="module")
def meuse_grid(shared_data):
    g = pd.read_csv(shared_data / "soil/meuse/meuse.grid.csv")
    ds = g.set_index(["y", "x"])[["dist", "ffreq", "soil"]].to_xarray()
    return ds.sortby("y", ascending=False).rio.write_crs("EPSG:28992"), len(g)


@pytest.fixture(scope="module")
def zinc_model(meuse):
    return models.train(meuse, "log_zinc", features=["dist", "ffreq", "soil"],
                        folds="400 m", crs="EPSG:28992")


@pytest.fixture(scope="module")
def zinc_qrf(meuse):
    return models.train(meuse, "log_zinc", features=["dist", "ffreq", "soil"],
                        folds="400 m", crs="EPSG:28992", method="qrf")


# --- real data: skill, coverage, units ------------------------------------------------

@pytest.mark.parametrize(("target", "unit", "min_mec"),
                         [("SOC_target", "%", 0.5), ("pH_target", "pH", 0.3),
                          ("Clay_target", "%", 0.3)])
def test_limesoda_bb250_with_the_papers_folds(bb250, target, unit, min_mec):
    m = models.train(bb250, target, unit=unit, features=_features(bb250), folds="fold",
                     method="qrf")
    assert m.cv["n"] == 250 and "column 'fold' (10 folds)" in m.card["folds"]
    assert m.cv["MEC"] > min_mec
    assert 0.8 <= m.cv["PICP90"] <= 0.97
    assert set(m.cv) == {"MEC", "RMSE", "ME", "CCC", "PICP90", "n"}
    cvp = m.cv_predictions
    assert list(cvp.columns) == ["x", "y", "observed", "predicted", "q05", "q95", "fold"]
    assert (cvp.q05 <= cvp.predicted).all() and (cvp.predicted <= cvp.q95).all()
    # CV predictions of a fold come from a model that never saw it: refit quantile-forest's
    # QRF (cup4soil's documented defaults) on the other folds only, and compare
    from quantile_forest import RandomForestQuantileRegressor

    x = bb250[_features(bb250)].to_numpy(np.float64)
    y = cvp.observed.to_numpy()
    refit = np.full((len(y), 3), np.nan)
    for k in np.unique(cvp.fold):
        test = (cvp.fold == k).to_numpy()
        qrf = RandomForestQuantileRegressor(n_estimators=100, min_samples_leaf=5, n_jobs=-1,
                                            max_features=1 / 3, random_state=0)
        qrf.fit(x[~test], y[~test])
        refit[test] = qrf.predict(x[test].astype(np.float32), quantiles=[0.05, 0.5, 0.95])
    # the median is the QRF's; the interval is conformalised fold by fold with the other
    # folds' scores (calibrate=True, the default)
    lo, hi = cross_conformal(y, refit[:, 0], refit[:, 2], cvp.fold.to_numpy(), level=0.9)
    calibrated = np.c_[np.minimum(lo, refit[:, 1]), refit[:, 1], np.maximum(hi, refit[:, 1])]
    np.testing.assert_array_equal(calibrated, cvp[["q05", "predicted", "q95"]].to_numpy())
    assert models.cv_metrics(y, *calibrated[:, [1, 0, 2]].T) == m.cv
    assert m.calibration["PICP90_before"] == models.cv_metrics(
        y, refit[:, 1], refit[:, 0], refit[:, 2])["PICP90"]


def test_soilgrids_units(soc_bb, bb250):
    assert (soc_bb.property_name, soc_bb.units) == ("soc", "dg/kg")
    assert soc_bb.property == "soc"  # the name users knew, kept as a read-only alias
    with pytest.raises(AttributeError):
        soc_bb.property = "oc"
    # SOC 1 % = 10 g/kg = 100 dg/kg
    np.testing.assert_allclose(soc_bb.cv_predictions.observed, bb250.SOC_target * 100)
    ph = models.train(bb250, "pH_target", unit="pH", features=["pH_ISE", "ERa"], folds=5)
    assert (ph.property_name, ph.units) == ("phh2o", "pH*10")
    assert ph.cv_predictions.observed.max() == pytest.approx(bb250.pH_target.max() * 10)
    da = xr.DataArray(np.array([[123.0]]), dims=("y", "x"),
                      attrs={"units": "dg/kg", "conversion_factor": 10,
                             "conventional_units": "g/kg"})
    conv = models.to_conventional(xr.Dataset({"soc": da}))
    assert float(conv.soc.squeeze()) == pytest.approx(12.3) and conv.soc.attrs["units"] == "g/kg"


def test_limesoda_b204(shared_data):
    t = pd.read_csv(shared_data / "soil/limesoda/B.204.csv")
    m = models.train(t, "Clay_target", unit="%", features=_features(t), folds="fold")
    assert m.cv["n"] == 204 and m.card["sample_crs"] == "EPSG:32723"
    assert np.isfinite([m.cv[k] for k in ("MEC", "RMSE", "CCC")]).all()
    assert 0.75 <= m.cv["PICP90"] <= 0.98


def test_meuse_spatially_blocked_cv(meuse):
    with pytest.warns(UserWarning, match="2 of 155 samples dropped"):
        om = models.train(meuse, "om", unit="%", features=["dist", "elev", "ffreq", "soil"],
                          folds=400.0, crs="EPSG:28992")
    assert om.card["folds"].startswith("spatial blocks of 400 m")
    assert om.cv["n"] == 153 and om.cv["MEC"] > 0.2
    cvp = om.cv_predictions
    # a block is never split between folds
    block = (np.floor(cvp.x / 400).astype(int).astype(str) + "/"
             + np.floor(cvp.y / 400).astype(int).astype(str))
    assert (cvp.groupby(block).fold.nunique() == 1).all()


def test_meuse_grid_prediction(zinc_model, meuse_grid):
    grid, n_cells = meuse_grid
    assert zinc_model.cv["MEC"] > 0.4
    out = zinc_model.predict(grid.chunk(32))
    assert list(out.data_vars) == ["log_zinc", "log_zinc_q05", "log_zinc_q95"]
    r = out.compute()
    assert int(r.log_zinc.count()) == n_cells  # nodata outside the river's grid stays nodata
    assert r.rio.crs.to_epsg() == 28992 and r.odc.geobox == grid.odc.geobox
    ok = np.isfinite(r.log_zinc.values)
    assert (r.log_zinc_q05.values[ok] <= r.log_zinc.values[ok]).all()
    assert (r.log_zinc.values[ok] <= r.log_zinc_q95.values[ok]).all()
    # closer to the river, more zinc
    near = r.log_zinc.values[(grid.dist.values < 0.05) & ok].mean()
    far = r.log_zinc.values[(grid.dist.values > 0.5) & ok].mean()
    assert near > far + 0.5


# --- laziness, chunks, persistence ----------------------------------------------------

def test_predict_is_lazy_and_chunk_invariant(zinc_model, meuse_grid):
    grid, _ = meuse_grid
    with raise_if_dask_computes():
        lazy = zinc_model.predict(grid.chunk(16))
    assert all(isinstance(v.data, dask.array.Array) for v in lazy.data_vars.values())
    a = lazy.compute()
    b = zinc_model.predict(grid.chunk({"y": 50, "x": 7})).compute()
    c = zinc_model.predict(grid.load()).compute()  # numpy-backed covariates
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values)
        np.testing.assert_array_equal(a[v].values, c[v].values)
    # the model is one key of the graph, not copied into every task, and travels without
    # the estimator (the compiled forest predicts)
    from cup4soil.models.predictor import Predictor

    held = [v.value for v in dict(lazy.__dask_graph__()).values()
            if isinstance(getattr(v, "value", None), Predictor)]
    assert len(held) == 1
    assert held[0].forest is not None and held[0].estimator is None


def test_two_predictions_in_one_graph_stay_apart(zinc_model, meuse_grid):
    # one model, two covariate sets, computed together: their keys must differ
    grid, _ = meuse_grid
    near, far = grid.chunk(32), grid.assign(dist=grid.dist + 0.5).chunk(32)
    a, b = dask.compute(zinc_model.predict(near).log_zinc, zinc_model.predict(far).log_zinc)
    np.testing.assert_array_equal(a.values, zinc_model.predict(near).log_zinc.values)
    np.testing.assert_array_equal(b.values, zinc_model.predict(far).log_zinc.values)
    assert not np.array_equal(a.values, b.values, equal_nan=True)


def test_quantiles_equal_quantile_forest(zinc_qrf, meuse):
    x = meuse[["dist", "ffreq", "soil"]]
    mine = zinc_qrf.predict_table(x)
    ref = zinc_qrf.estimator.predict(x.to_numpy(np.float32), quantiles=[0.05, 0.5, 0.95])
    # the outer quantiles move by the model's conformal offset, never past the median
    off = zinc_qrf.predictor.interval_offset
    ref[:, 0] = np.minimum(ref[:, 0] - off, ref[:, 1])
    ref[:, 2] = np.maximum(ref[:, 2] + off, ref[:, 1])
    np.testing.assert_array_equal(mine[["log_zinc_q05", "log_zinc", "log_zinc_q95"]].to_numpy(),
                                  ref)


def test_ensemble_is_the_forest_distribution_around_the_weighted_mean(zinc_model, meuse):
    assert zinc_model.method == "ensemble"
    pred = zinc_model.predictor
    w = pred.weights
    assert w is not None and np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    assert zinc_model.card["ensemble"]["members"] == ["forest", "ridge", "svr", "gbm"]
    x = meuse[["dist", "ffreq", "soil"]].to_numpy(np.float64)
    est = zinc_model.estimator
    forest_q = est.predict(x.astype(np.float32), quantiles=[0.05, 0.5, 0.95])
    point = w[0] * _forest.predict_mean(pred.forest, x)
    for wj, member in zip(w[1:], pred.members, strict=True):
        if wj > 0:
            point = point + wj * member.predict(x)
    assert 0 < pred.spread <= 1
    ref = point[:, None] + pred.spread * (forest_q - forest_q[:, 1:2])
    off = pred.interval_offset
    ref[:, 0] = np.minimum(ref[:, 0] - off, ref[:, 1])
    ref[:, 2] = np.maximum(ref[:, 2] + off, ref[:, 1])
    mine = zinc_model.predict_table(meuse[["dist", "ffreq", "soil"]])
    np.testing.assert_allclose(mine[["log_zinc_q05", "log_zinc", "log_zinc_q95"]].to_numpy(),
                               ref, rtol=1e-12)
    q, mean = pred.predict_quantiles_and_mean(x)
    np.testing.assert_array_equal(q, pred.predict_quantiles(x))
    np.testing.assert_array_equal(mean, q[:, 1])


def test_ensemble_weights_come_from_the_training_rows_only(meuse, monkeypatch):
    from scipy import optimize

    sizes = []
    nnls = optimize.nnls

    def spy(a, b, *args, **kw):
        sizes.append(len(b))
        return nnls(a, b, *args, **kw)

    monkeypatch.setattr(optimize, "nnls", spy)
    m = models.train(meuse, "log_zinc", features=["dist", "ffreq", "soil"], folds=4,
                     n_estimators=20)
    assert len(sizes) == 5  # four training folds and the final model
    assert max(sizes[:4]) < 155 and sizes[4] == 155
    assert 0.8 <= m.cv["PICP90"] <= 0.97


def test_save_load_round_trip(zinc_model, meuse_grid, tmp_path):
    grid, _ = meuse_grid
    path = zinc_model.save(tmp_path / "model")
    card = json.loads((path / "model-card.json").read_text())
    assert card["features"] == ["dist", "ffreq", "soil"] and card["crs"] is None
    assert card["sample_crs"] == "EPSG:28992" and len(card["training_hash"]) == 64
    assert {"cup4soil", "scikit-learn", "quantile-forest", "numpy"} <= set(card["versions"])
    assert card["cv"] == zinc_model.cv
    loaded = models.load(path)
    assert loaded.features == zinc_model.features and loaded.cv == zinc_model.cv
    a = zinc_model.predict(grid).compute()
    b = loaded.predict(grid).compute()
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values)
    with pytest.raises(ParameterError, match="overwrite=True"):
        zinc_model.save(path)


def test_mismatched_covariates_are_refused(zinc_model, meuse_grid):
    grid, _ = meuse_grid
    with pytest.raises(CovariateError, match="lack ffreq"):
        zinc_model.predict(grid.drop_vars("ffreq"))
    stacked = grid[["soil", "dist", "ffreq"]].to_dataarray("feature")
    with pytest.raises(CovariateError, match="in this order"):
        zinc_model.predict(stacked)
    ordered = grid[["dist", "ffreq", "soil"]].to_dataarray("feature")
    assert int(zinc_model.predict(ordered).log_zinc.count()) > 0


def test_incompatible_model_files(zinc_model, tmp_path):
    path = zinc_model.save(tmp_path / "m")
    card = json.loads((path / "model-card.json").read_text())
    card["format"] = "cup4soil-model/99"
    (path / "model-card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"model format 'cup4soil-model/99'.*Retrain"):
        models.load(path)
    with pytest.raises(ModelError, match="not a \\(complete\\) cup4soil model"):
        models.load(tmp_path / "nothing")


def test_generic_regressor_and_version_check(meuse, tmp_path):
    from sklearn.linear_model import Ridge

    m = models.train(meuse, "log_zinc", features=["dist", "ffreq"], method=Ridge(),
                     folds=5)
    assert m.method == "Ridge" and 0.75 <= m.cv["PICP90"] <= 0.98
    t = m.predict_table(meuse[["dist", "ffreq"]])
    np.testing.assert_allclose(t.log_zinc_q95 - t.log_zinc_q05,
                               (t.log_zinc_q95 - t.log_zinc_q05).iloc[0])
    path = m.save(tmp_path / "ridge")
    assert models.load(path).predict_table(meuse[["dist", "ffreq"]]).equals(t)
    card = json.loads((path / "model-card.json").read_text())
    card["versions"]["scikit-learn"] = "0.24.2"
    (path / "model-card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"scikit-learn 0\.24\.2.*retrain"):
        models.load(path)


def test_tuning_happens_inside_the_training_folds(meuse, monkeypatch):
    from sklearn.model_selection import GridSearchCV

    sizes = []
    fit = GridSearchCV.fit

    def spy(self, x, y=None, **kw):
        sizes.append(len(y))
        return fit(self, x, y, **kw)

    monkeypatch.setattr(GridSearchCV, "fit", spy)
    m = models.train(meuse, "log_zinc", features=["dist", "ffreq", "soil"], folds=4,
                     tune={"min_samples_leaf": [3, 10]}, n_estimators=20)
    assert len(sizes) == 5  # four training folds and the final model
    assert max(sizes[:4]) < 155 and sizes[4] == 155
    assert m.card["tuned"] and m.card["params"]["min_samples_leaf"] in (3, 10)


def test_geopackage_samples(meuse, tmp_path):
    import geopandas

    gdf = geopandas.GeoDataFrame(meuse, geometry=geopandas.points_from_xy(meuse.x, meuse.y),
                                 crs="EPSG:28992").drop(columns=["x", "y"])
    gdf.to_file(tmp_path / "meuse.gpkg")
    m = models.train(tmp_path / "meuse.gpkg", "log_zinc", features=["dist", "ffreq"],
                     folds="500 m", n_estimators=20)
    assert m.card["sample_crs"] == "EPSG:28992" and m.cv["n"] == 155


# --- bad input ------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"target": "SOC"}, SampleError, "target column 'SOC' is not in the samples"),
    ({"target": "label"}, SampleError, "'label' is not numeric"),
    ({"target": "SOC_target", "unit": "%", "folds": 400}, SampleError,
     "fewer than folds=400"),
    ({"target": "SOC_target", "unit": "%", "features": ["empty"]}, SampleError,
     "NaN for every sample"),
    ({"target": "SOC_target"}, ParameterError, "say its unit with unit="),
    ({"target": "SOC_target", "unit": "ppm"}, ParameterError, "unit 'ppm' for soc"),
    ({"target": "SOC_target", "unit": "%", "folds": "nope"}, ParameterError,
     "neither an int"),
    ({"target": "SOC_target", "unit": "%", "method": "svm"}, ParameterError, "method='svm'"),
    ({"target": "SOC_target", "unit": "%", "quantiles": (0.05, 0.95)}, ParameterError,
     "0.5"),
    ({"target": "SOC_target", "unit": "%", "features": ["label"]}, SampleError,
     "not numeric"),
])
def test_bad_samples(bb250, kwargs, error, message):
    t = bb250.assign(label="loam", empty=np.nan)
    kw = {"features": ["B02", "B03"], "folds": 5, **kwargs}
    with pytest.raises(error, match=message):
        models.train(t, **kw)


def test_unusable_covariates_and_crs(zinc_model, meuse, meuse_grid):
    grid, _ = meuse_grid
    cube = grid.assign(dist=grid.dist.expand_dims(year=[2020, 2021], band=["a"]))
    with pytest.raises(CovariateError, match=r"'dist' has dimensions.*select one slice"):
        models.sample_covariates(cube, meuse.x, meuse.y, crs=28992, missing="drop")
    with pytest.raises(CovariateError, match=r"'dist' has dimensions.*select one slice"):
        zinc_model.predict(cube)
    with pytest.raises(CovariateError, match="no \\(y, x\\) raster layers"):
        models.sample_covariates(grid.dist.isel(x=0).to_dataset(), [0], [0], crs=28992)
    with pytest.raises(SampleError, match="cannot understand CRS 'EPSG:nope'"):
        models.train(meuse, "log_zinc", features=["dist"], folds=5, crs="EPSG:nope")


def test_points_without_crs_on_a_georeferenced_grid(meuse, meuse_grid):
    grid, _ = meuse_grid
    with pytest.raises(SampleError, match=r"no CRS.*crs='EPSG"):
        models.train(meuse, "log_zinc", covariates=grid, folds=5)
    # with a CRS, covariates are sampled; points off the grid are named
    far = meuse.assign(x=meuse.x + 1e5)
    with pytest.raises(SampleError, match="155 of 155 sample points fall outside"):
        models.train(far, "log_zinc", covariates=grid, folds=5, crs="EPSG:28992")
    # lon/lat points land on the right cells of an EPSG:28992 grid
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(28992, 4326, always_xy=True).transform(meuse.x, meuse.y)
    a = models.sample_covariates(grid, lon, lat, crs="EPSG:4326", missing="drop")
    b = models.sample_covariates(grid, meuse.x, meuse.y, crs=28992, missing="drop")
    # points exactly on a 40 m cell edge may round either way after a round trip
    edge = ((meuse.x % 40 == 0) | (meuse.y % 40 == 0)).to_numpy()
    assert edge.sum() < 20
    pd.testing.assert_frame_equal(a[~edge], b[~edge])
    # unplaced and astronomically far points are dropped, without a warning from a cast
    xs = meuse.x.to_numpy(float).copy()
    xs[:3] = [np.nan, 1e300, -1e308]
    c = models.sample_covariates(grid, xs, meuse.y, crs=28992, missing="drop")
    assert c.iloc[:3].isna().all().all() and c.iloc[3:].equals(b.iloc[3:])
    ll = meuse.drop(columns=["x", "y"]).assign(lon=lon, lat=lat)
    m = models.train(ll, "log_zinc", covariates=grid, folds=5, missing="drop",
                     n_estimators=10)
    assert m.card["sample_crs"] == "EPSG:4326" and m.card["crs"] == "EPSG:28992"


# --- the sample archive: SCMaP composites recover the hidden SOC ---------------------

@pytest.fixture(scope="module")
def composite(sample, shared_data):
    items = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog)
    cube = cup4soil.load_s2(items, chunks={"x": 32, "y": 32})
    wc = sample.truth_on("worldcover", cube.odc.geobox)
    return scmap.composite(cube, str(shared_data / "scmap/th_S2_s2cr_buffered_cog.tif"),
                           worldcover=wc, products=("SRC", "BSC")).compute(), wc


# a few sample points fall on pixels without bare observations (no SRC): dropped, said
@pytest.mark.filterwarnings(r"ignore:\d+ of \d+ samples dropped:UserWarning")
def test_src_covariates_recover_hidden_soc(sample, composite):
    products, wc = composite
    pts = sample.soil_samples(120, seed=1)
    m = models.train(pts, "soc", covariates=products[["SRC"]], folds="200 m",
                     crs=sample.crs, missing="drop")
    assert m.features[:2] == ("SRC_B02", "SRC_B03") and m.cv["MEC"] > 0.5
    soc = m.predict(products[["SRC"]]).compute()
    assert soc.soc.attrs["units"] == "dg/kg" and soc.rio.crs == products.rio.crs
    truth = sample.truth_on("soc", products.odc.geobox).values * 100  # % -> dg/kg
    # held out: cropland pixels without a sample
    gbox = products.odc.geobox
    col, row = ~gbox.affine * (pts.x.to_numpy(), pts.y.to_numpy())
    sampled = np.zeros(gbox.shape, bool)
    sampled[row.astype(int), col.astype(int)] = True
    held = np.isfinite(soc.soc.values) & (wc.values == 40) & ~sampled
    score = models.cv_metrics(truth[held], soc.soc.values[held], soc.soc_q05.values[held],
                              soc.soc_q95.values[held])
    assert score["n"] > 500 and score["MEC"] > 0.6 and score["PICP90"] > 0.7, score


@pytest.mark.parametrize("n_features", [1, 7])
def test_rbf_svr_predict_equals_libsvm(n_features):
    from cup4soil.models.predictor import member_predict, member_template

    rng = np.random.default_rng(n_features)
    x = rng.normal(size=(120, n_features)) * rng.uniform(0.1, 50, n_features)
    x[:, 0] = 4.0 if n_features > 1 else x[:, 0]  # a constant column (scale 1 in sklearn)
    y = 10 + 3 * x[:, -1] + rng.normal(size=120)
    svr = member_template("svr", random_state=0).fit(x, y)
    rows = np.concatenate([rng.normal(size=(5000, n_features)) * 20, x[:10]])
    fast = member_predict(svr)
    assert fast != svr.predict  # the matrix path was taken
    np.testing.assert_allclose(fast(rows), svr.predict(rows), rtol=1e-9, atol=1e-9)
    from sklearn.neighbors import KNeighborsRegressor

    other = KNeighborsRegressor(n_neighbors=3).fit(x, y)
    assert member_predict(other) == other.predict  # anything else predicts itself


@pytest.mark.parametrize("n_features", [1, 7])
def test_ridge_member_folds_into_one_linear_map(n_features):
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    from cup4soil.models.predictor import LinearMember, fast_member, member_template

    rng = np.random.default_rng(20 + n_features)
    x = rng.normal(size=(80, n_features)) * rng.uniform(0.1, 500, n_features) + 1000
    y = 3 - 0.02 * x[:, 0] + rng.normal(size=80)
    rows = np.concatenate([rng.normal(size=(2000, n_features)) * 600 + 1000, x])
    for est in (member_template("ridge", random_state=0),
                make_pipeline(StandardScaler(with_mean=False), LinearRegression())):
        est.fit(x, y)
        fast = fast_member(est)
        assert isinstance(fast, LinearMember)
        np.testing.assert_allclose(fast.predict(rows), est.predict(rows), rtol=1e-9,
                                   atol=1e-9)
        # float32 map blocks: computed in float64 (the pipeline would standardise in float32)
        r32 = rows.astype(np.float32)
        np.testing.assert_allclose(fast.predict(r32), est.predict(r32.astype(np.float64)),
                                   rtol=1e-9, atol=1e-9)
    poly = make_pipeline(PolynomialFeatures(2), LinearRegression()).fit(x, y)
    assert fast_member(poly) is poly  # not a standardised linear model: predicts itself
    # members the ensemble gives no weight stay unfitted: kept as they are, never evaluated
    for name in ("ridge", "svr", "gbm"):
        unfitted = member_template(name, random_state=0)
        assert fast_member(unfitted) is unfitted


@pytest.mark.parametrize("n_features", [1, 6])
def test_compiled_boosting_equals_scikit_learn(n_features):
    from cup4soil.models.predictor import CompiledBoostingMember, fast_member, member_template

    rng = np.random.default_rng(10 + n_features)
    x = rng.normal(size=(150, n_features)) * 30
    y = 5 + np.sin(x[:, 0] / 10) * 4 + rng.normal(size=150)
    gbm = member_template("gbm", random_state=1).fit(x, y)
    fast = fast_member(gbm)
    assert isinstance(fast, CompiledBoostingMember)
    rows = np.concatenate([rng.normal(size=(3000, n_features)) * 40, x,
                           x.astype(np.float32).astype(np.float64)])
    np.testing.assert_allclose(fast.predict(rows), gbm.predict(rows), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(fast.predict(rows.astype(np.float32)),
                               gbm.predict(rows.astype(np.float32)), rtol=1e-12, atol=1e-9)
